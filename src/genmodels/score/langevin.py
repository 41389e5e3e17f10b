"""Samplers that follow a score: Langevin dynamics, annealed Langevin dynamics and predictor–corrector sampling.

Notation (seed 003; Song & Ermon 2019 "NCSN"; Song et al. 2021 "score SDE"):

=====================  ===========================================================================================
Langevin               x_{k+1} = x_k + τ ∇log p(x_k) + √(2τ) z_k,  z_k ~ N(0, I)      (seed 003; ``step_size`` τ)
                       NCSN Eq. 4 writes the same update with ε = 2τ: x_k + (ε/2) ∇log p(x_k) + √ε z_k.
                       As τ → 0 and kτ → ∞ the law of x_k tends to p; a fixed τ leaves an O(τ) bias
                       (for p = N(0, s²) the stationary variance is s²/(1 − τ/(2s²))).
annealed Langevin      for σ_1 > … > σ_L: α_i = ε σ_i²/σ_L², then T NCSN-form steps with step α_i and
                       score s(x, σ_i)                                                       (NCSN Algorithm 1)
                       i.e. τ_i = α_i/2 in seed 003's form. Optional final denoising x + σ_L² s(x, σ_L), the
                       posterior mean E[x_0 | x] for x = x_0 + σ_L z (Tweedie's formula; the denoising step of
                       Jolicoeur-Martineau et al. 2021, also in NCSNv2's sampler)
VP diffusion score     ∇_x log q_λ(x) = −E[ε | x_λ]/σ_λ ≈ −ε̂(x, λ)/σ_λ for x_λ = α_λ x_0 + σ_λ ε (Tweedie's
                       formula; ``model.denoise`` gives ε̂)
predictor              the ancestral step λ_i → λ_{i+1}: x ~ q(x_s | x_t, x̂_0) = N(μ̃, r σ_s²)
                       (:func:`genmodels.diffusion.gaussian.q_posterior`; DDPM Eq. 6–7), x̂_0 at the last level
corrector              M Langevin steps at λ_i in seed 003's form with τ = ε from the signal-to-noise rule
                       ε = 2 α_i (r ‖z‖/‖s‖)²,  α_i = ᾱ(λ_i)/ᾱ(λ_{i+1}) = 1 − β_i          (score SDE,
                       Appendix G, corrector algorithm for the VP SDE; r = ``snr``)
=====================  ===========================================================================================

The samplers are plain functions that take the score (or the model) as an argument, draw only from the
``generator`` they are given, and wrap their step iterator in an optional ``progress`` (e.g. ``tqdm``).
:func:`langevin_dynamics` and :func:`annealed_langevin_dynamics` return :class:`LangevinOutput`;
:func:`predictor_corrector` has the signature of the diffusion samplers and returns their
:class:`~genmodels.diffusion.samplers.SamplerOutput`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Literal, get_args

import torch
from torch import Tensor

from ..diffusion import gaussian as G
from ..diffusion.samplers import SamplerOutput, Spacing, logsnr_grid

if TYPE_CHECKING:
    from ..diffusion.ddpm import DDPM

__all__ = [
    "LangevinOutput",
    "StepNorm",
    "Predictor",
    "langevin_dynamics",
    "annealed_langevin_dynamics",
    "diffusion_score",
    "snr_step_size",
    "langevin_corrector",
    "predictor_corrector",
]

Progress = Callable[[Iterable], Iterable]
StepNorm = Literal["batch", "example"]
"""How the corrector's norms are taken: ``batch`` (means of ‖z‖ and ‖s‖ over the batch, one step size for all,
as the score SDE code does) or ``example`` (each example's own norms, as Appendix G writes them)."""
Predictor = Literal["ancestral", "none"]
"""The predictor of :func:`predictor_corrector`: the ancestral step, or none (corrector only)."""


@dataclass
class LangevinOutput:
    """What a Langevin sampler returns.

    Attributes:
        x: ``[n, ...]`` the final state.
        nfe: number of score evaluations (each on the whole batch).
        trajectory: ``[K, n, ...]`` the initial state, every ``trajectory_stride``-th state and the final state,
            when asked for (``keep_trajectory=True``), else None.
    """

    x: Tensor
    nfe: int
    trajectory: Tensor | None = None


def _check_steps(**kw: float) -> None:
    """Raise ValueError unless every keyword value is > 0 (step sizes, snr)."""
    for name, value in kw.items():
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")


class _Trajectory:
    """Collects x every ``stride`` updates (plus the first and last states) when enabled."""

    def __init__(self, x: Tensor, keep: bool, stride: int):
        if stride < 1:
            raise ValueError(f"trajectory_stride must be ≥ 1, got {stride}")
        self.states, self.keep, self.stride, self.k = ([x] if keep else []), keep, stride, 0

    def add(self, x: Tensor) -> None:
        """Record ``x`` (``[n, ...]``, the state after one more update) if it falls on the stride."""
        self.k += 1
        if self.keep and self.k % self.stride == 0:
            self.states.append(x)

    def stack(self, x: Tensor) -> Tensor | None:
        """``[S, n, ...]`` the recorded states ending with the final ``x``, or None when not keeping them."""
        if not self.keep:
            return None
        if self.states[-1] is not x:
            self.states.append(x)
        return torch.stack(self.states)


@torch.no_grad()
def langevin_dynamics(score_fn: Callable[[Tensor], Tensor], x: Tensor, *, step_size: float, n_steps: int,
                      generator: torch.Generator | None = None, progress: Progress | None = None,
                      keep_trajectory: bool = False, trajectory_stride: int = 1) -> LangevinOutput:
    """Unadjusted Langevin dynamics x_{k+1} = x_k + τ ∇log p(x_k) + √(2τ) z_k (seed 003; NCSN Eq. 4 with ε = 2τ).

    Args:
        score_fn: ∇_x log p, ``[n, ...] -> [n, ...]`` (evaluated without gradient recording; an energy model that
            needs autograd for its score must enable it itself). x: ``[n, ...]`` the initial states.
        step_size: τ > 0. n_steps: K ≥ 0 updates.
        generator: draws the z_k (in x's dtype and device). progress: wraps the step iterator.
        keep_trajectory: return the states; ``trajectory_stride`` keeps every k-th one.
    Returns:
        :class:`LangevinOutput` with K score evaluations.
    Raises:
        ValueError: for τ ≤ 0, K < 0 or a stride < 1.
    """
    _check_steps(step_size=step_size)
    if n_steps < 0:
        raise ValueError(f"n_steps must be ≥ 0, got {n_steps}")
    traj = _Trajectory(x, keep_trajectory, trajectory_stride)
    noise_scale = (2 * step_size) ** 0.5
    steps = range(n_steps)
    for _ in progress(steps) if progress else steps:
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = x + step_size * score_fn(x) + noise_scale * z  # seed 003's Langevin update
        traj.add(x)
    return LangevinOutput(x=x, nfe=n_steps, trajectory=traj.stack(x))


@torch.no_grad()
def annealed_langevin_dynamics(score_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, sigmas: Tensor, *,
                               eps: float, n_steps_each: int, final_denoise: bool = False,
                               generator: torch.Generator | None = None, progress: Progress | None = None,
                               keep_trajectory: bool = False, trajectory_stride: int = 1) -> LangevinOutput:
    """Annealed Langevin dynamics (NCSN Algorithm 1).

    For i = 1..L: α_i = ε σ_i²/σ_L², then T updates x ← x + (α_i/2) s(x, σ_i) + √α_i z (τ_i = α_i/2 in seed 003's
    form). With ``final_denoise`` one more evaluation returns x + σ_L² s(x, σ_L), the Tweedie estimate of the clean
    point, which removes the σ_L noise the last level leaves.

    Args:
        score_fn: s(x, σ) ≈ ∇_x log q_σ(x), with σ ``[n]`` in x's dtype. x: ``[n, ...]`` initial states (NCSN:
            uniform noise; NCSNv2: N(0, σ_1² I)).
        sigmas: ``[L]`` decreasing noise levels σ_1 > … > σ_L > 0 (e.g.
            :func:`~genmodels.score.losses.geometric_sigmas`). eps: ε > 0, the NCSN-form step at σ_L.
        n_steps_each: T ≥ 1 updates per level. final_denoise: the extra denoising step.
        generator, progress, keep_trajectory, trajectory_stride: as in :func:`langevin_dynamics` (``progress``
            wraps the loop over levels).
    Returns:
        :class:`LangevinOutput` with L·T (+1 with ``final_denoise``) score evaluations.
    Raises:
        ValueError: for ε ≤ 0, T < 1, or ``sigmas`` not 1-D, positive and non-increasing.
    """
    _check_steps(eps=eps)
    if n_steps_each < 1:
        raise ValueError(f"n_steps_each must be ≥ 1, got {n_steps_each}")
    if sigmas.ndim != 1 or len(sigmas) == 0 or not bool((sigmas > 0).all()) or bool((sigmas.diff() > 0).any()):
        raise ValueError(f"sigmas must be a non-empty, positive, non-increasing 1-D tensor, got {sigmas}")
    n = x.shape[0]
    sig = sigmas.double().tolist()
    traj = _Trajectory(x, keep_trajectory, trajectory_stride)
    levels = range(len(sig))
    for i in progress(levels) if progress else levels:
        alpha = eps * sig[i] ** 2 / sig[-1] ** 2  # α_i = ε σ_i²/σ_L²  (NCSN Algorithm 1)
        sigma_i = torch.full((n,), sig[i], dtype=x.dtype, device=x.device)
        for _ in range(n_steps_each):
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x = x + 0.5 * alpha * score_fn(x, sigma_i) + alpha**0.5 * z  # NCSN Algorithm 1, inner update
            traj.add(x)
    nfe = len(sig) * n_steps_each
    if final_denoise:
        sigma_L = torch.full((n,), sig[-1], dtype=x.dtype, device=x.device)
        x = x + sig[-1] ** 2 * score_fn(x, sigma_L)  # Tweedie: E[x_0 | x] = x + σ_L² ∇log q_{σ_L}(x)
        nfe += 1
    return LangevinOutput(x=x, nfe=nfe, trajectory=traj.stack(x))


# ============================================================================ Gaussian diffusion models


def diffusion_score(model: "DDPM", x: Tensor, logsnr: Tensor) -> Tensor:
    """∇_x log q_λ(x) = −ε̂(x, λ)/σ_λ of a variance-preserving diffusion model (DDPM or VDM), ``[B, ...]``.

    Args:
        model: has ``denoise(x, logsnr)`` (its λ is clamped to the model's range). x: ``[B, ...]``.
        logsnr: ``[B]`` λ.
    Returns:
        ``[B, ...]`` in x's dtype.
    """
    out = model.denoise(x, logsnr)
    _, sigma = G.alpha_sigma(out.logsnr.double())
    return -out.pred.eps.to(x.dtype) / G._expand(sigma, x)


def snr_step_size(score: Tensor, z: Tensor, snr: float, alpha: float | Tensor = 1.0,
                  norm: StepNorm = "batch") -> Tensor:
    """The corrector's step from the signal-to-noise rule: ε = 2 α (r ‖z‖/‖s‖)² (score SDE, Appendix G).

    With this ε the drift and the noise of the step x + ε s + √(2ε) z have norms in the ratio
    ‖ε s‖/‖√(2ε) z‖ = √α r: r = ``snr`` sets the signal-to-noise ratio of the step, whatever the scale of s
    (‖s‖ ~ √D/σ_λ). With ``example`` norms ε depends on z, so √(2ε) z is not Gaussian (in low dimensions ‖z‖ varies
    a lot); the batch form's ε is nearly constant for a large batch.

    Args:
        score: ``[B, ...]`` s. z: ``[B, ...]`` the step's noise. snr: r > 0.
        alpha: α (float or ``[B]``), 1 − β_i for the VP SDE, 1 for the VE SDE.
        norm: ``batch`` (mean norms over the batch, one ε) or ``example`` (per-example norms).
    Returns:
        ``[B]`` step sizes ε, in score's dtype; 0 where the (mean) score norm is 0 (e.g. an untrained network whose
        output layer starts at zero), so that such a step leaves x unchanged.
    Raises:
        ValueError: for r ≤ 0 or an unknown ``norm``.
    """
    _check_steps(snr=snr)
    if norm not in get_args(StepNorm):
        raise ValueError(f"norm must be one of {', '.join(get_args(StepNorm))}; got {norm!r}")
    s_norm = score.flatten(1).norm(dim=1)  # [B]
    z_norm = z.flatten(1).norm(dim=1).to(s_norm.dtype)
    if norm == "batch":
        s_norm, z_norm = s_norm.mean().expand_as(s_norm), z_norm.mean().expand_as(z_norm)
    alpha = torch.as_tensor(alpha, dtype=s_norm.dtype, device=s_norm.device)
    eps = 2 * alpha * (snr * z_norm / s_norm) ** 2  # ε = 2α (r‖z‖/‖s‖)²
    return torch.where(s_norm > 0, eps, torch.zeros_like(eps))  # a zero score gives no step, not an infinite one


@torch.no_grad()
def langevin_corrector(model: "DDPM", x: Tensor, logsnr: float, *, n_steps: int, snr: float,
                       alpha: float = 1.0, norm: StepNorm = "batch",
                       generator: torch.Generator | None = None) -> Tensor:
    """M Langevin steps at one noise level λ with the score −ε̂/σ and the signal-to-noise step rule: for each,
    z ~ N(0, I), ε = 2α(r‖z‖/‖s‖)², x ← x + ε s + √(2ε) z (score SDE, Appendix G, corrector algorithm).

    The chain leaves q_λ (approximately, for finite ε) invariant; it corrects the predictor's discretization error.

    Args:
        model: a DDPM or VDM (``denoise``). x: ``[n, ...]``. logsnr: λ of the level. n_steps: M ≥ 0.
        snr: r > 0. alpha: α_i (see :func:`predictor_corrector`). norm: see :func:`snr_step_size`.
        generator: draws the z.
    Returns:
        ``[n, ...]`` the corrected x (M network evaluations).
    """
    lam = torch.full((x.shape[0],), float(logsnr), dtype=torch.float64, device=x.device)
    for _ in range(n_steps):
        s = diffusion_score(model, x, lam)
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        step = G._expand(snr_step_size(s, z, snr, alpha, norm), x)
        x = x + step * s + (2 * step).sqrt() * z  # seed 003's Langevin update with τ = ε
    return x


@torch.no_grad()
def predictor_corrector(model: "DDPM", n: int, *, steps: int, corrector_steps: int = 1, snr: float = 0.16,
                        predictor: Predictor = "ancestral", norm: StepNorm = "batch", spacing: Spacing = "time",
                        clip_x0: bool | None = None, generator: torch.Generator | None = None,
                        progress: Progress | None = None, keep_trajectory: bool = False) -> SamplerOutput:
    """Predictor–corrector sampling of a variance-preserving diffusion model (score SDE §4.2 and Appendix G).

    On a grid λ_0 < … < λ_{N−1} from ``model.logsnr_min`` to ``model.logsnr_max``
    (:func:`~genmodels.diffusion.samplers.logsnr_grid`), starting from x ~ N(0, I): at each level i, M corrector
    steps (:func:`langevin_corrector`, α_i = ᾱ(λ_i)/ᾱ(λ_{i+1}) = sigmoid(λ_i)/sigmoid(λ_{i+1}), the 1 − β_i of the
    VP corrector; α = 1 at the last level), then the predictor: the ancestral step to λ_{i+1},
    x ~ N(μ̃(x, x̂_0), r σ²_{i+1}) (DDPM Eq. 6–7 via :func:`~genmodels.diffusion.gaussian.q_posterior`, the true
    posterior's variance), and at the last level x̂_0 (the final denoising step, no noise). With ``predictor="none"``
    only the corrector runs at each level (annealed Langevin on the model's levels), followed by x̂_0 at the last.
    With M = 0, ``spacing="time"`` and ``steps = T`` this is the ancestral sampler with ``fixed_small`` variance.

    Why correct: the ancestral step plugs in x̂_0 = E[x_0 | x_t] and so leaves out the (coefficient² ×) Var[x_0 | x_t]
    part of the true reverse step's variance; on coarse grids the samples come out too narrow (with the exact
    denoiser of Gaussian data and T = 100 linear-schedule steps, the predictor alone gives ≈ 0.90 of the data variance,
    one corrector step ≈ 0.99, two ≈ 1.0, at r = 0.16; see ``tests/score/test_langevin.py``).

    Args:
        model: a :class:`~genmodels.diffusion.ddpm.DDPM` or :class:`~genmodels.diffusion.vdm.VDM` (anything with
            ``denoise``, ``logsnr_min``, ``logsnr_max``, ``spec.event_shape``, ``schedule``, ``T``, ``device``).
        n: number of samples. steps: N ≥ 1 levels. corrector_steps: M ≥ 0 per level. snr: r > 0 (0.16 in the
            score SDE paper). predictor: ``ancestral`` or ``none``. norm: see :func:`snr_step_size`.
        spacing: the grid (``time``: the training steps DDIM keeps). clip_x0: clamp x̂_0 to [−1, 1] in the
            predictor (default: the model's ``clip_x0``); the corrector always uses the network's own ε̂.
        generator: draws x_{λ_0} and all noise. progress: wraps the loop over levels.
        keep_trajectory: keep x after each level (the last entry is the returned x̂_0).
    Returns:
        :class:`~genmodels.diffusion.samplers.SamplerOutput` with ``x0`` ``[n, *event_shape]`` and
        ``nfe`` = N(M + 1) (``ancestral``) or N·M + 1 (``none``).
    Raises:
        ValueError: for M < 0, r ≤ 0, or an unknown ``predictor``, ``norm`` or ``spacing``.
    """
    if corrector_steps < 0:
        raise ValueError(f"corrector_steps must be ≥ 0, got {corrector_steps}")
    if predictor not in get_args(Predictor):
        raise ValueError(f"predictor must be one of {', '.join(get_args(Predictor))}; got {predictor!r}")
    if norm not in get_args(StepNorm):
        raise ValueError(f"norm must be one of {', '.join(get_args(StepNorm))}; got {norm!r}")
    _check_steps(snr=snr)
    clip = model.config.clip_x0 if clip_x0 is None else clip_x0
    lam = logsnr_grid(model, steps, spacing)  # [N] float64, increasing: noisy -> clean
    abar = torch.sigmoid(lam)  # ᾱ = α² at each level
    x = torch.randn((n, *model.spec.event_shape), generator=generator, device=model.device)
    traj = [x] if keep_trajectory else None
    nfe = 0
    levels = range(steps)
    for i in progress(levels) if progress else levels:
        last = i == steps - 1
        alpha_i = 1.0 if last else (abar[i] / abar[i + 1]).item()  # 1 − β_i of the VP corrector
        x = langevin_corrector(model, x, lam[i].item(), n_steps=corrector_steps, snr=snr, alpha=alpha_i,
                               norm=norm, generator=generator)
        nfe += corrector_steps
        if last or predictor == "ancestral":
            out = model.denoise(x, lam[i].expand(n), clip_x0=clip)
            nfe += 1
            if last:
                x = out.pred.x0  # final denoising step: x̂_0 at λ_{N−1}
            else:
                ls, lt = lam[i + 1].expand(n), lam[i].expand(n)
                mean, var = G.q_posterior(out.pred.x0, x, ls, lt)  # μ̃(x_t, x̂_0), r σ_s²: DDPM Eq. 6–7
                z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                x = mean + G._expand(var.sqrt(), x) * z
        if traj is not None:
            traj.append(x)
    return SamplerOutput(x0=x, nfe=nfe, trajectory=torch.stack(traj) if traj else None)
