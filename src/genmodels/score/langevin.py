"""Samplers that follow a score: Langevin dynamics and annealed Langevin dynamics.

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
=====================  ===========================================================================================

The samplers are plain functions that take the score (or the model) as an argument, draw only from the
``generator`` they are given, and wrap their step iterator in an optional ``progress`` (e.g. ``tqdm``).
:func:`langevin_dynamics` and :func:`annealed_langevin_dynamics` return :class:`LangevinOutput`. The
predictor–corrector sampler of diffusion models, whose corrector is Langevin dynamics on the model's score, lives
with the other diffusion samplers (:mod:`genmodels.diffusion.pc`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core import Progress

__all__ = [
    "LangevinOutput",
    "langevin_dynamics",
    "annealed_langevin_dynamics",
]

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
