"""Masks of observed entries for inpainting and completion: ``known`` is a bool tensor ``[1, *event_shape]``,
True where a value is observed (kept) and False where the model fills it in
(:meth:`genmodels.core.GenerativeModel.inpaint`).

=============  ============================================================================================
``top``        the top half of an image is known, the bottom half filled in (rows ``0 … ⌊H/2⌋ − 1`` known)
``bottom``     the bottom half is known (rows ``⌊H/2⌋ … H − 1``), the top half filled in
``left``       the left half is known (columns ``0 … ⌊W/2⌋ − 1``; for a sequence (C, L) the first ⌊L/2⌋ steps,
               for a vector (D,) the first ⌊D/2⌋ entries), the right half filled in: *continuation*
``right``      the right half is known, the left half filled in
``center``     a centre box of half the side (⌊H/2⌋ × ⌊W/2⌋, at least 1 × 1) filled in, the rest known; for a
               sequence or a vector, the middle ⌊L/2⌋ steps
``random:F``   a fraction F ∈ [0, 1] of the pixels (steps, entries) filled in, chosen uniformly without
               replacement (exactly round(F·H·W) of them) with the given generator
a PNG file     white (grey level ≥ 128) = known, black = unknown; images only, of the data's height and width
=============  ============================================================================================

A pixel is known or unknown in all its channels at once. Every error is a ``ValueError`` of one line that names
the fix.

    >>> make_mask((1, 4, 4), "top")[0, 0].int()
    tensor([[1, 1, 1, 1],
            [1, 1, 1, 1],
            [0, 0, 0, 0],
            [0, 0, 0, 0]], dtype=torch.int32)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .core import DataSpec

__all__ = ["MaskKind", "MASK_HELP", "make_mask", "parse_mask", "unknown_fraction"]

MaskKind = Literal["top", "bottom", "left", "right", "center", "random"]
"""The named masks (``random`` is written ``random:F``); any other text is read as the path of a PNG file."""

MASK_HELP = ("which entries are known: top | bottom | left | right (that half known, the other filled in), center "
             "(a centre box filled in), random:F (a fraction F of the pixels filled in, e.g. random:0.5), or a PNG "
             "file of the images' size (white = known, black = filled in)")
"""One line for a command-line option's help."""

_NAMES = " | ".join(k if k != "random" else "random:F" for k in get_args(MaskKind))


def _event_shape(spec_or_shape: DataSpec | Sequence[int]) -> tuple[int, ...]:
    shape = tuple(spec_or_shape.event_shape if isinstance(spec_or_shape, DataSpec) else spec_or_shape)
    if not 1 <= len(shape) <= 3 or any(not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"a mask is for an event shape (D,), (C, L) or (C, H, W) of positive sizes, got {shape}")
    return shape


def _grid(shape: tuple[int, ...]) -> tuple[int, int]:
    """(rows, columns) of the pixel grid a mask is drawn on: (H, W) for an image, (1, L) for a sequence (C, L), (1, D)
    for a vector."""
    if len(shape) == 3:
        return shape[1], shape[2]
    return 1, shape[-1]


def _expand(grid_known: Tensor, shape: tuple[int, ...]) -> Tensor:
    """``[rows, cols]`` bool → ``[1, *shape]``, the same in every channel."""
    if len(shape) == 3:
        out = grid_known[None].expand(shape[0], -1, -1)
    elif len(shape) == 2:
        out = grid_known[0][None].expand(shape[0], -1)
    else:
        out = grid_known[0]
    return out.contiguous()[None]


def _named(shape: tuple[int, ...], kind: str) -> Tensor:
    rows, cols = _grid(shape)
    known = torch.ones(rows, cols, dtype=torch.bool)
    if kind in ("top", "bottom"):
        if len(shape) != 3:
            raise ValueError(f"a mask {kind!r} is for images (C, H, W); this data has shape {shape}: use left, "
                             f"right, center or random:F")
        h = rows // 2
        known[h:] = False
        if kind == "bottom":
            known = ~known
    elif kind in ("left", "right"):
        w = cols // 2
        known[:, w:] = False
        if kind == "right":
            known = ~known
    else:  # center
        bh, bw = max(rows // 2, 1), max(cols // 2, 1)  # a sequence's one row is all in the box
        r0, c0 = (rows - bh) // 2, (cols - bw) // 2
        known[r0:r0 + bh, c0:c0 + bw] = False
    return _expand(known, shape)


def _random(shape: tuple[int, ...], fraction: float, generator: torch.Generator | None) -> Tensor:
    rows, cols = _grid(shape)
    n = rows * cols
    k = round(fraction * n)
    known = torch.ones(n, dtype=torch.bool)
    known[torch.randperm(n, generator=generator)[:k]] = False
    return _expand(known.reshape(rows, cols), shape)


def _png(shape: tuple[int, ...], path: Path) -> Tensor:
    if len(shape) != 3:
        raise ValueError(f"a PNG mask is for images (C, H, W); this data has shape {shape}: use left, right, center "
                         f"or random:F")
    if not path.is_file():
        raise ValueError(f"mask file {str(path)!r} does not exist; give a PNG file (white = known) or one of "
                         f"{_NAMES}")
    try:
        with Image.open(path) as img:
            img.load()
            grey = np.asarray(img.convert("L"), dtype=np.uint8)
    except Image.DecompressionBombError:
        raise ValueError(f"mask file {path} is too large to read safely; make it the images' size") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # UnidentifiedImageError is an OSError
        raise ValueError(f"mask file {path} cannot be read as an image ({type(e).__name__}); save it as a PNG "
                         f"(white = known, black = unknown)") from None
    h, w = shape[1], shape[2]
    if grey.shape != (h, w):
        raise ValueError(f"mask file {path} is {grey.shape[1]}×{grey.shape[0]} (width × height), the images "
                         f"{w}×{h}; make a mask of the images' size")
    return _expand(torch.from_numpy(grey >= 128), shape)


def make_mask(spec_or_shape: DataSpec | Sequence[int], kind: str | Path,
              generator: torch.Generator | None = None) -> Tensor:
    """The ``known`` mask of a named kind or a PNG file (module docstring).

    Args:
        spec_or_shape: the data's :class:`~genmodels.core.DataSpec` or its event shape ((C, H, W), (C, L) or (D,)).
        kind: ``top``, ``bottom``, ``left``, ``right``, ``center``, ``random:F`` (F ∈ [0, 1], the fraction filled
            in), or the path of a PNG file (a :class:`~pathlib.Path`, or any other text).
        generator: draws the pixels of ``random:F`` (the other kinds draw nothing).
    Returns:
        bool ``[1, *event_shape]``, True where known.
    Raises:
        ValueError: a half or PNG mask for data that is not an image, F outside [0, 1] or not a number, a PNG file
            that is missing, unreadable or of another size (the message names both sizes).
    """
    shape = _event_shape(spec_or_shape)
    if isinstance(kind, Path):
        return _png(shape, kind)
    if kind in get_args(MaskKind) and kind != "random":
        return _named(shape, kind)
    if kind == "random" or kind.startswith("random:"):
        text = kind.partition(":")[2]
        try:
            fraction = float(text)
        except ValueError:
            raise ValueError(f"mask {kind!r}: give the fraction of pixels to fill in, e.g. random:0.5") from None
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"mask {kind!r}: the fraction must be between 0 and 1, e.g. random:0.5")
        return _random(shape, fraction, generator)
    return _png(shape, Path(kind))


def parse_mask(text: str, event_shape: Sequence[int], generator: torch.Generator | None = None) -> Tensor:
    """The mask a command line's ``--mask TEXT`` names (:data:`MASK_HELP`): :func:`make_mask` of the text, where a
    name is read without regard to case and spaces, and a text that is neither a name nor an existing file is
    refused with the list of names (a misspelt ``centre`` is not looked for as a file).

    Args:
        text: the option's value. event_shape: the data's event shape. generator: for ``random:F``.
    Returns:
        bool ``[1, *event_shape]``, True where known.
    Raises:
        ValueError: one line naming the fix (see :func:`make_mask`).
    """
    text = text.strip()
    if not text:
        raise ValueError(f"--mask is empty; give {_NAMES} or a PNG file")
    name = text.lower().replace(" ", "")
    if name == "centre":
        name = "center"
    if name in get_args(MaskKind) or name.startswith("random:"):
        return make_mask(event_shape, name, generator)
    path = Path(text).expanduser()
    if path.is_file() or path.suffix.lower() == ".png":
        return make_mask(event_shape, path, generator)
    raise ValueError(f"unknown mask {text!r}; use {_NAMES} (e.g. random:0.5) or a PNG file (white = known)")


def unknown_fraction(known: Tensor) -> float:
    """The fraction of entries a mask leaves to fill in (0 = all known)."""
    return 1.0 - known.float().mean().item()
