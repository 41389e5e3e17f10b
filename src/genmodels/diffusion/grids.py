"""The grids of noise levels the diffusion samplers visit, and the step count that spends a budget of network
evaluations (NFE).

``steps`` is N, the number of noise levels of a sampler; :func:`steps_for_nfe` gives the N that spends a budget.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

from .schedules import respaced_timesteps

if TYPE_CHECKING:
    from .base import DiffusionModel

__all__ = ["Spacing", "logsnr_grid", "steps_for_nfe", "nfe_for_steps"]

Spacing = Literal["time", "logsnr", "edm"]


def logsnr_grid(model: DiffusionModel, steps: int, spacing: Spacing, rho: float = 7.0) -> Tensor:
    """N = ``steps`` noise levels λ_0 < … < λ_{N−1} from ``model.logsnr_min`` to ``model.logsnr_max``.

    ``time``: the training steps DDIM keeps (evenly spaced indices, :func:`respaced_timesteps`).
    ``logsnr``: uniform in λ (DPM-Solver's ``logSNR`` skip type, Lu et al. 2022, §3.3).
    ``edm``: σ̃_i = (σ̃_max^{1/ρ} + i/(N−1)(σ̃_min^{1/ρ} − σ̃_max^{1/ρ}))^ρ with σ̃ = σ/α = e^{−λ/2}
    (Karras et al. 2022, Eq. 5).

    Returns:
        ``[N]`` float64, increasing.
    Raises:
        ValueError: for ``steps`` < 1 or an unknown spacing.
    """
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    lo, hi = model.logsnr_min, model.logsnr_max
    dev = model.schedule.logsnr.device
    if steps == 1:
        return torch.tensor([lo], dtype=torch.float64, device=dev)
    if spacing == "time":
        idx = respaced_timesteps(model.T, min(steps, model.T))
        if steps > model.T:
            raise ValueError(f"'time' spacing has at most T={model.T} levels, got steps={steps}")
        return model.schedule.logsnr[torch.as_tensor(idx, device=dev)].flip(0)
    if spacing == "logsnr":
        return torch.linspace(lo, hi, steps, dtype=torch.float64, device=dev)
    if spacing == "edm":
        s_max, s_min = math.exp(-lo / 2), math.exp(-hi / 2)
        k = torch.linspace(0, 1, steps, dtype=torch.float64, device=dev)
        sig = (s_max ** (1 / rho) + k * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
        return (-2 * sig.log()).clamp(lo, hi)
    raise ValueError(f"unknown spacing {spacing!r}; use 'time', 'logsnr' or 'edm'")


def steps_for_nfe(sampler: str, nfe: int) -> int:
    """The ``steps`` that make ``sampler`` spend at most ``nfe`` network evaluations (Heun: 2N − 1; pc with its
    default one corrector step: 2N, so 0 for a budget of 1, which no run meets).

    Raises:
        ValueError: for ``nfe`` < 1 or the adaptive ``ode`` sampler (its NFE follows from its tolerance).
    """
    if nfe < 1:
        raise ValueError(f"nfe must be ≥ 1, got {nfe}")
    if sampler == "heun":
        return (nfe + 1) // 2
    if sampler == "pc":
        return nfe // 2
    if sampler == "ode":
        raise ValueError("the adaptive 'ode' sampler sets its NFE through rtol/atol, not a step count")
    return nfe


def nfe_for_steps(sampler: str, steps: int, corrector_steps: int = 1) -> int | None:
    """Network evaluations per sample of ``sampler`` on N = ``steps`` levels: N for ``ancestral``, ``ddim``,
    ``dpm++`` and ``euler_maruyama``; 2N − 1 for ``heun`` (EDM Algorithm 1: no second evaluation at the last step);
    N(M + 1) for ``pc`` with M = ``corrector_steps``; None for the adaptive ``ode`` (known only after the solve).
    The inverse of :func:`steps_for_nfe`."""
    if sampler == "heun":
        return 2 * steps - 1
    if sampler == "pc":
        return steps * (corrector_steps + 1)
    if sampler == "ode":
        return None
    return steps
