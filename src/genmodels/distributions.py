"""The project's one copy of the elementwise distribution math: Gaussian KLs and densities, and the discretized
(bin-integrated) Gaussian and logistic log-likelihoods of data on the level grid.

The bottom layer: it imports only :mod:`torch` and :mod:`math`, so every model family (diffusion, VAE,
autoregressive, ...) can use it without importing another family. Every function is pure, elementwise and
broadcasting (the output has the broadcast shape of the inputs), and returns **nats**; callers sum over the
dimensions they need.

Discrete data follow the convention of :mod:`genmodels.core`: ``n_bins`` levels ``k = 0 … n_bins−1`` stored as
``x = 2k/(n_bins−1) − 1 ∈ [−1, 1]``; the bin of ``x`` is ``[x − δ, x + δ]`` with ``δ = 1/(n_bins−1)``, and the two
edge bins extend to −∞ (``k = 0``) and +∞ (``k = n_bins−1``), so the probabilities of the ``n_bins`` levels sum to 1.

==========================================  ===============================================================
:func:`log_diff_exp`                        log(e^a − e^b), a ≥ b, without cancellation
:func:`normal_kl`                           KL(N(μ₁, σ₁²) ‖ N(μ₂, σ₂²))   (Kingma & Welling 2014, App. B)
:func:`standard_normal_kl`                  KL(N(μ, σ²) ‖ N(0, 1))        (Kingma & Welling 2014, App. B)
:func:`normal_log_prob`                     log N(x; μ, σ²)
:func:`discretized_gaussian_log_likelihood` log P(bin of x) under N(μ, σ²)  (Ho et al. 2020 "DDPM", Eq. 13)
:func:`discretized_logistic_log_likelihood` log P(bin of x) under Logistic(μ, s)  (Salimans et al. 2017
                                            "PixelCNN++", Eq. 2, one mixture component)
==========================================  ===============================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "log_diff_exp",
    "normal_kl",
    "standard_normal_kl",
    "normal_log_prob",
    "discretized_gaussian_log_likelihood",
    "discretized_logistic_log_likelihood",
    "LOG_SCALE_MIN",
]

_LOG2PI = math.log(2 * math.pi)
LOG_SCALE_MIN = -7.0
"""Lower bound of discretized decoders' log-scales (PixelCNN++ uses −7): keeps the density finite on a bin's
centre. Applied by the callers (VAE decoders, PixelCNN's logistic mixture), not by the functions here."""


def log_diff_exp(a: Tensor, b: Tensor) -> Tensor:
    """log(e^a − e^b) for a ≥ b, elementwise, without the cancellation of the naive formula.

    Computed as a + log(−expm1(b − a)), so it keeps full relative precision when e^a and e^b are both tiny
    (deep in a tail, where ``log(exp(a) − exp(b))`` underflows to −∞) or nearly equal. b − a is clamped at
    −1e-12, so a = b (or a < b, outside the domain) gives a − 27.6… instead of −∞ or NaN.

    Args:
        a, b: log-values, broadcastable to each other; a ≥ b.
    Returns:
        the broadcast shape of a and b, in the units of a (nats for log-probabilities).
    """
    return a + torch.log(-torch.expm1((b - a).clamp(max=-1e-12)))


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """Elementwise KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)), nats; arguments broadcast.

    ½ (logvar2 − logvar1 + e^{logvar1−logvar2} + (mean1−mean2)² e^{−logvar2} − 1) (Kingma & Welling 2014,
    App. B; the KL of two diagonal Gaussians, one dimension at a time). Used for DDPM's L_t and L_T (Ho et al.
    2020, Eq. 5) and the HVAE's layer KLs.

    Args:
        mean1, logvar1: the first distribution (q). mean2, logvar2: the second (p). Any broadcastable shapes.
    Returns:
        KL ≥ 0 per element, the broadcast shape, nats.
    """
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1)


def standard_normal_kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """Elementwise KL(N(mean, e^logvar) ‖ N(0, 1)) = ½(μ² + σ² − 1 − log σ²), nats (Kingma & Welling 2014,
    App. B): :func:`normal_kl` with (mean2, logvar2) = (0, 0), in the VAE paper's form.

    Args:
        mean, logvar: broadcastable to each other.
    Returns:
        KL ≥ 0 per element, the broadcast shape, nats.
    """
    return 0.5 * (mean ** 2 + torch.exp(logvar) - 1 - logvar)


def normal_log_prob(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """Elementwise log N(x; mean, e^logvar) = −½(log 2π + logvar + (x − mean)² e^{−logvar}), nats (a density,
    not a probability: it can be > 0); arguments broadcast.

    Args:
        x: points. mean, logvar: broadcastable to x.
    Returns:
        the broadcast shape, nats.
    """
    return -0.5 * (_LOG2PI + logvar + (x - mean) ** 2 * torch.exp(-logvar))


def _discretized_log_likelihood(x: Tensor, loc: Tensor, log_scale: Tensor, n_bins: int,
                                log_cdf: Callable[[Tensor], Tensor]) -> Tensor:
    """log P(bin of x) for a location-scale distribution whose standardized log-CDF is ``log_cdf`` and which is
    symmetric about its location (so P(X > u) = CDF(−u)); see the two public functions."""
    if n_bins < 2:
        raise ValueError(f"a discretized likelihood needs n_bins ≥ 2 levels, got {n_bins}")
    delta = 1.0 / (n_bins - 1)
    inv_scale = torch.exp(-log_scale)
    upper = (x - loc + delta) * inv_scale
    lower = (x - loc - delta) * inv_scale
    # CDF(upper) − CDF(lower); right of the location use CDF(−lower) − CDF(−upper), the same by symmetry, whose
    # terms are small there, so the difference keeps precision.
    right = lower > 0
    hi = torch.where(right, -lower, upper)
    lo = torch.where(right, -upper, lower)
    log_mid = log_diff_exp(log_cdf(hi), log_cdf(lo))
    log_left = log_cdf(upper)  # k = 0: P(X < x + δ)
    log_right = log_cdf(-lower)  # k = n_bins − 1: P(X > x − δ)
    return torch.where(x < -1 + delta, log_left, torch.where(x > 1 - delta, log_right, log_mid))


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_scale: Tensor, n_bins: int) -> Tensor:
    """Elementwise log P(bin of x) under N(mean, e^{2·log_scale}) integrated over x's bin (Ho et al. 2020 "DDPM",
    Eq. 13; improved-diffusion's ``discretized_gaussian_log_likelihood``).

    The bin is [x − δ, x + δ] with δ = 1/(n_bins−1); the edge bins extend to −∞ (x = −1) and +∞ (x = 1), so the
    probabilities of the n_bins levels sum to 1. Φ differences are taken with ``log_ndtr`` on the tail that keeps
    precision (through :func:`log_diff_exp`), so this is exact rather than the tanh approximation of Φ used by
    the reference implementations.

    Args:
        x: data on the grid 2k/(n_bins−1) − 1, any shape. mean, log_scale (log σ, not log σ²): broadcastable to x.
        n_bins: number of levels, ≥ 2.
    Returns:
        log-probabilities (nats, ≤ 0), the broadcast shape of x, mean and log_scale.
    Raises:
        ValueError: for n_bins < 2.
    """
    return _discretized_log_likelihood(x, mean, log_scale, n_bins, torch.special.log_ndtr)


def discretized_logistic_log_likelihood(x: Tensor, loc: Tensor, log_scale: Tensor, n_bins: int) -> Tensor:
    """Elementwise log P(bin of x) under Logistic(loc, e^log_scale) integrated over x's bin (Salimans et al. 2017
    "PixelCNN++", Eq. 2, for one mixture component; Kingma et al. 2016 "IAF").

    The bin is [x − δ, x + δ] with δ = 1/(n_bins−1); the edge bins extend to −∞ (x = −1) and +∞ (x = 1), so the
    probabilities of the n_bins levels sum to 1. The CDF is the sigmoid; differences are taken in log space
    (``logsigmoid`` and :func:`log_diff_exp`) on the tail that keeps precision, so no pdf approximation at the
    bin's centre is needed.

    Args:
        x: data on the grid 2k/(n_bins−1) − 1, any shape. loc, log_scale: broadcastable to x.
        n_bins: number of levels, ≥ 2.
    Returns:
        log-probabilities (nats, ≤ 0), the broadcast shape of x, loc and log_scale.
    Raises:
        ValueError: for n_bins < 2.
    """
    return _discretized_log_likelihood(x, loc, log_scale, n_bins, F.logsigmoid)
