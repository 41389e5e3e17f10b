"""Exact-likelihood families (flows, PixelCNN) through the command line on tiny runs: train → evaluate (exact
bits/dim whose parts sum) → sample (the family's one sampler, --temperature) → pictures (2-D density map, sample grids);
the 1-D sequence writer; clear one-line errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from _cli import cli_error
from _cli import last_json as _last_json
from _cli import ok as _ok
from genmodels.cli import app
from genmodels.core import DataSpec
from genmodels.viz import save_samples

runner = CliRunner()
TINY = ["--batch-size", "16", "--log-every", "10", "--threads", "1", "--no-progress", "--sample-every", "0"]


@pytest.fixture(scope="module")
def flow_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("realnvp") / "run"
    _ok(runner.invoke(app, ["train", "realnvp", "--data", "8gaussians", "--out", str(run), "--steps", "30",
                            "--lr", "1e-3", "--set", "n_couplings=2", "--set", "net.hidden=16", *TINY]))
    return run


@pytest.fixture(scope="module")
def pixelcnn_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("pixelcnn") / "run"
    _ok(runner.invoke(app, ["train", "pixelcnn", "--data", "digits", "--out", str(run), "--steps", "5",
                            "--set", "net.n_layers=2", "--set", "net.channels=8", "--set", "net.head_channels=8",
                            *TINY]))
    return run


def test_flow_evaluate_is_exact_and_its_parts_sum(flow_run):
    res = _ok(runner.invoke(app, ["evaluate", str(flow_run), "--limit", "200", "--no-progress"]))
    out = json.loads(res.output)
    assert out["nll_kind"] == "exact" and out["examples"] == 200
    assert math.isfinite(out["bpd"]) and out["bpd_stderr"] > 0
    assert sum(out["terms_bpd"].values()) == pytest.approx(out["bpd"], abs=1e-6)
    assert "true_data_bpd" in out  # 8gaussians has a closed-form density: the model's NLL sits beside the true one


def test_flow_sample_inverse_with_temperature(flow_run):
    cold = _last_json(_ok(runner.invoke(app, ["sample", str(flow_run), "--n", "300", "--temperature", "0.5",
                                              "--no-progress"])))
    warm = _last_json(_ok(runner.invoke(app, ["sample", str(flow_run), "--n", "300", "--no-progress"])))
    assert cold["sampler"] == warm["sampler"] == "inverse" and cold["nfe"] == 1 and cold["temperature"] == 0.5
    assert cold["picture"].endswith("inverse_t0.5.png") and warm["picture"].endswith("inverse.png")
    x_cold, x_warm = np.load(cold["samples"])["x"], np.load(warm["samples"])["x"]
    assert x_cold.shape == x_warm.shape == (300, 2)
    # a flow at initialization is near the identity map of the base: a colder base gives a tighter cloud
    assert x_cold.std() < x_warm.std()


def test_flow_pictures_density_map(flow_run):
    paths = json.loads(_ok(runner.invoke(app, ["pictures", str(flow_run)])).output)
    names = {p.rsplit("/", 1)[-1] for p in paths}
    assert {"density.png", "samples.png", "loss.png"} <= names
    with Image.open(next(p for p in paths if p.endswith("density.png"))) as im:
        assert im.size[0] > im.size[1]  # the true density beside the model's


def test_flow_sampler_errors(flow_run):
    cli_error(["sample", str(flow_run), "--sampler", "ddim"], "samples with inverse")
    cli_error(["sample", str(flow_run), "--steps", "10"], "--steps does not apply")
    cli_error(["sample", str(flow_run), "--temperature", "0"], "--temperature must be > 0")


def test_pixelcnn_evaluate_sample_and_pictures(pixelcnn_run):
    out = json.loads(_ok(runner.invoke(app, ["evaluate", str(pixelcnn_run), "--limit", "50", "--no-progress"])).output)
    assert out["nll_kind"] == "exact" and list(out["terms_bpd"]) == ["autoregressive"]
    # 17 levels: a model no better than uniform gives log2(17) ≈ 4.09 bits/dim; 5 steps are far from learning much
    assert 0 < out["bpd"] < 6
    res = _last_json(_ok(runner.invoke(app, ["sample", str(pixelcnn_run), "--n", "4", "--no-progress"])))
    assert res["sampler"] == "ancestral" and res["nfe"] == 64  # one pass per pixel of an 8×8 image
    x = torch.from_numpy(np.load(res["samples"])["x"])
    k = (x + 1) * 16 / 2
    assert torch.allclose(k, k.round(), atol=1e-5)  # exact bin values
    paths = json.loads(_ok(runner.invoke(app, ["pictures", str(pixelcnn_run)])).output)
    assert {"samples.png", "samples_t0.7.png"} <= {p.rsplit("/", 1)[-1] for p in paths}


def test_temperature_refused_for_other_families(tmp_path):
    run = tmp_path / "ebm"
    _ok(runner.invoke(app, ["train", "ebm", "--data", "moons", "--out", str(run), "--steps", "2", *TINY]))
    cli_error(["sample", str(run), "--temperature", "0.7"], "got temperature")


def test_save_samples_writes_wav_only_for_audio(tmp_path):
    x = torch.rand(3, 1, 64) * 2 - 1
    speech = save_samples(x, DataSpec("speech", (1, 64), 256, sample_rate=8000), tmp_path / "s.png")
    assert [p.suffix for p in speech] == [".png", ".wav", ".wav", ".wav"] and all(p.is_file() for p in speech)
    other = save_samples(x, DataSpec("npz:mine", (1, 64), 256), tmp_path / "o.png")
    assert [p.suffix for p in other] == [".png"]
