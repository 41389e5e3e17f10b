"""Gaussian probability paths of flow matching: x_t = α_t x_1 + σ_t x_0, with x_0 ~ N(0, I) the noise and x_1 the
data, t ∈ [0, 1] from noise (t = 0) to data (t = 1) — the convention of Lipman et al. 2023 (§4) and of
facebookresearch/flow_matching.

The conditional velocity of such a path is u_t(x | x_0, x_1) = α̇_t x_1 + σ̇_t x_0 (Lipman et al. 2023, Eq. 15 with
x_0 the noise sample), and the marginal velocity a network learns is its expectation given x_t (Eq. 8–9):

    u_t(x) = E[α̇_t x_1 + σ̇_t x_0 | x_t = x].

``linear`` — the optimal-transport path of Lipman et al. 2023, Eq. 20: α_t = t, σ_t = 1 − (1 − σ_min) t; with
    σ_min = 0 it is rectified flow's straight interpolation (Liu et al. 2023, Eq. 1) and I-CFM (Tong et al. 2024).
``vp`` — the variance-preserving path of the diffusion models (Lipman et al. 2023, Eq. 19; Song et al. 2021), written
    through the logSNR λ(t) like :mod:`genmodels.diffusion`: α_t² = sigmoid(λ), σ_t² = sigmoid(−λ), with the cosine
    schedule truncated to [λ_min, λ_max] (Nichol & Dhariwal 2021; Kingma et al. 2021, Appendix):
    λ(t) = −2 log tan(u(t)), u(t) = b − t (b − a), a = atan(e^{−λ_max/2}), b = atan(e^{−λ_min/2}).
    Then α̇ = ½ α σ² λ̇ and σ̇ = −½ σ α² λ̇, so with the optimal field u_t(x) = λ̇ · (½ σ² x − ½ σ ε̂) — the
    diffusion models' probability-flow ODE dx/dλ (:mod:`genmodels.diffusion.ode`) in the time t. At t = 0 the path
    is N(α_min x_1, σ_max² I), which the prior N(0, I) stands in for (as the diffusion models' λ_min does).

All coefficients are computed in float64 from ``t`` ``[B]`` and returned ``[B]`` float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = ["PathKind", "PathCoefficients", "ProbabilityPath", "LinearPath", "VPPath", "make_path"]

PathKind = Literal["linear", "vp"]


@dataclass
class PathCoefficients:
    """α_t, σ_t and their time derivatives, each ``[B]`` float64."""

    alpha: Tensor
    sigma: Tensor
    d_alpha: Tensor
    d_sigma: Tensor


class ProbabilityPath:
    """x_t = α_t x_1 + σ_t x_0 (module docstring). Subclasses implement :meth:`coefficients`."""

    def coefficients(self, t: Tensor) -> PathCoefficients:
        """α_t, σ_t, α̇_t, σ̇_t at ``t`` ``[B]``."""
        raise NotImplementedError

    def sample(self, x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(x_t, u_t)``: a point of the path between noise ``x0`` and data ``x1`` (both ``[B, ...]``) at ``t``
        ``[B]``, and the conditional velocity α̇ x_1 + σ̇ x_0 there, in ``x1``'s dtype."""
        c = self.coefficients(t)
        shape = (-1,) + (1,) * (x1.dim() - 1)

        def e(v: Tensor) -> Tensor:
            """A ``[B]`` coefficient as ``[B, 1, …]`` in the data's dtype."""
            return v.to(x1.dtype).view(shape)

        return e(c.alpha) * x1 + e(c.sigma) * x0, e(c.d_alpha) * x1 + e(c.d_sigma) * x0


@dataclass
class LinearPath(ProbabilityPath):
    """The OT path of Lipman et al. 2023 (Eq. 20): α_t = t, σ_t = 1 − (1 − σ_min) t; rectified flow at σ_min = 0."""

    sigma_min: float = 0.0

    def coefficients(self, t: Tensor) -> PathCoefficients:
        """α_t = t, σ_t = 1 − (1 − σ_min) t, α̇ = 1, σ̇ = −(1 − σ_min)."""
        t = t.double()
        one = torch.ones_like(t)
        return PathCoefficients(alpha=t, sigma=1 - (1 - self.sigma_min) * t, d_alpha=one,
                                d_sigma=-(1 - self.sigma_min) * one)


@dataclass
class VPPath(ProbabilityPath):
    """The variance-preserving path in logSNR (module docstring): truncated cosine λ(t) from λ_min at t = 0 to
    λ_max at t = 1."""

    logsnr_min: float = -15.0
    logsnr_max: float = 15.0

    def __post_init__(self) -> None:
        if not self.logsnr_min < self.logsnr_max:
            raise ValueError(f"the vp path needs logsnr_min < logsnr_max, got {self.logsnr_min} ≥ {self.logsnr_max}")

    @property
    def _ab(self) -> tuple[float, float]:
        return math.atan(math.exp(-self.logsnr_max / 2)), math.atan(math.exp(-self.logsnr_min / 2))

    def logsnr(self, t: Tensor) -> Tensor:
        """λ(t) = −2 log tan(b − t (b − a)), ``[B]`` float64."""
        a, b = self._ab
        return -2 * torch.log(torch.tan(b - t.double() * (b - a)))

    def d_logsnr(self, t: Tensor) -> Tensor:
        """λ̇(t) = 4 (b − a) / sin(2u(t)) > 0."""
        a, b = self._ab
        return 4 * (b - a) / torch.sin(2 * (b - t.double() * (b - a)))

    def coefficients(self, t: Tensor) -> PathCoefficients:
        """α = √sigmoid(λ), σ = √sigmoid(−λ), α̇ = ½ α σ² λ̇, σ̇ = −½ σ α² λ̇."""
        lam, d_lam = self.logsnr(t), self.d_logsnr(t)
        alpha, sigma = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()
        return PathCoefficients(alpha=alpha, sigma=sigma, d_alpha=0.5 * alpha * sigma**2 * d_lam,
                                d_sigma=-0.5 * sigma * alpha**2 * d_lam)


def make_path(kind: str, sigma_min: float = 0.0, logsnr_min: float = -15.0, logsnr_max: float = 15.0
              ) -> ProbabilityPath:
    """The path named ``kind`` (``linear`` or ``vp``).

    Raises:
        ValueError: for another name.
    """
    if kind == "linear":
        return LinearPath(sigma_min)
    if kind == "vp":
        return VPPath(logsnr_min, logsnr_max)
    raise ValueError(f"path must be linear or vp, got {kind!r}")
