"""The NFE sweep: budgets become steps, samples are cached and reused, rows and table are complete."""

from __future__ import annotations

import torch

from _gaussian_data import MU, S
from genmodels.metrics.nfe_sweep import nfe_sweep, sweep_table
from genmodels.viz import save_quality_vs_cost

from .test_continuous_samplers import model_for


def quality(x: torch.Tensor) -> dict:
    """Distance of the sample moments to the data's: a stand-in for the Fréchet distance."""
    x = x.double()
    return {"fd": float(((x.mean(0) - MU) ** 2).sum() + (x.var(0).mean() - S**2) ** 2)}


def test_sweep_rows_cache_and_table(tmp_path):
    model = model_for(100)
    rows = nfe_sweep(model, ["ddim", "heun", "ode"], [3, 10, 500], quality, n=64, seed=1, batch_size=32,
                     ode_tolerances=(1e-2,), cache_dir=tmp_path)
    got = [(r.sampler, r.nfe_budget, r.nfe) for r in rows]
    assert got[:4] == [("ddim", 3, 3), ("ddim", 10, 10), ("heun", 3, 3), ("heun", 10, 9)]
    assert ("heun", 500, 499) in got and not any(s == "ddim" and b == 500 for s, b, _ in got)  # > T skipped
    assert got[-1][0] == "ode" and got[-1][2] > 2
    assert all(r.seconds >= 0 and "fd" in r.quality for r in rows)
    # more evaluations, closer to the data (deterministic samplers, same x_T)
    heun = [r.quality["fd"] for r in rows if r.sampler == "heun"]
    assert heun[-1] < heun[0]
    # cached: a second sweep reads the same samples without calling the network
    calls = model.net.calls
    again = nfe_sweep(model, ["ddim", "heun", "ode"], [3, 10, 500], quality, n=64, seed=1, batch_size=32,
                      ode_tolerances=(1e-2,), cache_dir=tmp_path)
    assert model.net.calls == calls
    assert [r.quality for r in again] == [r.quality for r in rows]
    table = sweep_table(rows, metrics=("fd",), floor={"fd": 0.0})
    assert table.count("\n") == len(rows) + 2 and "reference: test vs train" in table
    path = save_quality_vs_cost({s: [(r.nfe, max(r.seconds_per_sample, 1e-6), r.quality["fd"]) for r in rows
                                     if r.sampler == s] for s in ("ddim", "heun")}, tmp_path / "sweep.png",
                                floor=0.01, references={"ancestral 1000": 0.02})
    assert path.stat().st_size > 1000


def test_sweep_rejects_bad_input():
    import pytest

    model = model_for(100)
    with pytest.raises(KeyError, match="dpm"):
        nfe_sweep(model, ["euler"], [10], quality)
    with pytest.raises(ValueError, match="NFE"):
        nfe_sweep(model, ["ddim"], [], quality)


def test_sampler_options_in_brackets(tmp_path):
    from genmodels.metrics.nfe_sweep import parse_sampler

    assert parse_sampler("heun[s_churn=40, s_noise=1.003]") == ("heun", {"s_churn": 40.0, "s_noise": 1.003})
    assert parse_sampler("dpm++") == ("dpm++", {})
    import pytest

    for bad in ("heun[s_churn]", "heun[s_churn=x]", "heun[s_churn=1"):
        with pytest.raises(ValueError, match="heun"):
            parse_sampler(bad)
    model = model_for(100)
    rows = nfe_sweep(model, ["ddim", "ddim[eta=1]"], {"*": [10], "ddim[eta=1]": [20]}, quality, n=32, seed=0,
                     cache_dir=tmp_path)
    assert [(r.sampler, r.nfe, r.options) for r in rows] == [("ddim", 10, {}), ("ddim[eta=1]", 20, {"eta": 1.0})]
    assert len(list(tmp_path.glob("*.npz"))) == 2
