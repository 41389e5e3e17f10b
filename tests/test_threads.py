"""The thread tuner (genmodels.threads.ThreadTuner): on simulated step times with a fake clock it keeps the fastest
count, leaves a count that becomes slow within a few steps, comes back when the machine is idle again, and costs one
step per probe of a clearly slower count; the command line starts it only when no count was asked for; the trainer
and the samplers hand it their steps, and the trainer logs each switch."""

from __future__ import annotations

import pytest
import torch

from genmodels import threads as T
from genmodels.sampling import draw_in_batches
from test_train import BASE, make_trainer, metrics

# seconds per step at (threads, busy): two threads are faster idle, one thread is faster with a core busy
COST = {(2, False): 1.0, (1, False): 1.7, (2, True): 3.0, (1, True): 1.5}


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


class Sim:
    """A ThreadTuner on a fake clock; ``run(busy)`` plays one step at the tuner's count."""

    def __init__(self, cores: int = 2, **kw) -> None:
        self.now, self.set_calls = 0.0, []
        self.tuner = T.ThreadTuner(cores, clock=lambda: self.now, set_threads=self.set_calls.append, **kw)
        self.used: list[int] = []

    def run(self, busy: bool, cost=COST) -> None:
        c = cost[(self.tuner.threads, busy)]
        self.used.append(self.tuner.threads)
        self.now += c
        self.tuner.record(c)


def test_candidates():
    assert T.ThreadTuner(2).candidates == (2, 1)
    assert T.ThreadTuner(8).candidates == (8, 7, 4, 1)
    assert T.ThreadTuner(1).candidates == (1,)
    with pytest.raises(ValueError, match="≥ 1"):
        T.ThreadTuner(0)


def test_idle_keeps_all_cores_and_probes_one_thread_for_one_step_per_period():
    sim = Sim(every_seconds=120.0)
    for _ in range(400):
        sim.run(busy=False)
    assert sim.tuner.threads == 2 and sim.tuner.changes == []
    # warm-up, 2 probe steps at 2 threads, then one step at 1 thread (1.7 s > 1.3 × 1.0 s: dropped at once)
    assert sim.used[:5] == [2, 2, 2, 1, 2]
    ones = sim.used.count(1)
    assert 1 <= ones <= 400 / 100  # one probe step about every 120 steps of 1 s
    assert sim.set_calls[:2] == [1, 2]


def test_contention_from_the_start_settles_on_one_thread():
    sim = Sim()
    for _ in range(100):
        sim.run(busy=True)
    assert sim.tuner.threads == 1
    assert sim.used[:5] == [2, 2, 2, 1, 1]  # warm-up, probe 2 × 2 threads, probe 2 × 1 thread, hold
    old, new, means = sim.tuner.changes[0]
    assert (old, new) == (2, 1) and means == {2: 3.0, 1: 1.5}
    assert sim.used[5:].count(2) <= 1  # one probe step back at 2 threads in 100 × 1.5 s


def test_contention_that_starts_later_is_left_within_a_few_steps_and_idle_comes_back():
    sim = Sim(every_seconds=120.0)
    for _ in range(50):
        sim.run(busy=False)
    for _ in range(6):
        sim.run(busy=True)
    assert sim.tuner.threads == 1  # the median of 3 slow steps > 1.5 × the held mean: probe at once
    for _ in range(150):
        sim.run(busy=True)
    assert sim.tuner.threads == 1
    for _ in range(100):  # one thread idle (1.7 s) is not slower than busy: the periodic probe finds 2 threads
        sim.run(busy=False)
    assert sim.tuner.threads == 2
    assert [(a, b) for a, b, _ in sim.tuner.changes] == [(2, 1), (1, 2)]


def test_a_count_that_is_not_clearly_faster_does_not_replace_the_current():
    cost = {(2, False): 1.0, (1, False): 0.99}  # 1% faster: within the 3% hysteresis
    sim = Sim()
    for _ in range(50):
        sim.run(busy=False, cost=cost)
    assert sim.tuner.changes == [] and sim.tuner.threads == 2


def test_one_core_does_nothing():
    sim = Sim(cores=1)
    for _ in range(10):
        sim.run(busy=False, cost={(1, False): 1.0})
    assert sim.set_calls == [] and sim.tuner.threads == 1


def test_configure_threads_starts_a_tuner_only_when_no_count_was_asked_for(monkeypatch):
    monkeypatch.setattr(T, "available_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert T.configure_threads() == 2 and T.tuner() is not None and T.tuner().threads == 2
    assert T.configure_threads(2) == 2 and T.tuner() is None  # --threads 2: fixed
    assert T.configure_threads(tune=False) == 2 and T.tuner() is None
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert T.configure_threads() == 2 and T.tuner() is None  # the user's environment: fixed
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(T, "available_cores", lambda: 1)
    assert T.configure_threads() == 1 and T.tuner() is None  # nothing to tune


class Recorder(T.ThreadTuner):
    """Records the steps it is given; switches to 1 thread at its third."""

    def __init__(self) -> None:
        super().__init__(2, set_threads=lambda c: None)
        self.steps: list[float] = []

    def record(self, seconds: float) -> None:
        self.steps.append(seconds)
        if len(self.steps) == 3:
            self.threads = 1
            self.changes.append((2, 1, {2: 1.0, 1: 0.5}))


def test_tuned_times_each_item_and_passes_items_through(monkeypatch):
    assert list(T.tuned(range(3))) == [0, 1, 2]  # no tuner: unchanged
    rec = Recorder()
    monkeypatch.setattr(T, "_TUNER", rec)
    assert list(T.tuned(range(4))) == [0, 1, 2, 3]
    assert len(rec.steps) == 4 and all(s >= 0 for s in rec.steps)


def test_the_trainer_gives_its_steps_to_the_tuner_and_logs_a_switch(tmp_path, monkeypatch):
    from dataclasses import replace

    rec = Recorder()
    monkeypatch.setattr(T, "_TUNER", rec)
    make_trainer(tmp_path / "tuned", replace(BASE, steps=6, num_threads=None)).fit()
    assert len(rec.steps) == 6
    events = [m for m in metrics(tmp_path / "tuned") if m.get("event") == "threads"]
    assert events == [{"step": 3, "event": "threads", "threads": 1, "previous": 2,
                       "step_seconds": {"2": 1.0, "1": 0.5}}]
    rec2 = Recorder()
    monkeypatch.setattr(T, "_TUNER", rec2)
    make_trainer(tmp_path / "fixed", replace(BASE, steps=3)).fit()  # num_threads=1: the config fixes the count
    assert rec2.steps == []


def test_draw_in_batches_times_the_samplers_steps(monkeypatch):
    """Each sampler step of each batch is one record (a DDPM's ancestral loop, 20 steps × 2 batches)."""
    from _gaussian_data import SPEC
    from genmodels.diffusion.ddpm import DDPM, DDPMConfig
    from genmodels.diffusion.schedules import ScheduleConfig
    from genmodels.nets.mlp import MLPConfig

    config = DDPMConfig(schedule=ScheduleConfig(kind="cosine", T=20), mlp=MLPConfig(hidden=8, depth=1))
    model = DDPM(config, SPEC).eval()
    rec = Recorder()
    monkeypatch.setattr(T, "_TUNER", rec)
    draw_in_batches(model, 6, "ancestral", generator=torch.Generator().manual_seed(0), batch_size=3)
    assert len(rec.steps) == 40
    monkeypatch.setattr(T, "_TUNER", None)
    out = draw_in_batches(model, 6, "ancestral", generator=torch.Generator().manual_seed(0), batch_size=3)
    assert out.x0.shape == (6, *SPEC.event_shape)


def test_evaluate_nll_times_its_batches(monkeypatch):
    """The bound's batches are records on the CPU (3 batches of at most 4 of 10 examples)."""
    from _gaussian_data import SPEC
    from genmodels.diffusion.ddpm import DDPM, DDPMConfig
    from genmodels.diffusion.schedules import ScheduleConfig
    from genmodels.metrics.likelihood import evaluate_nll
    from genmodels.nets.mlp import MLPConfig

    config = DDPMConfig(schedule=ScheduleConfig(kind="cosine", T=20), mlp=MLPConfig(hidden=8, depth=1))
    model = DDPM(config, SPEC).eval()
    rec = Recorder()
    monkeypatch.setattr(T, "_TUNER", rec)
    x = torch.randn(10, *SPEC.event_shape).clamp(-1, 1)
    report = evaluate_nll(model, x, batch_size=4, generator=torch.Generator().manual_seed(0))
    assert len(rec.steps) == 3 and report.examples == 10
