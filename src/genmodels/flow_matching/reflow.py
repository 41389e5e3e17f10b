"""Reflow (Liu et al. 2023, §2.2, Algorithm 1): retrain a flow on its own noise–sample pairs to straighten its paths.

Given a trained flow Φ (the 1-rectified flow), draw z ~ N(0, I) and solve its ODE to x̂ = Φ(z); the pairs (z, x̂)
are a deterministic coupling of the prior and (approximately) the data, and the rectified flow of that coupling —
the same conditional flow-matching loss on the linear path between z and x̂ (:meth:`FlowMatching.pair_loss
<genmodels.flow_matching.model.FlowMatching.pair_loss>`) — has paths that cross less, so few solver steps follow it
closely (Liu et al. 2023, Theorem 3.6: straightness never gets worse). Liu et al. initialise the 2-rectified flow
from the 1-rectified one; :func:`reflow` does too.

The pairs are drawn once, with an accurate solve (default: the adaptive ``ode`` sampler), and kept: the student is
trained on minibatches drawn from them (:class:`PairPool`), as in the paper's experiments (a fixed set of pairs).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .model import FlowMatching

__all__ = ["PairPool", "reflow_pairs", "reflow"]


@dataclass
class PairPool:
    """Noise–sample pairs of a flow: ``x0[j] ↦ x1[j]`` (``[N, *event_shape]`` each) and their labels ``y``
    (``[N]`` or None)."""

    x0: Tensor
    x1: Tensor
    y: Tensor | None = None

    def batch(self, size: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """``size`` pairs drawn uniformly with replacement."""
        idx = torch.randint(0, len(self.x0), (size,), generator=generator)
        return self.x0[idx], self.x1[idx], None if self.y is None else self.y[idx]


@torch.no_grad()
def reflow_pairs(model: FlowMatching, n: int, generator: torch.Generator | None = None, *, sampler: str = "ode",
                 steps: int | None = None, y: Tensor | None = None, batch_size: int = 1000,
                 **options: Any) -> PairPool:
    """``n`` pairs (z, Φ(z)) of ``model``'s flow: z from its prior, Φ(z) by ``sampler`` (default the adaptive
    ``ode``; ``options`` such as ``rtol``/``atol``), ``batch_size`` at a time, labels ``y`` ``[n]`` for a
    conditional model (None: its null label); each batch is :meth:`FlowMatching.solve` of its noise.

    Raises:
        ValueError: ``n`` < 1, or what the sampler raises.
    """
    if n < 1:
        raise ValueError(f"reflow needs at least one pair, got n={n}")
    model.eval()
    x0s, x1s = [], []
    for i in range(0, n, batch_size):
        b = min(batch_size, n - i)
        z = model.prior(b, generator)
        x1 = model.solve(z, sampler=sampler, steps=steps, y=None if y is None else y[i:i + b], **options).x0
        x0s.append(z)
        x1s.append(x1)
    dtype = torch.float32 if model.spec.is_image else torch.float64
    return PairPool(torch.cat(x0s).to(dtype), torch.cat(x1s).to(dtype), y)


def reflow(model: FlowMatching, pool: PairPool, steps: int, *, batch_size: int = 256, lr: float = 1e-3,
           generator: torch.Generator | None = None,
           callback: Callable[[int, float], None] | None = None) -> FlowMatching:
    """The 2-rectified flow: a copy of ``model`` (its weights as the initialisation) trained for ``steps`` AdamW
    steps on minibatches of ``pool`` with the linear-path loss (:meth:`FlowMatching.pair_loss`); ``callback(step,
    loss)`` after each step. A small-scale trainer (no EMA, checkpoints or devices): for the toys and the
    benchmarks; ``model`` itself is left unchanged.

    Raises:
        ValueError: ``steps`` < 1, or a model whose path is not ``linear``.
    """
    if steps < 1:
        raise ValueError(f"reflow needs at least one training step, got {steps}")
    if model.config.path != "linear":
        raise ValueError(f"reflow trains on the straight (linear) path between the pairs; this model's path is "
                         f"{model.config.path!r}: build the student with path='linear'")
    student = copy.deepcopy(model).train()
    dtype = next(p.dtype for p in student.parameters())
    opt = torch.optim.AdamW(student.parameters(), lr=lr)
    for step in range(steps):
        x0, x1, y = pool.batch(batch_size, generator)
        loss = student.pair_loss(x0.to(dtype), x1.to(dtype), generator, y).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if callback is not None:
            callback(step, loss.item())
    return student.eval()
