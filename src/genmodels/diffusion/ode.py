"""The probability-flow ODE of a variance-preserving diffusion, written in logSNR time.

With x_λ = α x_0 + σ ε, α² = sigmoid(λ), σ² = sigmoid(−λ), the forward SDE in λ has drift ½σ² x dλ and
squared diffusion −σ² dλ (d log α²/dλ = σ²; Kingma et al. 2021, Appendix; Song et al. 2021, Eq. 13), so
its probability-flow ODE (Song et al. 2021, Eq. 13, with ∇ log p = −ε̂/σ) is

    dx/dλ = ½ σ² x − ½ σ ε̂(x, λ).

Equivalently d(x/α)/d(σ/α) = ε̂, the DDIM ODE (Song et al. 2021a, Eq. 14) and EDM's dx̃/dσ̃ = (x̃ − D)/σ̃.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from . import gaussian as G

if TYPE_CHECKING:
    from .ddpm import DDPM

__all__ = ["probability_flow_drift"]


def probability_flow_drift(model: "DDPM", x: Tensor, logsnr: Tensor, clip_x0: bool = False) -> Tensor:
    """dx/dλ of the probability-flow ODE at ``x`` (``[B, ...]``) and λ (``[B]``): ½σ²x − ½σε̂ (module docstring).

    Returns:
        ``[B, ...]`` in x's dtype. One network evaluation.
    """
    out = model.denoise(x, logsnr, clip_x0=clip_x0)
    _, sigma = G.alpha_sigma(out.logsnr)
    return 0.5 * G._expand(sigma**2, x) * x - 0.5 * G._expand(sigma, x) * out.pred.eps
