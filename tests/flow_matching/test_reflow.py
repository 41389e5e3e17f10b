"""Reflow (Liu et al. 2023): the pairs are the flow's own ODE solutions, and the student is a retrained copy."""

from __future__ import annotations

import pytest
import torch

from genmodels.core import DataSpec
from genmodels.flow_matching.model import FlowMatching, FlowMatchingConfig
from genmodels.flow_matching.reflow import PairPool, reflow, reflow_pairs
from genmodels.flow_matching.solvers import solve_fixed
from genmodels.nets.mlp import MLPConfig

SPEC = DataSpec("toy", (2,), None, (float("-inf"), float("inf")))


def _model(path: str = "linear") -> FlowMatching:
    torch.manual_seed(0)
    return FlowMatching(FlowMatchingConfig(path=path, mlp=MLPConfig(hidden=16, depth=1)), SPEC).double().eval()


def test_pairs_are_the_flows_own_solutions():
    model = _model()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    pool = reflow_pairs(model, 50, torch.Generator().manual_seed(1), sampler="midpoint", steps=8)
    drawn = model.draw(50, torch.Generator().manual_seed(1), sampler="midpoint", steps=8)
    torch.testing.assert_close(pool.x1.float(), drawn.x0)  # same noise (the prior's draws), same solve
    batched = reflow_pairs(model, 50, torch.Generator().manual_seed(1), sampler="midpoint", steps=8, batch_size=20)
    again = solve_fixed(model.field(None), batched.x0, 8, "midpoint")[0]
    torch.testing.assert_close(batched.x1, again)  # in batches too, each x1 is the solve of its own x0
    assert pool.x0.shape == pool.x1.shape == (50, 2)
    assert not torch.equal(pool.x0, pool.x1)


def test_reflow_trains_a_copy_towards_the_straight_pairs():
    """On pairs x1 = A x0 (a fixed linear map) the rectified flow is exactly x1 − x0, constant along each line: after
    reflow one Euler step lands near x1 and the teacher is unchanged."""
    teacher = _model()
    before = [p.clone() for p in teacher.parameters()]
    x0 = torch.randn(4000, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    pool = PairPool(x0, x0 @ torch.tensor([[0.5, 0.2], [-0.3, 1.5]], dtype=torch.float64) + 1.0)
    student = reflow(teacher, pool, 600, batch_size=256, lr=3e-3, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters(), strict=True))
    with torch.no_grad():
        one_step = pool.x0[:500] + student.velocity(pool.x0[:500], torch.zeros(500, dtype=torch.float64))
    err = (one_step - pool.x1[:500]).pow(2).sum(1).mean().sqrt().item()
    spread = (pool.x1[:500] - pool.x1[:500].mean(0)).pow(2).sum(1).mean().sqrt().item()
    assert err < 0.15 * spread, (err, spread)


def test_reflow_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="path='linear'"):
        reflow(_model("vp"), PairPool(torch.zeros(4, 2), torch.zeros(4, 2)), 1)
    with pytest.raises(ValueError, match="at least one training step"):
        reflow(_model(), PairPool(torch.zeros(4, 2), torch.zeros(4, 2)), 0)
    with pytest.raises(ValueError, match="at least one pair"):
        reflow_pairs(_model(), 0)
