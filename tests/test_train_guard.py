"""A run never lies (issue 15): non-finite steps stop the run (or are skipped) without writing a checkpoint after them;
every JSON the trainer and the CLI write is valid; a resume applies and records the settings it is given, or refuses
them; TrainConfig refuses out-of-range values, naming the field."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from _cli import cli_error, ok, runner
from genmodels.cli import app
from genmodels.fileio import finite_json, json_dumps
from genmodels.train import METRICS_NAME, STATE_NAME, NonFiniteError, TrainConfig
from test_train import BASE, _assert_same_run, make_trainer

TESTS = Path(__file__).resolve().parent


def strict_json(text: str):
    """``json.loads`` that refuses the bare NaN / Infinity / -Infinity that are not JSON."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def strict_lines(path) -> list[dict]:
    return [strict_json(line) for line in Path(path).read_text().splitlines()]


def snapshot(folder) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class _NaNGrad(torch.autograd.Function):
    """Identity forward, NaN gradient backward: a finite loss whose gradients are not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * math.nan


class BreakAt:
    """Replaces ``model.loss``: the loss (``kind="loss"``, gradients finite) or only the gradients (``"grad"``) are
    NaN at the given 1-based calls (one call per training step)."""

    def __init__(self, model, steps, kind: str = "loss", rank: int | None = None):
        self.orig, self.steps, self.kind, self.calls = model.loss, set(steps), kind, 0
        model.loss = self

    def __call__(self, x, generator=None, y=None):
        self.calls += 1
        loss = self.orig(x, generator=generator)
        if self.calls not in self.steps:
            return loss
        return loss + math.nan if self.kind == "loss" else _NaNGrad.apply(loss)


# ---------------------------------------------------------------------------------------------- non-finite steps


@pytest.mark.parametrize("kind, what, grad_clip", [
    ("loss", "loss", 1.0),
    ("grad", "gradient norm", 1.0),
    ("grad", "gradient norm", None),  # no clipping: the norm is still measured at every step
])
def test_nonfinite_step_stops_keeping_the_last_checkpoint_then_resumes_exactly(tmp_path, kind, what, grad_clip):
    config = replace(BASE, grad_clip=grad_clip)
    straight, split = tmp_path / "straight", tmp_path / "split"
    make_trainer(straight, config).fit()
    trainer = make_trainer(split, config)
    BreakAt(trainer.model, {7}, kind)
    with pytest.raises(NonFiniteError) as info:
        trainer.fit()
    e = info.value
    assert isinstance(e, ValueError) and (e.step, e.what, e.checkpoint_step) == (7, what, 4)
    msg = str(e)
    for needle in (f"training stopped at step 7: the {what} is not finite", "keeps its checkpoint of step 4",
                   "--resume", "--lr", "data far outside", "clip_x0", "--skip-nonfinite"):
        assert needle in msg, (needle, msg)
    assert torch.load(split / STATE_NAME, weights_only=True)["step"] == 4  # nothing written after the bad step
    assert json.loads((split / "config.json").read_text())["train"]["steps"] == BASE.steps
    lines = strict_lines(split / METRICS_NAME)
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 5, 6, 7]
    assert lines[-1] == {"step": 7, "event": "nonfinite", "nonfinite": what, "skipped_steps": 0, "checkpoint_step": 4}
    assert not any(p.name.endswith(".tmp") for p in split.iterdir())
    make_trainer(split, config).fit(resume=True)  # from the step-4 checkpoint, as if nothing had happened
    _assert_same_run(straight, split)


def test_nonfinite_before_any_checkpoint_says_so(tmp_path):
    trainer = make_trainer(tmp_path, replace(BASE, checkpoint_every=0))
    BreakAt(trainer.model, {2})
    with pytest.raises(NonFiniteError, match="no checkpoint had been written yet") as info:
        trainer.fit()
    assert info.value.checkpoint_step is None and not (tmp_path / STATE_NAME).exists()
    assert not (tmp_path / "model.safetensors").exists()
    make_trainer(tmp_path).fit()  # the folder holds no run: training it again is allowed


def test_nonfinite_weights_are_never_checkpointed(tmp_path):
    make_trainer(tmp_path, replace(BASE, steps=2)).fit()
    before = snapshot(tmp_path)
    # AdamW's decay factor 1 − lr·weight_decay overflows float32: the next update makes the weights infinite,
    # though its loss and gradients were finite (and the resume applies the new lr and weight decay)
    trainer = make_trainer(tmp_path, replace(BASE, steps=4, lr=1e30, weight_decay=1e10, checkpoint_every=1))
    with pytest.raises(NonFiniteError, match="step 3: the weights are not finite") as info:
        trainer.fit(resume=True)
    assert (info.value.what, info.value.checkpoint_step) == ("weights", 2)
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k != METRICS_NAME} == {k: v for k, v in before.items()
                                                                     if k != METRICS_NAME}
    assert strict_lines(tmp_path / METRICS_NAME)[-1]["event"] == "nonfinite"


def test_skip_nonfinite_skips_counts_and_leaves_the_ema_alone(tmp_path):
    config = replace(BASE, skip_nonfinite=2)
    trainer = make_trainer(tmp_path / "a", config)
    BreakAt(trainer.model, {3, 6, 7}, "grad")
    result = trainer.fit()
    assert result.steps == BASE.steps and math.isfinite(result.final_loss)
    lines = strict_lines(tmp_path / "a" / METRICS_NAME)
    assert [m["skipped_steps"] for m in lines] == [0, 0, 1, 1, 1, 2, 3, 3, 3, 3]
    assert lines[2]["grad_norm"] is None and lines[2]["loss"] is None  # a window of one skipped step
    state = torch.load(tmp_path / "a" / STATE_NAME, weights_only=True)
    assert state["skipped_steps"] == 3 and int(state["ema"]["n_averaged"]) == BASE.steps - 3

    # a skipped last step changes neither the weights nor the EMA: the same as stopping one step earlier
    nine = make_trainer(tmp_path / "nine", replace(config, steps=9))
    nine.fit()
    ten = make_trainer(tmp_path / "ten", config)
    BreakAt(ten.model, {10}, "loss")
    ten.fit()
    for a, b in ((ten.model, nine.model), (ten.ema_model, nine.ema_model)):
        for (k, v), w in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(v, w), k


def test_skip_nonfinite_stops_after_too_many_in_a_row(tmp_path):
    trainer = make_trainer(tmp_path, replace(BASE, skip_nonfinite=2))
    BreakAt(trainer.model, {5, 6, 7})
    with pytest.raises(NonFiniteError, match=r"step 7: the loss is not finite .*3 steps in a row.*skip_nonfinite=2"):
        trainer.fit()
    assert torch.load(tmp_path / STATE_NAME, weights_only=True)["step"] == 4


def test_two_process_nonfinite_on_one_rank_stops_both(tmp_path):
    """Rank 1 alone gets a NaN loss (its gradients stay finite): both processes agree to stop at the same step;
    with skip_nonfinite both skip it and keep equal weights."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(TESTS)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(TESTS / "ddp_nonfinite_script.py"), str(tmp_path)]
    # its own session, so that a hang (processes that disagree wait in a collective forever) kills every worker
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail("the two processes hung (did they disagree on a non-finite step?)\n" + stderr[-3000:])
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "NONFINITE_OK rank=0 step=3 checkpoint=2" in stdout
    assert "NONFINITE_OK rank=1 step=3 checkpoint=2" in stdout
    assert "SKIP_OK world=2 skipped=1" in stdout
    assert torch.load(tmp_path / "stop" / STATE_NAME, weights_only=True)["step"] == 2


# ---------------------------------------------------------------------------------------------- resume settings


def test_resume_applies_and_records_new_settings(tmp_path):
    make_trainer(tmp_path, replace(BASE, steps=5)).fit()
    new = replace(BASE, steps=8, lr=1e-3, log_every=2, ema_halflife_kimg=1.0)
    result = make_trainer(tmp_path, new).fit(resume=True)
    assert result.steps == 8
    lines = strict_lines(tmp_path / METRICS_NAME)
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 5, 6, 8]  # log_every=2 from step 5 on
    assert [m["lr"] for m in lines[5:]] == [1e-3, 1e-3]  # warm-up over: the new peak lr at once
    changed = {"steps": [5, 8], "lr": [1e-2, 1e-3], "ema_halflife_kimg": [50.0, 1.0], "log_every": [1, 2]}
    assert lines[5]["resume"] == {"step": 5, "changed": changed} and "resume" not in lines[6]
    state = torch.load(tmp_path / STATE_NAME, weights_only=True)
    assert state["optimizer"]["param_groups"][0]["lr"] == 1e-3  # what the optimizer used, not only the log
    history = ["step 5: steps 5 -> 8, lr 0.01 -> 0.001, ema_halflife_kimg 50.0 -> 1.0, log_every 1 -> 2"]
    train = json.loads((tmp_path / "config.json").read_text())["train"]
    assert (train["lr"], train["steps"], train["history"]) == (1e-3, 8, history)
    assert state["train_config"]["history"] == history

    # a resume that changes nothing records nothing new; the history is kept
    make_trainer(tmp_path, replace(new, steps=9, history=())).fit(resume=True)
    train = json.loads((tmp_path / "config.json").read_text())["train"]
    assert train["history"] == [*history, "step 8: steps 8 -> 9"]
    assert strict_lines(tmp_path / METRICS_NAME)[-1]["resume"] == {"step": 8, "changed": {"steps": [8, 9]}}


def test_resume_with_a_new_lr_during_warmup(tmp_path):
    make_trainer(tmp_path, replace(BASE, steps=1)).fit()  # warmup_steps=3: lr·(s+1)/3
    make_trainer(tmp_path, replace(BASE, steps=3, lr=3e-3)).fit(resume=True)
    assert [m["lr"] for m in strict_lines(tmp_path / METRICS_NAME)] == pytest.approx([1e-2 / 3, 2e-3, 3e-3])


class Crash(BaseException):
    """What a kill -9 leaves on disk: no checkpoint after the last one, metrics lines past it."""


class CrashAt:
    """Progress factory that raises :class:`Crash` when step ``at`` ends (after the step-``at − 1`` log line)."""

    def __init__(self, at: int):
        self.at = at

    def __call__(self, total: int, initial: int):
        self.step = initial
        return self

    def update(self, n: int = 1) -> None:
        self.step += n
        if self.step == self.at:
            raise Crash

    def set_postfix(self, *a, **kw) -> None:
        pass

    def close(self) -> None:
        pass


def test_resume_without_a_checkpoint_after_it_keeps_no_trace(tmp_path):
    """A resume killed before its first checkpoint leaves its changes nowhere the next resume reads."""
    make_trainer(tmp_path, replace(BASE, steps=4)).fit()
    with pytest.raises(Crash):
        make_trainer(tmp_path, replace(BASE, lr=5e-3), progress=CrashAt(6)).fit(resume=True)
    assert strict_lines(tmp_path / METRICS_NAME)[-1]["resume"] == {"step": 4, "changed": {"steps": [4, 10],
                                                                                "lr": [1e-2, 5e-3]}}
    make_trainer(tmp_path, replace(BASE, steps=6)).fit(resume=True)
    lines = strict_lines(tmp_path / METRICS_NAME)
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 5, 6]
    assert lines[4]["resume"] == {"step": 4, "changed": {"steps": [4, 6]}}
    train = json.loads((tmp_path / "config.json").read_text())["train"]
    assert train["lr"] == BASE.lr and train["history"] == ["step 4: steps 4 -> 6"]


@pytest.mark.parametrize("change, needle", [
    (dict(seed=4), "with seed=4: it was trained with seed=3"),
    (dict(batch_size=16), "with batch_size=16: it was trained with batch_size=32"),
])
def test_resume_refuses_seed_and_batch_size_untouched(tmp_path, change, needle):
    make_trainer(tmp_path, replace(BASE, steps=5)).fit()
    with open(tmp_path / METRICS_NAME, "a") as f:  # a line past the checkpoint, as a kill -9 leaves
        f.write(json.dumps({"step": 6, "loss": 0.5}) + "\n")
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=needle):
        make_trainer(tmp_path, replace(BASE, steps=8, **change)).fit(resume=True)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("config, needle", [
    (replace(BASE, steps=3), "the run is at step 5, past --steps 3; give a larger --steps"),
    (replace(BASE, steps=5), "the run is already at step 5, its --steps; give a larger --steps"),
    (replace(BASE, steps=9, time_limit_minutes=1e-9), "past --minutes 1e-09; give a larger --minutes"),
])
def test_refuse_finished(tmp_path, config, needle):
    make_trainer(tmp_path, replace(BASE, steps=5)).fit()
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match=needle):
        make_trainer(tmp_path, config).fit(resume=True, refuse_finished=True)
    assert snapshot(tmp_path) == before
    assert make_trainer(tmp_path, replace(BASE, steps=3)).fit(resume=True).steps == 5  # the library: a no-op


# ---------------------------------------------------------------------------------------------- TrainConfig ranges

_INT_MIN = {"steps": 1, "batch_size": 1, "n_sample": 1, "log_every": 1, "warmup_steps": 0, "checkpoint_every": 0,
            "sample_every": 0, "skip_nonfinite": 0}
_POSITIVE = ("lr",)  # > 0, finite
_NONNEGATIVE = ("weight_decay", "ema_halflife_kimg")  # ≥ 0, finite
_POSITIVE_OR_NONE = ("ema_rampup", "time_limit_minutes")  # > 0 finite, or None


def _refused(name, value):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{name}=") as info:
        TrainConfig(**{name: value})
    assert "must be" in str(info.value)


def test_every_field_has_a_rule():
    from genmodels.train_config import _RULES

    assert set(_RULES) == {f.name for f in fields(TrainConfig)}
    TrainConfig()  # the defaults are valid


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(_INT_MIN)), value=st.integers(-10**6, 10**6))
def test_integer_fields(name, value):
    if value >= _INT_MIN[name]:
        assert getattr(TrainConfig(**{name: value}), name) == value
    else:
        _refused(name, value)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(_INT_MIN)),
       value=st.one_of(st.floats(allow_nan=True), st.booleans(), st.text(max_size=3), st.none()))
def test_integer_fields_refuse_other_types(name, value):
    _refused(name, value)


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from([*_POSITIVE, *_NONNEGATIVE, *_POSITIVE_OR_NONE]),
       value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-100, 100), st.none()))
def test_number_fields(name, value):
    if value is None:
        ok_ = name in _POSITIVE_OR_NONE
    else:
        ok_ = math.isfinite(value) and (value >= 0 if name in _NONNEGATIVE else value > 0)
    if ok_:
        assert getattr(TrainConfig(**{name: value}), name) == value
    else:
        _refused(name, value)


@settings(max_examples=60, deadline=None)
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none()))
def test_grad_clip(value):
    if value is None or value > 0:  # inf: measured, not clipped
        TrainConfig(grad_clip=value)
    else:
        _refused("grad_clip", value)


@settings(max_examples=60, deadline=None)
@given(b1=st.one_of(st.floats(-2, 2), st.just(math.nan)), b2=st.one_of(st.floats(-2, 2), st.just(math.nan)))
def test_betas(b1, b2):
    if 0 <= b1 < 1 and 0 <= b2 < 1:
        TrainConfig(betas=(b1, b2))
    else:
        _refused("betas", (b1, b2))


@settings(max_examples=40, deadline=None)
@given(value=st.integers(-2**64, 2**64))
def test_seed(value):
    if 0 <= value < 2**63:
        TrainConfig(seed=value)
    else:
        _refused("seed", value)


def test_other_fields():
    _refused("num_threads", 0)
    _refused("mixed_precision", "fp8")
    _refused("progress", 1)
    _refused("history", ("ok", 3))
    _refused("betas", (0.9,))
    with pytest.raises(ValueError, match=r"TrainConfig\.steps=0: must be an integer ≥ 1; TrainConfig\.lr=-1"):
        TrainConfig(steps=0, lr=-1)


# ---------------------------------------------------------------------------------------------- JSON


def test_json_dumps_writes_null_for_non_finite_numbers():
    obj = {"a": math.nan, "b": [math.inf, -math.inf, 1.5, 2], "c": (np.float32("nan"), np.float64(0.25)),
           "d": np.int64(3), "e": {"f": torch.tensor(float("nan"))}, "g": "NaN", "h": True}
    text = json_dumps(obj)
    assert strict_json(text) == {"a": None, "b": [None, None, 1.5, 2], "c": [None, 0.25], "d": 3.0,
                                 "e": {"f": None}, "g": "NaN", "h": True}
    assert finite_json({"x": 1.0}) == {"x": 1.0}
    assert json_dumps({"x": 0.1, "y": [1, 2]}, indent=None) == json.dumps({"x": 0.1, "y": [1, 2]})
    with pytest.raises(TypeError):
        json_dumps({"x": object()})


# ---------------------------------------------------------------------------------------------- the CLI

TINY = ["--T", "50", "--channels", "8", "--channel-mult", "1,2", "--num-res-blocks", "1", "--attn-levels", "1",
        "--batch-size", "16", "--log-every", "2", "--checkpoint-every", "3", "--threads", "1", "--no-progress"]


def error_line(out: str, *needles: str) -> str:
    """The one ``error:`` line of a failed command's output (log lines may surround it), with every needle."""
    lines = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _train(args):
    return runner.invoke(app, ["train", *args])


def _summary(res) -> dict:
    return strict_json(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("guard") / "ddpm"
    info = _summary(ok(_train(["ddpm", "--data", "digits", "--out", str(run), "--steps", "6", *TINY])))
    assert info["steps"] == 6 and isinstance(info["final_loss"], float)
    return run


def test_cli_nonfinite_exits_2_keeps_the_checkpoint_and_resumes(tmp_path, monkeypatch):
    from genmodels.diffusion.ddpm import DDPM

    run = tmp_path / "r"
    orig, calls = DDPM.loss, []

    def loss(self, x, generator=None, y=None):
        calls.append(1)
        return orig(self, x, generator, y) * (math.nan if len(calls) == 5 else 1.0)

    monkeypatch.setattr(DDPM, "loss", loss)
    out = cli_error(["train", "ddpm", "--data", "digits", "--out", str(run), "--steps", "6", *TINY],
                    "training stopped at step 5: the loss and gradient norm are not finite",
                    "keeps its checkpoint of step 3", "--lr", "clip_x0", "--skip-nonfinite")
    error_line(out)
    assert torch.load(run / STATE_NAME, weights_only=True)["step"] == 3
    strict_lines(run / METRICS_NAME)
    monkeypatch.setattr(DDPM, "loss", orig)
    info = _summary(ok(_train(["--out", str(run), "--resume", "--no-progress"])))
    assert info["steps"] == 6 and math.isfinite(info["final_loss"])
    assert [m["step"] for m in strict_lines(run / METRICS_NAME)] == [2, 4, 6]


def test_cli_skip_nonfinite(tmp_path, monkeypatch):
    from genmodels.diffusion.ddpm import DDPM

    orig, calls = DDPM.loss, []

    def loss(self, x, generator=None, y=None):
        calls.append(1)
        return orig(self, x, generator, y) * (math.nan if len(calls) in (2, 5) else 1.0)

    monkeypatch.setattr(DDPM, "loss", loss)
    run = tmp_path / "r"
    info = _summary(ok(_train(["ddpm", "--data", "digits", "--out", str(run), "--steps", "6", "--skip-nonfinite",
                               "1", *TINY])))
    assert info["steps"] == 6
    assert [m["skipped_steps"] for m in strict_lines(run / METRICS_NAME)] == [1, 1, 2]
    assert json.loads((run / "config.json").read_text())["train"]["skip_nonfinite"] == 1


def test_cli_run_with_no_step_prints_null(tmp_path):
    res = ok(_train(["ddpm", "--data", "digits", "--out", str(tmp_path / "r"), "--minutes", "1e-9", *TINY]))
    info = _summary(res)
    assert info["steps"] == 0 and info["final_loss"] is None and info["stop_reason"] == "time_limit"


@pytest.mark.parametrize("args, needle", [
    (["--steps", "0"], "--steps 0: must be an integer ≥ 1"),
    (["--steps", "-1"], "--steps -1: must be an integer ≥ 1"),
    (["--batch-size", "0"], "--batch-size 0: must be an integer ≥ 1"),
    (["--lr", "0"], "--lr 0.0: must be a finite number > 0"),
    (["--lr", "-1e-3"], "--lr -0.001: must be a finite number > 0"),
    (["--lr", "nan"], "--lr nan: must be a finite number > 0"),
    (["--minutes", "0"], "--minutes 0.0: must be a finite number > 0"),
    (["--minutes", "-5"], "--minutes -5.0: must be a finite number > 0"),
    (["--checkpoint-every", "-1"], "--checkpoint-every -1: must be an integer ≥ 0"),
    (["--sample-every", "-1"], "--sample-every -1: must be an integer ≥ 0"),
    (["--log-every", "0"], "--log-every 0: must be an integer ≥ 1"),
    (["--ema-halflife-kimg", "-1"], "--ema-halflife-kimg -1.0: must be a finite number ≥ 0"),
    (["--seed", "-1"], "--seed -1: must be an integer in [0, 2**63)"),
    (["--skip-nonfinite", "-1"], "--skip-nonfinite -1: must be an integer ≥ 0"),
])
def test_cli_refuses_out_of_range_training_options(tmp_path, args, needle):
    out = cli_error(["train", "ddpm", "--data", "digits", "--out", str(tmp_path / "r"), *args], needle)
    error_line(out, needle)
    assert not (tmp_path / "r").exists()


def test_cli_resume_applies_and_records_flags(cli_run, tmp_path):
    import shutil

    run = tmp_path / "r"
    shutil.copytree(cli_run, run)
    info = _summary(ok(_train(["--out", str(run), "--resume", "--steps", "8", "--lr", "1e-2", "--log-every", "1",
                               "--no-progress"])))
    assert info["steps"] == 8
    lines = strict_lines(run / METRICS_NAME)
    assert [m["step"] for m in lines] == [2, 4, 6, 7, 8]
    assert lines[3]["resume"] == {"step": 6, "changed": {"steps": [6, 8], "lr": [2e-4, 1e-2], "log_every": [2, 1]}}
    assert lines[3]["lr"] == pytest.approx(1e-2 * 7 / 100)  # warm-up of 100 steps, at the new peak lr
    train = json.loads((run / "config.json").read_text())["train"]
    assert (train["steps"], train["lr"], train["log_every"]) == (8, 1e-2, 1)
    assert train["history"] == ["step 6: steps 6 -> 8, lr 0.0002 -> 0.01, log_every 2 -> 1"]


@pytest.mark.parametrize("args, needle", [
    (["--seed", "3"], "with seed=3: it was trained with seed=0 and a resumed run keeps it"),
    (["--batch-size", "8"], "with batch_size=8: it was trained with batch_size=16"),
    (["--steps", "5"], "the run is at step 6, past --steps 5; give a larger --steps"),
    ([], "the run is already at step 6, its --steps; give a larger --steps"),
    (["--steps", "9", "--minutes", "1e-6"], "past --minutes 1e-06; give a larger --minutes"),
    (["--T", "10"], "--T change the model"),
    (["--channels", "4"], "--channels change the model"),
    (["--set", "loss=elbo"], "--set and --conditional change the model"),
    (["vae"], "is a 'ddpm' run, not 'vae'"),
    (["--data", "mnist5k"], "differs from the run's dataset"),
])
def test_cli_resume_refusals_leave_the_run_untouched(cli_run, args, needle):
    before = snapshot(cli_run)
    model = [a for a in args if a == "vae"]
    flags = [a for a in args if a != "vae"]
    out = cli_error(["train", *model, "--out", str(cli_run), "--resume", "--no-progress", *flags], needle)
    error_line(out)
    assert snapshot(cli_run) == before
