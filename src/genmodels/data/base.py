"""The dataset container, the dataset registry, and the helpers every loader shares.

A dataset name resolves to a :class:`Dataset`: train and test tensors plus a
:class:`~genmodels.core.DataSpec` (DESIGN.md, "Data"). Loaders register themselves in
:data:`DATASETS`; :func:`load_dataset` dispatches on the name, or on the prefix for the user's own
files (``idx:DIR``, ``folder:DIR``, ``npz:FILE``, ``wav:DIR``).

Options. A prefixed name may end in ``?key=value&key=value`` options that its entry declares
(:class:`DataOption`), e.g. ``folder:faces?alpha=keep`` or ``npz:series.npz?layout=sequence``;
quote the name in a shell (``?`` and ``&`` are special there). :func:`parse_options` checks them.

Identity. A run stores where its data came from and what it looked like: :func:`resolve_source`
(absolute paths for the user's files, every option written out; embedded names unchanged) and a
:class:`DataFingerprint` (event shape, split sizes, levels, a hash of a fixed sample of the values and
one of every label), so a later command finds the same data from any working folder and notices when it
changed.

Labels. Labelled data (class numbers ``0..K−1`` beside each train and test example) has
``DataSpec.num_classes = K`` (max label + 1, or the number of names where the loader knows them, as
``class_names``); :class:`Dataset` fills K in where a loader leaves it out. Splits, binarization and
the fingerprint keep the labels.

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

import hashlib
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from genmodels.core import DataSpec
from genmodels.registry import Registry

if TYPE_CHECKING:
    from genmodels.data.examples import Examples
    from genmodels.data.sequences import Quantization

__all__ = [
    "DataError",
    "Dataset",
    "DatasetEntry",
    "DataOption",
    "DataFingerprint",
    "UNLABELLED",
    "DATASETS",
    "SPLIT_SEED",
    "load_dataset",
    "list_datasets",
    "parse_options",
    "resolve_source",
    "source_location",
    "scale_discrete",
    "unscale_discrete",
    "holdout_split",
    "to_event_layout",
    "check_finite",
    "check_scale",
    "given_or_holdout",
    "check_levels",
    "check_labels",
    "continuous_range",
]

SPLIT_SEED = 0
"""Seed of the fixed held-out splits (``numpy.random.RandomState``, a frozen stream)."""


_REMAP = "number the classes 0..K−1 (e.g. y = numpy.unique(y, return_inverse=True)[1])"


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
            (:func:`scale_discrete`), continuous data as it is. Discrete images are held as their levels and
            scaled when read (:class:`~genmodels.data.examples.Examples`: a uint8 array in memory, or image
            files streamed from disk), which index, slice and ``split`` like a float32 tensor (``x[:]`` is one).
        test: ``[M, *event_shape]`` float32, scaled like ``train`` (``M`` may be 0 for a one-example
            dataset).
        train_labels: ``[N]`` int64 class labels ``0..K−1``, or ``None``.
        test_labels: ``[M]`` int64 class labels ``0..K−1``, or ``None``.
        quantization: for series the loader quantized (``npz:FILE?layout=sequence``, ``wav:DIR``),
            how levels map back to the user's values
            (:class:`~genmodels.data.sequences.Quantization`); ``None`` otherwise.
        hflip: training mirrors each image left-right with probability ½ (``folder:DIR?flip=true``; the trainer
            draws the flips from its own seeded generator); evaluation never does.

    Classes. Labelled data has ``spec.num_classes`` K: when the loader leaves it ``None`` it is filled here with
    ``max label + 1`` over train and test, so every dataset with labels says how many classes it has (a loader
    that knows the names sets ``class_names``, and K with them). Unlabelled data keeps ``None``.

    Raises:
        DataError: if the tensors disagree with ``spec`` or with each other (a loader bug or bad
            hand-built data), a label is negative, or a label is ``≥ spec.num_classes``.
    """

    spec: DataSpec
    train: Tensor | Examples
    test: Tensor | Examples
    train_labels: Tensor | None = None
    test_labels: Tensor | None = None
    quantization: Quantization | None = None
    hflip: bool = False

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
        labels = [y for y in (self.train_labels, self.test_labels) if y is not None and y.numel()]
        if not labels:
            return
        lo, hi = min(int(y.min()) for y in labels), max(int(y.max()) for y in labels)
        if lo < 0:
            raise DataError(f"dataset {name!r}: labels must be class numbers 0..K−1, found {lo}; {_REMAP}")
        if self.spec.num_classes is None:
            object.__setattr__(self, "spec", replace(self.spec, num_classes=hi + 1))
        elif hi >= self.spec.num_classes:
            raise DataError(f"dataset {name!r}: label {hi} is out of range for its {self.spec.num_classes} classes "
                            f"(0..{self.spec.num_classes - 1}); {_REMAP}")

    @property
    def n_train(self) -> int:
        """Number of training examples N."""
        return int(self.train.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test examples M."""
        return int(self.test.shape[0])

    def __repr__(self) -> str:  # tensors would print their values
        k = self.spec.num_classes
        labels = "no labels" if k is None else f"{k} class{'es' if k != 1 else ''}"
        return (f"Dataset({self.spec.name!r}, train={list(self.train.shape)}, "
                f"test={list(self.test.shape)}, n_bins={self.spec.n_bins}, {labels})")


@dataclass(frozen=True)
class DataOption:
    """One ``?key=value`` option of a prefixed dataset (``folder:DIR?alpha=keep``).

    Attributes:
        name: the key.
        default: the value when the option is not given.
        choices: the allowed values; empty for an integer option (at least ``minimum``, or ``default``).
        help: what it does, for ``genmodels datasets``.
        minimum: the smallest integer an integer option takes.
    """

    name: str
    default: str
    choices: tuple[str, ...] = ()
    help: str = ""
    minimum: int = 1


@dataclass(frozen=True)
class DatasetEntry:
    """How to load one dataset, or one family of datasets named by a prefix.

    Attributes:
        load: ``load(arg, seed) -> Dataset``; ``arg`` is the full name for plain names
            (``"moons"``) and the part after the prefix for prefixed ones (the ``DIR`` of ``idx:DIR``,
            with any ``?options``; the loader reads them with :func:`parse_options`).
        description: one line for ``genmodels datasets``.
        pattern: how the name is written in listings (``"idx:DIR"``); defaults to the name.
        options: the ``?key=value`` options the prefix takes (:class:`DataOption`).
        paths: the argument is a file or folder (made absolute by :func:`resolve_source`).
        wraps: the argument is another dataset name (``binary:NAME``), resolved in turn.
    """

    load: Callable[[str, int], Dataset]
    description: str
    pattern: str | None = None
    options: tuple[DataOption, ...] = ()
    paths: bool = False
    wraps: bool = False


DATASETS: Registry[DatasetEntry] = Registry("dataset")
"""Name -> :class:`DatasetEntry`. Prefixed families are registered under their prefix
(``"idx:"``, ``"folder:"``, ``"npz:"``)."""


def load_dataset(name: str, *, seed: int = 0) -> Dataset:
    """Resolve a dataset name to tensors and their :class:`~genmodels.core.DataSpec`.

    Args:
        name: a registered name (``"digits"``, ``"mnist5k"``, ``"fashion-mnist"``, ``"moons"``,
            ``"swissroll"``, ``"8gaussians"``, ``"checkerboard"``; case-insensitive) or a prefixed
            path (``"idx:DIR"``, ``"folder:DIR"``, ``"npz:FILE"``, ``"wav:DIR"``), with its
            ``?key=value&…`` options (``"folder:faces?alpha=keep"``); see :func:`list_datasets`.
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
        appear as their pattern (``"idx:DIR"``), and the description of one with options ends with
        them (``options: ?alpha=composite|keep (…)``).
    """
    rows = []
    for n in DATASETS.names():
        e = DATASETS.get(n)
        desc = e.description
        if e.options:
            desc += "; options (?key=value&...): " + ", ".join(
                f"{o.name}={'|'.join(o.choices) if o.choices else o.default + '|N'} ({o.help})" for o in e.options)
        rows.append((e.pattern or n, desc))
    return rows


# ----------------------------------------------------------------------------- options and identity


def _prefixed(name: str) -> tuple[str, str] | None:
    """``(key, arg)`` of a registered prefixed name (``"folder:", "faces?alpha=keep"``), else None."""
    prefix, sep, arg = name.strip().partition(":")
    key = prefix.lower() + ":"
    if sep and len(prefix) > 1 and key in DATASETS:
        return key, arg
    return None


def parse_options(key: str, arg: str) -> tuple[str, dict[str, str]]:
    """Split the argument of a prefixed name into its path and its ``?key=value&…`` options.

    Every option the prefix declares is returned, with its default where not given. A ``?`` that is
    part of an existing path (and not of the path before it) is left alone.

    Args:
        key: the registered prefix, e.g. ``"folder:"``.
        arg: what follows it, e.g. ``"faces?alpha=keep"``.
    Returns:
        ``(path, {option: value})`` in the order the entry declares its options.
    Raises:
        DataError: an unknown option (the message lists the known ones), an option given twice, a
            piece without ``=``, or a value that is not one of the choices (or not an integer).
    """
    entry = DATASETS.get(key)
    name = key + arg
    path, query = arg, ""
    if "?" in arg and entry.options:
        head, _, tail = arg.rpartition("?")
        if not (os.path.exists(arg) and not os.path.exists(head)):
            path, query = head, tail
    known = {o.name: o for o in entry.options}
    takes = ", ".join(f"{o.name}={'|'.join(o.choices) or o.default}" for o in entry.options) or "no options"
    given: dict[str, str] = {}
    for piece in (p.strip() for p in query.split("&")):
        if not piece:
            continue
        k, sep, v = piece.partition("=")
        k, v = k.strip().lower(), v.strip()
        if not sep or not k:
            raise DataError(f"dataset {name!r}: option {piece!r} is not key=value; "
                            f"{entry.pattern or key} takes {takes}")
        if k not in known:
            raise DataError(f"dataset {name!r}: unknown option {k!r}; {entry.pattern or key} takes {takes} "
                            f"(`genmodels datasets` describes them)")
        if k in given:
            raise DataError(f"dataset {name!r}: option {k!r} is given twice")
        o = known[k]
        if o.choices and v.lower() not in o.choices:
            raise DataError(f"dataset {name!r}: {k}={v!r} is not one of {', '.join(o.choices)}")
        if not o.choices and v != o.default:
            try:
                ok = int(v) >= o.minimum
            except ValueError:
                ok = False
            if not ok:
                raise DataError(f"dataset {name!r}: {k}={v!r} must be an integer ≥ {o.minimum}"
                                f"{f' (or {o.default})' if not o.default.isdigit() else ''}")
        given[k] = v.lower() if o.choices else v
    return path, {o.name: given.get(o.name, o.default) for o in entry.options}


def resolve_source(name: str) -> str:
    """The dataset name a run stores, so that it loads the same data from any working folder.

    The user's files get an absolute path (``folder:faces`` → ``folder:/home/me/faces``) and every
    option written out with its value (``folder:/home/me/faces?alpha=composite&background=white``);
    a wrapper resolves its inner name (``binary:idx:d`` → ``binary:idx:/home/me/d``); embedded
    names and toys are returned as they are.

    Raises:
        DataError: a bad option (:func:`parse_options`).
    """
    name = name.strip()
    hit = _prefixed(name)
    if hit is None or not hit[1]:
        return name
    key, arg = hit
    entry = DATASETS.get(key)
    if entry.wraps:
        return key + resolve_source(arg)
    if not entry.paths:
        return name
    path, opts = parse_options(key, arg)
    query = "&".join(f"{k}={v}" for k, v in opts.items())
    return key + os.path.abspath(path) + (f"?{query}" if query else "")


def source_location(name: str) -> str:
    """How a message names where a dataset lives: ``the data at /abs/faces`` or ``the dataset 'speech'``."""
    hit = _prefixed(name)
    if hit is not None and hit[1]:
        key, arg = hit
        entry = DATASETS.get(key)
        if entry.wraps:
            return source_location(arg)
        if entry.paths:
            return f"the data at {parse_options(key, arg)[0]}"
    return f"the dataset {name!r}"


FINGERPRINT_EXAMPLES = (256, 64)
"""How many train and test examples :class:`DataFingerprint` hashes (evenly spaced, first and last included)."""


def _shape_text(shape: tuple[int, ...]) -> str:
    return f"({shape[0]},)" if len(shape) == 1 else "(" + ",".join(map(str, shape)) + ")"


UNLABELLED = "unlabelled"
""":attr:`DataFingerprint.labels` of data without labels."""


@dataclass(frozen=True)
class DataFingerprint:
    """What a dataset looked like when a run was trained on it, cheap to recompute and compare.

    Attributes:
        event_shape: shape of one example.
        n_train: training examples. n_test: test examples.
        n_bins: levels of discrete data, None for continuous data.
        hashed: how many examples the hash covers (:data:`FINGERPRINT_EXAMPLES` at most per split).
        sha256: the first 16 hex digits of the SHA-256 of their float32 values (train then test).
        labels: the first 16 hex digits of the SHA-256 of every label (train then test, int64), so that one
            changed label changes it; :data:`UNLABELLED` for data without labels; ``None`` in a record written
            before labels were fingerprinted, which is then not compared on labels (old runs still resume).
        num_classes: the data's class count K (``None`` unlabelled or not recorded), for :meth:`changes`' words.
    """

    event_shape: tuple[int, ...]
    n_train: int
    n_test: int
    n_bins: int | None
    hashed: int
    sha256: str
    labels: str | None = None
    num_classes: int | None = None

    @classmethod
    def of(cls, ds: Dataset) -> DataFingerprint:
        """The fingerprint of a loaded dataset (a few hundred examples and every label hashed: milliseconds)."""
        h, hashed = hashlib.sha256(), 0
        for x, k in zip((ds.train, ds.test), FINGERPRINT_EXAMPLES, strict=True):
            n = int(x.shape[0])
            if n == 0:
                continue
            idx = np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(np.int64))
            h.update(np.ascontiguousarray(x[torch.from_numpy(idx)].numpy(), dtype=np.float32).tobytes())
            hashed += len(idx)
        return cls(tuple(ds.spec.event_shape), ds.n_train, ds.n_test, ds.spec.n_bins, hashed, h.hexdigest()[:16],
                   _label_hash(ds), ds.spec.num_classes)

    def to_json(self) -> dict:
        """A JSON-ready dict; inverse of :meth:`from_json` (``labels``/``num_classes`` only when recorded)."""
        d = {"event_shape": list(self.event_shape), "n_train": self.n_train, "n_test": self.n_test,
             "n_bins": self.n_bins, "hashed": self.hashed, "sha256": self.sha256}
        if self.labels is not None:
            d["labels"], d["num_classes"] = self.labels, self.num_classes
        return d

    @classmethod
    def from_json(cls, d: dict) -> DataFingerprint:
        """Rebuild :meth:`to_json`'s dict; ``labels`` and ``num_classes`` are optional (older records lack them).

        Raises:
            ValueError: a missing or badly typed field.
        """
        try:
            labels, k = d.get("labels"), d.get("num_classes")
            if labels is not None and not isinstance(labels, str):
                raise TypeError(f"labels must be a string, got {labels!r}")
            fp = cls(tuple(int(s) for s in d["event_shape"]), int(d["n_train"]), int(d["n_test"]),
                     None if d["n_bins"] is None else int(d["n_bins"]), int(d["hashed"]), str(d["sha256"]),
                     labels, None if k is None else int(k))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"bad data fingerprint {d!r}: {type(e).__name__} {e}") from None
        return fp

    def changes(self, now: DataFingerprint, *, labels: bool = True) -> list[str]:
        """What differs from ``now``, in words (``["shape (3,32,32) → (4,32,32)", "500 → 480 images"]``);
        empty when the data is the same.

        Args:
            now: the fingerprint of the data as it is now.
            labels: compare the labels too (a caller whose model never sees them, an unconditional run, may pass
                False). They are compared only when both records have them.
        """
        unit = {3: "images", 2: "sequences"}.get(len(now.event_shape), "examples")
        out = []
        if self.event_shape != now.event_shape:
            out.append(f"shape {_shape_text(self.event_shape)} → {_shape_text(now.event_shape)}")
        old_n, new_n = self.n_train + self.n_test, now.n_train + now.n_test
        if old_n != new_n:
            out.append(f"{old_n} → {new_n} {unit}")
        elif (self.n_train, self.n_test) != (now.n_train, now.n_test):
            out.append(f"train/test {self.n_train}/{self.n_test} → {now.n_train}/{now.n_test}")
        if self.n_bins != now.n_bins:
            def lv(b):
                """Levels as a phrase ("17 levels", "continuous")."""
                return "continuous" if b is None else f"{b} levels"
            out.append(f"{lv(self.n_bins)} → {lv(now.n_bins)}")
        sized = not out
        if sized and self.sha256 != now.sha256:
            out.append(f"same shape and size, but other values in the {now.hashed} {unit} it hashes")
        if labels and self.labels is not None and now.labels is not None and self.labels != now.labels:
            def cl(fp):
                """The labelling as a phrase ("unlabelled", "10 classes")."""
                return UNLABELLED if fp.labels == UNLABELLED else f"{fp.num_classes} classes"
            if cl(self) != cl(now):
                out.append(f"{cl(self)} → {cl(now)}")
            elif sized:
                out.append(f"other labels ({cl(now)})")
        return out


def _label_hash(ds: Dataset) -> str:
    """:attr:`DataFingerprint.labels` of ``ds``: SHA-256 of every train then test label, or :data:`UNLABELLED`."""
    if ds.train_labels is None and ds.test_labels is None:
        return UNLABELLED
    h = hashlib.sha256()
    for split, y in (("train", ds.train_labels), ("test", ds.test_labels)):
        h.update(f"{split}:".encode())
        h.update(b"none;" if y is None else np.ascontiguousarray(y.numpy(), dtype="<i8").tobytes() + b";")
    return h.hexdigest()[:16]


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


def given_or_holdout(xs: dict[str, np.ndarray], ys: dict[str, np.ndarray]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(train, test, y_train, y_test)``: the file's own ``train``/``test`` arrays when it has both, else the one array
    split by :func:`holdout_split`; ``ys`` holds the labels of the same keys (missing: None).

    Args:
        xs: ``{"train": …, "test": …}`` or one ``{key: [N, …]}``. ys: labels by the same keys, ``[N]`` each.
    """
    if len(xs) == 2:
        return xs["train"], xs["test"], ys.get("train"), ys.get("test")
    (k, x), = xs.items()
    tr, te = holdout_split(x.shape[0])
    return x[tr], x[te], *((ys[k][tr], ys[k][te]) if k in ys else (None, None))


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


MAX_ABS_VALUE = 1e6
"""Largest |value| of continuous data that loads: the models work on data of about unit scale (a diffusion model's
prior is N(0, I), a flow's base too), so 1e30 is a unit mistake or garbage, never data to train on."""
WARN_ABS_VALUE = 100.0
"""Above this |value| continuous data loads with a warning to standardize it."""


def check_scale(a: np.ndarray, source: str) -> None:
    """Refuse continuous data far outside the models' scale (|x| > :data:`MAX_ABS_VALUE`); warn above
    :data:`WARN_ABS_VALUE`.

    Raises:
        DataError: naming ``source``, the largest |value| and the fix (standardize).
    """
    if not (np.issubdtype(a.dtype, np.floating) and a.size):
        return
    m = float(np.max(np.abs(a)))
    fix = "standardize it first, e.g. x = (x − x.mean(0)) / x.std(0)"
    if m > MAX_ABS_VALUE:
        raise DataError(f"{source}: values reach |x| = {m:.3g}, far outside the scale the models work on (about "
                        f"1; a diffusion model's prior is N(0, I)); {fix}")
    if m > WARN_ABS_VALUE:
        logging.getLogger(__name__).warning("%s: values reach |x| = %.3g; the models train best on data of about "
                                            "unit scale: %s", source, m, fix)


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
        DataError: wrong rank or length, non-integer, non-finite or negative labels.
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
    if y.size and y.min() < 0:
        raise DataError(f"{source}: labels must be class numbers 0..K−1, found {y.min():g}; {_REMAP}")
    return torch.from_numpy(y.astype(np.int64))


def continuous_range(*arrays: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` over all values of the given arrays (the value range of continuous data)."""
    lo = min(float(a.min()) for a in arrays if a.size)
    hi = max(float(a.max()) for a in arrays if a.size)
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else (-math.inf, math.inf)
