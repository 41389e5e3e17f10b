"""The command line drives flow matching like any family: train (with OT coupling), sample with each solver,
evaluate through the ODE, the ODE likelihood command, pictures."""

from __future__ import annotations

import json

import pytest

from _cli import last_json, ok, runner
from genmodels.cli import app


@pytest.fixture(scope="module")
def fm_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("fm") / "run"
    ok(runner.invoke(app, ["train", "flow_matching", "--data", "moons", "--steps", "40", "--batch-size", "128",
                           "--set", "coupling=ot", "--set", "mlp.hidden=32", "--out", str(run), "--threads", "1",
                           "--no-progress"]))
    return run


def test_train_records_the_coupling(fm_run):
    cfg = json.loads((fm_run / "config.json").read_text())
    assert cfg["model"] == "flow_matching" and cfg["model_config"]["coupling"] == "ot"


@pytest.mark.parametrize("sampler,steps,nfe", [("euler", "3", 3), ("midpoint", "3", 6), ("heun", "2", 4)])
def test_sample_reports_each_solvers_nfe(fm_run, tmp_path, sampler, steps, nfe):
    res = ok(runner.invoke(app, ["sample", str(fm_run), "--n", "8", "--sampler", sampler, "--steps", steps,
                                 "--out", str(tmp_path / "s.png"), "--no-progress", "--threads", "1"]))
    assert last_json(res)["nfe"] == nfe


def test_evaluate_is_the_ode_likelihood_with_its_parts(fm_run):
    res = ok(runner.invoke(app, ["evaluate", str(fm_run), "--limit", "50", "--no-progress", "--threads", "1"]))
    info = json.loads(res.stdout)
    assert info["nll_kind"] == "estimate" and set(info["terms_bpd"]) == {"prior", "divergence"}
    assert info["bpd"] == pytest.approx(sum(info["terms_bpd"].values()), rel=1e-6)
    ode = json.loads(ok(runner.invoke(app, ["evaluate", str(fm_run), "--limit", "50", "--likelihood", "ode",
                                            "--no-progress", "--threads", "1"])).stdout)
    assert ode["bpd"] == pytest.approx(info["bpd"], abs=0.05)  # the same ODE, other dequantization/probe draws
    assert ode["estimator"]["nfe_mean"] > 0


def test_pictures_show_the_path_and_the_flow(fm_run):
    res = ok(runner.invoke(app, ["pictures", str(fm_run), "--threads", "1"]))
    names = {p.rsplit("/", 1)[-1] for p in json.loads(res.stdout.strip().splitlines()[-1])}
    assert {"path.png", "flow.png", "trajectories.png"} <= names
