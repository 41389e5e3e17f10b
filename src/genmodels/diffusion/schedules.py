"""Noise schedules of Gaussian diffusion, in float64, with their logSNR.

Notation (Ho et al. 2020; Kingma et al. 2021; code index ``i = t − 1``):

=====================  ==========================================================================
``betas[i]``           β_t, variance of q(x_t | x_{t−1}) = N(√(1−β_t) x_{t−1}, β_t I)  (DDPM Eq. 2)
``alphas[i]``          α_t = 1 − β_t
``alphas_cumprod[i]``  ᾱ_t = Π_{s≤t} α_s;  q(x_t | x_0) = N(√ᾱ_t x_0, (1−ᾱ_t) I)        (DDPM Eq. 4)
``alphas_cumprod_prev``ᾱ_{t−1}, with ᾱ_0 = 1
``logsnr[i]``          λ_t = log SNR(t) = log(ᾱ_t / (1−ᾱ_t))                     (VDM Eq. 2; seed 003)
``timesteps[i]``       the index of the *original* T-step process that step i of this process is
                       (``arange(T)`` unless the process was respaced)
=====================  ==========================================================================

A fewer-step process is *derived* from ``alphas_cumprod`` (Nichol & Dhariwal 2021, §4 and
``respace.py``): keep ᾱ at the chosen timesteps and set β_i = 1 − ᾱ_{t_i} / ᾱ_{t_{i−1}}.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence, get_args

import torch
from torch import Tensor, nn

__all__ = [
    "ScheduleConfig",
    "DiscreteSchedule",
    "linear_betas",
    "cosine_betas",
    "logsnr_from_alphas_cumprod",
    "respaced_timesteps",
]

ScheduleKind = Literal["linear", "cosine"]


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """β_t linear from ``beta_start`` to ``beta_end`` over T steps (Ho et al. 2020, §4), scaled by
    1000/T so that any T gives the same process as T=1000 (Nichol & Dhariwal 2021, ``get_named_beta_schedule``).

    Returns:
        ``[T]`` float64.
    """
    scale = 1000.0 / T
    return torch.linspace(scale * beta_start, scale * beta_end, T, dtype=torch.float64)


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """β_t of the cosine schedule ᾱ(t) = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2)
    (Nichol & Dhariwal 2021, Eq. 17), β_t clipped at ``max_beta`` to avoid the singularity at t = T.

    Returns:
        ``[T]`` float64.
    """
    t = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    alphas_cumprod = f / f[0]
    betas = 1 - alphas_cumprod[1:] / alphas_cumprod[:-1]
    return betas.clamp(max=max_beta)


def logsnr_from_alphas_cumprod(alphas_cumprod: Tensor) -> Tensor:
    """λ = log(ᾱ / (1 − ᾱ)), computed as ``log ᾱ − log1p(−ᾱ)``; +inf where ᾱ = 1."""
    return torch.log(alphas_cumprod) - torch.log1p(-alphas_cumprod)


def respaced_timesteps(T: int, steps: int) -> list[int]:
    """``steps`` evenly spaced original indices in ``[0, T−1]``, always including 0 and T−1.

    Raises:
        ValueError: unless ``1 ≤ steps ≤ T``.
    """
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be between 1 and T={T}, got {steps}")
    if steps == 1:
        return [T - 1]
    return sorted({round(k * (T - 1) / (steps - 1)) for k in range(steps)})


@dataclass(frozen=True)
class ScheduleConfig:
    """A named discrete schedule.

    Attributes:
        kind: ``linear`` (Ho et al. 2020) or ``cosine`` (Nichol & Dhariwal 2021).
        T: number of diffusion steps.
        beta_start, beta_end: end points of the linear schedule (at T = 1000).
        cosine_s: offset s of the cosine schedule.
    """

    kind: ScheduleKind = "linear"
    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    cosine_s: float = 0.008

    def __post_init__(self) -> None:
        if self.kind not in get_args(ScheduleKind):
            raise ValueError(f"schedule kind must be one of {', '.join(get_args(ScheduleKind))}; got {self.kind!r}")
        if self.T < 2:
            raise ValueError(f"a diffusion needs T ≥ 2 steps, got T={self.T}")


class DiscreteSchedule(nn.Module):
    """A T-step (or respaced S-step) variance-preserving process, stored as float64 buffers.

    Build with :meth:`from_config` or :meth:`from_betas`; derive fewer steps with :meth:`respace`.
    See the module docstring for the notation. All buffers are ``[S]`` float64 (``timesteps`` int64).
    """

    betas: Tensor
    alphas: Tensor
    alphas_cumprod: Tensor
    alphas_cumprod_prev: Tensor
    logsnr: Tensor
    logsnr_prev: Tensor
    timesteps: Tensor

    def __init__(self, betas: Tensor, timesteps: Tensor | None = None):
        super().__init__()
        betas = torch.as_tensor(betas, dtype=torch.float64)
        if betas.ndim != 1 or not ((betas > 0) & (betas <= 1)).all():
            raise ValueError("betas must be a 1-D tensor with values in (0, 1]")
        alphas_cumprod = torch.cumprod(1 - betas, dim=0)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        if timesteps is None:
            timesteps = torch.arange(len(betas))
        self.register_buffer("betas", betas, persistent=False)
        self.register_buffer("alphas", 1 - betas, persistent=False)
        self.register_buffer("alphas_cumprod", alphas_cumprod, persistent=False)
        self.register_buffer("alphas_cumprod_prev", alphas_cumprod_prev, persistent=False)
        self.register_buffer("logsnr", logsnr_from_alphas_cumprod(alphas_cumprod), persistent=False)
        self.register_buffer("logsnr_prev", logsnr_from_alphas_cumprod(alphas_cumprod_prev), persistent=False)
        self.register_buffer("timesteps", torch.as_tensor(timesteps, dtype=torch.int64), persistent=False)

    @classmethod
    def from_config(cls, config: ScheduleConfig) -> DiscreteSchedule:
        """The schedule ``config`` names."""
        if config.kind == "linear":
            return cls(linear_betas(config.T, config.beta_start, config.beta_end))
        if config.kind == "cosine":
            return cls(cosine_betas(config.T, config.cosine_s))
        raise ValueError(f"unknown schedule kind {config.kind!r}; use 'linear' or 'cosine'")

    @property
    def num_steps(self) -> int:
        """S, the number of steps of this process."""
        return len(self.betas)

    def respace(self, steps: int | Sequence[int]) -> DiscreteSchedule:
        """A process on a subset of this one's timesteps, derived from ``alphas_cumprod``.

        β_i = 1 − ᾱ_{t_i}/ᾱ_{t_{i−1}} (Nichol & Dhariwal 2021, §4), so that q(x_{t_i} | x_0) is unchanged.

        Args:
            steps: a number of evenly spaced steps, or a sorted list of indices into this process.
        Raises:
            ValueError: for a step count outside ``[1, S]`` or indices that are not increasing/in range.
        """
        idx = respaced_timesteps(self.num_steps, steps) if isinstance(steps, int) else list(steps)
        if not idx or any(b <= a for a, b in zip(idx, idx[1:])) or idx[0] < 0 or idx[-1] >= self.num_steps:
            raise ValueError(f"respace indices must be increasing within [0, {self.num_steps - 1}], got {idx}")
        idx_t = torch.as_tensor(idx, device=self.alphas_cumprod.device)
        ac = self.alphas_cumprod[idx_t]
        ac_prev = torch.cat([ac.new_ones(1), ac[:-1]])
        return DiscreteSchedule(1 - ac / ac_prev, self.timesteps[idx_t]).to(self.betas.device)

    def index_from_logsnr(self, logsnr: Tensor) -> Tensor:
        """The fractional step index whose logSNR is ``logsnr``: the piecewise-linear inverse of ``logsnr[i]``.

        This is how a discrete-time model is run at any noise level between its training steps (the
        discrete-time wrapper of DPM-Solver, Lu et al. 2022, Appendix; here interpolated in λ, not log α).
        Values outside ``[logsnr[-1], logsnr[0]]`` are clamped to the end steps.

        Args:
            logsnr: any shape, λ.
        Returns:
            float64 tensor of the same shape with values in ``[0, S − 1]``.
        """
        table = self.logsnr.flip(0)  # increasing in λ; position k ↔ index S−1−k
        lam = logsnr.to(table).clamp(table[0], table[-1])
        k = torch.searchsorted(table, lam.contiguous(), right=True).clamp(1, len(table) - 1)
        lo, hi = table[k - 1], table[k]
        frac = (lam - lo) / (hi - lo)
        return (self.num_steps - 1) - (k - 1 + frac)
