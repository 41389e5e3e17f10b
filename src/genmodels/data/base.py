"""The dataset container, the dataset registry, and the helpers every loader shares.

A dataset name resolves to a :class:`Dataset`: train and test tensors plus a
:class:`~genmodels.core.DataSpec` (DESIGN.md, "Data"). Loaders register themselves in
:data:`DATASETS`; :func:`load_dataset` dispatches on the name, or on the prefix for the user's own
files (``idx:DIR``, ``folder:DIR``, ``npz:FILE``).

Scaling (the convention of :mod:`genmodels.core`, written once here in :func:`scale_discrete`).
Discrete data with ``n_bins`` levels ``k ∈ {0, …, n_bins−1}`` is stored as
``x = 2k/(n_bins−1) − 1 ∈ [−1, 1]``, float32; continuous data is kept as it is.

Splits. Data without an official train/test split gets a fixed held-out split
(:func:`holdout_split`): a permutation drawn from NumPy's legacy ``RandomState(SPLIT_SEED)``,
whose stream NumPy guarantees never to change (NEP 19), so the test set — and every number
reported on it — is the same on every machine and NumPy version.

Every bad input raises :class:`DataError`, whose message names the file or dataset and the fix.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from genmodels.core import DataSpec
from genmodels.registry import Registry

__all__ = [
    "DataError",
    "Dataset",
    "DatasetEntry",
    "DATASETS",
    "SPLIT_SEED",
    "load_dataset",
    "list_datasets",
    "scale_discrete",
    "unscale_discrete",
    "holdout_split",
    "to_event_layout",
    "check_finite",
    "check_levels",
    "check_labels",
    "continuous_range",
]

SPLIT_SEED = 0
"""Seed of the fixed held-out splits (``numpy.random.RandomState``, a frozen stream)."""


class DataError(ValueError):
    """Bad input to a dataset loader: missing path, empty folder, unreadable file, wrong shape, NaN.

    The message names the dataset or file and says how to fix it. Subclasses ``ValueError``.
    """


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset: train and test tensors on the model's scale, and what they look like.

    Attributes:
        spec: event shape, ``n_bins`` (``None`` for continuous data) and value range.
        train: ``[N, *event_shape]`` float32; discrete data scaled to ``[−1, 1]``
            (:func:`scale_discrete`), continuous data as it is.
        test: ``[M, *event_shape]`` float32, scaled like ``train`` (``M`` may be 0 for a one-example
            dataset).
        train_labels: ``[N]`` int64 class labels, or ``None``.
        test_labels: ``[M]`` int64 class labels, or ``None``.

    Raises:
        DataError: if the tensors disagree with ``spec`` or with each other (a loader bug or bad
            hand-built data).
    """

    spec: DataSpec
    train: Tensor
    test: Tensor
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None

    def __post_init__(self) -> None:
        name = self.spec.name
        for split, x, y in (("train", self.train, self.train_labels),
                            ("test", self.test, self.test_labels)):
            if x.dtype != torch.float32:
                raise DataError(f"dataset {name!r}: {split} tensor is {x.dtype}, expected float32")
            if tuple(x.shape[1:]) != tuple(self.spec.event_shape):
                raise DataError(f"dataset {name!r}: {split} tensor has shape {tuple(x.shape)}, "
                                f"expected [N, {', '.join(map(str, self.spec.event_shape))}]")
            if y is not None and (y.dtype != torch.int64 or tuple(y.shape) != (x.shape[0],)):
                raise DataError(f"dataset {name!r}: {split} labels have shape {tuple(y.shape)} and "
                                f"dtype {y.dtype}, expected [{x.shape[0]}] int64")
        if self.train.shape[0] == 0:
            raise DataError(f"dataset {name!r}: the training set is empty")

    @property
    def n_train(self) -> int:
        """Number of training examples N."""
        return int(self.train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test examples M."""
        return int(self.test.shape[0])

    def __repr__(self) -> str:  # tensors would print their values
        labels = "labels" if self.train_labels is not None else "no labels"
        return (f"Dataset({self.spec.name!r}, train={list(self.train.shape)}, "
                f"test={list(self.test.shape)}, n_bins={self.spec.n_bins}, {labels})")


@dataclass(frozen=True)
class DatasetEntry:
    """How to load one dataset, or one family of datasets named by a prefix.

    Attributes:
        load: ``load(arg, seed) -> Dataset``; ``arg`` is the full name for plain names
            (``"moons"``) and the part after the prefix for prefixed ones (the ``DIR`` of ``idx:DIR``).
        description: one line for ``genmodels datasets``.
        pattern: how the name is written in listings (``"idx:DIR"``); defaults to the name.
    """

    load: Callable[[str, int], Dataset]
    description: str
    pattern: str | None = None


DATASETS: Registry[DatasetEntry] = Registry("dataset")
"""Name -> :class:`DatasetEntry`. Prefixed families are registered under their prefix
(``"idx:"``, ``"folder:"``, ``"npz:"``)."""


def load_dataset(name: str, *, seed: int = 0) -> Dataset:
    """Resolve a dataset name to tensors and their :class:`~genmodels.core.DataSpec`.

    Args:
        name: a registered name (``"digits"``, ``"mnist5k"``, ``"fashion-mnist"``, ``"moons"``,
            ``"swissroll"``, ``"8gaussians"``, ``"checkerboard"``; case-insensitive) or a prefixed
            path (``"idx:DIR"``, ``"folder:DIR"``, ``"npz:FILE"``); see :func:`list_datasets`.
        seed: seed of generated data (the 2-D toys). Real data ignores it: its held-out split is
            fixed (:data:`SPLIT_SEED`) so that test numbers are comparable across runs.
    Returns:
        a :class:`Dataset`.
    Raises:
        DataError: for an unknown name (the message lists the known ones), or any bad input the
            loader finds (missing path, empty folder, unreadable file, wrong shape, NaN).
    """
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"dataset name must be a non-empty string, got {name!r}; "
                        f"known datasets: {_known()}")
    name = name.strip()
    prefix, sep, arg = name.partition(":")
    if sep and len(prefix) > 1:  # "idx:DIR" ("C:\\..." is a Windows drive, not a prefix)
        key = prefix.lower() + ":"
        if key not in DATASETS:
            raise DataError(f"unknown dataset prefix {prefix + ':'!r} in {name!r}; "
                            f"known datasets: {_known()}")
        if not arg:
            pattern = DATASETS.get(key).pattern or key
            raise DataError(f"dataset {name!r} names no path; write it as {pattern!r}, "
                            f"e.g. {key}/path/to/data")
        return DATASETS.get(key).load(arg, seed)
    key = name.lower()
    if key not in DATASETS:
        raise DataError(f"unknown dataset {name!r}{_path_hint(name)}; known datasets: {_known()}")
    return DATASETS.get(key).load(key, seed)


def list_datasets() -> list[tuple[str, str]]:
    """The known datasets, for ``genmodels datasets``.

    Returns:
        ``(name or pattern, one-line description)`` pairs, sorted by name; prefixed families
        appear as their pattern (``"idx:DIR"``).
    """
    return [(DATASETS.get(n).pattern or n, DATASETS.get(n).description) for n in DATASETS.names()]


def _known() -> str:
    return ", ".join(p for p, _ in list_datasets())


def _path_hint(name: str) -> str:
    """Suggest a prefix when a bare name is an existing path."""
    if os.path.isdir(name):
        return f" (it is a directory: did you mean 'folder:{name}' or 'idx:{name}'?)"
    if os.path.isfile(name) and name.lower().endswith(".npz"):
        return f" (it is a file: did you mean 'npz:{name}'?)"
    return ""


# ----------------------------------------------------------------------------- shared helpers


def scale_discrete(levels: np.ndarray, n_bins: int) -> Tensor:
    """Map integer levels ``k ∈ {0, …, n_bins−1}`` to ``x = 2k/(n_bins−1) − 1`` (core.py).

    Computed as ``(2k − (n_bins−1)) / (n_bins−1)`` in float32: the numerator is an exact integer,
    so ``0 → −1`` and ``n_bins−1 → +1`` exactly.

    Args:
        levels: integer array of any shape, values in ``[0, n_bins−1]`` (checked by the caller).
        n_bins: number of levels, at least 2.
    Returns:
        float32 tensor of the same shape, values in ``[−1, 1]``.
    """
    k = np.asarray(levels).astype(np.float32)
    x = (2.0 * k - np.float32(n_bins - 1)) / np.float32(n_bins - 1)
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def unscale_discrete(x: Tensor, n_bins: int) -> Tensor:
    """Inverse of :func:`scale_discrete`: ``k = round((x + 1)(n_bins−1)/2)``, clamped to the levels.

    Args:
        x: tensor of any shape on the ``[−1, 1]`` scale (e.g. samples).
        n_bins: number of levels.
    Returns:
        int64 tensor of levels ``k ∈ {0, …, n_bins−1}``, same shape.
    """
    k = torch.round((x.double() + 1.0) * (n_bins - 1) / 2.0)
    return k.clamp(0, n_bins - 1).long()


def holdout_split(n: int, n_test: int | None = None, *, test_fraction: float = 0.1
                  ) -> tuple[np.ndarray, np.ndarray]:
    """A fixed train/test split of ``n`` examples (for data without an official split).

    The permutation comes from ``numpy.random.RandomState(SPLIT_SEED)`` (a stream NumPy keeps
    frozen); each side's indices are returned sorted, so examples keep their file order.

    Args:
        n: number of examples.
        n_test: test-set size; default ``round(test_fraction · n)``, at least 1 when ``n ≥ 2`` and
            0 when ``n == 1``.
        test_fraction: used when ``n_test`` is None (default 10 %).
    Returns:
        ``(train_idx, test_idx)``, int64 arrays, disjoint, together ``0..n−1``.
    """
    if n_test is None:
        n_test = min(max(1, round(test_fraction * n)), n - 1) if n >= 2 else 0
    if not 0 <= n_test < n:
        raise ValueError(f"n_test={n_test} must be in [0, {n}) for {n} examples")
    perm = np.random.RandomState(SPLIT_SEED).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


EXPECTED_SHAPES = ("[N, D] (vectors), [N, H, W] (grayscale images), [N, C, H, W] or "
                   "[N, H, W, C] with C in (1, 3, 4) (images)")


def to_event_layout(a: np.ndarray, source: str) -> np.ndarray:
    """Arrange an array of examples as ``[N, *event_shape]`` with images channel-first.

    Rules: ``[N, D]`` → event ``(D,)``; ``[N, H, W]`` → ``(1, H, W)``; ``[N, C, H, W]`` kept;
    ``[N, H, W, C]`` with ``C ∈ {1, 3, 4}`` and ``C < H``, ``C < W`` → transposed to
    ``(C, H, W)``.

    Args:
        a: array whose first axis indexes examples.
        source: the file or dataset, for error messages.
    Returns:
        the rearranged array (a view where possible).
    Raises:
        DataError: for rank 1 or rank ≥ 5, or no examples; the message gives the accepted shapes.
    """
    if a.ndim < 2 or a.ndim > 4:
        raise DataError(f"{source}: array has shape {list(a.shape)} (rank {a.ndim}); expected "
                        f"{EXPECTED_SHAPES}; reshape it to one of these")
    if a.shape[0] == 0:
        raise DataError(f"{source}: array has shape {list(a.shape)}, i.e. no examples; "
                        f"it must hold at least one")
    if any(s == 0 for s in a.shape[1:]):
        raise DataError(f"{source}: array has shape {list(a.shape)}, an example with a "
                        f"zero-size axis; expected {EXPECTED_SHAPES}")
    if a.ndim == 3:
        return a[:, None]
    if a.ndim == 4 and a.shape[3] in (1, 3, 4) and a.shape[3] < a.shape[1] and a.shape[3] < a.shape[2]:
        return a.transpose(0, 3, 1, 2)
    return a


def check_finite(a: np.ndarray, source: str) -> None:
    """Raise if a floating array holds NaN or ±inf.

    Raises:
        DataError: naming ``source`` and how many values are not finite.
    """
    if np.issubdtype(a.dtype, np.floating):
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise DataError(f"{source}: {bad} of {a.size} values are NaN or infinite; remove or "
                            f"replace them (e.g. numpy.nan_to_num) before loading")


def check_levels(a: np.ndarray, n_bins: int, source: str) -> None:
    """Check that ``a`` holds whole-number levels in ``[0, n_bins−1]`` (before :func:`scale_discrete`).

    Raises:
        DataError: naming ``source``, the offending range, and the expected levels.
    """
    if np.issubdtype(a.dtype, np.floating):
        check_finite(a, source)
        if not np.array_equal(a, np.round(a)):
            raise DataError(f"{source}: discrete data must hold whole numbers 0..{n_bins - 1}, "
                            f"found fractional values")
    elif not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"{source}: discrete data has dtype {a.dtype}; expected integer levels "
                        f"0..{n_bins - 1}")
    if (a.dtype == np.uint8 and n_bins == 256) or not a.size:
        return
    lo, hi = a.min(), a.max()
    if lo < 0 or hi > n_bins - 1:
        raise DataError(f"{source}: values range over [{lo}, {hi}], expected levels "
                        f"0..{n_bins - 1}; rescale the data to that range")


def check_labels(y: np.ndarray, n: int, source: str) -> Tensor:
    """Validate class labels for ``n`` examples and return them as an int64 tensor.

    Args:
        y: labels, rank 1, integer (or float with whole values).
        n: number of examples they label.
        source: the file or key, for error messages.
    Returns:
        ``[n]`` int64 tensor.
    Raises:
        DataError: wrong rank or length, non-integer or non-finite labels.
    """
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise DataError(f"{source}: labels have shape {list(y.shape)} but there are {n} examples; "
                        f"expected shape [{n}] (one integer label per example)")
    if np.issubdtype(y.dtype, np.floating):
        check_finite(y, source)
        if not np.array_equal(y, np.round(y)):
            raise DataError(f"{source}: labels must be whole numbers, found fractional values")
    elif not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise DataError(f"{source}: labels have dtype {y.dtype}; expected integers")
    return torch.from_numpy(y.astype(np.int64))


def continuous_range(*arrays: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` over all values of the given arrays (the value range of continuous data)."""
    lo = min(float(a.min()) for a in arrays if a.size)
    hi = max(float(a.max()) for a in arrays if a.size)
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else (-math.inf, math.inf)
