"""Decoder distributions p(x|z) for each kind of data, and the reparameterization of the latents. The elementwise
math (the discretized CDFs, Gaussian densities and KLs) is :mod:`genmodels.distributions`'s, shared with the
other families.

Every log-probability is summed over the data dimensions and returned per example (``[B]``, nats), on the
project's scale (:mod:`genmodels.core`): discrete data with ``n_bins`` levels lives on the grid
``x = 2k/(n_bins−1) − 1``, so a *discretized* decoder gives the probability of the discrete value itself and
its NLL is directly comparable with DDPM's bound and a flow's dequantized NLL.

==========================  ==================================================================================
``bernoulli``               binary data (``n_bins = 2``): p(x|z) = Π Bern(k_i; sigmoid(logit_i))
                            (Kingma & Welling 2014, App. C.1)
``discretized_logistic``    ``n_bins`` levels: the logistic CDF integrated over each bin, edge bins to ±∞
                            (Salimans et al. 2017 "PixelCNN++", Eq. 2, one component; Kingma et al. 2016 "IAF")
``discretized_gaussian``    the same with a Gaussian CDF (DDPM Eq. 13, shared with the diffusion L_0)
``gaussian``                continuous vectors: N(μ, diag σ²) with a learned σ per dimension and example
                            (Kingma & Welling 2014, App. C.2)
==========================  ==================================================================================
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core import DataSpec
from ..distributions import (
    LOG_SCALE_MIN,
    discretized_gaussian_log_likelihood,
    discretized_logistic_log_likelihood,
    normal_log_prob,
)

__all__ = [
    "Likelihood",
    "resolve_likelihood",
    "params_per_dim",
    "log_prob",
    "decoder_mean",
    "decoder_sample",
    "reparameterize",
    "LOG_SCALE_MIN",
]

Likelihood = Literal["auto", "bernoulli", "discretized_logistic", "discretized_gaussian", "gaussian"]


def resolve_likelihood(likelihood: str, spec: DataSpec) -> str:
    """The decoder distribution for ``spec``: ``auto`` picks Bernoulli for ``n_bins = 2``, the discretized
    logistic for other discrete data and the Gaussian for continuous data.

    Raises:
        ValueError: for an unknown name, or a distribution that does not fit the data (e.g. Bernoulli on
            256-level images, a continuous Gaussian on discrete data: its density is not a probability).
    """
    known = ("auto", "bernoulli", "discretized_logistic", "discretized_gaussian", "gaussian")
    if likelihood not in known:
        raise ValueError(f"likelihood must be one of {', '.join(known)}; got {likelihood!r}")
    if likelihood == "auto":
        if spec.n_bins == 2:
            return "bernoulli"
        return "discretized_logistic" if spec.is_discrete else "gaussian"
    if likelihood == "bernoulli" and spec.n_bins != 2:
        raise ValueError(f"the Bernoulli decoder needs binary data (n_bins = 2); {spec.name!r} has n_bins = "
                         f"{spec.n_bins}. Use 'binary:{spec.name}' for a binarized copy, or likelihood "
                         f"'discretized_logistic'")
    if likelihood.startswith("discretized") and not spec.is_discrete:
        raise ValueError(f"a discretized decoder needs discrete data; {spec.name!r} is continuous: use 'gaussian'")
    if likelihood == "gaussian" and spec.is_discrete:
        raise ValueError(f"{spec.name!r} is discrete ({spec.n_bins} levels): a Gaussian density is not a probability "
                         f"of its values; use 'discretized_logistic' or 'discretized_gaussian'")
    return likelihood


def params_per_dim(likelihood: str) -> int:
    """Numbers the decoder outputs per data dimension: 1 (Bernoulli logit) or 2 (location, log-scale)."""
    return 1 if likelihood == "bernoulli" else 2


def _split(params: Tensor, likelihood: str) -> tuple[Tensor, Tensor | None]:
    if likelihood == "bernoulli":
        return params, None
    loc, log_scale = params.chunk(2, dim=1)
    return loc, log_scale.clamp(min=LOG_SCALE_MIN)


def log_prob(params: Tensor, x: Tensor, likelihood: str, spec: DataSpec) -> Tensor:
    """log p(x|z) summed over dimensions, ``[B]`` nats.

    Args:
        params: the decoder's output, ``[B, params_per_dim·C, H, W]`` or ``[B, params_per_dim·D]``.
        x: ``[B, *event_shape]`` on the data scale (``{−1, 1}`` for binary data).
        likelihood: a resolved name (:func:`resolve_likelihood`).
    """
    loc, log_scale = _split(params, likelihood)
    if likelihood == "bernoulli":
        lp = -F.binary_cross_entropy_with_logits(loc, (x > 0).to(loc.dtype), reduction="none")
    elif likelihood == "discretized_logistic":
        lp = discretized_logistic_log_likelihood(x, loc, log_scale, spec.n_bins)
    elif likelihood == "discretized_gaussian":
        lp = discretized_gaussian_log_likelihood(x, loc, log_scale, spec.n_bins)
    else:
        lp = normal_log_prob(x, loc, 2 * log_scale)
    return lp.flatten(1).sum(1)


def decoder_mean(params: Tensor, likelihood: str) -> Tensor:
    """The mean of p(x|z) on the data scale (Bernoulli: 2·sigmoid − 1; discretized: the location clamped to
    [−1, 1]; Gaussian: the mean), ``[B, *event_shape]``. What VAE papers show as samples and reconstructions."""
    loc, _ = _split(params, likelihood)
    if likelihood == "bernoulli":
        return 2 * torch.sigmoid(loc) - 1
    if likelihood.startswith("discretized"):
        return loc.clamp(-1, 1)
    return loc


def decoder_sample(params: Tensor, likelihood: str, spec: DataSpec, generator: torch.Generator | None = None) -> Tensor:
    """A draw from p(x|z), ``[B, *event_shape]``, on the data grid for discrete data."""
    loc, log_scale = _split(params, likelihood)
    if likelihood == "bernoulli":
        u = torch.rand(loc.shape, generator=generator, device=loc.device, dtype=loc.dtype)
        return torch.where(u < torch.sigmoid(loc), 1.0, -1.0).to(loc.dtype)
    if likelihood == "gaussian":
        return loc + torch.exp(log_scale) * torch.randn(loc.shape, generator=generator, device=loc.device,
                                                        dtype=loc.dtype)
    if likelihood == "discretized_logistic":
        u = torch.rand(loc.shape, generator=generator, device=loc.device, dtype=loc.dtype).clamp(1e-6, 1 - 1e-6)
        y = loc + torch.exp(log_scale) * (torch.log(u) - torch.log1p(-u))
    else:
        y = loc + torch.exp(log_scale) * torch.randn(loc.shape, generator=generator, device=loc.device,
                                                     dtype=loc.dtype)
    half = (spec.n_bins - 1) / 2  # the bin of y: round on the level scale, edge bins take the tails
    return (torch.round((y.clamp(-1, 1) + 1) * half) / half - 1).to(loc.dtype)


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """z = μ + σ ⊙ ε, ε ~ N(0, I): the reparameterization trick (Kingma & Welling 2014, Eq. 10), differentiable
    in μ and log σ²."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps
