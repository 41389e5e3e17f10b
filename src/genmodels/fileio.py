"""Atomic file writes, once for the whole project: run folders, metrics, feature caches, pictures, sample caches.

Every writer fills a temporary file in the destination's folder (``.NAME.PID.RANDOM.tmp``), flushes and fsyncs
it, renames it over the destination with :func:`os.replace` (atomic on POSIX and Windows) and fsyncs the folder
so the rename itself survives a crash. Readers therefore see either the old file or the complete new one, never
a partial write, and a write that fails (an exception, a full disk, Ctrl-C) leaves the old file and no temporary
file behind. An :class:`OSError` of a failed write names the destination (``e.filename``), not the temporary
file: a full disk (``ENOSPC``) raised by ``write`` or ``fsync`` would otherwise name no file at all.
Temporary files are created with mode ``0o666`` less the process umask, like :func:`open`, not
``mkstemp``'s ``0o600``.

Three forms, for three kinds of writer:

- :func:`atomic_write_bytes` / :func:`atomic_write_text`: the content is already in memory (JSON, safetensors
  bytes, a ``torch.save`` buffer);
- :func:`atomic_open`: the writer takes a binary file object (``PIL.Image.save(f)``, ``Figure.savefig(f)``);
- :func:`atomic_path`: the writer insists on a path (``numpy.savez``); the temporary path keeps the
  destination's suffix, so writers that choose or append a format by extension write the right one.

The destination's folder must exist unless ``parents=True``. Only the standard library is imported.

JSON that any parser reads: :func:`json_dumps` writes a missing or non-finite number (NaN, ±inf) as ``null``, never
as the bare ``NaN``/``Infinity`` that :func:`json.dumps` emits by default and strict parsers refuse.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_open", "atomic_path", "fsync_dir", "finite_json",
           "json_dumps"]

PathLike = str | os.PathLike[str]


def _destination(path: PathLike, parents: bool) -> Path:
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist")
    return path


def _temp_path(path: Path, suffix: str = "") -> Path:
    """A fresh name next to ``path``: hidden, unique per process and call, ending ``.tmp`` + ``suffix``."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{suffix}")


def _discard(tmp: Path) -> None:
    """Remove a temporary file after a failed write; never raises (on a read-only or failing disk the removal can
    fail too, and the write's own error is the one to report)."""
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def _name_destination(e: BaseException, path: Path, tmp: Path) -> None:
    """Make an OSError of a write to ``tmp`` name ``path``, the file the caller asked for (in place); errors with
    a message of their own (no errno) are left as they are."""
    if isinstance(e, OSError) and e.errno is not None and (e.filename is None or str(e.filename) == str(tmp)):
        e.filename, e.filename2 = str(path), None


def fsync_dir(folder: PathLike) -> None:
    """Make the renames in ``folder`` durable (POSIX); a no-op where folders cannot be opened or synced
    (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _replace_or_discard(tmp: Path, path: Path) -> Iterator[None]:
    """Around the writing of ``tmp``: on success rename it over ``path`` and fsync the folder; on any exception remove
    it, name ``path`` (not the temporary) in an OSError, and re-raise."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException as e:
        _discard(tmp)
        _name_destination(e, path, tmp)
        raise
    fsync_dir(path.parent)


@contextmanager
def atomic_open(path: PathLike, *, parents: bool = False) -> Iterator[IO[bytes]]:
    """A binary file object whose content replaces ``path`` atomically when the ``with`` block ends without an
    exception (flush, fsync, :func:`os.replace`, fsync of the folder); on an exception the old file is kept,
    the temporary file removed and the exception re-raised.

        >>> import tempfile
        >>> d = tempfile.mkdtemp()
        >>> with atomic_open(Path(d) / "a.bin") as f:
        ...     _ = f.write(b"abc")
        >>> (Path(d) / "a.bin").read_bytes()
        b'abc'

    Args:
        path: the destination. parents: create missing parent folders (otherwise they must exist).
    Raises:
        FileNotFoundError: if the folder of ``path`` does not exist and ``parents`` is false.
        OSError: from the write or the rename (the old file is then unchanged).
    """
    path = _destination(path, parents)
    tmp = _temp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as e:  # a read-only folder, permission denied, a full disk (no inode)
        _name_destination(e, path, tmp)
        raise
    with _replace_or_discard(tmp, path), os.fdopen(fd, "wb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def atomic_path(path: PathLike, *, parents: bool = False) -> Iterator[Path]:
    """A temporary path for writers that need a file name; when the ``with`` block ends without an exception the
    file written there is fsynced and renamed over ``path`` (then the folder is fsynced); on an exception it is
    removed and the exception re-raised.

    The temporary path is in the same folder, does not exist yet, and ends with ``path``'s suffix (e.g.
    ``.x.npz.123.ab12cd34.tmp.npz``), so ``numpy.savez`` does not append another ``.npz`` and format-by-extension
    writers pick the destination's format.

    Args:
        path: the destination. parents: create missing parent folders (otherwise they must exist).
    Raises:
        FileNotFoundError: if the folder of ``path`` does not exist and ``parents`` is false, or the block wrote
            nothing at the temporary path.
        OSError: from the write or the rename (the old file is then unchanged).
    """
    path = _destination(path, parents)
    tmp = _temp_path(path, path.suffix)
    with _replace_or_discard(tmp, path):
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"nothing was written at the temporary path {tmp} of {path}")
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: PathLike, data: bytes, *, parents: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_open`).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    Raises:
        FileNotFoundError: if the folder of ``path`` does not exist and ``parents`` is false.
        OSError: from the write or the rename (the old file is then unchanged).
    """
    with atomic_open(path, parents=parents) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: PathLike, text: str, *, parents: bool = False) -> Path:
    """Write ``text`` to ``path`` atomically, UTF-8 encoded (:func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"), parents=parents)


def finite_json(obj: Any) -> Any:
    """``obj`` with every non-finite real number (NaN, ±inf; Python or numpy floats) replaced by None, through
    dicts, lists and tuples (tuples become lists); other values are returned as they are.

        >>> finite_json({"loss": float("nan"), "steps": [1, 2.5, float("inf")]})
        {'loss': None, 'steps': [1, 2.5, None]}
    """
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    if isinstance(obj, numbers.Real) and not isinstance(obj, numbers.Integral):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def _json_default(obj: Any) -> Any:
    """Numbers json does not know (numpy scalars, 0-d tensors) as floats, non-finite ones as None."""
    try:
        f = float(obj)
    except (TypeError, ValueError):
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable") from None
    return f if math.isfinite(f) else None


def json_dumps(obj: Any, **kw: Any) -> str:
    """:func:`json.dumps` of :func:`finite_json` ``(obj)`` with ``allow_nan=False``: a missing or non-finite number
    becomes ``null``, so the text is valid JSON (RFC 8259). Other numbers json does not know (numpy integers,
    0-d tensors) are written as floats. ``kw`` goes to :func:`json.dumps` (``indent``, ``sort_keys``…).

        >>> json_dumps({"final_loss": float("nan"), "steps": 0})
        '{"final_loss": null, "steps": 0}'
    """
    kw.setdefault("default", _json_default)
    return json.dumps(finite_json(obj), allow_nan=False, **kw)
