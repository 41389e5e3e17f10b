"""Solvers of the flow's ODE dx/dt = v(x, t) from the noise at t = 0 to the data at t = 1, reporting the network
evaluations they spend (NFE).

==========  =====================================================================  ===========
sampler     update on the uniform grid t_k = k/N, h = 1/N                           NFE
==========  =====================================================================  ===========
euler       x ← x + h v(x, t)                                                      N
midpoint    x ← x + h v(x + ½h v(x, t), t + ½h)  (explicit midpoint, RK2)          2N
heun        x̃ = x + h v(x, t); x ← x + ½h [v(x, t) + v(x̃, t + h)]  (Heun's RK2)    2N
ode         torchdiffeq's adaptive ``dopri5`` (Dormand & Prince 1980), rtol/atol   adaptive
==========  =====================================================================  ===========

The state is float32 (float64 for vector data where the velocity is float64); the network runs in its own dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..cnf import ADAPTIVE_METHODS
from ..core import Progress

__all__ = ["FIXED_STEP", "NFE_PER_STEP", "Velocity", "solve_fixed", "solve_adaptive"]

Velocity = Callable[[Tensor, Tensor], Tensor]
"""``v(x [n, ...], t [] scalar tensor) -> [n, ...]``."""
NFE_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2}
FIXED_STEP = tuple(NFE_PER_STEP)


def solve_fixed(v: Velocity, x: Tensor, steps: int, method: str, progress: Progress | None = None,
                keep_trajectory: bool = False) -> tuple[Tensor, int, Tensor | None]:
    """Integrate from t = 0 to 1 in ``steps`` uniform steps of ``method`` (module table).

    Returns:
        ``(x_1, nfe, trajectory)``: ``[n, ...]``, evaluations per sample, ``[steps + 1, n, ...]`` or None.
    Raises:
        ValueError: ``steps`` < 1 or an unknown method.
    """
    if method not in NFE_PER_STEP:
        raise ValueError(f"method must be one of {', '.join(FIXED_STEP)}, got {method!r}")
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    h = 1.0 / steps
    traj = [x] if keep_trajectory else None
    ks = range(steps)
    for k in progress(ks) if progress else ks:
        t = torch.tensor(k * h, dtype=torch.float64, device=x.device)
        f = v(x, t)
        if method == "euler":
            x = x + h * f
        elif method == "midpoint":
            x = x + h * v(x + 0.5 * h * f, t + 0.5 * h)
        else:  # heun
            x_e = x + h * f
            x = x + 0.5 * h * (f + v(x_e, t + h))
        if traj is not None:
            traj.append(x)
    return x, steps * NFE_PER_STEP[method], None if traj is None else torch.stack(traj)


def solve_adaptive(v: Velocity, x: Tensor, rtol: float = 1e-5, atol: float = 1e-5, method: str = "dopri5",
                   keep_trajectory: bool = False) -> tuple[Tensor, int, Tensor | None]:
    """Integrate from t = 0 to 1 with a torchdiffeq adaptive solver; NFE counts the velocity's evaluations.

    Raises:
        ValueError: tolerances ≤ 0 or a non-adaptive method.
    """
    from torchdiffeq import odeint

    if not (rtol > 0 and atol > 0):
        raise ValueError(f"rtol and atol must be > 0, got rtol={rtol}, atol={atol}")
    if method not in ADAPTIVE_METHODS:
        raise ValueError(f"method must be one of {', '.join(ADAPTIVE_METHODS)}, got {method!r}")
    nfe = 0

    def f(t: Tensor, x_t: Tensor) -> Tensor:
        """torchdiffeq's ``f(t, x)``: the velocity, counting evaluations."""
        nonlocal nfe
        nfe += 1
        return v(x_t, t)

    ts = torch.tensor([0.0, 1.0], dtype=x.dtype, device=x.device)
    xs = odeint(f, x, ts, rtol=rtol, atol=atol, method=method)
    return xs[-1], nfe, xs if keep_trajectory else None
