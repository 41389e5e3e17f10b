"""A split's examples kept compactly and read as float32 on the model's scale, a batch at a time.

Discrete data (images, quantized series) has integer levels ``k ∈ {0, …, n_bins−1}``; the model sees
``x = 2k/(n_bins−1) − 1`` (:func:`~genmodels.data.base.scale_discrete`). Holding ``x`` as float32 costs 4× the bytes of
the uint8 levels, so the loaders keep the levels and scale each batch when it is read:

- :class:`LevelExamples`: the levels in memory (uint8 for ≤ 256 levels), moved to the training device once;
- :class:`ImageFiles`: image files decoded on demand (``folder:DIR?stream=true``, or ``auto`` for a folder larger
  than :data:`STREAM_BYTES`), so a folder larger than memory trains; :mod:`genmodels.train` reads them through a
  ``torch.utils.data.DataLoader`` with worker processes, in the order its seeded permutation gives.

Both behave like a read-only ``[N, *event_shape]`` float32 tensor for what the library does with a split: ``len``,
``shape``, indexing by an int, a slice, a list or an index tensor (returning a float32 tensor), and ``split(size)``.
``x[:]`` (or ``float()``, ``double()``, ``numpy()``) reads all of it into one tensor; any other tensor operation
(``torch.cat``, ``x.min()``, ``x > 0``) reads it whole first. Reading gives exactly the values
:func:`scale_discrete` gives (the same float32 operations), so a run's numbers do not depend on how its data is
held.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["Examples", "LevelExamples", "ImageFiles", "STREAM_BYTES", "as_tensor", "scale_levels"]

STREAM_BYTES = 2 * 1024**3
"""``folder:DIR?stream=auto`` streams from disk when the decoded uint8 images would take more than this (2 GiB)."""


def scale_levels(levels: Tensor, n_bins: int) -> Tensor:
    """``x = (2k − (n_bins−1)) / (n_bins−1)`` in float32 of integer levels ``k`` (any shape, any device): the values of
    :func:`~genmodels.data.base.scale_discrete`, bit for bit (the same float32 operations in the same order)."""
    k = levels.to(torch.float32)
    return (2.0 * k - float(n_bins - 1)) / float(n_bins - 1)


def _level_dtype(n_bins: int) -> torch.dtype:
    return torch.uint8 if n_bins <= 256 else torch.int16 if n_bins <= 2**15 else torch.int32


class Examples:
    """``[N, *event_shape]`` examples of ``n_bins`` levels, read as float32 on ``[−1, 1]`` (module docstring).

    Subclasses implement :meth:`levels_at`. Attributes: ``shape`` (``torch.Size``), ``n_bins``; ``dtype`` is
    ``torch.float32`` (what reading returns).
    """

    dtype = torch.float32
    streams = False
    """True when reading decodes files (the trainer then reads through DataLoader workers)."""

    def __init__(self, shape: Sequence[int], n_bins: int):
        self.shape = torch.Size(shape)
        self.n_bins = int(n_bins)

    # -- what a subclass provides ---------------------------------------------------------------
    def levels_at(self, index: Tensor) -> Tensor:
        """The integer levels ``[len(index), *event_shape]`` of the examples at ``index`` (int64 ``[k]``)."""
        raise NotImplementedError

    # -- tensor-like reading --------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.shape[0])

    @property
    def ndim(self) -> int:
        """Dimensions of the split, ``1 + len(event_shape)``."""
        return len(self.shape)

    @property
    def device(self) -> torch.device:
        """Where reading returns its tensors."""
        return torch.device("cpu")

    def size(self, dim: int | None = None) -> torch.Size | int:
        """``shape``, or one entry of it (like ``Tensor.size``)."""
        return self.shape if dim is None else self.shape[dim]

    def scale(self, levels: Tensor) -> Tensor:
        """Levels -> float32 on ``[−1, 1]`` (:func:`scale_levels`)."""
        return scale_levels(levels, self.n_bins)

    def _index(self, index: Any) -> tuple[Tensor, bool]:
        """``(int64 indices [k] on the CPU, whether a single int was asked for)``; negative ints count from the end.

        Raises:
            IndexError: an index out of range. TypeError: an index of another kind (a tuple, a float).
        """
        n = len(self)
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            i = int(index) + (n if index < 0 else 0)
            if not 0 <= i < n:
                raise IndexError(f"index {index} is out of range for {n} examples")
            return torch.tensor([i]), True
        if isinstance(index, slice):
            return torch.arange(n)[index], False
        if isinstance(index, (list, np.ndarray, Tensor)):
            idx = torch.as_tensor(index).to("cpu")
            if idx.dtype == torch.bool:
                return idx.nonzero().reshape(-1), False
            if idx.is_floating_point() or idx.ndim != 1:
                raise TypeError(f"index examples with a 1-D integer tensor, got {idx.dtype} of shape "
                                f"{tuple(idx.shape)}")
            idx = idx.long()
            idx = torch.where(idx < 0, idx + n, idx)
            if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n):
                raise IndexError(f"index {int(idx.max())} is out of range for {n} examples")
            return idx, False
        raise TypeError(f"examples are indexed by an int, a slice, a list or a 1-D integer tensor, not "
                        f"{type(index).__name__}")

    def __getitem__(self, index: Any) -> Tensor:
        idx, single = self._index(index)
        x = self.scale(self.levels_at(idx))
        return x[0] if single else x

    def split(self, size: int) -> Iterator[Tensor]:
        """Consecutive float32 batches of at most ``size`` examples (like ``Tensor.split``, read one at a time)."""
        return (self[i:i + size] for i in range(0, len(self), size))

    def float(self) -> Tensor:
        """All of it as one float32 tensor (``x[:]``)."""
        return self[:]

    def double(self) -> Tensor:
        """All of it as one float64 tensor."""
        return self[:].double()

    def numpy(self) -> np.ndarray:
        """All of it as one float32 array."""
        return self[:].numpy()

    def __iter__(self) -> Iterator[Tensor]:
        return (self[i] for i in range(len(self)))

    # -- anything else a tensor does: on the whole split, read into one tensor ------------------
    @classmethod
    def __torch_function__(cls, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        """``torch.equal(x, y)``, ``torch.cat([x, y])``, ``torch.where(x > 0, …)``: examples are read whole first."""
        def read(a: Any) -> Any:
            """``a`` with every Examples in it (nested in lists and tuples) read into a tensor."""
            if isinstance(a, Examples):
                return a[:]
            if isinstance(a, (list, tuple)):
                return type(a)(read(b) for b in a)
            return a
        return func(*read(args), **{k: read(v) for k, v in (kwargs or {}).items()})

    def __getattr__(self, name: str) -> Any:
        """A tensor method not defined here (``x.min()``, ``x.flip(-1)``, ``x.mean()``) on ``x[:]``."""
        if name.startswith("_") or not hasattr(Tensor, name):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(self[:], name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.shape)}, n_bins={self.n_bins})"


def _whole(op: str) -> Callable:
    def method(self: Examples, *args: Any) -> Any:
        """The tensor operator on the whole split."""
        return getattr(self[:], op)(*args)
    method.__name__ = op
    method.__doc__ = f"``Tensor.{op}`` of ``x[:]``."
    return method


for _op in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__",
            "__pow__", "__neg__", "__abs__", "__gt__", "__ge__", "__lt__", "__le__", "__eq__", "__ne__"):
    setattr(Examples, _op, _whole(_op))
Examples.__hash__ = object.__hash__  # identity, as before __eq__ became element-wise


class LevelExamples(Examples):
    """Integer levels held in memory (uint8 for ≤ 256 levels: a quarter of float32's bytes).

    Args:
        levels: ``[N, *event_shape]`` integer array or tensor, values in ``0..n_bins−1`` (checked by the loader).
        n_bins: the number of levels.
    """

    def __init__(self, levels: np.ndarray | Tensor, n_bins: int):
        if isinstance(levels, np.ndarray):  # a copy only where torch cannot share it (read-only, strided)
            levels = torch.from_numpy(np.require(levels, requirements=["C", "W"]))
        super().__init__(levels.shape, n_bins)
        self.levels = levels.to(_level_dtype(n_bins))

    @property
    def device(self) -> torch.device:
        """Where the levels are (and reading returns its tensors)."""
        return self.levels.device

    def levels_at(self, index: Tensor) -> Tensor:
        """The stored levels at ``index``, on :attr:`device`."""
        return self.levels[index.to(self.levels.device)]

    def to(self, device: torch.device | str) -> LevelExamples:
        """The same examples with their levels on ``device`` (reading then returns tensors there)."""
        out = LevelExamples.__new__(LevelExamples)
        Examples.__init__(out, self.shape, self.n_bins)
        out.levels = self.levels.to(device)
        return out


class ImageFiles(Examples):
    """Image files decoded when read: 8-bit images, ``[C, H, W]`` each after ``read`` (which converts, resizes and
    crops them the one way the folder's options say), 256 levels.

    Args:
        paths: the files, in example order.
        event_shape: ``(C, H, W)`` that ``read`` returns for every file.
        read: ``read(path) -> uint8 [C, H, W]`` array; raises :class:`~genmodels.data.base.DataError` for a file it
            cannot read or that does not fit ``event_shape`` (named in the message).
    """

    streams = True

    def __init__(self, paths: Sequence[str], event_shape: Sequence[int], read: Callable[[str], np.ndarray]):
        super().__init__((len(paths), *event_shape), 256)
        # one NumPy array of strings, not a list of Python objects: forked DataLoader workers then share its pages
        # (a list's reference counts would copy it into each worker)
        self.paths = np.asarray([str(p) for p in paths])
        self.read = read

    def levels_at(self, index: Tensor) -> Tensor:
        """The files at ``index`` decoded (``read``), uint8 ``[len(index), C, H, W]``."""
        out = torch.empty((len(index), *self.shape[1:]), dtype=torch.uint8)
        for j, i in enumerate(index.tolist()):
            out[j] = torch.from_numpy(self.read(str(self.paths[i])))
        return out

    def subset(self, index: np.ndarray) -> ImageFiles:
        """The examples at ``index`` (a split of the folder), decoded the same way."""
        return ImageFiles(self.paths[index], self.shape[1:], self.read)


def as_tensor(x: Tensor | Examples) -> Tensor:
    """A split as one float32 tensor (``x`` itself when it is one already)."""
    return x if isinstance(x, Tensor) else x[:]
