"""End-to-end CLI: train → sample → evaluate → pictures on a tiny DDPM, resume, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from _cli import ok as _ok
from genmodels.cli import app

runner = CliRunner()

TINY = ["--T", "50", "--channels", "8", "--channel-mult", "1,2", "--num-res-blocks", "1", "--attn-levels", "1",
        "--batch-size", "16", "--log-every", "2", "--checkpoint-every", "3", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "ddpm"
    res = _ok(runner.invoke(app, ["train", "ddpm", "--data", "digits", "--out", str(run), "--steps", "6", *TINY]))
    info = json.loads(res.output.strip().splitlines()[-1])
    assert info["steps"] == 6
    return run


def test_train_writes_a_run_folder(trained_run):
    for name in ("config.json", "model.safetensors", "ema.safetensors", "train_state.pt", "metrics.jsonl"):
        assert (trained_run / name).is_file(), name
    cfg = json.loads((trained_run / "config.json").read_text())
    assert cfg["model"] == "ddpm" and cfg["model_config"]["schedule"]["T"] == 50
    assert cfg["model_config"]["unet"]["channel_mult"] == [1, 2]


def test_sample_writes_grid_and_array(trained_run, tmp_path):
    out = tmp_path / "g.png"
    res = _ok(runner.invoke(app, ["sample", str(trained_run), "--n", "4", "--sampler", "ddim", "--steps", "5",
                                  "--out", str(out), "--no-progress"]))
    info = json.loads(res.output)
    assert info["nfe"] == 5 and out.is_file()
    x = np.load(out.with_suffix(".npz"))["x"]
    assert x.shape == (4, 1, 8, 8) and np.isfinite(x).all()


def test_evaluate_prints_bound_with_parts(trained_run):
    res = _ok(runner.invoke(app, ["evaluate", str(trained_run), "--limit", "20", "--t-samples", "2",
                                  "--no-calibrate", "--no-progress"]))
    info = json.loads(res.output)
    assert info["nll_kind"] == "bound" and info["examples"] == 20
    assert set(info["terms_bpd"]) == {"prior", "diffusion", "reconstruction"}
    assert info["bpd"] == pytest.approx(sum(info["terms_bpd"].values()), rel=1e-6)
    assert info["bpd"] > 0 and info["bpd_stderr"] > 0
    assert (trained_run / "eval_test.json").is_file()


def test_evaluate_exact_matches_estimate_scale(trained_run):
    exact = json.loads(_ok(runner.invoke(app, ["evaluate", str(trained_run), "--limit", "4", "--exact",
                                               "--no-progress", "--out", str(trained_run / "e.json")])).output)
    assert exact["estimator"] == {"exact": True} and exact["examples"] == 4 and exact["bpd"] > 0


def test_pictures(trained_run):
    files = json.loads(_ok(runner.invoke(app, ["pictures", str(trained_run)])).output)
    names = {f.rsplit("/", 1)[-1] for f in files}
    assert {"forward.png", "reverse.png", "reverse.gif", "schedule.png", "loss.png"} <= names


def test_resume_continues_to_more_steps(trained_run):
    res = _ok(runner.invoke(app, ["train", "--out", str(trained_run), "--resume", "--steps", "8", "--no-progress"]))
    assert json.loads(res.output.strip().splitlines()[-1])["steps"] == 8


def test_train_refuses_to_overwrite(trained_run):
    res = runner.invoke(app, ["train", "ddpm", "--data", "digits", "--out", str(trained_run), "--steps", "2", *TINY])
    assert res.exit_code == 2 and "--resume" in res.output


@pytest.mark.parametrize("args, needle", [
    (["train", "ddpm", "--data", "nope"], "nope"),
    (["train", "ddpm", "--data", "npz:/does/not/exist.npz"], "exist.npz"),
    (["train", "ddpm", "--data", "digits", "--parameterization", "bogus"], "bogus"),
    (["train", "ddpm", "--data", "digits", "--channel-mult", "1,x"], "1,x"),
    (["sample", "/does/not/exist"], "exist"),
    (["evaluate", "/does/not/exist"], "exist"),
])
def test_bad_input_gets_one_clear_line(args, needle, tmp_path):
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "r")] if args[0] == "train" else args)
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output


def test_datasets_lists_embedded_and_patterns():
    out = _ok(runner.invoke(app, ["datasets"])).output
    for name in ("digits", "mnist5k", "fashion-mnist", "npz:", "moons"):
        assert name in out


def test_evaluate_nfe_sweep_writes_table_plot_and_json(trained_run, tmp_path, monkeypatch):
    monkeypatch.setenv("GENMODELS_CACHE", str(tmp_path / "cache"))  # the digits classifier trains in seconds
    res = _ok(runner.invoke(app, ["evaluate", str(trained_run), "--sampler", "ddim,heun[s_churn=5,s_noise=1],ode",
                                  "--nfe", "3,5;heun[s_churn=5,s_noise=1]=5",
                                  "--n", "20", "--tol", "1e-1", "--no-progress"]))
    info = json.loads(res.stdout if hasattr(res, "stdout") else res.output)
    rows = [(r["sampler"], r["nfe"]) for r in info["rows"]]
    assert rows[:3] == [("ddim", 3), ("ddim", 5), ("heun[s_churn=5,s_noise=1]", 5)] and rows[3][0] == "ode"
    assert all(r["quality"]["fd"] >= 0 and r["quality"]["n_samples"] == 20 for r in info["rows"])
    assert info["floor"]["fd_floor"] >= 0
    for name in ("sweep.json", "sweep.md", "sweep.png"):
        assert (trained_run / "nfe_sweep" / name).is_file(), name


def test_evaluate_ode_likelihood(trained_run):
    res = _ok(runner.invoke(app, ["evaluate", str(trained_run), "--likelihood", "ode", "--limit", "2",
                                  "--rtol", "1e-3", "--atol", "1e-3", "--no-progress"]))
    info = json.loads(res.output)
    assert info["likelihood"] == "ode" and info["examples"] == 2 and info["bpd"] > 0
    assert info["bpd"] == pytest.approx(sum(info["terms_bpd"].values()), rel=1e-6)
    assert (trained_run / "eval_test_ode.json").is_file()
    bad = runner.invoke(app, ["evaluate", str(trained_run), "--likelihood", "exactish"])
    assert bad.exit_code == 2 and "exactish" in bad.output


def test_toy_evaluation_reports_the_true_data_nll_beside_bound_and_ode(tmp_path):
    run = tmp_path / "toy"
    _ok(runner.invoke(app, ["train", "ddpm", "--data", "8gaussians", "--out", str(run), "--steps", "3", "--T", "50",
                            "--batch-size", "16", "--threads", "1", "--no-progress"]))
    bound = json.loads(_ok(runner.invoke(app, ["evaluate", str(run), "--limit", "50", "--no-progress"])).output)
    ode = json.loads(_ok(runner.invoke(app, ["evaluate", str(run), "--likelihood", "ode", "--limit", "50",
                                             "--rtol", "1e-3", "--atol", "1e-3", "--no-progress"])).output)
    for info in (bound, ode):
        # the true density of the 8-Gaussian mixture, on the same 50 points: ≈ 1 bit/dim
        assert 0.5 < info["true_data_bpd"] < 1.5 and info["true_data_bpd_stderr"] > 0
    assert bound["true_data_bpd"] == ode["true_data_bpd"]
    assert ode["nll_kind"] == "estimate" and ode["estimator"]["trace"] == "exact"


def test_default_config_clips_x0_only_for_discrete_data():
    from genmodels.data import load_dataset
    from genmodels.diffusion.ddpm import default_config

    assert default_config(load_dataset("digits").spec).clip_x0
    # the 8-Gaussian toy reaches radius 8/√33 ≈ 1.39: clipping x̂_0 to [−1, 1] would cut its modes
    assert not default_config(load_dataset("8gaussians").spec).clip_x0


def test_evaluate_calibrates_on_no_more_examples_than_it_evaluates(trained_run):
    """A 5-image evaluation calibrates its step proposal on 5 training images, not 128 (issue 15)."""
    small = json.loads(_ok(runner.invoke(app, ["evaluate", str(trained_run), "--limit", "5", "--no-progress",
                                               "--out", str(trained_run / "small.json")])).output)
    assert small["estimator"]["proposal"] == "calibrated on 5 training examples, 32 steps"
