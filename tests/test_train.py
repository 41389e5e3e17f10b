"""Trainer: learning, EDM EMA ramp-up, bitwise resume, interrupts, run-folder safety, two-process DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from _toy_model import TOY_NAME, TOY_SPEC, ToyConfig, ToyDenoiser, build_toy, toy_data
from genmodels.checkpoint import CONFIG_NAME, EMA_WEIGHTS_NAME, WEIGHTS_NAME, RunConfig, from_pretrained
from genmodels.train import (
    METRICS_NAME,
    STATE_NAME,
    TrainConfig,
    Trainer,
    ema_beta,
    ema_halflife_images,
)

TESTS = Path(__file__).resolve().parent
BASE = TrainConfig(steps=10, batch_size=32, lr=1e-2, warmup_steps=3, log_every=1, checkpoint_every=4,
                   progress=False, seed=3, num_threads=1)  # one thread: tiny ops on a shared 2-core box
TOY = ToyConfig(dropout=0.1)  # dropout uses torch's global RNG, which resume must restore too
RUN_CONFIG = RunConfig(model=TOY_NAME, model_config=TOY, data="toy", spec=TOY_SPEC)


@pytest.fixture(autouse=True)
def _restore_threads():
    """num_threads=1 calls torch.set_num_threads; give other tests their thread count back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def make_trainer(run_dir, config=BASE, init_seed=0, **kw) -> Trainer:
    torch.manual_seed(init_seed)
    model = build_toy(TOY, TOY_SPEC)
    return Trainer(model, toy_data(256), TOY_SPEC, config, run_dir, RUN_CONFIG, **kw)


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / METRICS_NAME).read_text().splitlines()]


def flat(module) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in module.state_dict().values()])


def test_loss_goes_down(tmp_path):
    config = replace(BASE, steps=150, batch_size=64, log_every=30, checkpoint_every=0)
    result = make_trainer(tmp_path, config).fit()
    losses = [m["loss"] for m in metrics(tmp_path)]
    assert result.steps == 150 and result.images_seen == 150 * 64
    assert result.final_loss == losses[-1] < 0.6 * losses[0]
    files = set(os.listdir(tmp_path))
    assert {CONFIG_NAME, WEIGHTS_NAME, EMA_WEIGHTS_NAME, STATE_NAME, METRICS_NAME} <= files
    model, rc = from_pretrained(tmp_path)
    assert rc.train == config and isinstance(model, ToyDenoiser)


def test_ema_halflife_ramp():
    # EDM: half-life = min(halflife_kimg·1000, rampup·images_seen); β = 0.5 ** (batch / half-life).
    assert ema_halflife_images(0, 50.0, 0.05) == 0.0
    assert ema_beta(0, 64, 50.0, 0.05) == 0.0  # first step: the EMA becomes the weights
    assert ema_halflife_images(10_000, 50.0, 0.05) == pytest.approx(500.0)
    assert ema_beta(10**7, 64, 50.0, 0.05) == pytest.approx(0.5 ** (64 / 50_000))
    no_rampup = 0.5 ** (64 / 50_000)
    assert ema_beta(10**7, 64, 50.0, None) == ema_beta(0, 64, 50.0, None) == pytest.approx(no_rampup)


def test_ema_tracks_model_early(tmp_path):
    trainer = make_trainer(tmp_path, replace(BASE, steps=1, checkpoint_every=0))
    init = flat(trainer.model).clone()
    trainer.fit()
    model, ema = flat(trainer.model), flat(trainer.ema_model)
    assert not torch.equal(model, init)
    assert torch.equal(ema, model)  # after step 1 the EMA holds the trained weights, not the init

    trainer = make_trainer(tmp_path / "b", replace(BASE, steps=8, checkpoint_every=0))
    init = flat(trainer.model).clone()
    trainer.fit()
    model, ema = flat(trainer.model), flat(trainer.ema_model)
    assert (ema - model).norm() < 0.1 * (ema - init).norm()  # ramp-up: the EMA follows the weights
    m = metrics(tmp_path / "b")
    assert [r["ema_halflife_kimg"] for r in m] == pytest.approx([0.05 * 32 * s / 1000 for s in range(8)])


def _assert_same_run(a, b):
    ma, mb = metrics(a), metrics(b)
    assert [m["step"] for m in mb] == list(range(1, BASE.steps + 1))
    assert [m["loss"] for m in ma] == [m["loss"] for m in mb]  # bitwise: JSON floats round-trip
    sa = torch.load(Path(a) / STATE_NAME, weights_only=True)
    sb = torch.load(Path(b) / STATE_NAME, weights_only=True)
    for key in ("model", "ema"):
        for k, v in sa[key].items():
            assert torch.equal(v, sb[key][k]), (key, k)
    assert sa["optimizer"]["state"][0]["exp_avg_sq"].equal(sb["optimizer"]["state"][0]["exp_avg_sq"])
    assert (sa["step"], sa["images_seen"], sa["epoch"]) == (sb["step"], sb["images_seen"], sb["epoch"])


def test_resume_is_bitwise_exact(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    result = make_trainer(straight).fit()
    # First half with steps=5 (checkpoint_every=4 does not divide it), then a new Trainer with a
    # different initialization resumes; stale metrics lines past the checkpoint are dropped.
    first = make_trainer(split, replace(BASE, steps=5)).fit()
    assert first.steps == 5
    with open(split / METRICS_NAME, "a") as f:
        f.write(json.dumps({"step": 99, "loss": 0.0}) + "\n" + '{"step": 6, "lo')
    resumed = make_trainer(split, init_seed=123).fit(resume=True)
    assert (resumed.steps, resumed.images_seen) == (result.steps, result.images_seen)
    assert resumed.final_loss == result.final_loss
    _assert_same_run(straight, split)
    assert make_trainer(split).fit(resume=True).steps == BASE.steps  # nothing left to do


class _InterruptAt:
    """Progress factory that sends the process a signal (default SIGINT, Ctrl-C) after step `at`."""

    def __init__(self, at: int, signum: int = signal.SIGINT):
        self.at, self.step, self.signum = at, 0, signum

    def __call__(self, total: int, initial: int):
        self.step = initial
        return self

    def update(self, n: int = 1) -> None:
        self.step += n
        if self.step == self.at:
            os.kill(os.getpid(), self.signum)

    def set_postfix(self, *a, **kw) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize("signum, default, raised, at", [
    (signal.SIGINT, signal.default_int_handler, KeyboardInterrupt, 6),  # Ctrl-C
    (signal.SIGTERM, signal.SIG_DFL, SystemExit, 5),  # kill, timeout, a scheduler's preemption: then exit 143
])
def test_signal_checkpoints_then_resumes_exactly(tmp_path, signum, default, raised, at):
    # a process started in the background (nohup, `&` in a script) inherits SIGINT ignored: give the test the
    # interactive default, and put back what there was afterwards
    previous = signal.signal(signum, default)
    try:
        straight, split = tmp_path / "straight", tmp_path / "split"
        make_trainer(straight).fit()
        with pytest.raises(raised) as info:
            make_trainer(split, progress=_InterruptAt(at, signum)).fit()
        if raised is SystemExit:
            assert info.value.code == 128 + signal.SIGTERM  # as if killed, but after the checkpoint
        assert torch.load(split / STATE_NAME, weights_only=True)["step"] == at
        assert signal.getsignal(signum) is default  # handler restored
        make_trainer(split).fit(resume=True)
        _assert_same_run(straight, split)
    finally:
        signal.signal(signum, previous)


class _KilledAt(_InterruptAt):
    """Progress factory that stops the run as ``kill -9`` would at the end of step ``at``: no checkpoint after the
    last periodic one, metrics lines past it (``_Killed`` is not an Exception, so nothing in the trainer handles
    it)."""

    def update(self, n: int = 1) -> None:
        self.step += n
        if self.step == self.at:
            raise _Killed


class _Killed(BaseException):
    pass


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}


def test_refused_resume_leaves_the_folder_untouched_then_resumes_exactly(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    make_trainer(straight).fit()
    with pytest.raises(_Killed):
        make_trainer(split, progress=_KilledAt(6)).fit()  # checkpoint at step 4, metrics lines up to 5
    before = _files(split)
    assert torch.load(split / STATE_NAME, weights_only=True)["step"] == 4 and len(metrics(split)) == 5
    for config, needle in ((replace(BASE, seed=4), "seed=4"), (replace(BASE, batch_size=16), "batch_size=16"),
                           (replace(BASE, steps=3), "past --steps 3")):
        with pytest.raises(ValueError, match=needle):
            make_trainer(split, config).fit(resume=True, refuse_finished=True)
        assert _files(split) == before  # not even the stale metrics lines are dropped
    make_trainer(split).fit(resume=True)
    _assert_same_run(straight, split)


def test_refuses_to_overwrite_and_needs_checkpoint_to_resume(tmp_path):
    with pytest.raises(FileNotFoundError, match="drop --resume"):
        make_trainer(tmp_path).fit(resume=True)
    make_trainer(tmp_path, replace(BASE, steps=2)).fit()
    with pytest.raises(FileExistsError, match=r"--resume.*new --out"):
        make_trainer(tmp_path).fit()
    with pytest.raises(ValueError, match="batch_size=32"):
        make_trainer(tmp_path, replace(BASE, batch_size=16)).fit(resume=True)


def test_time_limit_stops_with_checkpoint(tmp_path):
    result = make_trainer(tmp_path, replace(BASE, steps=10**6, time_limit_minutes=1e-9)).fit()
    assert result.stop_reason == "time_limit" and result.steps < 10**6
    assert torch.load(tmp_path / STATE_NAME, weights_only=True)["step"] == result.steps


def test_sample_grids_do_not_change_training(tmp_path, monkeypatch):
    saved = []

    def save_grid(x, path):
        saved.append((x.shape, Path(path).name))
        Path(path).write_bytes(b"png")
        return Path(path)

    monkeypatch.setitem(sys.modules, "genmodels.viz", types.SimpleNamespace(save_grid=save_grid))

    def sample_fn(model, generator):
        assert not model.training and not torch.is_grad_enabled()
        torch.randn(100)  # touching torch's global RNG must not change the training run
        return model.sample(6, generator)

    make_trainer(tmp_path / "a").fit()
    make_trainer(tmp_path / "b", replace(BASE, sample_every=4), sample_fn=sample_fn).fit()
    assert saved == [(torch.Size([6, 2]), "step_0000004.png"), (torch.Size([6, 2]), "step_0000008.png")]
    assert sorted(os.listdir(tmp_path / "b" / "samples")) == ["step_0000004.png", "step_0000008.png"]
    _assert_same_run(tmp_path / "a", tmp_path / "b")


def test_bad_inputs():
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig(warmup_steps=-1)
    with pytest.raises(ValueError, match=r"shape \(3,\).*\(2,\)"):
        Trainer(build_toy(ToyConfig(), TOY_SPEC), torch.zeros(64, 3), TOY_SPEC, BASE, "unused", RUN_CONFIG)
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer(build_toy(ToyConfig(), TOY_SPEC), torch.zeros(8, 2), TOY_SPEC, BASE, "unused", RUN_CONFIG)


def test_two_process_ddp(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(TESTS / "ddp_script.py"), str(run_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "DDP_OK world=2 steps=4" in proc.stdout
    assert len(list(tmp_path.rglob(CONFIG_NAME))) == 1 and len(list(tmp_path.rglob(WEIGHTS_NAME))) == 1
    assert [m["step"] for m in metrics(run_dir)] == [2, 4]
    assert torch.load(run_dir / STATE_NAME, weights_only=True)["world_size"] == 2
    _model, rc = from_pretrained(run_dir)
    assert rc.train.steps == 4 and not any(p.name.endswith(".tmp") for p in run_dir.iterdir())
