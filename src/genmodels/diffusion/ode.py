"""The probability-flow ODE of a variance-preserving diffusion, written in logSNR time, and its likelihood.

With x_λ = α x_0 + σ ε, α² = sigmoid(λ), σ² = sigmoid(−λ), the forward SDE in λ has drift ½σ² x dλ and
squared diffusion −σ² dλ (d log α²/dλ = σ²; Kingma et al. 2021, Appendix; Song et al. 2021, Eq. 13), so
its probability-flow ODE (Song et al. 2021, Eq. 13, with ∇ log p = −ε̂/σ) is

    dx/dλ = ½ σ² x − ½ σ ε̂(x, λ).

Equivalently d(x/α)/d(σ/α) = ε̂, the DDIM ODE (Song et al. 2021a, Eq. 14) and EDM's dx̃/dσ̃ = (x̃ − D)/σ̃.

Exact likelihood (Song et al. 2021, Appendix D.2, Eq. 39–40; Chen et al. 2018, Theorem 1). Write
f(x, λ) = dx/dλ and let p_λ be the law of the solution x(λ) when x(λ_min) ~ N(0, I). Along a solution the
instantaneous change of variables gives d log p_λ(x(λ))/dλ = −∇·f(x(λ), λ), hence, integrating from the data
end λ_max down to the prior end λ_min (λ decreases, so dλ < 0 on the way):

    log p_{λ_min}(x(λ_min)) − log p_{λ_max}(x(λ_max)) = −∫_{λ_max}^{λ_min} ∇·f dλ
    ⇒  log p_{λ_max}(x) = log N(x(λ_min); 0, I) + ∫_{λ_max}^{λ_min} ∇·f(x(λ), λ) dλ.

This is Eq. 40 with t ↦ λ: there t runs from 0 (data) to T (noise) and the integral is ∫_0^T ∇·f dt; here λ
runs from λ_max (data) to λ_min (noise) and the integral keeps that orientation, so it is the second
component of the augmented ODE d[x, ℓ]/dλ = [f, ∇·f] solved from [x, 0] at λ_max to λ_min. The density
p_{λ_max} is that of a continuous normalizing flow whose velocity is the network; it is a proper density
on the data scale, used as the model of x_0 (as Song et al. do at t = ε).

The divergence ∇·f = tr ∂f/∂x is computed exactly (one backward pass per dimension: low dimensions) or by
the Hutchinson–Skilling estimator vᵀ(∂f/∂x)v with one vector–Jacobian product, E[v vᵀ] = I, v Rademacher
or Gaussian and drawn once per solve (FFJORD, Grathwohl et al. 2019, §3.1; Hutchinson 1989; Skilling 1989).
Because x(λ) does not depend on v and the integral is linear in the trace, the estimate of log p is unbiased
(up to the solver's error), not only of p.

Notation: ``logsnr`` λ; ``eps`` ε̂; ``divergence`` ∫_{λ_max}^{λ_min} ∇·f dλ (nats); ``nfe`` number of drift
evaluations (each one network evaluation plus its backward passes).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..cnf import ADAPTIVE_METHODS, CNFLikelihood, TraceMethod, check_ode_options, cnf_log_likelihood
from ..divergence import EXACT_TRACE_MAX_DIM, ProbeNoise, draw_probes, exact_divergence, hutchinson_divergence
from . import gaussian as G
from .guidance import guided

if TYPE_CHECKING:
    from .base import DiffusionModel

__all__ = [
    "TraceMethod",
    "ProbeNoise",
    "ADAPTIVE_METHODS",
    "EXACT_TRACE_MAX_DIM",
    "ODELikelihood",
    "probability_flow_drift",
    "draw_probes",
    "exact_divergence",
    "hutchinson_divergence",
    "ode_log_likelihood",
]

def _net_dtype(model: DiffusionModel, default: torch.dtype) -> torch.dtype:
    """dtype of the network's first floating parameter; ``default`` for a network without parameters."""
    for p in model.net.parameters():
        if p.is_floating_point():
            return p.dtype
    return default


def probability_flow_drift(model: DiffusionModel, x: Tensor, logsnr: Tensor, clip_x0: bool = False) -> Tensor:
    """dx/dλ of the probability-flow ODE at ``x`` (``[B, ...]``) and λ (``[B]``): ½σ²x − ½σε̂ (module docstring).

    The network runs in its parameters' dtype (x is cast for it); the drift is formed in x's dtype, so a
    float64 state can be integrated with a float32 network.

    Returns:
        ``[B, ...]`` in x's dtype. One network evaluation.
    """
    out = model.denoise(x.to(_net_dtype(model, x.dtype)), logsnr, clip_x0=clip_x0)
    eps = out.pred.eps.to(x.dtype)
    _, sigma = G.alpha_sigma(out.logsnr)
    return 0.5 * G._expand(sigma**2, x) * x - 0.5 * G._expand(sigma, x) * eps


# ---------------------------------------------------------------------------------------------- likelihood


@dataclass
class ODELikelihood(CNFLikelihood):
    """:class:`~genmodels.cnf.CNFLikelihood` (``log_p``, ``log_p_prior``, ``divergence``, ``x_prior``, ``nfe``,
    ``trace``) in logSNR time: log p_{λ_max}(x), the prior end x(λ_min), the divergence ∫_{λ_max}^{λ_min} ∇·f dλ
    (nats, float64, ``[B]``), and the integration range.

    Attributes:
        logsnr_max, logsnr_min: the integration range.
    """

    logsnr_max: float
    logsnr_min: float


@torch.no_grad()
def ode_log_likelihood(model: DiffusionModel, x: Tensor, *, trace: TraceMethod = "auto", hutchinson_samples: int = 1,
                       noise: ProbeNoise = "rademacher", rtol: float = 1e-5, atol: float = 1e-5,
                       method: str = "dopri5", generator: torch.Generator | None = None,
                       logsnr_max: float | None = None, logsnr_min: float | None = None,
                       dtype: torch.dtype | None = None, y: Tensor | None = None) -> ODELikelihood:
    """log p(x) of points under the probability-flow ODE of a diffusion model (Song et al. 2021, App. D.2).

    Solves the augmented ODE d[x, ℓ]/dλ = [f, ∇·f] (module docstring; Eq. 39–40 in logSNR time) from
    [x, 0] at λ_max to λ_min with torchdiffeq's adaptive solver, then log p(x) = log N(x(λ_min); 0, I) + ℓ.
    No clipping of x̂_0 (the drift must be the network's own). ``x`` is used as given: dequantize discrete data
    before calling (:func:`genmodels.metrics.likelihood.evaluate_ode_nll` does).

    Args:
        model: a diffusion model with ``denoise(x, logsnr)``, ``logsnr_min``/``logsnr_max`` and ``spec``
            (e.g. :class:`~genmodels.diffusion.ddpm.DDPM`); put it in eval mode first.
        x: ``[B, *event_shape]`` points on the model's scale.
        trace: ``exact``, ``hutchinson`` or ``auto`` (exact for D ≤ 16).
        hutchinson_samples: K probes per example, averaged (K VJPs per drift evaluation); fixed per solve.
        noise: probe distribution, ``rademacher`` or ``gaussian``.
        rtol, atol: solver tolerances (> 0); score SDE uses 1e-5 for both. Tight tolerances cost many
            evaluations, and not because of the kinks of the piecewise-linear λ → step-index map (a C¹
            monotone-cubic map gave 620 instead of 626 NFE on 300 toy points at 1e-5). Measured (1 CPU
            thread): a 2-D toy MLP, 500 points, exact trace: 38 / 656 / 1262 NFE at 1e-3 / 1e-5 / 1e-6 with NLL
            0.8913 / 0.8894 / 0.8893 nats/dim;
            the Fashion-MNIST UNet, 4 images, Hutchinson: 62 / 110 / 416 NFE at 1e-3 / 1e-4 / 1e-5 with
            2.779 / 2.770 / 2.769 bits/dim, ≈ 0.09 s per drift evaluation (forward + one VJP) at batch 4.
        method: a torchdiffeq adaptive method (:data:`ADAPTIVE_METHODS`).
        generator: draws the probes.
        logsnr_max, logsnr_min: integration range (default: the model's training range
            ``[model.logsnr_min, model.logsnr_max]``); must lie inside it.
        dtype: dtype of the ODE state (default float64 for vector data, float32 for images); the network
            runs in its own dtype.
        y: ``[B]`` int64 labels of a class-conditional model: log p(x | y) under the ODE of ε̂(x, λ, y); None: the
            null label (log p(x | ∅)). The model's density for each label is a proper density, so
            log Σ_y p(y) p(x | y) can be formed from these.
    Returns:
        :class:`ODELikelihood`; ``log_p`` etc. are ``[B]`` float64 nats on ``x``'s device.
    Raises:
        ValueError: unknown ``trace``/``noise``/``method``, K < 1, tolerances ≤ 0, a λ range that is empty or
            outside the model's, ``x`` whose shape is not ``[B, *model.spec.event_shape]``, or a label for an
            unconditional model (or out of range).
    """
    check_ode_options(trace, noise, hutchinson_samples, rtol, atol, method)
    spec = model.spec
    if x.ndim < 1 or tuple(x.shape[1:]) != tuple(spec.event_shape):
        raise ValueError(f"x must have shape [B, {', '.join(map(str, spec.event_shape))}] for {spec.name!r}, "
                         f"got {list(x.shape)}")
    lo_model, hi_model = model.logsnr_min, model.logsnr_max
    hi = hi_model if logsnr_max is None else float(logsnr_max)
    lo = lo_model if logsnr_min is None else float(logsnr_min)
    tol = 1e-9 * max(1.0, abs(lo_model), abs(hi_model))
    if not (lo_model - tol <= lo < hi <= hi_model + tol):
        raise ValueError(f"need logsnr_min < logsnr_max inside the model's range [{lo_model:.4f}, {hi_model:.4f}] "
                         f"(the network has not seen other noise levels); got [{lo}, {hi}]")
    if dtype is None:
        dtype = torch.float32 if spec.is_image else torch.float64
    B = x.shape[0]
    x = x.to(dtype)
    reader = guided(model, model.labels_or_null(y, B, x.device))  # the network with the labels bound in

    def drift(x_lam: Tensor, lam: Tensor) -> Tensor:
        """dx/dλ at λ = ``lam`` (a scalar tensor)."""
        return probability_flow_drift(reader, x_lam, lam.double().expand(B), clip_x0=False)

    out = cnf_log_likelihood(drift, x, hi, lo, trace=trace, hutchinson_samples=hutchinson_samples, noise=noise,
                             rtol=rtol, atol=atol, method=method, generator=generator)  # data end → prior end
    return ODELikelihood(**{f.name: getattr(out, f.name) for f in fields(out)}, logsnr_max=hi, logsnr_min=lo)
