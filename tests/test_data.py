"""Tests of genmodels.data: embedded datasets, the user's files (idx/folder/npz), toys, and errors."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genmodels.core import DataSpec
from genmodels.data import (
    DataError,
    Dataset,
    holdout_split,
    list_datasets,
    load_dataset,
    read_idx,
    sample_toy,
    scale_discrete,
    toy_has_density,
    toy_log_density,
    unscale_discrete,
)
from genmodels.data.embedded import FASHION_MNIST_DIR, FASHION_MNIST_ENV

TOY_NAMES = ["moons", "swissroll", "8gaussians", "checkerboard"]


# ----------------------------------------------------------------------------- helpers


def write_idx(path: Path, a: np.ndarray, *, gz: bool = False, magic: bytes | None = None) -> Path:
    """Write ``a`` (uint8) in IDX format, independently of the reader under test."""
    header = magic if magic is not None else bytes([0, 0, 0x08, a.ndim])
    raw = header + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def levels(shape, seed=0) -> np.ndarray:
    """Random uint8 levels that include 0 and 255."""
    a = np.random.RandomState(seed).randint(0, 256, size=shape).astype(np.uint8)
    a.flat[0], a.flat[-1] = 0, 255
    return a


def expected(k: np.ndarray, n_bins: int = 256) -> torch.Tensor:
    """The scaling convention computed independently, in float64."""
    return torch.from_numpy(2.0 * k.astype(np.float64) / (n_bins - 1) - 1.0).float()


def error_of(name: str) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(name)
    return str(info.value)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def mnist5k() -> Dataset:
    return load_dataset("mnist5k")


# ----------------------------------------------------------------------------- scaling and splits


def test_scale_discrete_is_exact_at_the_ends_and_inverts():
    k = np.array([0, 1, 127, 128, 254, 255], dtype=np.uint8)
    x = scale_discrete(k, 256)
    assert x.dtype == torch.float32
    assert x[0].item() == -1.0 and x[-1].item() == 1.0
    torch.testing.assert_close(x, expected(k), rtol=0, atol=1e-7)
    assert torch.equal(unscale_discrete(x, 256), torch.from_numpy(k.astype(np.int64)))
    x17 = scale_discrete(np.array([0, 8, 16]), 17)
    assert x17.tolist() == [-1.0, 0.0, 1.0]


def test_holdout_split_is_fixed_disjoint_and_complete():
    tr, te = holdout_split(100)
    tr2, te2 = holdout_split(100)
    assert np.array_equal(tr, tr2) and np.array_equal(te, te2)
    assert len(te) == 10 and len(tr) == 90
    assert not set(tr) & set(te) and set(tr) | set(te) == set(range(100))
    assert holdout_split(2)[1].size == 1 and holdout_split(1)[1].size == 0
    assert not np.array_equal(te, np.arange(90, 100))  # a permutation, not the tail


# ----------------------------------------------------------------------------- embedded


def test_digits_spec_shapes_split_and_labels(digits):
    assert digits.spec == DataSpec("digits", (1, 8, 8), 17, (-1.0, 1.0))
    assert digits.train.shape == (1497, 1, 8, 8) and digits.test.shape == (300, 1, 8, 8)
    assert digits.train.dtype == torch.float32
    assert digits.train_labels.shape == (1497,) and digits.test_labels.dtype == torch.int64
    assert set(digits.train_labels.tolist()) == set(range(10))
    both = torch.cat([digits.train, digits.test])
    assert both.min().item() == -1.0 and both.max().item() == 1.0
    k = unscale_discrete(both, 17)
    torch.testing.assert_close(both, k.float() / 8 - 1, rtol=0, atol=1e-6)  # on the 17-level grid


def test_digits_split_matches_sklearn_disjoint_and_deterministic(digits):
    from sklearn.datasets import load_digits

    raw = load_digits()
    tr, te = holdout_split(1797, 300)
    assert not set(tr) & set(te)
    images = raw.images.reshape(-1, 1, 8, 8)
    torch.testing.assert_close(digits.train[:], expected(images[tr], 17), rtol=0, atol=1e-6)
    torch.testing.assert_close(digits.test[:], expected(images[te], 17), rtol=0, atol=1e-6)
    assert digits.test_labels.tolist() == raw.target[te].tolist()
    again = load_dataset("DIGITS")
    assert torch.equal(again.train, digits.train) and torch.equal(again.test_labels, digits.test_labels)


def test_mnist5k_spec_shapes_split_and_range(mnist5k):
    assert mnist5k.spec == DataSpec("mnist5k", (1, 28, 28), 256, (-1.0, 1.0))
    assert mnist5k.n_train == 4000 and mnist5k.n_test == 1000
    assert mnist5k.train_labels.shape == (4000,) and mnist5k.test_labels.shape == (1000,)
    assert set(mnist5k.test_labels.tolist()) == set(range(10))
    assert mnist5k.train.min().item() == -1.0 and mnist5k.train.max().item() == 1.0
    k = unscale_discrete(mnist5k.test, 256)
    torch.testing.assert_close(mnist5k.test[:], expected(k.numpy()), rtol=0, atol=1e-6)
    # mostly-black digits: the background (level 0) dominates
    assert (mnist5k.train == -1.0).float().mean().item() > 0.6


def test_fashion_mnist_official_split():
    if not Path(FASHION_MNIST_DIR).is_dir():
        pytest.skip(f"{FASHION_MNIST_DIR} missing (apt-get install dataset-fashion-mnist)")
    ds = load_dataset("fashion-mnist")
    assert ds.spec == DataSpec("fashion-mnist", (1, 28, 28), 256, (-1.0, 1.0))
    assert ds.train.shape == (60000, 1, 28, 28) and ds.test.shape == (10000, 1, 28, 28)
    assert ds.train_labels.shape == (60000,) and ds.test_labels.shape == (10000,)
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10
    assert ds.spec.num_classes == 10 and ds.spec.class_names[0] == "T-shirt/top"
    assert ds.train.min().item() == -1.0 and ds.train.max().item() == 1.0


def test_fashion_mnist_env_override(tmp_path, monkeypatch):
    imgs, labs = levels((5, 6, 7)), np.arange(5, dtype=np.uint8)
    for split in ("train", "t10k"):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", imgs, gz=True)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labs, gz=True)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    ds = load_dataset("fashion-mnist")
    assert ds.train.shape == (5, 1, 6, 7) and ds.test_labels.tolist() == list(range(5))
    assert ds.spec.num_classes == 10 and ds.spec.class_name(9) == "Ankle boot"
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    assert "apt-get install dataset-fashion-mnist" in error_of("fashion-mnist")
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path / "nowhere"))
    msg = error_of("fashion-mnist")
    assert "nowhere" in msg and "apt-get install dataset-fashion-mnist" in msg and FASHION_MNIST_ENV in msg


# ----------------------------------------------------------------------------- idx:DIR


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip_with_official_split(tmp_path, gz):
    ext = ".gz" if gz else ""
    train, test = levels((12, 5, 4), 1), levels((3, 5, 4), 2)
    write_idx(tmp_path / f"train-images-idx3-ubyte{ext}", train, gz=gz)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{ext}", test, gz=gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{ext}", np.arange(12) % 10, gz=gz)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{ext}", np.array([7, 8, 9]), gz=gz)
    ds = load_dataset(f"idx:{tmp_path}")
    assert ds.spec == DataSpec(f"idx:{tmp_path}", (1, 5, 4), 256, (-1.0, 1.0))
    torch.testing.assert_close(ds.train[:], expected(train[:, None]), rtol=0, atol=1e-6)
    torch.testing.assert_close(ds.test[:], expected(test[:, None]), rtol=0, atol=1e-6)
    assert ds.test_labels.tolist() == [7, 8, 9] and ds.train_labels.dtype == torch.int64
    assert np.array_equal(read_idx(tmp_path / f"t10k-images-idx3-ubyte{ext}"), test)


def test_idx_single_file_gets_90_10_split(tmp_path):
    x = levels((20, 3, 3))
    write_idx(tmp_path / "train-images.idx3-ubyte", x)  # the dot spelling of some downloads
    ds = load_dataset(f"idx:{tmp_path}")
    assert (ds.n_train, ds.n_test) == (18, 2) and ds.train_labels is None
    _tr, te = holdout_split(20)
    torch.testing.assert_close(ds.test[:], expected(x[te][:, None]), rtol=0, atol=1e-6)


def test_idx_bad_magic_names_the_file(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", levels((4, 3, 3)), magic=b"\x12\x34\x08\x03")
    msg = error_of(f"idx:{tmp_path}")
    assert "train-images-idx3-ubyte" in msg and "magic" in msg


def test_idx_truncated_and_missing_files(tmp_path):
    p = write_idx(tmp_path / "train-images-idx3-ubyte", levels((4, 3, 3)))
    p.write_bytes(p.read_bytes()[:-5])
    msg = error_of(f"idx:{tmp_path}")
    assert "train-images-idx3-ubyte" in msg and "truncated" in msg
    p.unlink()
    (tmp_path / "notes.txt").write_text("hi")
    msg = error_of(f"idx:{tmp_path}")
    assert str(tmp_path) in msg and "train-images-idx3-ubyte" in msg
    assert str(tmp_path / "missing") in error_of(f"idx:{tmp_path / 'missing'}")


# ----------------------------------------------------------------------------- folder:DIR


def save_images(folder: Path, arrays: list[np.ndarray], fmt: str = "png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, a in enumerate(arrays):
        p = folder / f"img{i:02d}.{fmt}"
        Image.fromarray(a).save(p)
        paths.append(p)
    return paths


def test_folder_grayscale_keeps_one_channel_and_exact_values(tmp_path):
    arrays = [levels((6, 5), i) for i in range(10)]
    save_images(tmp_path / "a", arrays[:5])
    save_images(tmp_path / "b" / "deeper", arrays[5:])  # recursive
    ds = load_dataset(f"folder:{tmp_path}")
    assert ds.spec == DataSpec(f"folder:{tmp_path}", (1, 6, 5), 256, (-1.0, 1.0))
    assert (ds.n_train, ds.n_test) == (9, 1)
    _tr, te = holdout_split(10)
    torch.testing.assert_close(ds.test[:], expected(np.stack(arrays)[te][:, None]), rtol=0, atol=1e-6)


def test_folder_rgb_and_mixed_become_three_channels(tmp_path):
    rgb = [levels((4, 7, 3), i) for i in range(3)]
    save_images(tmp_path / "rgb", rgb)
    ds = load_dataset(f"folder:{tmp_path / 'rgb'}")
    assert ds.spec.event_shape == (3, 4, 7) and (ds.n_train, ds.n_test) == (2, 1)
    all_x = torch.cat([ds.train, ds.test])
    tr, _te = holdout_split(3)
    torch.testing.assert_close(ds.train[:], expected(np.stack(rgb)[tr].transpose(0, 3, 1, 2)), rtol=0, atol=1e-6)
    assert all_x.shape[1] == 3
    gray = levels((4, 7), 9)
    Image.fromarray(gray).save(tmp_path / "rgb" / "zz_gray.png")
    mixed = load_dataset(f"folder:{tmp_path / 'rgb'}")
    assert mixed.spec.event_shape == (3, 4, 7) and mixed.n_train + mixed.n_test == 4


def test_folder_errors_name_the_folder_or_file(tmp_path):
    missing = tmp_path / "no_such_dir"
    assert str(missing) in error_of(f"folder:{missing}")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("not an image")
    msg = error_of(f"folder:{empty}")
    assert str(empty) in msg and "no image files" in msg
    bad = tmp_path / "bad"
    save_images(bad, [levels((4, 4))])
    (bad / "x.png").write_bytes(b"\x00garbage bytes, not a png")
    msg = error_of(f"folder:{bad}")
    assert "x.png" in msg and "cannot be read" in msg


def test_folder_mixed_sizes_names_two_files_and_sizes(tmp_path):
    save_images(tmp_path, [levels((4, 4)), levels((4, 4), 1)])
    Image.fromarray(levels((5, 6))).save(tmp_path / "odd.png")
    msg = error_of(f"folder:{tmp_path}")
    assert "img00.png" in msg and "4x4" in msg and "odd.png" in msg and "6x5" in msg and "resize" in msg


# ----------------------------------------------------------------------------- npz:FILE


@pytest.mark.parametrize("shape, event", [
    ((30, 5), (5,)),
    ((30, 6, 7), (1, 6, 7)),
    ((30, 3, 6, 7), (3, 6, 7)),
    ((30, 6, 7, 3), (3, 6, 7)),
    ((30, 6, 7, 1), (1, 6, 7)),
])
def test_npz_uint8_round_trip_each_rank(tmp_path, shape, event):
    x = levels(shape)
    f = tmp_path / "data.npz"
    np.savez(f, x=x, y=np.arange(30) % 4)
    ds = load_dataset(f"npz:{f}")
    assert ds.spec == DataSpec(f"npz:{f}", event, 256, (-1.0, 1.0))
    assert (ds.n_train, ds.n_test) == (27, 3)
    tr, te = holdout_split(30)
    chw = x.transpose(0, 3, 1, 2) if shape[-1] in (1, 3) and len(shape) == 4 and shape[1] != 3 else x
    chw = chw[:, None] if len(shape) == 3 else chw
    torch.testing.assert_close(ds.train[:], expected(chw[tr]), rtol=0, atol=1e-6)
    assert ds.test_labels.tolist() == (np.arange(30) % 4)[te].tolist()


def test_npz_float_is_continuous_with_train_test_keys(tmp_path):
    rng = np.random.RandomState(0)
    train, test = rng.randn(40, 3) * 5, rng.randn(10, 3)
    f = tmp_path / "vectors.npz"
    np.savez(f, train=train, test=test, test_labels=np.arange(10))
    ds = load_dataset(f"npz:{f}")
    assert ds.spec.n_bins is None and ds.spec.event_shape == (3,)
    both = np.concatenate([train, test])
    assert ds.spec.value_range == pytest.approx((both.min(), both.max()), rel=1e-6)
    torch.testing.assert_close(ds.train[:], torch.from_numpy(train).float())
    assert ds.train_labels is None and ds.test_labels.tolist() == list(range(10))


def test_npz_errors_name_the_file(tmp_path):
    f = tmp_path / "nan.npz"
    x = np.ones((10, 4))
    x[2, 1], x[5, 0], x[6, 3] = np.nan, np.inf, -np.inf
    np.savez(f, x=x)
    msg = error_of(f"npz:{f}")
    assert "nan.npz" in msg and "3 of 40" in msg
    for shape in [(10,), (2, 3, 4, 5, 6)]:
        f = tmp_path / f"rank{len(shape)}.npz"
        np.savez(f, x=np.zeros(shape, np.uint8))
        msg = error_of(f"npz:{f}")
        assert f.name in msg and f"rank {len(shape)}" in msg and "[N, D]" in msg
    assert "missing.npz" in error_of(f"npz:{tmp_path / 'missing.npz'}")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a zip archive")
    assert "junk.npz" in error_of(f"npz:{junk}") and "not a valid .npz file" in error_of(f"npz:{junk}")
    nokey = tmp_path / "nokey.npz"
    np.savez(nokey, images=np.zeros((3, 2)))
    msg = error_of(f"npz:{nokey}")
    assert "nokey.npz" in msg and "'images'" in msg and "'x'" in msg
    npy = tmp_path / "single.npz"
    with open(npy, "wb") as fh:
        np.save(fh, np.zeros((3, 2)))
    assert "single.npz" in error_of(f"npz:{npy}")
    wide = tmp_path / "wide.npz"
    np.savez(wide, x=np.full((4, 2), 300, np.int64))
    assert "wide.npz" in error_of(f"npz:{wide}") and "0..255" in error_of(f"npz:{wide}")
    badlab = tmp_path / "badlab.npz"
    np.savez(badlab, x=np.zeros((4, 2), np.uint8), y=np.arange(3))
    assert "badlab.npz" in error_of(f"npz:{badlab}")


# ----------------------------------------------------------------------------- names


def test_unknown_name_lists_known_datasets_and_hints_prefixes(tmp_path):
    msg = error_of("mnist-full")
    assert "mnist-full" in msg
    for known in ("digits", "mnist5k", "fashion-mnist", "moons", "checkerboard", "idx:DIR", "npz:FILE"):
        assert known in msg
    assert f"folder:{tmp_path}" in error_of(str(tmp_path))
    assert "unknown dataset prefix" in error_of("zip:/tmp/x")
    assert "npz:" in error_of("npz:")
    names = [n for n, _ in list_datasets()]
    assert set(TOY_NAMES) | {"digits", "mnist5k", "fashion-mnist", "folder:DIR"} <= set(names)
    assert all(desc for _, desc in list_datasets())


def test_dataset_rejects_tensors_that_disagree_with_spec():
    spec = DataSpec("t", (2,))
    with pytest.raises(DataError, match="expected"):
        Dataset(spec, torch.zeros(3, 3), torch.zeros(1, 2))
    with pytest.raises(DataError, match="float32"):
        Dataset(spec, torch.zeros(3, 2, dtype=torch.float64), torch.zeros(1, 2))


# ----------------------------------------------------------------------------- toys


@pytest.mark.parametrize("name", TOY_NAMES)
def test_toy_shapes_scale_and_determinism(name):
    ds = load_dataset(name)
    assert ds.spec.n_bins is None and ds.spec.event_shape == (2,) and ds.spec.name == name
    assert ds.train.shape == (20000, 2) and ds.test.shape == (5000, 2)
    assert torch.isfinite(ds.train).all() and torch.isfinite(ds.test).all()
    x = torch.cat([ds.train, ds.test]).double()
    assert x.mean(0).abs().max().item() < 0.05
    assert x.var(0).mean().sqrt().item() == pytest.approx(1.0, abs=0.03)  # exact scaling, module docstring
    assert 0.5 < x.std(0).min().item() and x.std(0).max().item() < 1.5
    lo, hi = ds.spec.value_range
    assert lo == x.min().item() and hi == x.max().item()
    again, other = load_dataset(name), load_dataset(name, seed=1)
    assert torch.equal(again.train, ds.train) and torch.equal(again.test, ds.test)
    assert not torch.equal(other.train, ds.train)
    assert not torch.equal(ds.train[:5000], ds.test)  # test is a separate draw


@pytest.mark.parametrize("name", ["8gaussians", "checkerboard"])
def test_toy_log_density_integrates_to_one(name):
    g = torch.linspace(-3.5, 3.5, 701, dtype=torch.float64)
    h = (g[1] - g[0]).item()
    xy = torch.cartesian_prod(g, g)
    p = toy_log_density(name, xy).exp()
    assert p.shape == (701 * 701,) and p.dtype == torch.float64
    assert (p.sum() * h * h).item() == pytest.approx(1.0, abs=0.01)
    # samples lie where the density is high / non-zero
    lp = toy_log_density(name, sample_toy(name, 1000, seed=3))
    assert lp.dtype == torch.float32 and torch.isfinite(lp).all()


def test_toy_log_density_values_and_unsupported_toys():
    assert toy_log_density("checkerboard", torch.tensor([[0.1, 0.1], [0.1, -0.1], [5.0, 0.0]])).tolist() == [
        pytest.approx(-math.log(6)), -math.inf, -math.inf]
    sigma2 = 1 / 33
    centre = torch.tensor([[8 / math.sqrt(33), 0.0]], dtype=torch.float64)
    assert toy_log_density("8gaussians", centre).item() == pytest.approx(
        -math.log(2 * math.pi * sigma2) - math.log(8), abs=1e-6)
    assert toy_has_density("8gaussians") and not toy_has_density("moons")
    for name in ("moons", "swissroll"):
        with pytest.raises(NotImplementedError, match="closed-form"):
            toy_log_density(name, torch.zeros(2, 2))
    with pytest.raises(DataError, match="known toys"):
        toy_log_density("spiral", torch.zeros(2, 2))


def test_npz_far_outside_the_models_scale_is_refused_and_large_values_warned(tmp_path, caplog):
    """An npz with values of 1e30 is refused with the fix (issue 15); values in the hundreds load with a warning."""
    bad = tmp_path / "huge.npz"
    np.savez(bad, x=np.full((20, 2), 1e30, dtype=np.float32))
    with pytest.raises(DataError, match=r"1e\+30.*standardize"):
        load_dataset(f"npz:{bad}")
    big = tmp_path / "big.npz"
    np.savez(big, x=(np.random.default_rng(0).normal(size=(40, 2)) * 300).astype(np.float32))
    with caplog.at_level("WARNING"):
        load_dataset(f"npz:{big}")
    assert "unit scale" in caplog.text
