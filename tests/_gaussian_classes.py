"""Shared by the conditional diffusion and score tests: class-conditional Gaussian data and its exact scores.

x | y ~ N(m_y, Σ) with one full covariance Σ for the K classes and class prior π, so p(x) = Σ_y π_y N(m_y, Σ). A
forward process x_λ = α x + σ ε (variance preserving: α² + σ² = 1; variance exploding: α = 1) keeps every class
Gaussian, q(x_λ | y) = N(α m_y, C) with C = α²Σ + σ²I, and the mixture a mixture of these, so its score is

    ∇ log q(x_λ | y) = −C⁻¹(x − α m_y),     ∇ log q(x_λ) = −C⁻¹(x − α m̄(x)),   m̄(x) = Σ_k r_k(x) m_k,

with r_k(x) ∝ π_k N(x; α m_k, C) the posterior class probabilities (C is shared, so only the means differ). The
optimal ε-predictor is ε* = −σ ∇ log q (Tweedie). Everything is computed here in float64 from these formulas alone.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from _gaussian_data import F64, ref_linear_alphas_cumprod
from genmodels.core import DataSpec

K = 3
MEANS = torch.tensor([[1.5, 0.0], [-1.0, 1.0], [-0.5, -1.5]], dtype=F64)  # [K, D]
SIGMA = torch.tensor([[0.30, 0.12], [0.12, 0.15]], dtype=F64)  # full covariance, correlation 0.57
PRIOR = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
D = MEANS.shape[1]
SPEC = DataSpec(name="gauss-classes", event_shape=(D,), n_bins=None, value_range=(-3.0, 3.0), num_classes=K)
NULL = K


def mixture_score(x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇_x log q(x_λ | y) for labels y < K and ∇_x log q(x_λ) (the mixture) where y = K (module docstring).

    Args:
        x: ``[B, D]``. alpha, sigma: ``[B]`` the process's α and σ at each example's level. y: ``[B]`` int64.
    Returns:
        ``[B, D]`` float64.
    """
    x, alpha, sigma = x.double(), alpha.double(), sigma.double()
    C = alpha[:, None, None] ** 2 * SIGMA + sigma[:, None, None] ** 2 * torch.eye(D, dtype=F64)  # [B, D, D]
    Cinv = torch.linalg.inv(C)
    diff = x[:, None, :] - alpha[:, None, None] * MEANS[None]  # [B, K, D]: x − α m_k
    maha = torch.einsum("bkd,bde,bke->bk", diff, Cinv, diff)
    r = torch.softmax(PRIOR.log()[None] - 0.5 * maha, dim=1)  # [B, K] posterior class probabilities
    m_mix = r @ MEANS  # [B, D] m̄(x)
    m_class = MEANS[y.clamp(max=K - 1)]
    m = torch.where((y == NULL)[:, None], m_mix, m_class)
    return -torch.einsum("bde,be->bd", Cinv, x - alpha[:, None] * m)


def vp_alpha_sigma(logsnr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """α = √sigmoid(λ), σ = √sigmoid(−λ), written here (not read from genmodels)."""
    ab = torch.sigmoid(logsnr.double())
    return ab.sqrt(), (1 - ab).sqrt()


def optimal_eps(x: torch.Tensor, logsnr: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ε*(x, λ, y) = −σ ∇ log q(x_λ | y) of the VP process (y = K: the mixture's). ``[B, D]`` float64."""
    a, s = vp_alpha_sigma(logsnr)
    return -s[:, None] * mixture_score(x, a, s, y)


def ref_logsnr(T: int) -> np.ndarray:
    """λ_1..λ_T of DDPM's linear schedule (from the paper's formula, not genmodels')."""
    ac = ref_linear_alphas_cumprod(T)
    return np.log(ac / (1 - ac))


def draw_class(y: int, n: int, g: torch.Generator) -> torch.Tensor:
    """n draws of x | y ~ N(m_y, Σ), ``[n, D]`` float64."""
    L = torch.linalg.cholesky(SIGMA)
    return MEANS[y] + torch.randn(n, D, generator=g, dtype=F64) @ L.T


def check_gaussian(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, z: float, what: str,
                   gaussian: bool = True) -> None:
    """Sample mean and covariance of ``x`` ``[n, D]`` against ``mean`` and ``cov``, each entry within ``z`` standard
    errors. Var of a mean: cov_ii/n; of a sample covariance entry: (cov_ii cov_jj + cov_ij²)/n for Gaussian data
    (its fourth moments), else Var[(x_i − x̄_i)(x_j − x̄_j)]/n estimated from the same draws (``gaussian=False``)."""
    n = x.shape[0]
    x = x.double()
    m = x.mean(0)
    se_m = (cov.diagonal() / n).sqrt()
    assert ((m - mean).abs() < z * se_m).all(), (what, "mean", m, mean, se_m)
    c = torch.cov(x.T)
    if gaussian:
        se_c = ((cov.diagonal()[:, None] * cov.diagonal()[None] + cov**2) / n).sqrt()
    else:
        d = x - m
        se_c = ((d[:, :, None] * d[:, None, :]).var(0) / n).sqrt()
    assert ((c - cov).abs() < z * se_c).all(), (what, "covariance", c, cov, se_c)


def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, cov), ``[B]`` float64."""
    d = x.double() - mean
    L = torch.linalg.cholesky(cov)
    z = torch.linalg.solve_triangular(L, d.T, upper=False).T
    return -0.5 * (z**2).sum(1) - torch.log(L.diagonal()).sum() - 0.5 * len(mean) * math.log(2 * math.pi)
