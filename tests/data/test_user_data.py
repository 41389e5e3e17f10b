"""The user's own data, honestly (issue 15): transparency in ``folder:`` images, the data a run was trained on
(resolved source and fingerprint), 1-D series from ``npz:FILE?layout=sequence`` and ``wav:DIR``, and the messages.

Every file is built here in ``tmp_path``: RGBA PNGs whose transparent pixels hide a colour, LA and palette images
with transparency, ``[N, L]`` float and integer series, WAV files (scipy.io.wavfile), random bytes named ``.npz``."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import wavfile

from _cli import cli_error, last_json, ok, runner
from genmodels.checkpoint import RunConfig, load_run_config
from genmodels.cli import app
from genmodels.core import DataSpec
from genmodels.data import (
    DataError,
    DataFingerprint,
    Quantization,
    holdout_split,
    list_datasets,
    load_dataset,
    resolve_source,
    unscale_discrete,
)

HIDDEN = (255, 0, 0)  # the colour transparent pixels hide


def levels_of(x: torch.Tensor) -> np.ndarray:
    return unscale_discrete(x, 256).numpy()


def all_levels(ds) -> np.ndarray:
    return levels_of(torch.cat([ds.train, ds.test]))


def rgba_images(folder: Path, n: int = 5, size: int = 6) -> Path:
    """``n`` RGBA PNGs: transparent (alpha 0) pixels of colour HIDDEN around an opaque blue square."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        a = np.zeros((size, size, 4), np.uint8)
        a[..., :3] = HIDDEN
        a[2:4, 2:4] = (0, 0, 255, 255)
        a[0, 0] = (0, 255, 0, 128)  # half transparent green
        Image.fromarray(a, "RGBA").save(folder / f"rgba{i}.png")
    return folder


def error_of(name: str) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(name)
    return str(info.value)


# ----------------------------------------------------------------------------- alpha and channels


def test_rgba_is_composited_over_white_by_default_and_says_so(tmp_path, caplog):
    folder = rgba_images(tmp_path / "faces")
    with caplog.at_level(logging.INFO, logger="genmodels.data"):
        ds = load_dataset(f"folder:{folder}")
    assert ds.spec.event_shape == (3, 6, 6)
    k = all_levels(ds)  # [N, 3, H, W]
    assert (k[:, :, 5, 5] == 255).all()  # transparent: white, not the hidden red
    assert (k[:, :, 2, 2] == [0, 0, 255]).all()  # opaque: as drawn
    assert (k[:, :, 0, 0] == [127, 255, 127]).all()  # half-transparent green over white: (c·a + 255(255 − a))/255
    lines = [r.getMessage() for r in caplog.records if "composited" in r.getMessage()]
    assert lines == [f"folder:{folder}: composited 5 RGBA images over white; pass ?alpha=keep to model transparency"]


def test_alpha_keep_and_black_background(tmp_path, caplog):
    folder = rgba_images(tmp_path / "faces")
    keep = load_dataset(f"folder:{folder}?alpha=keep")
    assert keep.spec.event_shape == (4, 6, 6) and keep.spec.name == f"folder:{folder}?alpha=keep"
    k = all_levels(keep)
    assert (k[:, 3, 5, 5] == 0).all() and (k[:, 3, 2, 2] == 255).all() and (k[:, 3, 0, 0] == 128).all()
    assert (k[:, :3, 5, 5] == HIDDEN).all()  # kept: the colour is there, and its alpha says it is invisible
    black = all_levels(load_dataset(f"folder:{folder}?alpha=composite&background=black"))
    assert (black[:, :, 5, 5] == 0).all() and (black[:, :, 0, 0] == [0, 128, 0]).all()


def test_grey_alpha_stays_grey(tmp_path):
    folder = tmp_path / "grey"
    folder.mkdir()
    for i in range(4):
        la = np.zeros((5, 5, 2), np.uint8)
        la[..., 0], la[..., 1] = 40, 255
        la[0] = (200, 0)  # a transparent row hiding level 200
        Image.fromarray(la, "LA").save(folder / f"la{i}.png")
    ds = load_dataset(f"folder:{folder}")
    assert ds.spec.event_shape == (1, 5, 5)  # not 3-channel RGB
    k = all_levels(ds)
    assert (k[:, 0, 0] == 255).all() and (k[:, 0, 1:] == 40).all()
    kept = load_dataset(f"folder:{folder}?alpha=keep")
    assert kept.spec.event_shape == (2, 5, 5)
    assert (all_levels(kept)[:, 1, 0] == 0).all()


def test_palette_transparency_is_silent_and_follows_the_rule(tmp_path):
    folder = tmp_path / "pal"
    folder.mkdir()
    for i in range(3):
        p = Image.new("P", (4, 4))
        p.putpalette([*HIDDEN, 0, 255, 0] + [0] * 762)
        p.putpixel((1, 1), 1)
        p.save(folder / f"p{i}.png", transparency=bytes([0, 255]) if i else bytes([0, 128]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's "Palette images with Transparency expressed in bytes ..." warning
        ds = load_dataset(f"folder:{folder}")
        kept = load_dataset(f"folder:{folder}?alpha=keep")
    assert ds.spec.event_shape == (3, 4, 4) and kept.spec.event_shape == (4, 4, 4)
    k = all_levels(ds)
    assert (k[:, :, 0, 0] == 255).all()  # palette entry 0 is transparent: white, not red
    assert sorted(map(tuple, k[:, :, 1, 1].tolist())) == [(0, 255, 0), (0, 255, 0), (127, 255, 127)]  # α 255, 255, 128


def test_mixed_folder_with_keep_gives_opaque_alpha_to_the_others(tmp_path):
    folder = rgba_images(tmp_path / "mixed", n=2)
    Image.fromarray(np.full((6, 6), 90, np.uint8)).save(folder / "zz_grey.png")
    Image.fromarray(np.full((6, 6, 3), 30, np.uint8)).save(folder / "zz_rgb.png")
    ds = load_dataset(f"folder:{folder}?alpha=keep")
    assert ds.spec.event_shape == (4, 6, 6)
    both = torch.cat([ds.train, ds.test])
    order = np.concatenate(holdout_split(4))
    k = levels_of(both[np.argsort(order)])  # back in file order
    assert (k[2, :3] == 90).all() and (k[2, 3] == 255).all()  # grey → RGB, opaque
    assert (k[3, 3] == 255).all()
    assert load_dataset(f"folder:{folder}").spec.event_shape == (3, 6, 6)


def test_folder_without_alpha_is_unchanged_and_bad_options_are_named(tmp_path, caplog):
    folder = tmp_path / "plain"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((4, 4), 10 * i, np.uint8)).save(folder / f"{i}.png")
    with caplog.at_level(logging.INFO, logger="genmodels.data"):
        assert load_dataset(f"folder:{folder}").spec.event_shape == (1, 4, 4)
        assert load_dataset(f"folder:{folder}?alpha=keep").spec.event_shape == (1, 4, 4)  # nothing to keep
    assert not [r for r in caplog.records if "alpha" in r.getMessage()]
    assert "not one of composite, keep" in error_of(f"folder:{folder}?alpha=drop")
    msg = error_of(f"folder:{folder}?colour=1")
    assert "unknown option 'colour'" in msg and "alpha=composite|keep" in msg
    assert "given twice" in error_of(f"folder:{folder}?alpha=keep&alpha=keep")
    listing = dict(list_datasets())["folder:DIR"]
    assert "alpha=composite|keep" in listing and "default white" in listing


def test_npz_rgba_keeps_four_channels(tmp_path):
    f = tmp_path / "rgba.npz"
    np.savez(f, x=np.zeros((5, 6, 6, 4), np.uint8))
    assert load_dataset(f"npz:{f}").spec.event_shape == (4, 6, 6)  # arrays are taken as they are (documented)


# ----------------------------------------------------------------------------- sequences


def sine_series(n: int = 60, length: int = 64, seed: int = 0) -> np.ndarray:
    t = np.arange(n * length).reshape(n, length) / 5.0
    return 3.0 * np.sin(t) + 10.0 + 0.2 * np.random.RandomState(seed).randn(n, length)


def test_npz_float_series_become_uniform_levels_with_their_inverse(tmp_path, caplog):
    x = sine_series()
    f = tmp_path / "series.npz"
    np.savez(f, x=x)
    with caplog.at_level(logging.INFO, logger="genmodels.data"):
        ds = load_dataset(f"npz:{f}?layout=sequence")
    assert ds.spec == DataSpec(f"npz:{f}?layout=sequence", (1, 64), 256)
    assert (ds.n_train, ds.n_test) == (54, 6)
    q = ds.quantization
    assert q.kind == "uniform" and q.n_bins == 256
    assert (q.low, q.high) == (x.min(), x.max())
    tr, _ = holdout_split(60)
    back = q.to_user(ds.train)
    assert back.shape == (54, 64)
    assert np.abs(back - x[tr]).max() <= (x.max() - x.min()) / 255 / 2 + 1e-9  # at most half a bin
    line = next(r.getMessage() for r in caplog.records if "series" in r.getMessage())
    assert "60 series of 64 steps" in line and "256 uniform levels" in line and "x_user" in line
    assert Quantization.from_json(json.loads(json.dumps(q.to_json()))) == q
    assert load_dataset(f"npz:{f}").spec.event_shape == (64,)  # without the option: vectors, as before


def test_npz_mulaw_and_integer_levels(tmp_path):
    f = tmp_path / "audio.npz"
    a = 0.5 * np.sin(np.arange(40 * 32) / 3.0).reshape(40, 32)
    np.savez(f, x=a.astype(np.float32))
    ds = load_dataset(f"npz:{f}?layout=sequence&quantize=mulaw&levels=64")
    assert ds.spec.n_bins == 64 and ds.quantization.kind == "mu_law"
    assert ds.quantization.scale == pytest.approx(np.abs(a).max(), rel=1e-6)
    assert np.abs(ds.quantization.to_user(ds.train)).max() <= ds.quantization.scale + 1e-9
    ints = tmp_path / "ints.npz"
    k = np.random.RandomState(0).randint(0, 10, (30, 16))
    np.savez(ints, x=k)
    ds = load_dataset(f"npz:{ints}?layout=sequence")
    assert ds.spec.n_bins == 10 and ds.quantization.kind == "levels"
    tr, _ = holdout_split(30)
    assert np.array_equal(ds.quantization.to_user(ds.train), k[tr])  # the user's levels, exactly
    assert load_dataset(f"npz:{ints}?layout=sequence&levels=16").spec.n_bins == 16
    np.savez(ints, x=k[:, None, :])  # [N, 1, L] too
    assert load_dataset(f"npz:{ints}?layout=sequence").spec.event_shape == (1, 16)


def test_npz_sequence_errors_name_the_fix(tmp_path):
    neg = tmp_path / "neg.npz"
    np.savez(neg, x=np.arange(-3, 29).reshape(2, 16))
    msg = error_of(f"npz:{neg}?layout=sequence")
    assert "neg.npz" in msg and "down to -3" in msg and "quantize=uniform" in msg
    assert load_dataset(f"npz:{neg}?layout=sequence&quantize=uniform").spec.n_bins == 256
    big = tmp_path / "big.npz"
    np.savez(big, x=np.arange(32).reshape(2, 16))
    assert "levels=8 allows 0..7" in error_of(f"npz:{big}?layout=sequence&levels=8")
    img = tmp_path / "img.npz"
    np.savez(img, x=np.zeros((4, 3, 5, 5)))
    msg = error_of(f"npz:{img}?layout=sequence")
    assert "img.npz" in msg and "[N, L]" in msg and "[4, 3, 5, 5]" in msg
    assert "add layout=sequence" in error_of(f"npz:{big}?quantize=mulaw")
    flat = tmp_path / "flat.npz"
    np.savez(flat, x=np.ones((3, 8)))
    assert "constant" in error_of(f"npz:{flat}?layout=sequence")


def write_wav(path: Path, seconds: float, rate: int = 8000, channels: int = 1) -> np.ndarray:
    n = int(seconds * rate)
    y = 0.6 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)
    pcm = np.round(y * 32767).astype(np.int16)
    wavfile.write(path, rate, np.stack([pcm] * channels, axis=1) if channels > 1 else pcm)
    return pcm


def test_wav_folder_cuts_windows_split_by_file(tmp_path, caplog):
    folder = tmp_path / "wavs"
    folder.mkdir()
    for i in range(5):
        write_wav(folder / f"clip{i}.wav", 0.3 + 0.1 * i)  # 2400 … 5600 samples
    write_wav(folder / "stereo.wav", 0.3, channels=2)
    with caplog.at_level(logging.INFO, logger="genmodels.data"):
        ds = load_dataset(f"wav:{folder}?length=1024")
    assert ds.spec.event_shape == (1, 1024) and ds.spec.n_bins == 256 and ds.spec.sample_rate == 8000
    windows = sum(int((0.3 + 0.1 * i) * 8000) // 1024 for i in range(5)) + 2400 // 1024
    assert ds.n_train + ds.n_test == windows and ds.n_test >= 1
    q = ds.quantization
    assert q.kind == "mu_law" and q.scale == 1.0
    assert np.abs(q.to_user(ds.train)).max() == pytest.approx(0.6, abs=0.02)  # the amplitude, full scale ±1
    line = next(r.getMessage() for r in caplog.records if "WAV" in r.getMessage())
    assert "6 WAV file(s) at 8000 Hz" in line and "mixed to mono" in line and "windows of 1024" in line
    assert "split by file" in line
    assert load_dataset(f"wav:{folder}").spec.event_shape == (1, 2048)  # the stated default


def test_wav_errors(tmp_path):
    folder = tmp_path / "w"
    folder.mkdir()
    write_wav(folder / "a.wav", 0.1)
    write_wav(folder / "b.wav", 0.1, rate=16000)
    msg = error_of(f"wav:{folder}")
    assert "a.wav" in msg and "b.wav" in msg and "8000 Hz" in msg and "16000 Hz" in msg and "sox" in msg
    (folder / "b.wav").unlink()
    msg = error_of(f"wav:{folder}")  # 800 samples < 2048
    assert "the longest has 800" in msg and "?length=800" in msg
    (folder / "c.wav").write_bytes(b"RIFF garbage")
    assert "c.wav" in error_of(f"wav:{folder}?length=100")
    (tmp_path / "empty").mkdir()
    assert "no .wav files" in error_of(f"wav:{tmp_path / 'empty'}")
    assert "must be an integer" in error_of(f"wav:{folder}?length=many")


# ----------------------------------------------------------------------------- garbage, identity


def test_garbage_npz_says_it_is_not_an_npz(tmp_path):
    f = tmp_path / "garbage.npz"
    f.write_bytes(np.random.RandomState(0).bytes(256))
    msg = error_of(f"npz:{f}")
    assert "garbage.npz is not a valid .npz file" in msg and "numpy.savez" in msg and "pickle" not in msg
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04" + bytes(60))
    assert "broken.npz is not a valid .npz file" in error_of(f"npz:{broken}")


def test_resolve_source_and_fingerprint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rgba_images(tmp_path / "faces")
    rest = "&resize=none&crop=none&flip=false&stream=auto"  # every option written out
    assert resolve_source("folder:faces") == f"folder:{tmp_path / 'faces'}?alpha=composite&background=white{rest}"
    assert resolve_source("folder:faces?alpha=keep") == f"folder:{tmp_path / 'faces'}?alpha=keep&background=white{rest}"
    assert resolve_source("binary:idx:d") == f"binary:idx:{tmp_path / 'd'}"
    assert resolve_source("digits") == "digits" and resolve_source("moons") == "moons"
    a = DataFingerprint.of(load_dataset("folder:faces"))
    assert a == DataFingerprint.of(load_dataset(f"folder:{tmp_path / 'faces'}"))
    assert DataFingerprint.from_json(json.loads(json.dumps(a.to_json()))) == a
    rgba_images(tmp_path / "faces", n=7)
    b = DataFingerprint.of(load_dataset("folder:faces?alpha=keep"))
    assert a.changes(b) == ["shape (3,6,6) → (4,6,6)", "5 → 7 images"]
    assert a.changes(a) == []


def test_old_config_without_data_identity_still_loads(tmp_path):
    from _toy_model import TOY_NAME, TOY_SPEC, ToyConfig

    d = RunConfig(model=TOY_NAME, model_config=ToyConfig(), data="toy", spec=TOY_SPEC).to_json()
    assert not {"data_source", "data_fingerprint", "data_quantization"} & set(d)
    rc = RunConfig.from_json(d)
    assert rc.data_source is None and rc.data_fingerprint is None and rc.data_quantization is None


# ----------------------------------------------------------------------------- through the command line

FAST = ["--batch-size", "8", "--sample-every", "0", "--checkpoint-every", "2", "--log-every", "1", "--threads", "1",
        "--no-progress"]


def test_wavenet_on_a_users_series_trains_and_samples_in_their_units(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.savez("series.npz", x=sine_series(40, 32))
    cli_error(["train", "wavenet", "--data", "npz:series.npz", "--out", "runs/bad", "--steps", "1", *FAST],
              "WaveNet", "--data 'npz:series.npz?layout=sequence'", "[N, L]")
    ok(runner.invoke(app, ["train", "wavenet", "--data", "npz:series.npz?layout=sequence", "--out", "runs/wn",
                           "--steps", "2", "--set", "residual_channels=8", "--set", "skip_channels=8", *FAST]))
    cfg = json.loads(Path("runs/wn/config.json").read_text())
    assert cfg["data"] == "npz:series.npz?layout=sequence"
    assert cfg["data_source"] == f"npz:{tmp_path / 'series.npz'}?layout=sequence&quantize=auto&levels=auto"
    assert cfg["data_fingerprint"]["event_shape"] == [1, 32] and cfg["data_fingerprint"]["n_bins"] == 256
    assert cfg["data_quantization"]["kind"] == "uniform"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = last_json(ok(runner.invoke(app, ["sample", str(tmp_path / "runs/wn"), "--n", "3", "--no-progress"])))
    assert "x_user" in res["units"] and "256 uniform levels" in res["units"]
    z = np.load(res["samples"])
    x = sine_series(40, 32)
    assert z["x"].shape == (3, 1, 32) and z["x_user"].shape == (3, 32)
    assert x.min() - 1e-9 <= z["x_user"].min() and z["x_user"].max() <= x.max() + 1e-9  # the user's units
    ev = json.loads(ok(runner.invoke(app, ["evaluate", str(tmp_path / "runs/wn"), "--limit", "2",
                                           "--no-progress"])).stdout)
    assert ev["examples"] == 2 and np.isfinite(ev["bpd"])


@pytest.fixture
def image_run(tmp_path, monkeypatch):
    """A tiny NICE trained on a relative ``folder:faces`` of RGBA images, from ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    rgba_images(tmp_path / "faces", n=20, size=4)
    ok(runner.invoke(app, ["train", "nice", "--data", "folder:faces", "--out", "runs/nice", "--steps", "2",
                           "--set", "n_couplings=2", "--set", "net.hidden=16", *FAST]))
    return tmp_path / "runs/nice"


def test_relative_folder_evaluates_from_elsewhere_and_refuses_changed_data(image_run, tmp_path, monkeypatch):
    rc = load_run_config(image_run)
    assert rc.data == "folder:faces" and rc.data_source.startswith(f"folder:{tmp_path / 'faces'}?alpha=composite")
    assert rc.data_fingerprint.n_train + rc.data_fingerprint.n_test == 20
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # folder:faces does not exist here; the stored source does
    ev = json.loads(ok(runner.invoke(app, ["evaluate", str(image_run), "--limit", "2", "--no-progress"])).stdout)
    assert ev["data"] == "folder:faces" and ev["examples"] == 2
    (tmp_path / "faces" / "rgba0.png").unlink()  # the data changes after training
    cli_error(["evaluate", str(image_run), "--no-progress"],
              f"the data at {tmp_path / 'faces'} changed since training (20 → 19 images); "
              f"evaluate another dataset explicitly with --data, or retrain")
    cli_error(["pictures", str(image_run)], "changed since training")
    for f in (tmp_path / "faces").iterdir():  # same count, 4 channels' worth of a different picture
        Image.fromarray(np.full((4, 4, 3), 7, np.uint8)).save(f)
    rgba_images(tmp_path / "faces2", n=1, size=4)
    (tmp_path / "faces2" / "rgba0.png").rename(tmp_path / "faces" / "rgba0.png")
    cli_error(["evaluate", str(image_run), "--no-progress"], "same shape and size, but other values")


def test_evaluate_data_is_explicit_out_of_distribution(image_run, tmp_path):
    other = tmp_path / "other"
    for i in range(6):
        other.mkdir(exist_ok=True)
        Image.fromarray(np.random.RandomState(i).randint(0, 256, (4, 4, 3)).astype(np.uint8)).save(other / f"{i}.png")
    res = ok(runner.invoke(app, ["evaluate", str(image_run), "--data", f"folder:{other}", "--no-progress"]))
    ev = json.loads(res.stdout)
    assert ev["data"] == f"folder:{other}" and ev["trained_on"] == "folder:faces"
    assert (image_run / "eval_test_on_other.json").is_file() and not (image_run / "eval_test.json").exists()
    cli_error(["evaluate", str(image_run), "--data", "digits", "--no-progress"],
              "--data 'digits' does not fit this 'nice' run", "event shape (1,8,8), the run's is (3,4,4)",
              "17 levels, the run's 256")
    cli_error(["evaluate", str(image_run), "--data", "digits", "--sampler", "inverse"], "--data")


def test_glow_on_odd_images_names_the_field_and_why(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    for i in range(10):
        Image.fromarray(np.full((25, 25, 3), i, np.uint8)).save(folder / f"{i}.png")
    cli_error(["train", "glow", "--data", f"folder:{folder}", "--out", str(tmp_path / "r"), "--steps", "1", *FAST],
              "25×25 input (25 is odd)", "n_levels ≥ 1", "crop or pad", "24×24 or 26×26", "--set n_scales=1")
    cli_error(["train", "glow", "--data", "mnist5k", "--set", "n_levels=3", "--out", str(tmp_path / "r2"),
               "--steps", "1", *FAST], "7×7 input (7 is odd)", "--set n_levels=2")
