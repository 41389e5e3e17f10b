"""The log-likelihood of a continuous normalizing flow: one implementation for every family whose samples solve an
ODE dx/dt = f(x, t) from a standard-normal prior (the diffusion models' probability-flow ODE,
:mod:`genmodels.diffusion.ode`; flow matching, :mod:`genmodels.flow_matching`).

Instantaneous change of variables (Chen et al. 2018, Theorem 1; FFJORD, Grathwohl et al. 2019, Eq. 4): along a
solution x(t), d log p_t(x(t))/dt = −∇·f(x(t), t). Integrating from the data end ``t_data`` to the prior end
``t_prior`` (either may be the larger) gives

    log p_{t_data}(x) = log N(x(t_prior); 0, I) + ∫_{t_data}^{t_prior} ∇·f(x(t), t) dt,

the second component of the augmented ODE d[x, ℓ]/dt = [f, ∇·f] solved from [x, 0] at ``t_data`` to ``t_prior``
(Song et al. 2021, Appendix D.2, Eq. 39–40, in any time variable). The divergence is exact (one backward pass per
dimension) or the Hutchinson–Skilling estimate vᵀ(∂f/∂x)v with probes v drawn once per solve
(:mod:`genmodels.divergence`); because x(t) does not depend on v and the integral is linear in the trace, the
estimate of log p is unbiased up to the solver's error, not only of p.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from .divergence import EXACT_TRACE_MAX_DIM, ProbeNoise, draw_probes, exact_divergence, hutchinson_divergence

__all__ = ["TraceMethod", "ADAPTIVE_METHODS", "CNFLikelihood", "check_ode_options", "standard_normal_log_prob",
           "cnf_log_likelihood"]

TraceMethod = Literal["auto", "exact", "hutchinson"]
"""How ∇·f is computed: ``exact`` (D backward passes), ``hutchinson`` (one VJP per probe) or ``auto``
(``exact`` for D ≤ :data:`~genmodels.divergence.EXACT_TRACE_MAX_DIM`, else ``hutchinson``)."""
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
"""torchdiffeq's adaptive-step solvers (a fixed-step method would take a single step over the whole interval)."""

Drift = Callable[[Tensor, Tensor], Tensor]
"""``f(x [B, ...], t [] scalar tensor) -> dx/dt [B, ...]``, differentiable in x; examples must not interact."""


@dataclass
class CNFLikelihood:
    """Log-density of points under a continuous normalizing flow, with its two parts (module docstring).

    Attributes:
        log_p: ``[B]`` nats, log p_{t_data}(x) = ``log_p_prior + divergence`` (float64).
        log_p_prior: ``[B]`` nats, log N(x(t_prior); 0, I) (float64).
        divergence: ``[B]`` nats, ∫_{t_data}^{t_prior} ∇·f dt, exact or Hutchinson-estimated (float64).
        x_prior: ``[B, ...]`` x(t_prior), the points mapped to the prior end.
        nfe: drift evaluations of the solve (the whole batch is one solve).
        trace: ``exact`` or ``hutchinson`` (``auto`` resolved).
    """

    log_p: Tensor
    log_p_prior: Tensor
    divergence: Tensor
    x_prior: Tensor
    nfe: int
    trace: str


def check_ode_options(trace: str, noise: str, hutchinson_samples: int, rtol: float, atol: float,
                      method: str) -> None:
    """Raise ValueError, naming the fix, for an unknown ``trace``/``noise``/``method``, fewer than one probe or a
    tolerance ≤ 0."""
    if trace not in get_args(TraceMethod):
        raise ValueError(f"trace must be one of {', '.join(get_args(TraceMethod))}; got {trace!r}")
    if noise not in get_args(ProbeNoise):
        raise ValueError(f"noise must be one of {', '.join(get_args(ProbeNoise))}; got {noise!r}")
    if not isinstance(hutchinson_samples, int) or hutchinson_samples < 1:
        raise ValueError(f"hutchinson_samples must be an integer ≥ 1, got {hutchinson_samples!r}")
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be > 0, got rtol={rtol}, atol={atol}")
    if method not in ADAPTIVE_METHODS:
        raise ValueError(f"method must be an adaptive torchdiffeq solver ({', '.join(ADAPTIVE_METHODS)}); "
                         f"got {method!r}")


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) per example, ``[B]`` float64 nats, for ``z`` ``[B, ...]``."""
    z = z.double().flatten(1)
    return -0.5 * (z**2).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


@torch.no_grad()
def cnf_log_likelihood(drift: Drift, x: Tensor, t_data: float, t_prior: float, *, trace: TraceMethod = "auto",
                       hutchinson_samples: int = 1, noise: ProbeNoise = "rademacher", rtol: float = 1e-5,
                       atol: float = 1e-5, method: str = "dopri5",
                       generator: torch.Generator | None = None) -> CNFLikelihood:
    """log p(x) under the flow dx/dt = ``drift(x, t)`` whose prior end ``t_prior`` is N(0, I) (module docstring).

    Solves d[x, ℓ]/dt = [f, ∇·f] from [x, 0] at ``t_data`` to ``t_prior`` with torchdiffeq's adaptive ``method``,
    in ``x``'s dtype (give float64 for tight tolerances on vector data); ``drift`` casts for its network itself.

    Args:
        drift: f, differentiable in x (:data:`Drift`). x: ``[B, ...]`` points at the data end.
        t_data, t_prior: the two ends of the time interval (distinct).
        trace: ``exact``, ``hutchinson`` or ``auto`` (exact for D ≤ 16). hutchinson_samples: K probes per example,
            averaged (K VJPs per evaluation). noise: ``rademacher`` or ``gaussian`` probes, drawn from ``generator``.
        rtol, atol: solver tolerances (> 0). method: a torchdiffeq adaptive method (:data:`ADAPTIVE_METHODS`).
    Returns:
        :class:`CNFLikelihood`, ``[B]`` float64 nats on ``x``'s device.
    Raises:
        ValueError: bad options (:func:`check_ode_options`) or ``t_data == t_prior``.
    """
    from torchdiffeq import odeint

    check_ode_options(trace, noise, hutchinson_samples, rtol, atol, method)
    if t_data == t_prior:
        raise ValueError(f"the time interval is empty: t_data = t_prior = {t_data}")
    D = x[0].numel()
    resolved = ("exact" if D <= EXACT_TRACE_MAX_DIM else "hutchinson") if trace == "auto" else trace
    B, dtype = x.shape[0], x.dtype
    probes = draw_probes(x, hutchinson_samples, noise, generator) if resolved == "hutchinson" else None
    nfe = 0

    def augmented(t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """d[x, ℓ]/dt = [f, ∇·f] at time ``t``, counting evaluations."""
        nonlocal nfe
        nfe += 1
        with torch.enable_grad():
            x_t = state[0].detach().requires_grad_(True)
            f = drift(x_t, t)
            div = exact_divergence(f, x_t) if probes is None else hutchinson_divergence(f, x_t, probes)
        return f.detach(), div.detach()

    ts = torch.tensor([t_data, t_prior], dtype=dtype, device=x.device)
    xs, divs = odeint(augmented, (x, torch.zeros(B, dtype=dtype, device=x.device)), ts, rtol=rtol, atol=atol,
                      method=method)
    x_prior, divergence = xs[-1], divs[-1].double()
    log_p_prior = standard_normal_log_prob(x_prior)
    return CNFLikelihood(log_p=log_p_prior + divergence, log_p_prior=log_p_prior, divergence=divergence,
                         x_prior=x_prior, nfe=nfe, trace=resolved)
