"""``genmodels compare``: the paired statistics, the protocol check, failed rows, and a run over every registered
family that is killed mid-way (``kill -9``) and rerun without retraining anything."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from genmodels.compare import Protocol, auroc, paired_difference, run_compare, write_report
from genmodels.families import MODELS

FAMILIES = {n for n in MODELS.names() if not n.startswith("_")}
"""The registered families (other tests register ``_test_…`` entries in this process; the workers never see them)."""

TINY = dict(data="digits", steps=2, batch_size=16, eval_examples=12, samples=10, max_nfe=3, fast_nfes=(3,),
            curve_examples=8)
"""A budget of seconds per family: two steps, a dozen test images, ten samples of at most three evaluations."""


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


# ---------------------------------------------------------------------------------------------- statistics


def test_paired_difference_is_in_bits_per_dim_and_separates_a_constant_gap():
    rng = np.random.default_rng(0)
    b = rng.normal(100.0, 10.0, size=400)
    d = paired_difference(b + 64 * math.log(2) * 0.01, b, dim=64)  # a = b + 0.01 bits/dim on every example
    assert d["diff_bpd"] == pytest.approx(0.01) and d["se_bpd"] < 1e-12 and not d["tied"]
    # the same means, independent noise of 10 nats: a tie, and the SE is std(a − b)/√N in bits/dim
    a, c = rng.normal(100.0, 10.0, size=400), rng.normal(100.0, 10.0, size=400)
    d = paired_difference(a, c, dim=64)
    assert d["se_bpd"] == pytest.approx(np.std(a - c, ddof=1) / 20 / (64 * math.log(2)))
    assert d["tied"] == (abs(d["diff_bpd"]) <= 2 * d["se_bpd"])
    with pytest.raises(ValueError, match="same N"):
        paired_difference(a, c[:10], dim=64)


def test_paired_difference_sees_what_the_two_standard_errors_hide():
    """Per-example NLLs vary far more between images than between models: the unpaired errors overlap, the paired
    one separates a small, consistent gap."""
    rng = np.random.default_rng(1)
    base = rng.normal(500.0, 80.0, size=1000)
    a, b = base + rng.normal(0, 1, 1000), base + 2.0 + rng.normal(0, 1, 1000)
    se = lambda v: np.std(v, ddof=1) / math.sqrt(len(v)) / (64 * math.log(2))  # noqa: E731
    gap = (b.mean() - a.mean()) / (64 * math.log(2))
    assert gap < 2 * math.hypot(se(a), se(b))  # unpaired: "tied"
    assert not paired_difference(b, a, dim=64)["tied"]  # paired: b is worse


def test_auroc_of_bits_per_dim():
    assert auroc([1.0, 2.0], [3.0, 4.0]) == 1.0  # the other data has higher bits/dim: detected
    assert auroc([3.0, 4.0], [1.0, 2.0]) == 0.0  # Nalisnick et al.: the other data looks more likely
    assert auroc([1.0, 2.0], [1.0, 2.0]) == 0.5


# ---------------------------------------------------------------------------------------------- the driver


def test_protocol_needs_a_budget_and_a_rerun_needs_the_same_protocol(tmp_path):
    with pytest.raises(ValueError, match="--minutes M"):
        Protocol(data="digits", models=("vae",))
    p = Protocol(**TINY, models=("nosuch",))
    run_compare(p, tmp_path, poll_seconds=0.1)
    with pytest.raises(ValueError, match=r"other settings \(steps 2 -> 3\).*--steps 2"):
        run_compare(Protocol(**{**TINY, "steps": 3}, models=("nosuch",)), tmp_path)


def test_a_failed_row_is_reported_and_the_others_go_on(tmp_path):
    summary = run_compare(Protocol(**TINY, models=("nosuch", "nice")), tmp_path, jobs=2, poll_seconds=0.1)
    assert summary["failed"] == ["nosuch"] and summary["done"] == 1
    failed = json.loads((tmp_path / "nosuch" / "compare" / "failed.json").read_text())
    assert "unknown model 'nosuch'" in failed["error"] and failed["stage"] == "train"
    md = (tmp_path / "report.md").read_text()
    assert "nosuch (failed)" in md and "unknown model 'nosuch'" in md
    results = json.loads((tmp_path / "results.json").read_text())
    nice = next(r for r in results["rows"] if r["name"] == "nice")
    assert nice["rank"] == 1 and nice["nll"]["nll_kind"] == "exact" and nice["train"]["steps"] == 2
    assert nice["quality"][0]["sampler"] == "inverse" and nice["quality"][0]["n"] == TINY["samples"]
    assert nice["curve"] and nice["curve"][0]["step"] == 0
    # the same run as an existing one (`genmodels compare RUN --out DIR`): evaluated again, the same numbers
    ext = {k: v for k, v in TINY.items() if k not in ("steps", "batch_size")}
    assert run_compare(Protocol(**ext, models=("nice",), runs={"nice": str(tmp_path / "nice")}),
                       tmp_path / "ext", poll_seconds=0.1)["done"] == 1
    again = json.loads((tmp_path / "ext" / "results.json").read_text())["rows"][0]
    assert again["nll"] == nice["nll"] | {"seconds": again["nll"]["seconds"]}
    assert again["train"]["steps"] == 2 and again["train"]["images_seen"] == 2 * TINY["batch_size"]
    # a rerun reports at once; --retry-failed runs the failed row again (and it fails again, the same way)
    assert run_compare(Protocol(**TINY, models=("nosuch", "nice")), tmp_path, retry_failed=True,
                       poll_seconds=0.1)["failed"] == ["nosuch"]


def test_nan_training_is_a_failed_row(tmp_path):
    summary = run_compare(Protocol(**{**TINY, "lr": 1e30}, models=("nice",)), tmp_path, poll_seconds=0.1)
    assert summary["failed"] == ["nice"]
    error = json.loads((tmp_path / "nice" / "compare" / "failed.json").read_text())["error"]
    assert "NonFiniteError" in error and "not finite" in error


def test_report_of_nothing_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no comparison"):
        write_report(tmp_path)


def _workers(out: Path) -> list[int]:
    """PIDs of live worker processes of the comparison in ``out``."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"genmodels.compare" in cmd and str(out).encode() in cmd:
                pids.append(int(d.name))
    return pids


@pytest.mark.skipif(sys.platform != "linux", reason="workers die with compare through PR_SET_PDEATHSIG (Linux)")
def test_every_family_killed_mid_way_and_rerun_retrains_nothing(tmp_path):
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "genmodels.cli", "compare", "--data", "digits", "--steps", "2", "--samples", "10",
           "--eval-examples", "12", "--max-nfe", "3", "--fast-nfes", "3", "--out", str(out)]
    first = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(out.glob("*/compare/done.json"))) < 2:
        time.sleep(0.2)
    while time.monotonic() < deadline and len(list(out.glob("*/compare/worker.log"))) < 3:
        time.sleep(0.1)
    time.sleep(1.0)  # the third family's worker is under way
    first.send_signal(signal.SIGKILL)
    first.wait()
    done_before = {p.parent.parent.name: (p.parent / "train.json").read_text() for p in out.glob("*/compare/done.json")}
    assert 2 <= len(done_before) < len(FAMILIES) - 1, "the kill came too late to test anything"
    deadline = time.monotonic() + 10
    while _workers(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _workers(out), "a worker outlived its compare"

    rerun = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    for name, train in done_before.items():  # finished rows: not retrained, not re-evaluated
        assert f"{name}: done already" in rerun.stderr
        assert (out / name / "compare" / "train.json").read_text() == train
    results = json.loads((out / "results.json").read_text())
    rows = {r["name"]: r for r in results["rows"]}
    assert set(rows) == FAMILIES  # every registered family appears, without compare naming any
    for name, r in rows.items():
        assert r["status"] in ("done", "skipped"), (name, r.get("error"))
        if r["status"] == "done":
            assert r["train"]["steps"] == 2 and r["quality"], name
            assert ("nll" in r) == r["info"]["has_likelihood"], name
    assert {r["status"] for r in rows.values()} == {"done", "skipped"}
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    for name in FAMILIES:
        assert name in md and name in html
    assert "http" not in html.replace("http-equiv", "")  # self-contained: no network
    assert html.count("data:image/png;base64,") >= 3


def test_the_reproduce_command_uses_only_options_the_cli_has():
    import typer.main

    from genmodels.cli import app

    command = next(c for c in typer.main.get_command(app).commands.values() if c.name == "compare")
    options = {o for p in command.params for o in p.opts}
    p = Protocol(**{**TINY, "lr": 0.01, "seed": 3, "minutes": 2.0}, models=("vae", "nice"), ood_data="mnist5k",
                 conditional=True)
    flags = [w for w in p.command(out="X").split() if w.startswith("--")]
    assert flags and set(flags) <= options, set(flags) - options
    assert "--lr 0.01" in p.command() and "--seed 3" in p.command() and "--fast-nfes 3" in p.command()


def test_fast_budgets_map_to_the_most_steps_within_them():
    """A fast sampler of two evaluations per step answers a budget of 5 with 2 steps (4 NFE), and one that is also
    the default sampler keeps its default row first."""
    from genmodels.compare import Protocol, _sample_configs
    from genmodels.core import DataSpec
    from genmodels.families import MODELS

    spec = DataSpec("toy", (2,), None, (float("-inf"), float("inf")))
    entry = MODELS.get("flow_matching")
    model = entry.build(entry.preset(spec), spec)
    protocol = Protocol(data="moons", models=("flow_matching",), steps=1, fast_nfes=(5, 10, 20))
    configs = _sample_configs(model, protocol)
    assert configs[0] == ("midpoint", 50, [])  # the default: 100 NFE, within max_nfe
    assert configs[1:] == [("midpoint", 2, [5]), ("midpoint", 5, [10]), ("midpoint", 10, [20])]
