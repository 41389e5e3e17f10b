"""VAE and HVAE through the command line and the ``binary:NAME`` datasets: train → evaluate (ELBO / IWAE-k) →
sample → pictures on tiny runs, ``--set`` and ``config``, resuming, and clear one-line errors."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from _cli import cli_error
from _cli import last_json as _last_json
from _cli import ok as _ok
from genmodels.cli import app
from genmodels.data import DataError, load_dataset
from genmodels.jobs import apply_overrides, model_config
from genmodels.nets.coders import CoderConfig
from genmodels.vae import HVAEConfig, VAEConfig

runner = CliRunner()
TINY = ["--batch-size", "16", "--log-every", "10", "--checkpoint-every", "15", "--threads", "1", "--no-progress"]


_error = cli_error


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("vae") / "run"
    res = _ok(runner.invoke(app, ["train", "vae", "--data", "binary:digits", "--out", str(run), "--steps", "30",
                                  "--set", "latent_dim=2", "--set", "coder.hidden=32", *TINY]))
    assert _last_json(res)["steps"] == 30
    return run


@pytest.fixture(scope="module")
def hvae_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("hvae") / "run"
    res = _ok(runner.invoke(app, ["train", "hvae", "--data", "digits", "--out", str(run), "--steps", "20",
                                  "--set", "latent_dims=4,2", "--set", "latent_hidden=16", "--set", "coder.hidden=32",
                                  "--set", "inference=bottom_up", *TINY]))
    assert _last_json(res)["steps"] == 20
    return run


# ---------------------------------------------------------------------------------------------- binary:NAME


def test_binary_digits_is_a_fixed_binarization_of_digits():
    inner, b = load_dataset("digits"), load_dataset("binary:digits")
    assert b.spec.n_bins == 2 and b.spec.name == "binary:digits" and b.spec.event_shape == inner.spec.event_shape
    assert b.train.shape == inner.train.shape and b.test.shape == inner.test.shape
    assert torch.equal(b.train_labels, inner.train_labels) and torch.equal(b.test_labels, inner.test_labels)
    for split in (b.train, b.test):
        assert set(split.unique().tolist()) == {-1.0, 1.0}
    again = load_dataset("binary:digits")
    assert torch.equal(again.train, b.train) and torch.equal(again.test, b.test)
    # each pixel is 1 with probability its intensity: means agree; black stays black, white stays white
    for x, xb in ((inner.train, b.train), (inner.test, b.test)):
        p, k = (x.double() + 1) / 2, (xb.double() + 1) / 2
        se = math.sqrt((p * (1 - p)).sum().item()) / p.numel()
        assert abs(k.mean().item() - p.mean().item()) < 5 * se + 1e-12
        assert (k[p == 0] == 0).all() and (k[p == 1] == 1).all()
    assert not torch.equal(b.train, torch.where(inner.train > 0, 1.0, -1.0))  # stochastic, not a threshold


@pytest.mark.parametrize("name, needle", [("binary:8gaussians", "continuous"),
                                          ("binary:binary:digits", "already binary")])
def test_binary_rejects_continuous_and_binary_data(name, needle):
    with pytest.raises(DataError, match=needle):
        load_dataset(name)


# ---------------------------------------------------------------------------------------------- configs


def test_model_config_applies_settings_to_the_family_preset():
    spec = load_dataset("digits").spec
    cfg = model_config("vae", spec, ["latent_dim=4", "coder.backbone=conv", "free_bits=0.25",
                                     "likelihood=discretized_gaussian"])
    assert isinstance(cfg, VAEConfig)
    assert (cfg.latent_dim, cfg.coder.backbone, cfg.free_bits, cfg.likelihood) == (4, "conv", 0.25,
                                                                                     "discretized_gaussian")
    h = model_config("hvae", spec, ["latent_dims=8,4,2", "inference=bottom_up"])
    assert isinstance(h, HVAEConfig) and h.latent_dims == (8, 4, 2) and h.inference == "bottom_up"
    assert model_config("hvae", spec, ["latent_dims=8"]).latent_dims == (8,)  # one number: a 1-tuple
    with pytest.raises(ValueError, match=r"loss.*VAEConfig has no field"):  # `train --loss elbo` is `--set loss=elbo`
        model_config("vae", spec, ["loss=elbo"])
    with pytest.raises(ValueError, match=r"unet.channels"):
        model_config("hvae", spec, ["unet.channels=16"])


@pytest.mark.parametrize("setting, needle", [
    ("nope=1", "latent_dim"),  # lists the known fields
    ("coder.nope=1", "hidden"),
    ("latent_dim", "key=value"),
    ("latent_dim=0", "latent_dim"),
    ("coder.backbone=resnet", "backbone"),
    ("objective=iwae", None),  # valid alone
])
def test_apply_overrides_errors_name_the_field(setting, needle):
    base = VAEConfig(latent_dim=3, coder=CoderConfig(hidden=8))
    if needle is None:
        assert apply_overrides(base, [setting]).objective == "iwae"
        return
    with pytest.raises(ValueError, match=needle):
        apply_overrides(base, [setting])


def test_apply_overrides_leaves_other_fields_and_the_original_alone():
    base = VAEConfig(latent_dim=3, coder=CoderConfig(hidden=8, depth=3))
    new = apply_overrides(base, ["coder.hidden=64", "kl_warmup_steps=100"])
    assert new.coder == CoderConfig(hidden=64, depth=3) and new.kl_warmup_steps == 100 and new.latent_dim == 3
    assert base.coder.hidden == 8 and base.kl_warmup_steps == 0


def test_config_command_prints_the_json_train_would_use():
    res = _ok(runner.invoke(app, ["config", "vae", "--data", "digits", "--set", "coder.backbone=conv"]))
    cfg = json.loads(res.output)
    assert cfg["coder"]["backbone"] == "conv" and "latent_dim" in cfg and "free_bits" in cfg
    cfg = json.loads(_ok(runner.invoke(app, ["config", "hvae", "--data", "digits", "--set", "latent_dims=6,3"])).output)
    assert cfg["latent_dims"] == [6, 3] and cfg["inference"] in ("top_down", "bottom_up")
    _error(["config", "vae", "--data", "digits", "--set", "nope=1"], "nope")


@pytest.mark.parametrize("extra, needles", [
    (["--set", "nope=1"], ["nope", "latent_dim"]),
    (["--channels", "16"], ["--channels", "has no field"]),
    (["--T", "50"], ["--T", "has no field"]),
    (["--set", "coder.backbone=conv", "--data", "8gaussians"], ["mlp"]),
    (["--set", "likelihood=bernoulli"], ["binary:digits"]),
])
def test_train_vae_rejects_bad_settings_with_one_clear_line(extra, needles, tmp_path):
    data = [] if "--data" in extra else ["--data", "digits"]
    _error(["train", "vae", *data, "--out", str(tmp_path / "r"), "--steps", "2", *extra, *TINY], *needles)
    assert not (tmp_path / "r" / "model.safetensors").exists()


# ---------------------------------------------------------------------------------------------- train, evaluate


def test_train_vae_writes_a_run_with_its_config_and_step_counter(vae_run):
    for name in ("config.json", "model.safetensors", "ema.safetensors", "train_state.pt", "metrics.jsonl"):
        assert (vae_run / name).is_file(), name
    cfg = json.loads((vae_run / "config.json").read_text())
    assert cfg["model"] == "vae" and cfg["data"] == "binary:digits"
    assert cfg["model_config"]["latent_dim"] == 2 and cfg["model_config"]["coder"]["hidden"] == 32
    from genmodels.checkpoint import from_pretrained

    model, _ = from_pretrained(vae_run, ema=False)
    assert model.likelihood == "bernoulli" and int(model.train_steps) == 30  # one per optimizer step
    losses = [json.loads(line)["loss"] for line in (vae_run / "metrics.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert losses and all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("k", [1, 5])
def test_evaluate_vae_reports_bound_parts_and_active_units(vae_run, k):
    res = _ok(runner.invoke(app, ["evaluate", str(vae_run), "--k", str(k), "--limit", "50", "--no-progress"]))
    info = json.loads(res.output)
    parts = {"reconstruction", "kl_z"} | ({"iwae_gap"} if k > 1 else set())
    assert set(info["terms_bpd"]) == parts
    assert info["bound"] == ("ELBO" if k == 1 else f"IWAE-{k}") and info["estimator"] == {"k": k}
    assert info["examples"] == 50 and info["nll_kind"] == "bound"
    for key in ("bpd", "bpd_stderr", "nats", "nats_stderr", "elbo_bpd", "elbo_nats"):
        assert math.isfinite(info[key]) and info[key] >= 0, key
    assert info["bpd"] == pytest.approx(sum(info["terms_bpd"].values()), rel=1e-9)
    assert info["nats"] == pytest.approx(info["bpd"] * 64 * math.log(2), rel=1e-9)
    assert info["elbo_bpd"] == pytest.approx(info["bpd"] - info["terms_bpd"].get("iwae_gap", 0.0), rel=1e-9)
    assert info["elbo_nats"] == pytest.approx(info["elbo_bpd"] * 64 * math.log(2), rel=1e-6)
    assert info["terms_nats"]["kl_z"] == pytest.approx(info["terms_bpd"]["kl_z"] * 64 * math.log(2), rel=1e-9)
    assert info["latent_dims"] == [2] and len(info["active_units"]) == 1 and 0 <= info["active_units"][0] <= 2
    name = "eval_test.json" if k == 1 else f"eval_test_iwae{k}.json"
    assert json.loads((vae_run / name).read_text())["bpd"] == info["bpd"]
    per = np.load(vae_run / name.replace(".json", ".npy"))
    assert per.shape == (50,) and per.dtype == np.float64
    assert per.mean() == pytest.approx(info["nats"], rel=1e-9)


def test_evaluate_rejects_k_below_one(vae_run):
    _error(["evaluate", str(vae_run), "--k", "0", "--limit", "5", "--no-progress"], "k")


def test_hvae_train_evaluate_sample_and_pictures(hvae_run):
    cfg = json.loads((hvae_run / "config.json").read_text())
    assert cfg["model"] == "hvae" and cfg["model_config"]["latent_dims"] == [4, 2]
    info = json.loads(_ok(runner.invoke(app, ["evaluate", str(hvae_run), "--k", "3", "--limit", "30",
                                              "--no-progress"])).output)
    assert set(info["terms_bpd"]) == {"reconstruction", "kl_z1", "kl_z2", "iwae_gap"}
    assert info["bpd"] == pytest.approx(sum(info["terms_bpd"].values()), rel=1e-9)
    assert info["latent_dims"] == [4, 2] and len(info["active_units"]) == 2
    assert 0 <= info["active_units"][0] <= 4 and 0 <= info["active_units"][1] <= 2
    out = hvae_run / "s.png"
    _ok(runner.invoke(app, ["sample", str(hvae_run), "--n", "6", "--out", str(out), "--no-progress"]))
    x = np.load(out.with_suffix(".npz"))["x"]
    assert out.is_file() and x.shape == (6, 1, 8, 8)
    np.testing.assert_allclose((x + 1) * 8, np.round((x + 1) * 8), atol=1e-5)  # on the 17-level grid
    names = {p.rsplit("/", 1)[-1] for p in json.loads(_ok(runner.invoke(app, ["pictures", str(hvae_run)])).output)}
    # z_2 is the only 2-D layer
    assert {"samples.png", "samples_mean.png", "reconstructions.png", "interpolation.png", "latent_z2.png"} <= names
    assert "latent_z1.png" not in names


# ---------------------------------------------------------------------------------------------- sample, pictures


@pytest.mark.parametrize("sampler", ["mean", "ancestral"])
def test_sample_vae_writes_a_png(vae_run, sampler, tmp_path):
    out = tmp_path / f"{sampler}.png"
    info = json.loads(_ok(runner.invoke(app, ["sample", str(vae_run), "--n", "12", "--sampler", sampler,
                                              "--batch-size", "5", "--out", str(out), "--no-progress"])).output)
    assert out.is_file() and out.stat().st_size > 0 and info["sampler"] == sampler and info["nfe"] == 1
    x = np.load(out.with_suffix(".npz"))["x"]
    assert x.shape == (12, 1, 8, 8) and np.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
    if sampler == "ancestral":
        assert set(np.unique(x).tolist()) <= {-1.0, 1.0}  # Bernoulli draws
    else:
        assert len(np.unique(x)) > 2  # the decoder's mean 2·sigmoid − 1


def test_sample_default_path_and_reproducible_seed(vae_run):
    a = json.loads(_ok(runner.invoke(app, ["sample", str(vae_run), "--n", "4", "--seed", "3", "--no-progress"])).output)
    assert a["picture"].endswith("samples/ancestral.png")
    xa = np.load(a["samples"])["x"]
    b = json.loads(_ok(runner.invoke(app, ["sample", str(vae_run), "--n", "4", "--seed", "3", "--no-progress"])).output)
    np.testing.assert_array_equal(xa, np.load(b["samples"])["x"])


def test_sample_vae_with_a_diffusion_sampler_is_refused(vae_run):
    _error(["sample", str(vae_run), "--sampler", "ddim", "--n", "2", "--no-progress"], "ancestral", "mean", "ddim")


def test_pictures_vae_with_a_2d_latent(vae_run):
    files = json.loads(_ok(runner.invoke(app, ["pictures", str(vae_run)])).output)
    names = {f.rsplit("/", 1)[-1] for f in files}
    assert {"reconstructions.png", "interpolation.png", "latent.png", "samples.png", "samples_mean.png",
            "loss.png"} <= names
    for f in files:
        assert (vae_run / "figures" / f.rsplit("/", 1)[-1]).stat().st_size > 0


def test_vae_on_a_2d_toy_trains_samples_and_draws_its_latent(tmp_path):
    run = tmp_path / "toy"
    _ok(runner.invoke(app, ["train", "vae", "--data", "8gaussians", "--out", str(run), "--steps", "5",
                            "--set", "latent_dim=2", "--set", "coder.hidden=16", *TINY]))
    info = json.loads(_ok(runner.invoke(app, ["evaluate", str(run), "--limit", "40", "--no-progress"])).output)
    assert info["bpd"] == pytest.approx(sum(info["terms_bpd"].values()), rel=1e-9)
    assert "true_data_bpd" in info  # the toy's own density, beside the bound
    names = {p.rsplit("/", 1)[-1] for p in json.loads(_ok(runner.invoke(app, ["pictures", str(run)])).output)}
    assert {"samples.png", "latent.png"} <= names


# ---------------------------------------------------------------------------------------------- resume


def test_resume_refuses_set(vae_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(vae_run, run)
    _error(["train", "vae", "--out", str(run), "--resume", "--steps", "40", "--set", "latent_dim=3",
            "--no-progress"], "--set")


def test_resume_vae_continues_with_its_step_counter(vae_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(vae_run, run)
    res = _ok(runner.invoke(app, ["train", "vae", "--out", str(run), "--resume", "--steps", "40", *TINY]))
    assert _last_json(res)["steps"] == 40
    from genmodels.checkpoint import from_pretrained

    for ema in (False, True):
        model, _ = from_pretrained(run, ema=ema)
        assert int(model.train_steps) == 40, ema  # the warm-up counter is saved and resumed
