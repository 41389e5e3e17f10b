"""Tests for the families' pictures (``genmodels.<family>.figures.write_figures``) and
:func:`genmodels.viz.save_samples`: on untrained, shrunken preset models, every expected file is written, non-empty
and readable, and nothing else (the loss curve is the caller's)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
from dataclasses import replace

import pytest
import torch
from PIL import Image

import genmodels
from genmodels.core import DataSpec
from genmodels.data import Dataset, load_dataset
from genmodels.viz import save_samples

FAMILY = {"ddpm": "diffusion", "vdm": "diffusion", "vae": "vae", "hvae": "vae", "ebm": "score", "ncsn": "score",
          "nice": "flows", "realnvp": "flows", "glow": "flows", "pixelcnn": "autoregressive",
          "wavenet": "autoregressive"}
"""Model name -> the package whose ``figures`` module draws it."""


def _small(name: str, cfg, spec):
    """The preset ``cfg`` with its sampler shortened so a test stays around a second."""
    if name == "ddpm":
        return replace(cfg, schedule=replace(cfg.schedule, T=50))
    if name == "vdm":
        return replace(cfg, sample_steps=20)
    if name == "ebm":
        return replace(cfg, sample_steps=50)
    if name == "ncsn":
        return replace(cfg, n_sigmas=4, sample_steps_each=5)
    if name == "vae" and spec.event_shape == (2,):
        return replace(cfg, latent_dim=2)  # draws latent.png as well
    return cfg


def _model(name: str, spec):
    """An untrained, shrunken preset model in eval mode (seeded weights)."""
    entry = genmodels.MODELS.get(name)
    torch.manual_seed(0)
    model = entry.build(_small(name, entry.preset(spec), spec), spec).eval()
    return model, importlib.import_module(f"genmodels.{FAMILY[name]}.figures")


def _check_pictures(paths, out, names):
    """``paths`` are exactly ``out/NAME`` for ``names``, in order, each a non-empty image Pillow can read."""
    assert [p.name for p in paths] == names
    for p in paths:
        assert p.parent == out and p.is_file() and p.stat().st_size > 0
        with Image.open(p) as im:
            im.verify()
            assert im.format == ("GIF" if p.suffix == ".gif" else "PNG")


CASES = [
    ("ddpm", "digits", ["forward.png", "reverse.png", "reverse.gif", "schedule.png"]),
    ("ddpm", "moons", ["forward.png", "reverse.png", "schedule.png"]),
    ("vdm", "moons", ["forward.png", "reverse.png", "schedule.png"]),
    ("vae", "digits", ["samples_mean.png", "samples.png", "reconstructions.png", "interpolation.png"]),
    ("vae", "moons", ["samples.png", "latent.png"]),
    ("ebm", "moons", ["samples.png", "langevin.png", "trajectories.png", "score_field.png"]),
    ("ncsn", "moons", ["samples.png", "langevin.png", "trajectories.png", "score_field.png"]),
    ("realnvp", "moons", ["density.png", "samples.png"]),
    ("nice", "digits", ["samples.png", "samples_t0.7.png"]),
    ("pixelcnn", "digits", ["samples.png", "samples_t0.7.png"]),
]


@pytest.mark.parametrize(("name", "data_name", "names"), CASES, ids=[f"{m}-{d}" for m, d, _ in CASES])
def test_write_figures_writes_the_family_pictures(tmp_path, name, data_name, names):
    data = load_dataset(data_name)
    model, figures = _model(name, data.spec)
    out = tmp_path / "figures"
    paths = figures.write_figures(model, data, out, torch.Generator().manual_seed(0))
    _check_pictures(paths, out, names)
    assert sorted(p.name for p in out.iterdir()) == sorted(names)  # no loss curve, nothing left behind


def test_write_figures_is_a_function_of_the_generator(tmp_path):
    data = load_dataset("moons")
    model, figures = _model("realnvp", data.spec)
    a = figures.write_figures(model, data, tmp_path / "a", torch.Generator().manual_seed(3))
    b = figures.write_figures(model, data, tmp_path / "b", torch.Generator().manual_seed(3))
    for pa, pb in zip(a, b, strict=True):
        with Image.open(pa) as ia, Image.open(pb) as ib:
            assert ia.tobytes() == ib.tobytes()


def test_autoregressive_figures_of_audio_sequences(tmp_path):
    spec = DataSpec("tones", (1, 16), 256, sample_rate=8000)
    entry = genmodels.MODELS.get("wavenet")
    torch.manual_seed(0)
    cfg = replace(entry.preset(spec), residual_channels=8, skip_channels=8, n_cycles=1, cycle_length=4)
    model = entry.build(cfg, spec).eval()
    x = torch.zeros(4, 1, 16)
    from genmodels.autoregressive.figures import write_figures

    paths = write_figures(model, Dataset(spec, x, x), tmp_path, torch.Generator().manual_seed(0))
    assert [p.name for p in paths] == ["samples.png"] + [f"samples_{i}.wav" for i in range(8)]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)


def test_langevin_updates_is_the_nfe_less_the_final_denoising():
    from genmodels.score.figures import langevin_updates

    spec = load_dataset("moons").spec
    ebm, _ = _model("ebm", spec)
    ncsn, _ = _model("ncsn", spec)
    assert langevin_updates(ebm) == ebm.config.sample_steps  # K (the DSM model's +1 is the denoising step)
    assert langevin_updates(replace_loss(ebm, "ssm")) == ebm.config.sample_steps
    assert langevin_updates(ncsn) == ncsn.config.n_sigmas * ncsn.config.sample_steps_each  # L·T


def replace_loss(ebm, loss_type: str):
    """The same EBM with another ``loss_type`` (a model not trained by DSM has no final denoising)."""
    entry = genmodels.MODELS.get("ebm")
    return entry.build(replace(ebm.config, loss_type=loss_type), ebm.spec)


def test_kde_score_is_tweedie_and_the_gradient_of_its_log_density():
    from genmodels.score.figures import kde

    g = torch.Generator().manual_seed(0)
    pts, at = torch.randn(50, 2, generator=g), torch.randn(7, 2, generator=g).double().requires_grad_(True)
    log_q = kde(pts, at, 0.3)
    (grad,) = torch.autograd.grad(log_q.sum(), at)
    assert torch.allclose(kde(pts, at.detach(), 0.3, score=True), grad, atol=1e-8)
    # a single point: q = N(x_1, σ² I) exactly
    one = torch.tensor([[0.5, -1.0]])
    x = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(kde(one, x, 2.0), torch.distributions.Normal(one.double(), 2.0).log_prob(x).sum(1))


def test_true_score_matches_the_gaussians():
    from genmodels.score.figures import true_score

    at = torch.tensor([[0.3, -0.2], [1.0, 1.0]])
    s = true_score("8gaussians", at)
    assert s.shape == (2, 2) and s.dtype == torch.float64 and torch.isfinite(s).all()


# ------------------------------------------------------------------------------------------ viz.save_samples


def test_save_samples_images_points_and_sequences(tmp_path):
    img = torch.rand(5, 1, 8, 8) * 2 - 1
    (p,) = save_samples(img, DataSpec("digits", (1, 8, 8), 17), tmp_path / "img.png")
    with Image.open(p) as im:
        assert im.size[0] > 8 * 8 * 2  # tiles upscaled to about 64 px
    (p,) = save_samples(torch.randn(100, 2), DataSpec("moons", (2,)), tmp_path / "pts.png")
    assert p.is_file()
    seq = torch.rand(3, 1, 64) * 2 - 1
    (p,) = save_samples(seq, DataSpec("npz:mine", (1, 64), 256), tmp_path / "seq.png")  # not audio: picture only
    assert p.is_file() and not list(tmp_path.glob("seq_*.wav"))


def test_save_samples_audio_writes_wavs_beside_the_picture(tmp_path):
    x = torch.rand(10, 1, 64) * 2 - 1
    spec = DataSpec("speech", (1, 64), 256, sample_rate=8000)
    paths = save_samples(x, spec, tmp_path / "s.png")
    assert [p.name for p in paths] == ["s.png"] + [f"s_{i}.wav" for i in range(8)]  # the first 8
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)


def test_speech_spec_declares_its_sample_rate(monkeypatch):
    import numpy as np

    from genmodels.data import speech

    fake = types.SimpleNamespace(codes=np.random.default_rng(0).integers(0, 256, (4, 1, 32)),
                                 test_mask=np.array([False, False, False, True]))
    monkeypatch.setattr(speech, "speech_corpus", lambda n: fake)  # the real corpus needs espeak-ng
    assert speech.load_speech().spec.sample_rate == speech.SAMPLE_RATE == 8000


def test_import_genmodels_loads_no_figures_module():
    code = ("import sys, genmodels; genmodels.MODELS; "
            "print([m for m in sys.modules if m.endswith('.figures') or m == 'matplotlib'])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"
