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

Continuous time (Kingma et al. 2021, "VDM", §3–4 and Appendix D): a schedule is γ(t) = −logSNR(t) on t ∈ [0, 1],
monotone increasing, with α_t² = sigmoid(−γ(t)) and σ_t² = sigmoid(γ(t)) (VDM Eq. 3–4). Here every γ is written as

    γ(t) = γ_0 + (γ_1 − γ_0) · ĝ(t),    ĝ(0) = 0, ĝ(1) = 1, ĝ increasing,

so the end points (γ_0 = −logSNR_max, γ_1 = −logSNR_min), which the continuous-time loss depends on (VDM Eq. 18),
are apart from the *shape* ĝ, which it does not depend on and which VDM therefore trains to reduce the variance of
the loss estimate (VDM §5.2, Appendix I.2). :class:`GammaSchedule` gives γ and dγ/dt in closed form.

=============================  ===================================================================================
``fixed``                      ĝ(t) = t, fixed end points (VDM ``NoiseSchedule_FixedLinear``)
``learned_linear``             ĝ(t) = t, learned end points (VDM ``NoiseSchedule_Scalar``)
``learned_net``                ĝ from VDM's monotone network γ̃(t) = l₁(t) + l₃(φ(l₂(2t − 1)))/n with non-negative
                               weights and φ(h) = 2 sigmoid(h) − 1 (VDM Appendix H, ``NoiseSchedule_NNet``),
                               normalized to ĝ(t) = (γ̃(t) − γ̃(0)) / (γ̃(1) − γ̃(0)); learned end points
=============================  ===================================================================================
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

import torch
from torch import Tensor, nn

__all__ = [
    "GammaConfig",
    "GammaSchedule",
    "FixedLinearGamma",
    "LearnedLinearGamma",
    "MonotoneNetGamma",
    "build_gamma_schedule",
    "ScheduleConfig",
    "DiscreteSchedule",
    "linear_betas",
    "cosine_betas",
    "logsnr_from_alphas_cumprod",
    "respaced_timesteps",
]

ScheduleKind = Literal["linear", "cosine"]
GammaKind = Literal["fixed", "learned_linear", "learned_net"]


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

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"T": (2, 100_000)}

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
    def from_gamma(cls, gamma: Tensor) -> DiscreteSchedule:
        """The T-step process whose ᾱ_i = sigmoid(−γ_i) for an increasing ``gamma`` ``[T]`` = γ(t_1) < … < γ(t_T):
        β_i = 1 − ᾱ_i/ᾱ_{i−1} = sigmoid(γ_i)·(−expm1(γ_{i−1} − γ_i)), ᾱ_0 = 1 (VDM Appendix A, written so that it
        keeps precision where SNR is large).

        Raises:
            ValueError: if ``gamma`` is not 1-D and strictly increasing.
        """
        gamma = torch.as_tensor(gamma, dtype=torch.float64)
        if gamma.ndim != 1 or not (gamma[1:] > gamma[:-1]).all():
            raise ValueError("gamma must be a strictly increasing 1-D tensor (−logSNR grows with t)")
        gamma_prev = torch.cat([gamma.new_full((1,), -math.inf), gamma[:-1]])
        return cls(torch.sigmoid(gamma) * -torch.expm1(gamma_prev - gamma))

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
        if not idx or any(b <= a for a, b in itertools.pairwise(idx)) or idx[0] < 0 or idx[-1] >= self.num_steps:
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


# ============================================================================ continuous time: γ(t) = −logSNR(t)


@dataclass(frozen=True)
class GammaConfig:
    """A continuous-time noise schedule γ(t) = −logSNR(t), t ∈ [0, 1] (VDM §3–4).

    Attributes:
        kind: ``fixed`` (linear, fixed end points), ``learned_linear`` (linear, learned end points) or
            ``learned_net`` (VDM's monotone network, learned end points); see the module docstring.
        gamma_0: γ(0) = −logSNR_max, the fixed value or the initial one. VDM: −13.3.
        gamma_1: γ(1) = −logSNR_min, the fixed value or the initial one. VDM: 5.0.
        gamma_0_bounds, gamma_1_bounds: optional (low, high) a learned end point is kept inside (clamped).
        n_features: hidden width of the ``learned_net`` shape network (VDM: 1024).

    Raises:
        ValueError: unknown kind, γ_0 ≥ γ_1, bounds that are reversed or exclude the initial value, n_features < 1.
    """

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"n_features": (1, 16_384)}

    kind: GammaKind = "learned_net"
    gamma_0: float = -13.3
    gamma_1: float = 5.0
    gamma_0_bounds: tuple[float, float] | None = None
    gamma_1_bounds: tuple[float, float] | None = None
    n_features: int = 1024

    def __post_init__(self) -> None:
        if self.kind not in get_args(GammaKind):
            raise ValueError(f"gamma schedule kind must be one of {', '.join(get_args(GammaKind))}; got {self.kind!r}")
        if not self.gamma_0 < self.gamma_1:
            raise ValueError(f"need gamma_0 < gamma_1 (logSNR falls with t), got {self.gamma_0} and {self.gamma_1}")
        for name, value, bounds in (("gamma_0", self.gamma_0, self.gamma_0_bounds),
                                    ("gamma_1", self.gamma_1, self.gamma_1_bounds)):
            if bounds is not None and not (len(bounds) == 2 and bounds[0] <= value <= bounds[1]):
                raise ValueError(f"{name}_bounds must be (low, high) with low ≤ {name}={value} ≤ high, got {bounds}")
        if self.n_features < 1:
            raise ValueError(f"n_features must be ≥ 1, got {self.n_features}")


class GammaSchedule(nn.Module):
    """γ(t) = γ_0 + (γ_1 − γ_0)·ĝ(t) (module docstring). Subclasses define :meth:`endpoints` and :meth:`shape`.

    Everything is computed in float64; ``t`` may be any shape with values in [0, 1].
    """

    def endpoints(self) -> tuple[Tensor, Tensor]:
        """(γ_0, γ_1), 0-d float64 tensors (differentiable where learned)."""
        raise NotImplementedError

    def shape(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(ĝ(t), dĝ/dt), each the shape of ``t``, float64; ĝ(0) = 0, ĝ(1) = 1, dĝ/dt > 0."""
        t = t.double()
        return t, torch.ones_like(t)

    @staticmethod
    def combine(endpoints: tuple[Tensor, Tensor], g_hat: Tensor, dg_hat: Tensor) -> tuple[Tensor, Tensor]:
        """(γ, dγ/dt) from the end points and the shape: γ_0 + (γ_1 − γ_0) ĝ and (γ_1 − γ_0) dĝ/dt."""
        gamma_0, gamma_1 = endpoints
        return gamma_0 + (gamma_1 - gamma_0) * g_hat, (gamma_1 - gamma_0) * dg_hat

    def gamma_and_derivative(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(γ(t), dγ/dt(t)), each the shape of ``t``, float64."""
        return self.combine(self.endpoints(), *self.shape(t))

    def forward(self, t: Tensor) -> Tensor:
        """γ(t), the shape of ``t``, float64."""
        return self.gamma_and_derivative(t)[0]

    def logsnr(self, t: Tensor) -> Tensor:
        """λ(t) = −γ(t)."""
        return -self(t)

    def discrete(self, T: int) -> DiscreteSchedule:
        """The T-step process on t_i = i/T, i = 1..T (VDM §3.1's discretization), without gradients.

        Raises:
            ValueError: for T < 1.
        """
        if T < 1:
            raise ValueError(f"T must be ≥ 1, got {T}")
        with torch.no_grad():
            t = torch.arange(1, T + 1, dtype=torch.float64, device=self._device()) / T
            return DiscreteSchedule.from_gamma(self(t).cpu()).to(self._device())

    def _device(self) -> torch.device:
        from ..core import module_device

        return module_device(self)


class FixedLinearGamma(GammaSchedule):
    """γ(t) = γ_0 + (γ_1 − γ_0) t with fixed end points (VDM's fixed linear schedule: uniform in logSNR)."""

    def __init__(self, gamma_0: float, gamma_1: float):
        super().__init__()
        self.register_buffer("gamma_0", torch.tensor(float(gamma_0), dtype=torch.float64), persistent=False)
        self.register_buffer("gamma_1", torch.tensor(float(gamma_1), dtype=torch.float64), persistent=False)

    def endpoints(self) -> tuple[Tensor, Tensor]:
        """(γ_0, γ_1), the fixed 0-d float64 buffers."""
        return self.gamma_0, self.gamma_1


class _LearnedEndpoints(GammaSchedule):
    """Learned γ_0 and γ_1, optionally clamped to bounds (a clamped end point stops receiving gradient)."""

    def __init__(self, config: GammaConfig):
        super().__init__()
        self.gamma_0 = nn.Parameter(torch.tensor(float(config.gamma_0)))
        self.gamma_1 = nn.Parameter(torch.tensor(float(config.gamma_1)))
        self.bounds = (config.gamma_0_bounds, config.gamma_1_bounds)

    def endpoints(self) -> tuple[Tensor, Tensor]:
        """(γ_0, γ_1) as 0-d float64, each clamped to its bounds when it has them."""
        out = []
        for value, bounds in zip((self.gamma_0, self.gamma_1), self.bounds, strict=True):
            value = value.double()
            out.append(value.clamp(*bounds) if bounds is not None else value)
        return out[0], out[1]


class LearnedLinearGamma(_LearnedEndpoints):
    """γ(t) = γ_0 + (γ_1 − γ_0) t with γ_0, γ_1 learned (VDM's ``learnable_scalar``)."""


class MonotoneNetGamma(_LearnedEndpoints):
    """VDM's monotone network for the shape (Appendix H), normalized to ĝ(0) = 0, ĝ(1) = 1, and learned end points.

    γ̃(t) = w₁ t + Σ_j w₃ⱼ φ(w₂ⱼ (2t − 1) + b₂ⱼ) / n with w ← |w| (non-negative, so γ̃ is increasing) and
    φ(h) = 2 sigmoid(h) − 1. Initialized as VDM does (w₁ = γ_1 − γ_0, w₂, w₃ ~ N(0, 1)), i.e. close to linear.
    The bias of l₁ is left out: the normalization removes it.
    """

    def __init__(self, config: GammaConfig):
        super().__init__(config)
        n = config.n_features
        self.w1 = nn.Parameter(torch.tensor(config.gamma_1 - config.gamma_0))
        self.w2 = nn.Parameter(torch.randn(n))
        self.b2 = nn.Parameter(torch.zeros(n))
        self.w3 = nn.Parameter(torch.randn(n))

    def _unnormalized(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(γ̃(t), dγ̃/dt) for t of any shape."""
        w1, w2, w3 = self.w1.double().abs(), self.w2.double().abs(), self.w3.double().abs()
        b2, n = self.b2.double(), self.w2.numel()
        h = (2 * t.double()[..., None] - 1) * w2 + b2  # [..., n]
        s = torch.sigmoid(h)
        value = w1 * t.double() + ((2 * s - 1) * w3).sum(-1) / n
        deriv = w1 + (2 * s * (1 - s) * 2 * w2 * w3).sum(-1) / n  # φ'(h) = 2 s (1 − s), dh/dt = 2 w₂
        return value, deriv

    def shape(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(ĝ(t), dĝ/dt) = ((γ̃(t) − γ̃(0)) / (γ̃(1) − γ̃(0)), γ̃'(t) / (γ̃(1) − γ̃(0))), each the shape of ``t``."""
        ends, _ = self._unnormalized(torch.tensor([0.0, 1.0], dtype=torch.float64, device=t.device))
        value, deriv = self._unnormalized(t)
        span = ends[1] - ends[0]
        return (value - ends[0]) / span, deriv / span


def build_gamma_schedule(config: GammaConfig) -> GammaSchedule:
    """The :class:`GammaSchedule` that ``config`` names."""
    if config.kind == "fixed":
        return FixedLinearGamma(config.gamma_0, config.gamma_1)
    if config.kind == "learned_linear":
        return LearnedLinearGamma(config)
    return MonotoneNetGamma(config)
