"""Predictor–corrector sampling of a variance-preserving diffusion model (score SDE §4.2 and Appendix G).

=====================  ===========================================================================================
VP diffusion score     ∇_x log q_λ(x) = −E[ε | x_λ]/σ_λ ≈ −ε̂(x, λ)/σ_λ for x_λ = α_λ x_0 + σ_λ ε (Tweedie's
                       formula; ``model.denoise`` gives ε̂)
predictor              the ancestral step λ_i → λ_{i+1}: x ~ q(x_s | x_t, x̂_0) = N(μ̃, r σ_s²)
                       (:func:`genmodels.diffusion.gaussian.q_posterior`; DDPM Eq. 6–7), x̂_0 at the last level
corrector              M Langevin steps at λ_i in seed 003's form with τ = ε from the signal-to-noise rule
                       ε = 2 α_i (r ‖z‖/‖s‖)²,  α_i = ᾱ(λ_i)/ᾱ(λ_{i+1}) = 1 − β_i          (score SDE,
                       Appendix G, corrector algorithm for the VP SDE; r = ``snr``)
=====================  ===========================================================================================

:func:`predictor_corrector` has the signature of the other diffusion samplers (:mod:`.samplers` registers it as
``pc``) and returns their :class:`~genmodels.core.SampleOutput`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

import torch
from torch import Tensor

from ..core import Progress, SampleOutput
from . import gaussian as G
from .grids import Spacing, logsnr_grid

if TYPE_CHECKING:
    from .base import DiffusionModel

__all__ = ["StepNorm", "Predictor", "diffusion_score", "snr_step_size", "langevin_corrector", "predictor_corrector"]

StepNorm = Literal["batch", "example"]
"""How the corrector's norms are taken: ``batch`` (means of ‖z‖ and ‖s‖ over the batch, one step size for all,
as the score SDE code does) or ``example`` (each example's own norms, as Appendix G writes them)."""
Predictor = Literal["ancestral", "none"]
"""The predictor of :func:`predictor_corrector`: the ancestral step, or none (corrector only)."""


def diffusion_score(model: DiffusionModel, x: Tensor, logsnr: Tensor) -> Tensor:
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
    if not snr > 0:
        raise ValueError(f"snr must be > 0, got {snr}")
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
def langevin_corrector(model: DiffusionModel, x: Tensor, logsnr: float, *, n_steps: int, snr: float,
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
def predictor_corrector(model: DiffusionModel, n: int, *, steps: int, corrector_steps: int = 1, snr: float = 0.16,
                        predictor: Predictor = "ancestral", norm: StepNorm = "batch", spacing: Spacing = "time",
                        clip_x0: bool | None = None, generator: torch.Generator | None = None,
                        progress: Progress | None = None, keep_trajectory: bool = False) -> SampleOutput:
    """Predictor–corrector sampling of a variance-preserving diffusion model (score SDE §4.2 and Appendix G).

    On a grid λ_0 < … < λ_{N−1} from ``model.logsnr_min`` to ``model.logsnr_max``
    (:func:`~genmodels.diffusion.grids.logsnr_grid`), starting from x ~ N(0, I): at each level i, M corrector
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
        :class:`~genmodels.core.SampleOutput` with ``x0`` ``[n, *event_shape]`` and
        ``nfe`` = N(M + 1) (``ancestral``) or N·M + 1 (``none``).
    Raises:
        ValueError: for M < 0, r ≤ 0, or an unknown ``predictor``, ``norm`` or ``spacing``.
    """
    if isinstance(corrector_steps, float) and corrector_steps.is_integer():
        corrector_steps = int(corrector_steps)  # a whole-number float, as the NFE sweep's option parser gives
    if corrector_steps < 0:
        raise ValueError(f"corrector_steps must be ≥ 0, got {corrector_steps}")
    if predictor not in get_args(Predictor):
        raise ValueError(f"predictor must be one of {', '.join(get_args(Predictor))}; got {predictor!r}")
    if norm not in get_args(StepNorm):
        raise ValueError(f"norm must be one of {', '.join(get_args(StepNorm))}; got {norm!r}")
    if not snr > 0:
        raise ValueError(f"snr must be > 0, got {snr}")
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
    return SampleOutput(x0=x, nfe=nfe, trajectory=torch.stack(traj) if traj else None)
