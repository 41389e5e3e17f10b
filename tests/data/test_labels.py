"""Labels in the data (issue 16, item 1): every labelled dataset says how many classes it has (and their names
where known), and the labels survive the held-out split, binarization and the data fingerprint.

Files are built here in ``tmp_path``: class subfolders of PNGs (Pillow), ``.npz`` archives with ``y``, IDX files.
Each example's pixels encode its index, so a test can check that a label still sits beside its own example."""

from __future__ import annotations

import gzip
import json
import logging
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genmodels.checkpoint import RunConfig
from genmodels.core import DataSpec
from genmodels.data import (
    DataError,
    DataFingerprint,
    Dataset,
    holdout_split,
    list_datasets,
    load_dataset,
    unscale_discrete,
)
from genmodels.data.base import UNLABELLED
from genmodels.data.embedded import DIGIT_CLASSES, FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, FASHION_MNIST_ENV

FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot")


def write_idx(path: Path, a: np.ndarray, *, gz: bool = False) -> Path:
    """Write ``a`` (uint8) in IDX format (magic 00 00 08 ndim, big-endian dims, the bytes)."""
    raw = bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def error_of(name: str) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(name)
    return str(info.value)


def index_image(i: int, size: int = 4) -> np.ndarray:
    """A grey ``size × size`` image whose every pixel is ``i`` (so the loaded image tells which one it was)."""
    return np.full((size, size), i, np.uint8)


def pixel_ids(x: torch.Tensor) -> list[int]:
    """The index each loaded image encodes (its first pixel's level)."""
    return unscale_discrete(x, 256)[:, 0, 0, 0].tolist()


# ----------------------------------------------------------------------------- embedded data and binarization


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_digit_datasets_have_ten_named_classes_and_binarizing_keeps_them(name):
    ds = load_dataset(name)
    assert ds.spec.num_classes == 10 and ds.spec.class_names == DIGIT_CLASSES == tuple("0123456789")
    assert ds.spec.class_name(7) == "7" and "10 classes" in repr(ds)
    b = load_dataset(f"binary:{name}")
    assert b.spec.n_bins == 2 and b.spec.name == f"binary:{name}"
    assert b.spec.num_classes == 10 and b.spec.class_names == DIGIT_CLASSES
    assert torch.equal(b.train_labels, ds.train_labels) and torch.equal(b.test_labels, ds.test_labels)


def test_fashion_mnist_class_names_from_fake_idx_files(tmp_path, monkeypatch):
    imgs = np.stack([index_image(i, 5) for i in range(6)])
    for split, labs in (("train", [0, 9, 3, 3, 1, 2]), ("t10k", [5, 5, 4, 0, 8, 7])):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", imgs, gz=True)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.array(labs, np.uint8), gz=True)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    ds = load_dataset("fashion-mnist")
    assert ds.spec.class_names == FASHION_NAMES == FASHION_MNIST_CLASSES and ds.spec.num_classes == 10
    assert ds.spec.class_name(9) == "Ankle boot" and ds.test_labels.tolist() == [5, 5, 4, 0, 8, 7]
    b = load_dataset("binary:fashion-mnist")
    assert b.spec.class_names == FASHION_NAMES and torch.equal(b.train_labels, ds.train_labels)


def test_fashion_mnist_class_names_on_the_real_files():
    if not Path(FASHION_MNIST_DIR).is_dir() or FASHION_MNIST_ENV in os.environ:
        pytest.skip(f"{FASHION_MNIST_DIR} missing (apt-get install dataset-fashion-mnist)")
    ds = load_dataset("fashion-mnist")
    assert ds.spec.num_classes == 10 and ds.spec.class_names == FASHION_NAMES
    assert torch.bincount(ds.train_labels).tolist() == [6000] * 10


def test_toys_with_labels_have_classes_and_the_others_none():
    assert load_dataset("moons").spec.num_classes == 2
    assert load_dataset("8gaussians").spec.num_classes == 8
    assert load_dataset("swissroll").spec.num_classes is None


def test_the_listing_says_the_class_count():
    listing = dict(list_datasets())
    assert all("10 classes" in listing[n] for n in ("digits", "mnist5k", "fashion-mnist"))
    assert "subfolder per class" in listing["folder:DIR"]


# ----------------------------------------------------------------------------- folder:DIR with class subfolders


def class_folder(root: Path, classes: dict[str, int], size: int = 4) -> list[tuple[int, str]]:
    """``classes[name]`` images in ``root/name/`` (the second class one level deeper); returns, in sorted path order,
    each image's (index, class name)."""
    made, i = [], 0
    for c, n in classes.items():
        for j in range(n):
            sub = root / c / ("deeper" if j % 2 else "")
            sub.mkdir(parents=True, exist_ok=True)
            p = sub / f"im{j:02d}.png"
            Image.fromarray(index_image(i, size)).save(p)
            made.append((p, i, c))
            i += 1
    return [(i, c) for _p, i, c in sorted(made)]


def test_folder_with_class_subfolders_is_labelled_by_sorted_subfolder_names(tmp_path, caplog):
    order = class_folder(tmp_path / "pets", {"dog": 5, "cat": 6, "bird": 4})
    (tmp_path / "pets" / "notes").mkdir()  # a subfolder without images is no class
    (tmp_path / "pets" / "notes" / "readme.txt").write_text("no images here")
    with caplog.at_level(logging.INFO, logger="genmodels.data.files"):
        ds = load_dataset(f"folder:{tmp_path / 'pets'}")
    assert ds.spec.class_names == ("bird", "cat", "dog") and ds.spec.num_classes == 3
    assert "15 images in 3 classes" in caplog.text
    # the split keeps every label beside its own image
    ids = {i: ("bird", "cat", "dog").index(c) for i, c in order}
    for x, y in ((ds.train, ds.train_labels), (ds.test, ds.test_labels)):
        assert [ids[i] for i in pixel_ids(x)] == y.tolist()
    tr, te = holdout_split(15)
    assert pixel_ids(ds.test) == [order[k][0] for k in te] and ds.n_train == len(tr)
    b = load_dataset(f"binary:folder:{tmp_path / 'pets'}")
    assert b.spec.class_names == ds.spec.class_names and torch.equal(b.test_labels, ds.test_labels)


def test_flat_folder_stays_unlabelled_and_mixed_layout_is_one_line_naming_the_fix(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):
        Image.fromarray(index_image(i)).save(flat / f"{i}.png")
    ds = load_dataset(f"folder:{flat}")
    assert ds.train_labels is None and ds.spec.num_classes is None and ds.spec.class_names is None
    (flat / "cats").mkdir()
    Image.fromarray(index_image(9)).save(flat / "cats" / "c.png")
    msg = error_of(f"folder:{flat}")
    assert "\n" not in msg and "top level" in msg and "cats/" in msg and "0.png" in msg
    assert "move them into a class subfolder" in msg


def test_folder_fingerprint_keeps_old_records_valid(tmp_path):
    """A run trained on this folder before labels existed stored a fingerprint without labels: it still matches."""
    class_folder(tmp_path / "pets", {"a": 3, "b": 3})
    now = DataFingerprint.of(load_dataset(f"folder:{tmp_path / 'pets'}"))
    old = {k: v for k, v in now.to_json().items() if k not in ("labels", "num_classes")}
    assert DataFingerprint.from_json(old).labels is None
    assert DataFingerprint.from_json(old).changes(now) == []
    assert now.num_classes == 2 and now.labels not in (None, UNLABELLED)


# ----------------------------------------------------------------------------- npz and idx labels


def npz_with_labels(path: Path, y: np.ndarray) -> Path:
    x = np.repeat(np.arange(len(y), dtype=np.uint8)[:, None, None], 4, 1).repeat(4, 2)  # [N, 4, 4], x[i] = i
    np.savez(path, x=x, y=y)
    return path


def test_npz_y_gives_max_plus_one_classes_and_survives_the_split(tmp_path):
    y = np.arange(30) % 3 * 2  # labels 0, 2, 4: five classes (1 and 3 empty)
    ds = load_dataset(f"npz:{npz_with_labels(tmp_path / 'd.npz', y)}")
    assert ds.spec.num_classes == 5 and ds.spec.class_names is None and ds.spec.class_name(4) == "4"
    for x, lab in ((ds.train, ds.train_labels), (ds.test, ds.test_labels)):
        assert y[pixel_ids(x)].tolist() == lab.tolist()


def test_npz_train_test_labels_count_classes_over_both_splits(tmp_path):
    f = tmp_path / "tt.npz"
    np.savez(f, train=np.zeros((6, 3), np.float32), test=np.zeros((2, 3), np.float32),
             train_labels=np.array([0, 1, 1, 0, 2, 2]), test_labels=np.array([6, 1]))
    ds = load_dataset(f"npz:{f}")
    assert ds.spec.num_classes == 7 and ds.test_labels.tolist() == [6, 1]


def test_npz_sequences_keep_their_labels(tmp_path):
    f = tmp_path / "s.npz"
    np.savez(f, x=np.random.RandomState(0).randint(0, 8, (20, 16)), y=np.arange(20) % 4)
    ds = load_dataset(f"npz:{f}?layout=sequence")
    assert ds.spec.event_shape == (1, 16) and ds.spec.num_classes == 4
    tr, te = holdout_split(20)
    assert ds.test_labels.tolist() == (np.arange(20) % 4)[te].tolist() and len(ds.train_labels) == len(tr)


def test_negative_labels_are_refused_with_the_fix(tmp_path):
    msg = error_of(f"npz:{npz_with_labels(tmp_path / 'neg.npz', np.array([-1, 1] * 5))}")
    assert "neg.npz" in msg and "0..K−1" in msg and "return_inverse" in msg


def test_idx_labels_with_a_single_file_split_together(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.stack([index_image(i) for i in range(20)]))
    y = (np.arange(20) * 7) % 11
    write_idx(tmp_path / "train-labels-idx1-ubyte", y.astype(np.uint8))
    ds = load_dataset(f"idx:{tmp_path}")
    assert ds.spec.num_classes == int(y.max()) + 1
    for x, lab in ((ds.train, ds.train_labels), (ds.test, ds.test_labels)):
        assert y[pixel_ids(x)].tolist() == lab.tolist()


# ----------------------------------------------------------------------------- the Dataset rule


def test_hand_built_dataset_gets_its_class_count_and_bad_labels_are_refused():
    spec = DataSpec("hand", (2,))
    x = torch.zeros(4, 2)
    ds = Dataset(spec, x, x[:2], torch.tensor([0, 3, 1, 1]), torch.tensor([4, 0]))
    assert ds.spec.num_classes == 5 and ds.spec == spec  # class fields take no part in ==
    assert Dataset(spec, x, x[:2]).spec.num_classes is None
    named = DataSpec("hand", (2,), num_classes=2, class_names=("no", "yes"))
    with pytest.raises(DataError, match="label 3 is out of range for its 2 classes"):
        Dataset(named, x, x[:2], torch.tensor([0, 3, 1, 1]), torch.tensor([1, 0]))
    with pytest.raises(DataError, match="found -1"):
        Dataset(spec, x, x[:2], torch.tensor([0, -1, 1, 1]), None)


# ----------------------------------------------------------------------------- the fingerprint covers the labels


def test_fingerprint_changes_when_one_label_changes(tmp_path):
    y = np.arange(30) % 3
    f = npz_with_labels(tmp_path / "d.npz", y)
    a = DataFingerprint.of(load_dataset(f"npz:{f}"))
    assert DataFingerprint.from_json(json.loads(json.dumps(a.to_json()))) == a
    y2 = y.copy()
    y2[17] = (y2[17] + 1) % 3
    b = DataFingerprint.of(load_dataset(f"npz:{npz_with_labels(f, y2)}"))
    assert a.sha256 == b.sha256 and a.labels != b.labels  # same pixels, one other label
    assert a.changes(b) == ["other labels (3 classes)"]
    assert a.changes(b, labels=False) == []
    y2[0] = 5
    c = DataFingerprint.of(load_dataset(f"npz:{npz_with_labels(f, y2)}"))
    assert a.changes(c) == ["3 classes → 6 classes"]
    np.savez(f, x=np.repeat(np.arange(30, dtype=np.uint8)[:, None, None], 4, 1).repeat(4, 2))
    d = DataFingerprint.of(load_dataset(f"npz:{f}"))
    assert d.labels == UNLABELLED and d.num_classes is None
    assert a.changes(d) == ["3 classes → unlabelled"] and d.changes(a) == ["unlabelled → 3 classes"]


def test_a_run_refuses_relabelled_data_but_an_old_record_still_loads(tmp_path):
    from _toy_model import TOY_NAME, ToyConfig

    y = np.arange(30) % 3
    f = npz_with_labels(tmp_path / "d.npz", y)
    ds = load_dataset(f"npz:{f}")
    rc = RunConfig.for_dataset(TOY_NAME, ToyConfig(), f"npz:{f}", ds)
    old = RunConfig.from_json({**rc.to_json(), "data_fingerprint": {
        k: v for k, v in rc.data_fingerprint.to_json().items() if k not in ("labels", "num_classes")}})
    y[3] = 2
    npz_with_labels(f, y)
    with pytest.raises(DataError, match=r"changed since training \(other labels \(3 classes\)\)"):
        RunConfig.from_json(json.loads(json.dumps(rc.to_json()))).load_data()
    assert old.load_data().train_labels is not None  # written before labels were fingerprinted: not compared
