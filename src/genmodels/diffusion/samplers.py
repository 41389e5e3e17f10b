"""Samplers for Gaussian diffusion models: plain functions that take the model as an argument.

Each runs on an S-step process *derived* from the model's ``alphas_cumprod`` (``DiscreteSchedule.respace``),
so S = T is the training process and S < T a faster one. Both use the continuous logSNR core of
:mod:`.gaussian`: a step goes from λ_t = ``logsnr[j]`` to λ_s = ``logsnr_prev[j]`` of the respaced process.

=============  ===============================================================================
ancestral      x_s ~ p_θ(x_s | x_t) = N(μ̃(x_t, x̂_0), σ²_j)  (DDPM Algorithm 2; seed 003's update)
ddim           x_s = α_s x̂_0 + √(σ_s² − η² σ̃²) ε̂ + η σ̃ z,  σ̃² = r σ_s²  (Song et al. 2021, Eq. 12);
               η = 0 is deterministic, η = 1 is the ancestral update with σ²_j = β̃_j
=============  ===============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Protocol

import torch
from torch import Tensor

from ..registry import Registry
from . import gaussian as G
from .schedules import DiscreteSchedule

if TYPE_CHECKING:
    from .ddpm import DDPM

__all__ = ["SamplerOutput", "ancestral", "ddim", "SAMPLERS"]


@dataclass
class SamplerOutput:
    """What a sampler returns.

    Attributes:
        x0: ``[n, *event_shape]`` samples on the data scale.
        nfe: number of network evaluations used.
        trajectory: ``[S+1, n, ...]`` x_T, …, x_0 when asked for (``keep_trajectory=True``), else None.
        timesteps: the original step indices visited, from high noise to low.
    """

    x0: Tensor
    nfe: int
    trajectory: Tensor | None = None
    timesteps: list[int] = field(default_factory=list)


class Sampler(Protocol):
    """The signature every sampler has."""

    def __call__(self, model: "DDPM", n: int, *, steps: int, generator: torch.Generator | None = None,
                 progress: Callable[[Iterable], Iterable] | None = None,
                 keep_trajectory: bool = False) -> SamplerOutput: ...


def _run(model: "DDPM", n: int, sched: DiscreteSchedule, generator: torch.Generator | None,
         progress: Callable[[Iterable], Iterable] | None, keep_trajectory: bool,
         update: Callable[[Tensor, G.Prediction, int, Tensor, Tensor], Tensor]) -> SamplerOutput:
    """Shared loop over the respaced process ``sched``: x_T ~ N(0, I), then for j = S−1 … 0 evaluate the
    network and apply ``update``."""
    dev = model.device
    x = torch.randn((n, *model.spec.event_shape), generator=generator, device=dev)
    traj = [x] if keep_trajectory else None
    order = range(sched.num_steps - 1, -1, -1)
    for j in progress(order) if progress else order:
        i = sched.timesteps[j].expand(n)
        pred = model.model_output(x, i, clip_x0=model.config.clip_x0).pred
        lt = sched.logsnr[j].expand(n)
        ls = sched.logsnr_prev[j].expand(n)
        x = update(x, pred, j, ls, lt)
        if traj is not None:
            traj.append(x)
    return SamplerOutput(x0=x, nfe=sched.num_steps, trajectory=torch.stack(traj) if traj else None,
                         timesteps=sched.timesteps.flip(0).tolist())


@torch.no_grad()
def ancestral(model: "DDPM", n: int, *, steps: int, generator: torch.Generator | None = None,
              progress: Callable[[Iterable], Iterable] | None = None, keep_trajectory: bool = False) -> SamplerOutput:
    """Ancestral sampling of p_θ(x_{0:T}) (DDPM Algorithm 2) on an S-step respaced process.

    The reverse variance is the model's (``fixed_small`` β̃ or ``fixed_large`` β) of the respaced process;
    no noise is added at the last step (Algorithm 2, line 4: z = 0 for t = 1).

    Args:
        model: a :class:`~genmodels.diffusion.ddpm.DDPM`. n: number of samples. steps: S, 1 ≤ S ≤ T.
    Returns:
        :class:`SamplerOutput` with S network evaluations.
    """
    sched = model.schedule.respace(steps)
    log_var = G.reverse_log_variance(sched.betas, sched.alphas_cumprod_prev, sched.alphas_cumprod,
                                     model.config.variance) if sched.num_steps > 1 else sched.betas.log()

    def update(x: Tensor, pred: G.Prediction, j: int, ls: Tensor, lt: Tensor) -> Tensor:
        """One ancestral step x_t -> x_s (``[n, ...]``)."""
        mean, _ = G.q_posterior(pred.x0, x, ls, lt)  # μ̃(x_t, x̂_0), DDPM Eq. 7
        if j == 0:
            return mean
        z = torch.randn(x.shape, generator=generator, device=x.device)
        return mean + torch.exp(0.5 * log_var[j]).to(x.dtype) * z

    return _run(model, n, sched, generator, progress, keep_trajectory, update)


@torch.no_grad()
def ddim(model: "DDPM", n: int, *, steps: int, eta: float = 0.0, generator: torch.Generator | None = None,
         progress: Callable[[Iterable], Iterable] | None = None, keep_trajectory: bool = False) -> SamplerOutput:
    """DDIM (Song et al. 2021, Eq. 12) on an S-step respaced process.

    x_s = α_s x̂_0 + √(σ_s² − η²σ̃²) ε̂ + η σ̃ z with σ̃² = r σ_s² the true posterior variance; η = 0 is the
    deterministic sampler, η = 1 equals :func:`ancestral` with ``fixed_small`` variance.

    Args:
        eta: η ≥ 0.
    Raises:
        ValueError: if ``eta`` < 0.
    """
    if eta < 0:
        raise ValueError(f"eta must be ≥ 0, got {eta}")

    def update(x: Tensor, pred: G.Prediction, j: int, ls: Tensor, lt: Tensor) -> Tensor:
        """One DDIM step x_t -> x_s (``[n, ...]``), Eq. 12."""
        alpha_s, sigma_s = G.alpha_sigma(ls.double())
        var_post = -torch.expm1(lt.double() - ls.double()) * sigma_s**2  # σ̃² = r σ_s²
        noise_std = eta * var_post.sqrt()
        dir_coef = (sigma_s**2 - noise_std**2).clamp(min=0).sqrt()
        x_s = G._expand(alpha_s, x) * pred.x0 + G._expand(dir_coef, x) * pred.eps
        if j == 0 or eta == 0:
            return x_s
        z = torch.randn(x.shape, generator=generator, device=x.device)
        return x_s + G._expand(noise_std, x) * z

    return _run(model, n, model.schedule.respace(steps), generator, progress, keep_trajectory, update)


SAMPLERS: Registry[Sampler] = Registry("sampler")
SAMPLERS.register("ancestral", ancestral)
SAMPLERS.register("ddim", ddim)
