"""The divergence ∇·f = tr ∂f/∂x of a vector field, exactly or by the Hutchinson–Skilling estimator, for the
probability-flow ODE's likelihood (:mod:`genmodels.diffusion.ode`) and explicit and sliced score matching
(:mod:`genmodels.score.losses`).

The exact trace takes one backward pass per dimension (low dimensions); the estimator vᵀ(∂f/∂x)v takes one
vector–Jacobian product per probe, with E[v vᵀ] = I, v Rademacher or Gaussian (Hutchinson 1989; Skilling 1989;
FFJORD, Grathwohl et al. 2019, §3.1).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

__all__ = ["ProbeNoise", "EXACT_TRACE_MAX_DIM", "draw_probes", "exact_divergence", "hutchinson_divergence"]

ProbeNoise = Literal["rademacher", "gaussian"]
"""Distribution of the Hutchinson probe v: ±1 with equal probability (lower variance), or N(0, I)."""
EXACT_TRACE_MAX_DIM = 16
"""Largest D for which the exact trace is the default (``trace="auto"`` of the ODE likelihood, an EBM's explicit
score matching)."""


def draw_probes(x: Tensor, samples: int, noise: ProbeNoise = "rademacher",
                generator: torch.Generator | None = None) -> Tensor:
    """Hutchinson probes with E[v vᵀ] = I, one set per example: ``[samples, B, ...]`` in x's dtype and device.

    Args:
        x: ``[B, ...]``, for shape, dtype and device. samples: K ≥ 1 probes per example.
        noise: ``rademacher`` (±1, each with probability ½) or ``gaussian`` (N(0, 1)).
    Raises:
        ValueError: for an unknown ``noise`` or ``samples`` < 1.
    """
    if noise not in get_args(ProbeNoise):
        raise ValueError(f"noise must be one of {', '.join(get_args(ProbeNoise))}; got {noise!r}")
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"the number of Hutchinson samples must be an integer ≥ 1, got {samples!r}")
    shape = (samples, *x.shape)
    if noise == "gaussian":
        return torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
    bits = torch.randint(0, 2, shape, generator=generator, device=x.device)
    return (2 * bits - 1).to(x.dtype)


def exact_divergence(fx: Tensor, x: Tensor, retain_graph: bool = False, create_graph: bool = False) -> Tensor:
    """∇·f = Σ_d ∂f_d/∂x_d per example, by D backward passes (examples must not interact in f).

    Args:
        fx: ``[B, ...]`` f(x), computed from ``x`` with autograd recording. x: ``[B, ...]``, requires grad.
        retain_graph: keep the graph after the last pass.
        create_graph: record the passes so the divergence can itself be differentiated (score matching's loss).
    Returns:
        ``[B]`` in fx's dtype.
    """
    f_flat = fx.flatten(1)
    D = f_flat.shape[1]
    div = torch.zeros(f_flat.shape[0], dtype=fx.dtype, device=fx.device)
    for d in range(D):
        (g,) = torch.autograd.grad(f_flat[:, d].sum(), x, retain_graph=retain_graph or create_graph or d < D - 1,
                                   create_graph=create_graph)
        div = div + g.flatten(1)[:, d].to(fx.dtype)  # ∂f_d/∂x_d
    return div


def hutchinson_divergence(fx: Tensor, x: Tensor, probes: Tensor, retain_graph: bool = False,
                          create_graph: bool = False) -> Tensor:
    """Hutchinson–Skilling estimate of ∇·f: (1/K) Σ_k v_kᵀ (∂f/∂x) v_k, one vector–Jacobian product per probe.

    Unbiased for the trace when E[v vᵀ] = I (FFJORD, Grathwohl et al. 2019, Eq. 7).

    Args:
        fx: ``[B, ...]`` f(x), computed from ``x`` with autograd recording. x: ``[B, ...]``, requires grad.
        probes: ``[K, B, ...]`` (:func:`draw_probes`). retain_graph, create_graph: as in :func:`exact_divergence`.
    Returns:
        ``[B]`` in fx's dtype.
    """
    K = probes.shape[0]
    div = torch.zeros(fx.shape[0], dtype=fx.dtype, device=fx.device)
    for k in range(K):
        (vjp,) = torch.autograd.grad(fx, x, probes[k], retain_graph=retain_graph or create_graph or k < K - 1,
                                     create_graph=create_graph)  # vᵀ ∂f/∂x
        div = div + (vjp * probes[k]).flatten(1).sum(1).to(fx.dtype)
    return div / K
