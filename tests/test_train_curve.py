"""The trainer's learning curve (``curve_every_minutes`` + ``curve_fn``) and an EMA that never averages ±inf buffers."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import pytest
import torch

from genmodels.train import edm_ema_multi_avg_fn
from test_train import BASE, make_trainer, metrics


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _curve_events(run_dir) -> list[dict]:
    return [m for m in metrics(run_dir) if m.get("event") == "curve"]


def test_curve_points_at_fixed_training_minutes_and_their_time_is_not_training_time(tmp_path):
    calls = []

    def curve_fn(model):
        calls.append(model.training)
        time.sleep(0.3)  # a slow evaluation: it must not eat the training budget
        return {"bpd": 1.0 + len(calls)}

    config = replace(BASE, steps=10**6, time_limit_minutes=0.02, curve_every_minutes=0.005, checkpoint_every=0,
                     log_every=1000)
    t0 = time.perf_counter()
    result = make_trainer(tmp_path, config, curve_fn=curve_fn).fit()
    wall = time.perf_counter() - t0
    points = _curve_events(tmp_path)
    assert points[0]["step"] == 0 and points[0]["minutes"] == pytest.approx(0, abs=1e-3)
    assert [p["bpd"] for p in points] == [1.0 + i for i in range(1, len(points) + 1)]
    assert 2 <= len(points) <= 5  # at 0, 0.005, 0.010, 0.015 (and maybe 0.020) minutes
    slots = [math.floor(p["minutes"] / 0.005 + 1e-9) for p in points]
    assert slots == sorted(set(slots))  # at most one point per interval of *training* time
    assert result.seconds >= 1.2  # the budget: 0.02 min of training, the curve's 0.3 s per point not counted
    assert wall >= result.seconds + 0.3 * len(points) - 0.05  # the curve's time came on top
    assert calls and not any(calls)  # the EMA model, in eval mode


def test_curve_continues_after_resume_without_duplicates(tmp_path):
    config = replace(BASE, steps=10**6, time_limit_minutes=0.01, curve_every_minutes=0.004, checkpoint_every=0)
    curve = lambda model: {"bpd": 2.0}  # noqa: E731
    make_trainer(tmp_path, config, curve_fn=curve).fit()
    first = _curve_events(tmp_path)
    make_trainer(tmp_path, replace(config, time_limit_minutes=0.05), curve_fn=curve).fit(resume=True)
    points = _curve_events(tmp_path)
    assert points[:len(first)] == first and len(points) > len(first)
    minutes = [p["minutes"] for p in points]
    assert minutes == sorted(minutes)
    slots = [math.floor(m / 0.004 + 1e-9) for m in minutes]
    assert len(set(slots)) == len(slots)  # at most one point per interval, across the resume


def test_no_curve_without_its_interval(tmp_path):
    make_trainer(tmp_path, replace(BASE, steps=3), curve_fn=lambda m: {"bpd": 0.0}).fit()
    assert _curve_events(tmp_path) == []


def test_ema_copies_buffers_holding_inf_instead_of_averaging_them():
    """A lerp of +inf with +inf is NaN: a schedule's logsnr_prev (+inf at t=0) turned NaN in the EMA copy of a DDPM,
    and with it every NLL of the EMA weights during training."""
    avg = edm_ema_multi_avg_fn(batch_size=64, halflife_kimg=1.0, rampup=None)
    ema = [torch.tensor([math.inf, 1.0, 2.0], dtype=torch.float64), torch.tensor([0.0, 0.0], dtype=torch.float64)]
    model = [torch.tensor([math.inf, 1.0, 2.0], dtype=torch.float64), torch.tensor([1.0, 1.0], dtype=torch.float64)]
    avg(ema, model, torch.tensor(10))
    assert ema[0].tolist() == [math.inf, 1.0, 2.0]
    assert 0 < ema[1][0] < 1  # finite tensors are still averaged


def test_ddpm_ema_stays_finite_during_training(tmp_path):
    from genmodels.checkpoint import RunConfig
    from genmodels.core import DataSpec
    from genmodels.families import MODELS
    from genmodels.train import TrainConfig, Trainer

    spec = DataSpec(name="tiny", event_shape=(1, 8, 8), n_bins=256)
    entry = MODELS.get("ddpm")
    cfg = entry.preset(spec)
    torch.manual_seed(0)
    model = entry.build(cfg, spec)
    x = torch.rand(64, 1, 8, 8) * 2 - 1
    trainer = Trainer(model, x, spec, TrainConfig(steps=3, batch_size=16, progress=False, checkpoint_every=0,
                                                  num_threads=1), tmp_path, RunConfig("ddpm", cfg, "tiny", spec))
    trainer.fit()
    for name, b in trainer.ema_model.named_buffers():
        if b.is_floating_point():
            assert not torch.isnan(b).any(), name
