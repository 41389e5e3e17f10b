"""Gaussian diffusion: forward process, true posterior, parameterizations, losses and the ELBO terms.

One continuous-time core in logSNR: every formula below takes the log signal-to-noise ratios λ_s > λ_t
of two noise levels s < t, with α² = sigmoid(λ), σ² = sigmoid(−λ) (variance preserving). Discrete DDPM is
the case λ_s = ``logsnr_prev[i]``, λ_t = ``logsnr[i]``; a respaced or DDIM process just uses other pairs.

Notation (Ho et al. 2020 "DDPM"; Kingma et al. 2021 "VDM"; Salimans & Ho 2022 for v):

==========================  ========================================================================
``alpha``, ``sigma``        α_t = √ᾱ_t, σ_t = √(1−ᾱ_t);  x_t = α_t x_0 + σ_t ε          (DDPM Eq. 4)
``logsnr``                  λ_t = log(α_t²/σ_t²)
``eps``, ``x0``, ``v``      the three things a network may predict; v = α_t ε − σ_t x_0
``r``                       σ²_{t|s}/σ_t² = −expm1(λ_t − λ_s)  (fraction of σ_t² added between s and t)
posterior q(x_s|x_t,x_0)    N(μ̃, σ̃²):  μ̃ = (1−r)(α_s/α_t) x_t + r α_s x_0,  σ̃² = r σ_s²
                            (VDM Appendix A; for s = t−1: DDPM Eq. 6–7, σ̃² = β̃_t)
L_t (t ≥ 2)                 KL(q(x_{t−1}|x_t,x_0) ‖ p_θ(x_{t−1}|x_t))                       (DDPM Eq. 5)
                            = ½ (SNR(t−1) − SNR(t)) ‖x̂_0 − x_0‖² when p_θ has variance σ̃² (seed 003)
L_0                         −log p_θ(x_0|x_1), a Gaussian discretized to the data's bins (DDPM Eq. 13)
L_T                         KL(q(x_T|x_0) ‖ N(0, I))
==========================  ========================================================================

All functions are pure tensor math, computed in float64 where schedules enter and cast back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from ..distributions import discretized_gaussian_log_likelihood, normal_kl, normal_log_prob

__all__ = [
    "Parameterization",
    "VarianceType",
    "LossType",
    "Prediction",
    "alpha_sigma",
    "q_sample",
    "q_posterior",
    "predict",
    "target",
    "prior_kl",
    "reverse_log_variance",
    "p_mean_variance",
    "vb_terms",
    "training_loss",
]

Parameterization = Literal["eps", "x0", "v"]
"""What the network outputs: noise ε (DDPM), the clean x_0 (seed 003's algorithm), or v (Salimans & Ho 2022)."""
VarianceType = Literal["fixed_small", "fixed_large"]
"""Reverse-process variance: β̃_t (the true posterior's) or β_t (Ho et al. 2020, §3.2)."""
LossType = Literal["simple", "x0", "v", "elbo", "min_snr"]
"""Training loss: ``simple`` ‖ε−ε̂‖² (DDPM Eq. 14), ``x0`` ‖x_0−x̂_0‖² (seed 003), ``v`` ‖v−v̂‖²,
``elbo`` the bound's own terms (SNR weighting, seed 003 / VDM Eq. 13), ``min_snr`` ε-MSE × min(SNR,5)/SNR
(Hang et al. 2023)."""


def _expand(c: Tensor, x: Tensor) -> Tensor:
    """[B] coefficient -> [B, 1, ..., 1] in x's dtype, for broadcasting against x [B, ...]."""
    return c.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def _sum_dims(x: Tensor) -> Tensor:
    """[B, ...] -> [B], summing every dimension but the first."""
    return x.flatten(1).sum(1)


def _mean_dims(x: Tensor) -> Tensor:
    """[B, ...] -> [B], averaging every dimension but the first."""
    return x.flatten(1).mean(1)


def alpha_sigma(logsnr: Tensor) -> tuple[Tensor, Tensor]:
    """α = √sigmoid(λ), σ = √sigmoid(−λ) (variance preserving, VDM Eq. 3). Shapes as ``logsnr``."""
    return torch.sigmoid(logsnr).sqrt(), torch.sigmoid(-logsnr).sqrt()


def q_sample(x0: Tensor, logsnr: Tensor, eps: Tensor) -> Tensor:
    """x_t = α_t x_0 + σ_t ε, a draw from q(x_t | x_0) (DDPM Eq. 4).

    Args:
        x0: ``[B, ...]`` clean data. logsnr: ``[B]`` λ_t. eps: ``[B, ...]`` standard normal noise.
    Returns:
        ``[B, ...]`` x_t.
    """
    alpha, sigma = alpha_sigma(logsnr.double())
    return _expand(alpha, x0) * x0 + _expand(sigma, x0) * eps


def q_posterior(x0: Tensor, x_t: Tensor, logsnr_s: Tensor, logsnr_t: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and variance of the true posterior q(x_s | x_t, x_0), s < t (VDM Appendix A; DDPM Eq. 6–7).

    μ̃ = (1−r)(α_s/α_t) x_t + r α_s x_0 and σ̃² = r σ_s² with r = −expm1(λ_t − λ_s). For s = 0 (λ_s = +∞)
    the posterior is a point mass at x_0 (σ̃² = 0).

    Args:
        x0, x_t: ``[B, ...]``. logsnr_s, logsnr_t: ``[B]`` with λ_s ≥ λ_t.
    Returns:
        (mean ``[B, ...]``, variance ``[B]`` float64).
    """
    ls, lt = logsnr_s.double(), logsnr_t.double()
    alpha_s, sigma_s = alpha_sigma(ls)
    alpha_t, sigma_t = alpha_sigma(lt)
    r = -torch.expm1(lt - ls)
    # (1−r)·α_s/α_t written as α_t σ_s²/(α_s σ_t²): finite also at zero terminal SNR (α_t = 0)
    mean = _expand(alpha_t * sigma_s**2 / (alpha_s * sigma_t**2), x_t) * x_t + _expand(r * alpha_s, x0) * x0
    return mean, r * sigma_s**2


@dataclass
class Prediction:
    """A network output read in all three parameterizations. Each field ``[B, ...]``."""

    eps: Tensor
    x0: Tensor
    v: Tensor


def predict(model_output: Tensor, x_t: Tensor, logsnr: Tensor, parameterization: Parameterization,
            clip_x0: bool = False) -> Prediction:
    """Convert a network output to (ε̂, x̂_0, v̂) using x_t = α x_0 + σ ε and v = α ε − σ x_0.

    ``eps``: x̂_0 = (x_t − σ ε̂)/α.  ``x0``: ε̂ = (x_t − α x̂_0)/σ.  ``v``: x̂_0 = α x_t − σ v̂, ε̂ = σ x_t + α v̂
    (Salimans & Ho 2022, Appendix D). With ``clip_x0`` x̂_0 is clamped to [−1, 1] and ε̂ recomputed from it.

    Args:
        model_output, x_t: ``[B, ...]``. logsnr: ``[B]``.
    Raises:
        ValueError: for an unknown parameterization.
    """
    alpha, sigma = alpha_sigma(logsnr.double())
    a, s = _expand(alpha, x_t), _expand(sigma, x_t)
    if parameterization == "eps":
        eps = model_output
        x0 = (x_t - s * eps) / a
    elif parameterization == "x0":
        x0 = model_output
        eps = (x_t - a * x0) / s
    elif parameterization == "v":
        x0 = a * x_t - s * model_output
        eps = s * x_t + a * model_output
    else:
        raise ValueError(f"unknown parameterization {parameterization!r}; use 'eps', 'x0' or 'v'")
    if clip_x0:
        x0 = x0.clamp(-1, 1)
        eps = (x_t - a * x0) / s
    return Prediction(eps=eps, x0=x0, v=a * eps - s * x0)


def target(x0: Tensor, eps: Tensor, logsnr: Tensor, parameterization: Parameterization) -> Tensor:
    """What a perfect network outputs for (x_0, ε) at λ: ε, x_0 or v = α ε − σ x_0. ``[B, ...]``."""
    if parameterization == "eps":
        return eps
    if parameterization == "x0":
        return x0
    alpha, sigma = alpha_sigma(logsnr.double())
    return _expand(alpha, x0) * eps - _expand(sigma, x0) * x0


def prior_kl(x0: Tensor, logsnr_T: Tensor) -> Tensor:
    """L_T = KL(q(x_T | x_0) ‖ N(0, I)) summed over dimensions, nats. x0 ``[B, ...]``, logsnr_T ``[B]`` → ``[B]``."""
    alpha, sigma = alpha_sigma(logsnr_T.double())
    mean = _expand(alpha, x0).double() * x0.double()
    logvar = _expand(torch.log(sigma**2), x0).double()
    return _sum_dims(normal_kl(mean, logvar, torch.zeros_like(mean), torch.zeros_like(mean))).to(x0.dtype)


def reverse_log_variance(betas: Tensor, alphas_cumprod_prev: Tensor, alphas_cumprod: Tensor,
                         variance_type: VarianceType) -> Tensor:
    """log of the reverse-process variance per step, ``[S]`` float64 (Ho et al. 2020, §3.2).

    ``fixed_small``: β̃_t = β_t (1−ᾱ_{t−1})/(1−ᾱ_t), with β̃_1 = 0 replaced by β̃_2 so that the decoder
    p(x_0|x_1) has a usable scale (as in improved-diffusion). ``fixed_large``: β_t, with β_1 replaced by β̃_2.

    Raises:
        ValueError: for an unknown variance type or fewer than 2 steps.
    """
    if len(betas) < 2:
        raise ValueError("a reverse process needs at least 2 steps")
    posterior_var = betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
    if variance_type == "fixed_small":
        var = torch.cat([posterior_var[1:2], posterior_var[1:]])
    elif variance_type == "fixed_large":
        var = torch.cat([posterior_var[1:2], betas[1:]])
    else:
        raise ValueError(f"unknown variance type {variance_type!r}; use 'fixed_small' or 'fixed_large'")
    return torch.log(var)


def p_mean_variance(pred: Prediction, x_t: Tensor, logsnr_s: Tensor, logsnr_t: Tensor,
                    log_var: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and log-variance of p_θ(x_s | x_t) = N(μ̃(x_t, x̂_0), e^{log_var}) (DDPM Eq. 1, with x̂_0 in Eq. 7).

    Args:
        pred: the network's prediction at x_t. logsnr_s, logsnr_t, log_var: ``[B]``.
    Returns:
        (mean ``[B, ...]``, log_var ``[B]``).
    """
    mean, _ = q_posterior(pred.x0, x_t, logsnr_s, logsnr_t)
    return mean, log_var


def vb_terms(x0: Tensor, x_t: Tensor, pred: Prediction, logsnr_s: Tensor, logsnr_t: Tensor, log_var: Tensor,
             is_first: Tensor, n_bins: int | None) -> Tensor:
    """One term of the variational bound per example, nats, ``[B]`` (DDPM Eq. 5).

    For steps with ``is_first`` false: L_t = KL(q(x_s|x_t,x_0) ‖ p_θ(x_s|x_t)) summed over dimensions. For
    the first step (t = 1): L_0 = −log p_θ(x_0|x_1), discretized to ``n_bins`` bins (DDPM Eq. 13) for
    discrete data, or a Gaussian density for continuous data (``n_bins`` None).

    Args:
        x0, x_t: ``[B, ...]``. pred: the network's prediction. logsnr_s, logsnr_t, log_var: ``[B]``.
        is_first: ``[B]`` bool.
    """
    true_mean, true_var = q_posterior(x0, x_t, logsnr_s, logsnr_t)
    model_mean, _ = p_mean_variance(pred, x_t, logsnr_s, logsnr_t, log_var)
    lv = _expand(log_var, x0).double()
    # true_var is 0 at t = 1; its KL is unused there (torch.where), so guard the log.
    true_logvar = _expand(torch.log(true_var.clamp(min=1e-300)), x0).double()
    kl = _sum_dims(normal_kl(true_mean.double(), true_logvar, model_mean.double(), lv))
    if n_bins is not None:
        decoder_nll = -_sum_dims(discretized_gaussian_log_likelihood(x0.double(), model_mean.double(), 0.5 * lv,
                                                                     n_bins))
    else:
        decoder_nll = -_sum_dims(normal_log_prob(x0.double(), model_mean.double(), lv))
    return torch.where(is_first, decoder_nll, kl).to(x0.dtype)


def training_loss(loss_type: LossType, parameterization: Parameterization, model_output: Tensor, x0: Tensor,
                  eps: Tensor, x_t: Tensor, logsnr_t: Tensor) -> Tensor:
    """Per-example training loss, ``[B]``, for the weighted-MSE losses (``elbo`` is handled by the model).

    ``simple``: mean ‖ε − ε̂‖² (DDPM Eq. 14). ``x0``: mean ‖x_0 − x̂_0‖² (seed 003, training algorithm).
    ``v``: mean ‖v − v̂‖². ``min_snr``: ``simple`` × min(SNR, 5)/SNR (Hang et al. 2023).
    The network's own output is compared with its own target where the two match (no division by α or σ).

    Raises:
        ValueError: for an unknown loss type, or ``elbo`` (see ``DDPM.loss``).
    """
    natural = {"simple": "eps", "x0": "x0", "v": "v", "min_snr": "eps"}
    if loss_type not in natural:
        raise ValueError(f"unknown loss {loss_type!r}; use one of {sorted(natural)} or 'elbo'")
    space: Parameterization = natural[loss_type]  # type: ignore[assignment]
    if space == parameterization:
        out = model_output
    else:
        pred = predict(model_output, x_t, logsnr_t, parameterization)
        out = {"eps": pred.eps, "x0": pred.x0, "v": pred.v}[space]
    mse = _mean_dims((out - target(x0, eps, logsnr_t, space)) ** 2)
    if loss_type == "min_snr":
        snr = torch.exp(logsnr_t.double())
        mse = mse * (snr.clamp(max=5.0) / snr).to(mse.dtype)
    return mse
