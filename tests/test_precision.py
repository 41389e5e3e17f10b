"""--precision (genmodels.precision) and the thread defaults (genmodels.threads): what they resolve to, that bf16
really runs the network in bf16 (in training through accelerate, in sampling through autocast) while the results
stay float32, and the one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from genmodels import precision as P
from genmodels import threads as T
from genmodels.sampling import draw_in_batches
from test_train import BASE, make_trainer, metrics

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _linear_dtypes(model: torch.nn.Module) -> list[torch.dtype]:
    """Record the output dtype of every nn.Linear call from now on."""
    seen: list[torch.dtype] = []
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):
            m.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


def test_resolve_precision():
    assert P.resolve_precision("fp32", "cpu") == "fp32"
    assert P.resolve_precision("bf16", "cpu") == "bf16"
    assert P.resolve_precision("auto", "cpu") == ("bf16" if P.cpu_has_bf16() else "fp32")
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        P.resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="must be one of auto, fp32, bf16, fp16"):
        P.resolve_precision("fp64", "cpu")
    assert [P.accelerate_mixed_precision(p) for p in ("fp32", "bf16", "fp16")] == ["no", "bf16", "fp16"]


def test_autocast_runs_matmuls_in_bf16_and_leaves_fp32_alone():
    lin = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with P.autocast("bf16", "cpu"):
        assert lin(x).dtype == torch.bfloat16
    with P.autocast("fp32", "cpu"):
        assert lin(x).dtype == torch.float32


def test_bf16_training_runs_the_network_in_bf16_then_fp32_in_the_same_process(tmp_path):
    """accelerate keeps one process-wide precision; the trainer starts a fresh state for a new one (a notebook that
    trains in bf16, then in fp32), and the loss the trainer sees is float32 and finite."""
    config = replace(BASE, steps=4, checkpoint_every=0)
    for i, (mp, expected) in enumerate((("bf16", torch.bfloat16), ("no", torch.float32), ("bf16", torch.bfloat16))):
        run = tmp_path / f"{i}-{mp}"
        trainer = make_trainer(run, replace(config, mixed_precision=mp))
        seen = _linear_dtypes(trainer.model)
        result = trainer.fit()
        assert trainer.accelerator.mixed_precision == mp
        assert seen and set(seen) == {expected}, f"{mp}: the network ran in {set(seen)}"
        assert all(isinstance(m["loss"], float) for m in metrics(run)) and result.final_loss == result.final_loss
        assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # master weights stay fp32
        assert all(p.dtype == torch.float32 for p in trainer.ema_model.parameters())


def test_fp16_training_on_a_cpu_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"fp16 needs a GPU.*bf16 or fp32"):
        make_trainer(tmp_path, replace(BASE, mixed_precision="fp16"))


def test_bf16_sampling_returns_float32_samples_close_to_fp32():
    """The same draws in bf16 and fp32: float32 samples either way, the network in bf16 for the first, and the
    samples close (the sampler's state and schedule stay float32; only the network's products round)."""
    torch.manual_seed(0)
    model = make_trainer(Path("unused")).model.eval()
    seen = _linear_dtypes(model)
    x32 = draw_in_batches(model, 8, generator=torch.Generator().manual_seed(1), precision="fp32").x0
    assert set(seen) == {torch.float32}
    seen.clear()
    x16 = draw_in_batches(model, 8, generator=torch.Generator().manual_seed(1), precision="bf16").x0
    assert set(seen) == {torch.bfloat16}
    assert x16.dtype == x32.dtype == torch.float32 and not x16.requires_grad
    assert torch.allclose(x16, x32, atol=0.1), (x16 - x32).abs().max()


# ----------------------------------------------------------------------------- threads


def test_available_cores_follow_affinity_and_cgroup_quota(monkeypatch, tmp_path):
    quota = T._cgroup_quota
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(T, "_cgroup_quota", lambda: None)
    assert T.available_cores() == 4
    monkeypatch.setattr(T, "_cgroup_quota", lambda: 2.5)  # a container limited to 2.5 CPUs
    assert T.available_cores() == 3
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert quota(tmp_path) is None


def test_configure_threads(monkeypatch):
    monkeypatch.setattr(T, "available_cores", lambda: 1)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert T.configure_threads() == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert T.configure_threads() == 2 and torch.get_num_threads() == 2
    assert T.configure_threads(1) == 1 and os.environ["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS='many'"):
        T.configure_threads()
    with pytest.raises(ValueError, match="--threads must be ≥ 1"):
        T.configure_threads(0)


def test_the_command_line_leaves_openmp_waits_at_their_default_and_loads_no_torch_at_import():
    """The thread tuner needs libgomp's default spin (genmodels.threads): importing the CLI sets no wait variable;
    set_short_waits after torch loaded says it is too late."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    code = ("import sys, os, genmodels.cli; assert 'torch' not in sys.modules; "
            "print(*(os.environ.get(k) for k in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT', 'KMP_BLOCKTIME'))); "
            "from genmodels.threads import set_short_waits; import torch; print(set_short_waits({}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "None", "None", "False"]


def test_short_waits_leave_a_chosen_spin_count_alone_and_fill_a_child_env():
    from genmodels.threads import SHORT_WAITS, set_short_waits

    env = {"GOMP_SPINCOUNT": "50"}
    set_short_waits(env)
    assert env == {"GOMP_SPINCOUNT": "50"}
    env = {}
    set_short_waits(env)
    assert env == SHORT_WAITS


@pytest.mark.parametrize("args", [["train", "ddpm", "--data", "digits", "--precision", "fp16"],
                                  ["train", "ddpm", "--data", "digits", "--precision", "fp64"]])
def test_bad_precision_is_one_line_before_any_work(args, tmp_path):
    from _cli import cli_error

    cli_error([*args, "--out", str(tmp_path / "r")], "--precision")
    assert not (tmp_path / "r").exists()
