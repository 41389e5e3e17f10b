"""One line for the errors a command meets that are not the library's own, and the range rules of its options.

The library raises ValueError / FileNotFoundError / KeyError with messages that name the file and the fix; the
command line prints those as they are. What else reaches it from the system gets its line here:

- an :class:`OSError` with an errno: a full disk (``ENOSPC``), a read-only or forbidden folder (``EROFS``,
  ``EACCES``/``EPERM``), or any other (the path and the system's words). :mod:`genmodels.fileio` makes a failed
  write name its destination, not its temporary file;
- running out of memory: :class:`MemoryError`, ``torch.OutOfMemoryError`` or the CPU allocator's RuntimeError.

    >>> import errno
    >>> one_line(OSError(errno.EROFS, "Read-only file system", "runs/a/model.safetensors"))
    'cannot write runs/a/model.safetensors (read-only file system); choose another --out, or copy the run somewhere writable'
    >>> one_line(RuntimeError("a bug")) is None  # not the system's: the caller keeps its traceback
    True
    >>> at_least(1)(0), at_least(0, strict=True)(0.5), positive_numbers("1e-2,0")
    ('must be ≥ 1, got 0', None, "expects comma-separated numbers > 0 like 1e-2,1e-3, got '1e-2,0'")

Only the standard library is imported (the command line imports this module at start-up).
"""  # noqa: E501  (the doctest's expected line is the message itself)

from __future__ import annotations

import errno
import math
import os
from collections.abc import Callable
from typing import Any

__all__ = ["one_line", "os_error_message", "at_least", "positive_numbers"]


def one_line(e: BaseException) -> str | None:
    """The one-line message for a system error ``e`` (an OSError, or running out of memory), or None for anything
    else (a RuntimeError that is a bug keeps its traceback)."""
    if isinstance(e, OSError):
        return os_error_message(e)
    text = str(e)
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or "can't allocate memory" in text \
            or (isinstance(e, RuntimeError) and "out of memory" in text):
        first = (text.strip().splitlines() or [type(e).__name__])[0][:200]
        return f"out of memory ({first}); use a smaller --batch-size, fewer samples or a smaller model"
    return None


def os_error_message(e: OSError) -> str:
    """One line for an OSError: the library's own message as it is (no errno); for the system's, the file, the
    problem and the fix."""
    if e.errno is None:
        return str(e)
    path = e.filename2 if e.filename2 is not None else e.filename
    where = str(path) if path is not None else "a file"
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return (f"no space left on the device while writing {where}; free space and run the command again (an "
                f"interrupted `genmodels train` continues from its last checkpoint with --resume)")
    if e.errno == errno.EROFS:
        return f"cannot write {where} (read-only file system); choose another --out, or copy the run somewhere writable"
    if e.errno in (errno.EACCES, errno.EPERM):
        if path is not None and os.path.exists(path) and not os.access(path, os.R_OK):
            return f"cannot read {where} (permission denied); make it readable (chmod), or run as its owner"
        return f"cannot write {where} (permission denied); choose another --out, or make its folder writable"
    return f"{where}: {e.strerror or e} ({errno.errorcode.get(e.errno, e.errno)})"


def at_least(low: float, *, strict: bool = False) -> Callable[[Any], str | None]:
    """A range rule for a numeric option: None when the value is ≥ ``low`` (``strict``: > ``low``), else what is
    wrong ("must be ≥ 1, got 0")."""

    def rule(value: Any) -> str | None:
        """None, or the error."""
        ok = value > low if strict else value >= low
        return None if ok else f"must be {'>' if strict else '≥'} {low:g}, got {value:g}"

    return rule


def positive_numbers(text: str) -> str | None:
    """A rule for comma-separated numbers that must each be finite and > 0 (``--tol 1e-2,1e-3``)."""
    for v in (v.strip() for v in text.split(",")):
        try:
            ok = not v or (math.isfinite(float(v)) and float(v) > 0)
        except ValueError:
            ok = False
        if not ok:
            return f"expects comma-separated numbers > 0 like 1e-2,1e-3, got {text!r}"
    return None
