"""A real ``kill -9`` at a random moment of training, then a refused resume, then a proper resume: the run ends
bitwise-identical to one that was never interrupted (issue 15: a refused resume loses nothing)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

STEPS = 300
ARGS = ["ddpm", "--data", "moons", "--steps", str(STEPS), "--batch-size", "16", "--checkpoint-every", "10",
        "--log-every", "5", "--T", "50", "--set", "mlp.hidden=16", "--set", "mlp.depth=1", "--set", "mlp.emb_dim=8",
        "--threads", "1", "--no-progress"]


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "genmodels.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300, **kw)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return {**load_file(run / "model.safetensors"), **{f"ema.{k}": v for k, v in
                                                       load_file(run / "ema.safetensors").items()}}


def _snapshot(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


def test_kill_9_then_a_refused_resume_then_resume_is_bitwise(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert _cli("train", *ARGS, "--out", ref).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "genmodels.cli", "train", *ARGS, "--out", str(run)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    target = random.Random(0).randrange(20, STEPS // 2)  # a random step past the first checkpoints
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        metrics = run / "metrics.jsonl"
        if metrics.is_file() and metrics.read_text().count("\n") * 5 >= target:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not finished
    assert (run / "train_state.pt").is_file()
    before = _snapshot(run)
    refused = _cli("train", "--out", run, "--resume", "--seed", "3", "--steps", STEPS, "--no-progress")
    assert refused.returncode == 2 and "seed" in refused.stderr and "Traceback" not in refused.stderr
    assert _snapshot(run) == before  # the refusal wrote nothing
    done = _cli("train", "--out", run, "--resume", "--steps", STEPS, "--threads", "1", "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    a, b = _weights(ref), _weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
