"""The user's own data: ``idx:DIR`` (MNIST IDX files), ``folder:DIR`` (image files), ``npz:FILE``.

Layouts (see each loader for the details and errors):

- ``idx:DIR``: ``train-images-idx3-ubyte[.gz]`` and/or ``t10k-images-idx3-ubyte[.gz]``, labels
  optional (``*-labels-idx1-ubyte[.gz]``); LeCun et al., "The MNIST database", IDX format.
- ``folder:DIR``: png/jpg/jpeg/bmp/gif/webp files, searched recursively, read with Pillow; with one
  subfolder per class (``DIR/cat/*.png``, ``DIR/dog/*.png``), labelled by the subfolder names.
- ``npz:FILE``: ``numpy.savez`` archive with key ``x`` (or ``train``/``test``), labels optional
  (``y``, or ``train_labels``/``test_labels``).

Labelled data gets ``DataSpec.num_classes`` (max label + 1 over train and test; the subfolders' count for a
folder, whose names are the ``class_names``).

Data without an official split gets the fixed 90/10 split of :func:`~genmodels.data.base.holdout_split`.
Every bad input raises :class:`~genmodels.data.base.DataError` naming the file and the fix.
"""

from __future__ import annotations

import gzip
import logging
import re
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genmodels.core import DataSpec
from genmodels.data.base import (
    DATASETS,
    DataError,
    DataOption,
    Dataset,
    DatasetEntry,
    check_finite,
    check_labels,
    check_levels,
    check_scale,
    continuous_range,
    given_or_holdout,
    holdout_split,
    parse_options,
    to_event_layout,
)
from genmodels.data.examples import STREAM_BYTES, ImageFiles, LevelExamples
from genmodels.data.sequences import fit_quantization, sequence_dataset, series_layout

__all__ = ["read_idx", "load_idx_dir", "load_image_folder", "load_npz", "IMAGE_EXTENSIONS", "ALPHA_MODES"]

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- IDX

# IDX type codes -> big-endian NumPy dtypes (LeCun et al., MNIST database page, "the IDX file format").
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (plain or gzip-compressed; detected from its first bytes).

    IDX layout (LeCun et al., MNIST database): a 4-byte magic number ``0x00 0x00 <type> <ndim>``,
    then ``ndim`` big-endian uint32 dimensions, then the values, big-endian, row-major. Type codes:
    ``0x08`` ubyte, ``0x09`` sbyte, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64.

    Args:
        path: the file.
    Returns:
        array of shape ``dims`` in native byte order (uint8 for ubyte files).
    Raises:
        DataError: missing or unreadable file, corrupt gzip, bad magic number, unknown type code,
            or a file shorter or longer than its header says; the message names the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file {path} not found") from None
    except OSError as e:
        raise DataError(f"IDX file {path} cannot be read ({e.strerror or e}); "
                        f"check its permissions") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"IDX file {path} is a corrupt gzip file ({e}); download it again "
                            f"or decompress it with gunzip to find the damage") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        magic = raw[:4].hex(" ") if raw else "(empty file)"
        raise DataError(f"IDX file {path} has a bad magic number {magic}; an IDX file starts with "
                        f"00 00 <type: 08 ubyte, 09, 0b, 0c, 0d, 0e> <number of dims>. Is it an "
                        f"MNIST-format file (e.g. train-images-idx3-ubyte) and not truncated?")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated inside its header; download it again")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"IDX file {path}: its header promises shape {list(dims)} "
                        f"({expected} bytes of data) but it holds {len(raw) - header}; the file is "
                        f"truncated or corrupt, download it again")
    a = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return a.astype(dtype.newbyteorder("="), copy=False)


_IDX_NAME = re.compile(r"^(?P<split>train|t10k|test)[-_.](?P<kind>images|labels)[-_.]idx\d[-_.]ubyte(\.gz)?$",
                       re.IGNORECASE)
_IDX_EXPECTED = ("train-images-idx3-ubyte[.gz] and/or t10k-images-idx3-ubyte[.gz] "
                 "(labels optional: *-labels-idx1-ubyte[.gz])")


def _find_idx_files(root: Path) -> dict[tuple[str, str], Path]:
    """``(split, kind) -> file`` for the IDX files in ``root``; split in {train, test}."""
    found: dict[tuple[str, str], Path] = {}
    for f in sorted(root.iterdir()):
        m = _IDX_NAME.match(f.name)
        if not m or not f.is_file():
            continue
        split = "train" if m["split"].lower() == "train" else "test"
        key = (split, m["kind"].lower())
        if key not in found or found[key].name.lower().endswith(".gz"):  # prefer the decompressed copy
            found[key] = f
    return found


def _idx_images(path: Path) -> np.ndarray:
    a = read_idx(path)
    if a.dtype != np.uint8:
        raise DataError(f"IDX file {path} holds {a.dtype} values; image files must be ubyte "
                        f"(type code 0x08, 0..255); convert them, or save float data with "
                        f"numpy.savez and load it as npz:FILE")
    return to_event_layout(a, f"IDX file {path}")


def load_idx_dir(directory: str | Path, name: str | None = None, *, require_test: bool = False) -> Dataset:
    """Load a folder of MNIST-format IDX files.

    Files (in ``directory`` itself, names case-insensitive, ``-``/``.``/``_`` separators accepted):
    ``train-images-idx3-ubyte[.gz]`` and/or ``t10k-images-idx3-ubyte[.gz]`` (``test-`` also
    accepted), with optional ``train-labels-idx1-ubyte[.gz]`` / ``t10k-labels-idx1-ubyte[.gz]``.
    When both image files exist they are the train/test split; when only one does, it gets the
    fixed 90/10 split of :func:`~genmodels.data.base.holdout_split`. Images ``[N, H, W]`` become
    ``[N, 1, H, W]``; values 0..255 are scaled to ``[−1, 1]`` (``n_bins = 256``).

    Args:
        directory: the folder.
        name: the name recorded in the spec (default ``"idx:<directory>"``).
        require_test: raise unless both train and test image files exist (for official splits).
    Returns:
        a :class:`~genmodels.data.base.Dataset`, labels where label files exist (then
        ``spec.num_classes`` = max label + 1).
    Raises:
        DataError: missing folder, no IDX image files, bad IDX file (see :func:`read_idx`), non-ubyte
            images, train/test image sizes that differ, label counts that differ from image counts.
    """
    root = Path(directory)
    name = name or f"idx:{directory}"
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataError(f"dataset {name!r}: {root} {what}; give a folder holding {_IDX_EXPECTED}")
    files = _find_idx_files(root)
    missing = [k for k in ("train", "test") if (k, "images") not in files]
    if len(missing) == 2 or (require_test and missing):
        have = ", ".join(sorted(f.name for f in root.iterdir())[:8]) or "nothing"
        lacking = " and ".join(f"{'t10k' if k == 'test' else k}-images-idx3-ubyte[.gz]" for k in missing)
        raise DataError(f"dataset {name!r}: {root} lacks {lacking} (found: {have}); "
                        f"expected {_IDX_EXPECTED}")
    xs = {s: _idx_images(files[(s, "images")]) for s in ("train", "test") if (s, "images") in files}
    ys = {s: check_labels(read_idx(files[(s, "labels")]), xs[s].shape[0], f"IDX file {files[(s, 'labels')]}")
          for s in xs if (s, "labels") in files}
    if len(xs) == 2 and xs["train"].shape[1:] != xs["test"].shape[1:]:
        raise DataError(f"dataset {name!r}: train images are {list(xs['train'].shape[1:])} but test images "
                        f"are {list(xs['test'].shape[1:])} ({files[('train', 'images')].name} vs "
                        f"{files[('test', 'images')].name}); both must have one size")
    train, test, y_train, y_test = given_or_holdout(xs, ys)
    spec = DataSpec(name=name, event_shape=tuple(train.shape[1:]), n_bins=256)
    return Dataset(spec, LevelExamples(train, 256), LevelExamples(test, 256), y_train, y_test)


# ----------------------------------------------------------------------------- image folders

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
"""File extensions ``folder:DIR`` reads (case-insensitive)."""


ALPHA_MODES = ("composite", "keep")
"""``folder:DIR?alpha=``: ``composite`` (the default) over ``background``, or ``keep`` alpha as a channel."""
BACKGROUNDS = {"white": 255, "black": 0}
"""``folder:DIR?background=``: the level transparent pixels are composited over (default white)."""
STREAM_MODES = ("auto", "true", "false")
"""``folder:DIR?stream=``: decode images from disk when read (``true``), hold them in memory (``false``), or
``auto``: stream when they would take more than :data:`~genmodels.data.examples.STREAM_BYTES`."""


def _read_image(path: Path, resize: int | None = None, crop: int | None = None) -> tuple[np.ndarray, str | None]:
    """``[H, W, C]`` uint8 array of one image file (C = 1 grey, 2 grey + alpha, 3 colour, 4 colour + alpha)
    and the kind of transparency it had (``"RGBA"``, ``"LA"``) or None; resized and centre-cropped by
    :func:`_fit` when ``resize``/``crop`` are given.

    The rule: 1-bit and ``L`` stay grey; ``LA``/``La`` (and ``L`` with a transparent level) are grey + alpha;
    ``RGBA``/``RGBa``/``PA``, and ``P``/``RGB`` with transparency (converted to RGBA first, as Pillow advises,
    which also keeps its palette-transparency warning away), are colour + alpha; every other mode is RGB.
    """
    try:
        with Image.open(path) as img:
            img.load()
            mode, transparent = img.mode, "transparency" in img.info
            if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                raise DataError(f"image {path} is {mode} (16-bit or float); folder:DIR reads "
                                f"8-bit images only: convert it to 8 bits, or save the array with "
                                f"numpy.savez and load it as npz:FILE")
            if mode in ("1", "L") and not transparent:
                im, kind = img.convert("L"), None
            elif mode in ("LA", "La", "L"):  # L with a transparent level (tRNS): grey + alpha
                im, kind = img.convert("LA"), "LA"
            elif mode in ("RGBA", "RGBa", "PA") or (mode in ("P", "RGB") and transparent):
                im, kind = img.convert("RGBA"), "RGBA"
            else:
                im, kind = img.convert("RGB"), None
            a = np.asarray(_fit(im, resize, crop, path), dtype=np.uint8)
            return (a[:, :, None] if a.ndim == 2 else a), kind
    except DataError:
        raise
    except Image.DecompressionBombError as e:
        raise DataError(f"image {path} is too large to read safely ({e}); downscale it") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # UnidentifiedImageError is an OSError
        raise DataError(f"image {path} cannot be read by Pillow ({type(e).__name__}: {e}); "
                        f"it is corrupt or not an image: re-save it or remove it from the folder") from None


def _fit(im: Image.Image, resize: int | None, crop: int | None, path: Path) -> Image.Image:
    """``resize``: scale the shorter side to ``resize`` pixels, keeping the aspect ratio (bicubic, antialiased, as
    torchvision's ``Resize(N)``); ``crop``: then the centre ``crop × crop`` square (``CenterCrop(N)``; the offset
    rounds down, as Pillow's ``ImageOps.fit`` does at centring 0.5)."""
    if resize is not None and min(im.size) != resize:
        w, h = im.size
        scale = resize / min(w, h)
        size = (resize, max(1, round(h * scale))) if w <= h else (max(1, round(w * scale)), resize)
        im = im.resize(size, Image.Resampling.BICUBIC)
    if crop is not None:
        w, h = im.size
        if w < crop or h < crop:
            raise DataError(f"image {path} is {w}x{h}, smaller than crop={crop}; add resize={crop} to scale it up "
                            f"first, or lower crop")
        left, top = (w - crop) // 2, (h - crop) // 2
        im = im.crop((left, top, left + crop, top + crop))
    return im


def _composite(a: np.ndarray, background: int) -> np.ndarray:
    """``[H, W, C+1]`` colour (or grey) + alpha → ``[H, W, C]`` over a uniform ``background`` level, rounded."""
    c, alpha = a[:, :, :-1].astype(np.int32), a[:, :, -1:].astype(np.int32)
    return ((c * alpha + background * (255 - alpha) + 127) // 255).astype(np.uint8)


@dataclass(frozen=True)
class _FolderReader:
    """Reads one file of a folder into the folder's one layout: ``uint8 [C, H, W]`` (picklable, for DataLoader
    workers). ``colour``: grey images become RGB; ``keep_alpha``: alpha is kept as the last channel (opaque for
    images without it); else transparency is composited over ``background`` (``alpha="composite"``). ``size``:
    ``(H, W)`` every image must have after ``resize``/``crop``; None skips the check (the caller checks)."""

    alpha: str
    background: int
    colour: bool
    keep_alpha: bool
    resize: int | None = None
    crop: int | None = None
    size: tuple[int, int] | None = None
    stream: bool = False

    def raw(self, path: Path) -> tuple[np.ndarray, str | None]:
        """The file as :func:`_read_image` gives it, composited where ``alpha="composite"``."""
        a, kind = _read_image(path, self.resize, self.crop)
        if kind is not None and self.alpha == "composite":
            a = _composite(a, self.background)
        return a, kind

    def unify(self, a: np.ndarray, path: Path) -> np.ndarray:
        """``[H, W, C]`` from :meth:`raw` -> the folder's layout ``[C, H, W]``.

        Raises:
            DataError: (streamed folders, whose layout was fixed from a sample of files) a colour or transparent
                image in a grey or opaque folder, or an image of another size; the message names the file.
        """
        has_alpha = a.shape[2] in (2, 4)
        if self.stream and ((a.shape[2] in (3, 4) and not self.colour) or (has_alpha and not self.keep_alpha)):
            raise DataError(f"image {path} is {'colour' if a.shape[2] in (3, 4) else 'transparent'}, but the images "
                            f"sampled to fix this streamed folder's layout were not; convert the folder to one mode, "
                            f"or load it with ?stream=false (which reads every image first)")
        if self.size is not None and a.shape[:2] != self.size:
            raise DataError(f"image {path} is {a.shape[1]}x{a.shape[0]} but the folder's images are "
                            f"{self.size[1]}x{self.size[0]} (width x height); add ?resize=N (and crop=N) to bring "
                            f"every image to one size, or resize them before loading")
        c, al = (a[:, :, :-1], a[:, :, -1:]) if has_alpha else (a, None)
        if self.colour and c.shape[2] == 1:  # mixed grayscale and colour: all to RGB (like PIL L -> RGB)
            c = np.repeat(c, 3, axis=2)
        if self.keep_alpha:
            c = np.concatenate([c, al if al is not None else np.full_like(c[:, :, :1], 255)], axis=2)
        return np.array(c.transpose(2, 0, 1), order="C")  # a writable copy [C, H, W]

    def __call__(self, path: str) -> np.ndarray:
        return self.unify(self.raw(Path(path))[0], Path(path))


STREAM_SAMPLE = 64
"""How many files (evenly spaced) fix the layout of a streamed folder: channels, alpha and size."""


def load_image_folder(directory: str | Path, name: str | None = None, *, alpha: str = "composite",
                      background: str = "white", resize: int | None = None, crop: int | None = None,
                      flip: bool = False, stream: str = "auto") -> Dataset:
    """Load every image under a folder as one dataset of 8-bit images.

    Files with the extensions in :data:`IMAGE_EXTENSIONS` are found recursively (hidden files,
    whose name starts with ``.``, are skipped) and read in sorted path order with Pillow. Grey
    images (``1``, ``L``) are 1 channel, colour images 3; if the folder mixes them, all become RGB.

    Transparency (``LA``, ``RGBA``, palette or grey/RGB images with a transparent entry): with
    ``alpha="composite"`` (the default) each pixel is composited over a uniform ``background``
    (``white``, the default, or ``black``): ``c' = round((c·a + b·(255 − a))/255)``, so the hidden
    colours of transparent pixels never become data, and grey + alpha stays 1 channel. With
    ``alpha="keep"`` alpha is kept as the last channel (grey: 2 channels, colour: 4), and images
    without it get an opaque one. What was done is logged once (one line). Values 0..255 are scaled
    to ``[−1, 1]`` (``n_bins = 256``), layout ``[N, C, H, W]``, held as uint8 levels
    (:class:`~genmodels.data.examples.LevelExamples`). Split: the fixed 90/10 split of
    :func:`~genmodels.data.base.holdout_split` (at least one test image when N ≥ 2).

    Geometry (``folder:DIR?resize=64&crop=64&flip=true``), the same for training and evaluation: ``resize`` scales
    each image's shorter side to that many pixels (bicubic, aspect kept), ``crop`` then takes the centre square
    (default: ``resize``'s size, so ``resize=64`` gives 64×64); ``flip`` mirrors training images left-right at
    random (:attr:`~genmodels.data.base.Dataset.hflip`; never at evaluation).

    Streaming (``stream=true``, or ``auto`` when the decoded images would exceed
    :data:`~genmodels.data.examples.STREAM_BYTES`): the files are decoded when read
    (:class:`~genmodels.data.examples.ImageFiles`; the trainer reads them through DataLoader workers), so a folder
    larger than memory trains. Its layout (channels, alpha, size) is fixed from :data:`STREAM_SAMPLE` evenly spaced
    files; a later file that does not fit raises :class:`~genmodels.data.base.DataError` naming it.

    Labels: a folder whose images all lie in subfolders (``DIR/cat/…``, ``DIR/dog/…``, at any depth below them)
    is labelled by the top-level subfolder each image is in: class k is the k-th subfolder name in sorted order
    (only subfolders that hold images count), and the names are ``spec.class_names``. The images keep the
    sorted path order either way, so a flat folder loads as it always did, unlabelled.

    Args:
        directory: the folder.
        name: the name recorded in the spec (default ``"folder:<directory>"``).
        alpha: ``composite`` or ``keep`` (``folder:DIR?alpha=keep``).
        background: ``white`` or ``black``, for ``composite`` (``folder:DIR?background=black``).
        resize: the shorter side in pixels, or None (as stored). crop: the centre square's side, or None (default:
            ``resize``). flip: random horizontal flips in training. stream: ``auto``, ``true`` or ``false``.
    Returns:
        a :class:`~genmodels.data.base.Dataset`, with labels when the images lie in class subfolders.
    Raises:
        DataError: missing folder, no image files, an unreadable image (named), 16-bit images,
            images of different sizes (two are named with their sizes; the fix is ``resize``), an image smaller
            than ``crop``, or images both at the top level and in subfolders (which would leave the top-level ones
            without a class).
    """
    root = Path(directory)
    name = name or f"folder:{directory}"
    if alpha not in ALPHA_MODES or background not in BACKGROUNDS or stream not in STREAM_MODES:
        raise DataError(f"dataset {name!r}: alpha must be one of {ALPHA_MODES}, background one of "
                        f"{tuple(BACKGROUNDS)} and stream one of {STREAM_MODES}, got alpha={alpha!r}, "
                        f"background={background!r}, stream={stream!r}")
    if crop is None:
        crop = resize
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataError(f"dataset {name!r}: {root} {what}; give a folder of image files "
                        f"({', '.join(IMAGE_EXTENSIONS)})")
    paths = sorted(p for p in root.rglob("*")
                   if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file())
    if not paths:
        raise DataError(f"dataset {name!r}: folder {root} holds no image files "
                        f"({', '.join(IMAGE_EXTENSIONS)}, searched recursively); put images in it")
    classes, y = _folder_classes(root, paths, name)
    probe = _FolderReader(alpha, BACKGROUNDS[background], False, False, resize, crop)
    picks = np.unique(np.linspace(0, len(paths) - 1, STREAM_SAMPLE).astype(int))
    images, transparent = _scan(probe, paths if stream == "false" else [paths[i] for i in picks], name)
    channels = (3 if any(a.shape[2] in (3, 4) for a in images) else 1) + (alpha == "keep" and bool(transparent))
    h, w = images[0].shape[:2]
    streamed = stream == "true" or (stream == "auto" and len(paths) * channels * h * w > STREAM_BYTES)
    if not streamed and len(images) < len(paths):  # held in memory: read them all, and the layout from all
        images, transparent = _scan(probe, paths, name)
    colour = any(a.shape[2] in (3, 4) for a in images)
    keep_alpha = alpha == "keep" and bool(transparent)
    channels = (3 if colour else 1) + keep_alpha
    reader = replace(probe, colour=colour, keep_alpha=keep_alpha, size=(h, w), stream=streamed)
    tr, te = holdout_split(len(paths))
    labels = None if y is None else torch.from_numpy(y)
    if classes is None:
        spec = DataSpec(name=name, event_shape=(channels, h, w), n_bins=256)
    else:
        shown = ", ".join(classes[:6]) + (", …" if len(classes) > 6 else "")
        logger.info("%s: %d images in %d classes, labelled by their subfolders (%s)", name, len(paths),
                    len(classes), shown)
        spec = DataSpec(name=name, event_shape=(channels, h, w), n_bins=256, num_classes=len(classes),
                        class_names=classes)
    if streamed:
        logger.info("%s: streaming %d images of %s from disk (decoded when read; layout from %d sampled files)",
                    name, len(paths), "x".join(map(str, spec.event_shape)), len(images))
        files = ImageFiles([str(p) for p in paths], spec.event_shape, reader)
        train, test = files.subset(tr), files.subset(te)
    else:
        x = np.stack([reader.unify(a, p) for a, p in zip(images, paths, strict=True)])  # [N, C, H, W] uint8
        _log_transparency(name, transparent, alpha, background, len(images), channels)
        train, test = LevelExamples(x[tr], 256), LevelExamples(x[te], 256)
    return Dataset(spec, train, test, None if labels is None else labels[tr], None if labels is None else labels[te],
                   hflip=flip)


def _scan(probe: _FolderReader, paths: list[Path], name: str) -> tuple[list[np.ndarray], dict[str, int]]:
    """Read ``paths`` (``probe.raw``): the arrays and how many of each kind of transparency they had.

    Raises:
        DataError: two images of different sizes (named, with the fix), or a file that cannot be read.
    """
    images: list[np.ndarray] = []
    transparent: dict[str, int] = {}
    for p in paths:
        a, kind = probe.raw(p)
        if images and a.shape[:2] != images[0].shape[:2]:
            (h0, w0), (h1, w1) = images[0].shape[:2], a.shape[:2]
            raise DataError(f"dataset {name!r}: images differ in size: {paths[0]} is {w0}x{h0} but {p} "
                            f"is {w1}x{h1} (width x height); add ?resize=N (shorter side to N, then the centre "
                            f"N x N) to bring them to one size, or resize them before loading")
        if kind is not None:
            transparent[kind] = transparent.get(kind, 0) + 1
        images.append(a)
    return images, transparent


def _log_transparency(name: str, transparent: dict[str, int], alpha: str, background: str, n: int,
                      channels: int) -> None:
    """One line saying what was done with the transparency of a folder's images, if any had it."""
    if not transparent:
        return
    kinds = " and ".join(f"{k} {kind}" for kind, k in sorted(transparent.items()))
    if alpha == "composite":
        logger.info("%s: composited %s images over %s; pass ?alpha=keep to model transparency", name, kinds,
                    background)
    else:
        opaque = n - sum(transparent.values())
        logger.info("%s: kept the alpha channel of %s images as channel %d of %d%s; pass ?alpha=composite to "
                    "composite over white instead", name, kinds, channels, channels,
                    f" (opaque for the other {opaque})" if opaque else "")


def _folder_classes(root: Path, paths: list[Path], name: str) -> tuple[tuple[str, ...] | None, np.ndarray | None]:
    """``(class names, labels [N] int64)`` of images under ``root`` in class subfolders, or ``(None, None)`` for a
    flat folder; class k is the k-th subfolder (that holds images) in sorted order.

    Raises:
        DataError: images both at the top level and in subfolders.
    """
    tops = [p.relative_to(root).parts for p in paths]
    loose = [p for p, t in zip(paths, tops, strict=True) if len(t) == 1]
    if len(loose) == len(paths):
        return None, None
    classes = tuple(sorted({t[0] for t in tops if len(t) > 1}))
    if loose:
        shown = ", ".join(p.name for p in loose[:3]) + (", …" if len(loose) > 3 else "")
        dirs = ", ".join(c + "/" for c in classes[:4]) + (", …" if len(classes) > 4 else "")
        raise DataError(f"dataset {name!r}: {root} has {len(loose)} image(s) at its top level ({shown}) beside "
                        f"class subfolders ({dirs}); move them into a class subfolder for labelled data, or move "
                        f"every image up into {root} for unlabelled data")
    index = {c: k for k, c in enumerate(classes)}
    return classes, np.array([index[t[0]] for t in tops], dtype=np.int64)


# ----------------------------------------------------------------------------- npz


def _npz_key(z: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return z[key]
    except ValueError as e:  # object arrays need pickle, which we never allow
        raise DataError(f"npz file {path}: key {key!r} cannot be read without pickle ({e}); save "
                        f"plain numeric arrays (numpy.savez(FILE, x=array.astype('float32')))") from None
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise DataError(f"npz file {path}: key {key!r} is corrupt ({e}); save the file again") from None


def _npz_array(a: np.ndarray, source: str) -> tuple[np.ndarray, bool]:
    """Validate one data array; returns it in ``[N, *event]`` layout and whether it is discrete."""
    if np.issubdtype(a.dtype, np.floating):
        check_finite(a, source)
        with np.errstate(over="ignore"):  # values beyond float32 become inf and are reported below
            a32 = a.astype(np.float32)
        check_finite(a32, source + " (after conversion to float32)")
        check_scale(a32, source)
        return to_event_layout(a32, source), False
    if np.issubdtype(a.dtype, np.integer):
        check_levels(a, 256, source + " (integer data is read as 8-bit levels 0..255)")
        return to_event_layout(a, source), True
    raise DataError(f"{source}: dtype {a.dtype} is not supported; save uint8 (8-bit levels 0..255) "
                    f"or float32 (continuous data)")


_NPZ_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip archive's first bytes (an .npz is a zip of .npy files)
_NPY_MAGIC = b"\x93NUMPY"


def _open_npz(path: Path, name: str) -> np.lib.npyio.NpzFile:
    """``np.load`` of an .npz archive, after checking its first bytes (so that random bytes are reported as what
    they are, not as "pickled data"), never unpickling."""
    expected = "an archive written by numpy.savez(FILE, x=array)"
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as e:
        raise DataError(f"dataset {name!r}: {path} cannot be read ({e.strerror or e}); check its permissions") from None
    if head.startswith(_NPY_MAGIC):
        raise DataError(f"dataset {name!r}: {path} is a single .npy array, not an .npz archive; "
                        f"write it with numpy.savez(FILE, x=array)")
    if not head.startswith(_NPZ_MAGIC):
        shown = head.hex(" ") if head else "nothing (an empty file)"
        raise DataError(f"dataset {name!r}: {path} is not a valid .npz file: it starts with {shown}, not a zip "
                        f"archive's 50 4b 03 04 ('PK'); expected {expected}")
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"dataset {name!r}: {path} is not a valid .npz file: a damaged zip archive "
                        f"({type(e).__name__}: {e}); expected {expected}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):  # pragma: no cover - the magic check comes first
        raise DataError(f"dataset {name!r}: {path} is not an .npz archive; expected {expected}")
    return z


def load_npz(file: str | Path, name: str | None = None, *, layout: str = "auto", quantize: str = "auto",
             levels: str = "auto") -> Dataset:
    """Load arrays saved with ``numpy.savez``.

    Keys: ``x`` (all data, with optional labels ``y``; gets the fixed 90/10 split of
    :func:`~genmodels.data.base.holdout_split`) or ``train`` and ``test`` (an explicit split, with
    optional ``train_labels`` / ``test_labels``; ``train`` alone is split 90/10 like ``x``). Labels are
    class numbers ``0..K−1``, ``spec.num_classes`` = max label + 1.

    Values: uint8 (or another integer dtype with values 0..255) is discrete, ``n_bins = 256``,
    scaled to ``[−1, 1]``; floating data is continuous and kept as it is (float32), ``n_bins =
    None``, ``value_range`` = (min, max) of the data. Rank: ``[N, D]`` → event ``(D,)``;
    ``[N, H, W]`` → ``(1, H, W)``; ``[N, C, H, W]`` kept; ``[N, H, W, C]`` with ``C ∈ {1, 3, 4}``
    smaller than ``H`` and ``W`` → ``(C, H, W)`` (:func:`~genmodels.data.base.to_event_layout`).
    Arrays are taken as they are: 4 channels stay 4 (no alpha rule, unlike ``folder:DIR``).

    ``layout="sequence"`` (``npz:FILE?layout=sequence``): ``x`` (or ``train``/``test``) of shape ``[N, L]``
    (or ``[N, 1, L]``) is N 1-D series of L steps, event ``(1, L)``, quantized to levels
    (:mod:`genmodels.data.sequences`: integers 0..K−1 as they are, floats into 256 uniform bins over their
    range, or μ-law with ``quantize="mulaw"``; ``levels`` sets K); the dataset records the inverse, and the
    choice is logged once.

    Args:
        file: the ``.npz`` file.
        name: the name recorded in the spec (default ``"npz:<file>"``).
        layout: ``auto`` (the rank rules above) or ``sequence``.
        quantize: ``auto``, ``levels``, ``uniform`` or ``mulaw`` (``layout="sequence"`` only).
        levels: ``auto`` or the number of levels K, as a string (``layout="sequence"`` only).
    Returns:
        a :class:`~genmodels.data.base.Dataset`.
    Raises:
        DataError: missing file, not an npz archive, missing key, wrong rank (rank 1 or ≥ 5),
            NaN/inf values (counted), unsupported dtype, train/test that disagree in shape or kind,
            labels that do not match; the message names the file.
    """
    path = Path(file)
    name = name or f"npz:{file}"
    if not path.is_file():
        what = "is a folder, not a file" if path.exists() else "does not exist"
        raise DataError(f"dataset {name!r}: {path} {what}; give a file written by "
                        f"numpy.savez(FILE, x=array)")
    if layout not in ("auto", "sequence"):
        raise DataError(f"dataset {name!r}: layout must be 'auto' or 'sequence', got {layout!r}")
    if layout != "sequence" and (quantize != "auto" or levels != "auto"):
        raise DataError(f"dataset {name!r}: quantize= and levels= apply to 1-D series; add layout=sequence "
                        f"(npz:FILE?layout=sequence&quantize=...)")
    z = _open_npz(path, name)
    with z:
        keys = set(z.files)
        if "x" in keys:
            arrays = {"x": _npz_key(z, "x", path)}
            labels = {"x": _npz_key(z, "y", path)} if "y" in keys else {}
        elif "train" in keys:
            arrays = {k: _npz_key(z, k, path) for k in ("train", "test") if k in keys}
            labels = {k: _npz_key(z, f"{k}_labels", path) for k in arrays if f"{k}_labels" in keys}
        else:
            raise DataError(f"dataset {name!r}: {path} has keys {sorted(keys) or '(none)'} but no 'x' "
                            f"or 'train'; save the data as numpy.savez(FILE, x=array[, y=labels]) or "
                            f"numpy.savez(FILE, train=..., test=...)")
    if layout == "sequence":
        return _npz_sequences(path, name, arrays, labels, quantize, levels)
    data = {k: _npz_array(a, f"npz file {path}, key {k!r}") for k, a in arrays.items()}
    ys = {k: check_labels(y, data[k][0].shape[0], f"npz file {path}, labels of {k!r}")
          for k, y in labels.items()}
    if len(data) == 2:
        (train, d_train), (test, d_test) = data["train"], data["test"]
        if train.shape[1:] != test.shape[1:] or d_train != d_test:
            raise DataError(f"npz file {path}: 'train' is {list(train.shape)} {train.dtype} but 'test' is "
                            f"{list(test.shape)} {test.dtype}; both need the same example shape and kind")
        y_train, y_test = ys.get("train"), ys.get("test")
    else:
        (k, (x, d_train)), = data.items()
        train, test, y_train, y_test = given_or_holdout({k: x}, ys)
    if d_train:
        spec = DataSpec(name=name, event_shape=tuple(train.shape[1:]), n_bins=256)
        return Dataset(spec, LevelExamples(train, 256), LevelExamples(test, 256), y_train, y_test)
    spec = DataSpec(name=name, event_shape=tuple(train.shape[1:]), n_bins=None,
                    value_range=continuous_range(train, test))
    return Dataset(spec, torch.from_numpy(np.ascontiguousarray(train)),
                   torch.from_numpy(np.ascontiguousarray(test)), y_train, y_test)


def _npz_sequences(path: Path, name: str, arrays: dict, labels: dict, quantize: str, levels: str) -> Dataset:
    """``layout=sequence``: series ``[N, L]`` quantized together (one range for train and test)."""
    series = {k: series_layout(a, f"npz file {path}, key {k!r}") for k, a in arrays.items()}
    ys = {k: check_labels(y, series[k].shape[0], f"npz file {path}, labels of {k!r}") for k, y in labels.items()}
    if len(series) == 2 and series["train"].shape[1] != series["test"].shape[1]:
        raise DataError(f"npz file {path}: 'train' series have {series['train'].shape[1]} steps but 'test' series "
                        f"{series['test'].shape[1]}; both need the same length L")
    every = np.concatenate([a.reshape(-1) for a in series.values()])
    if len({a.dtype.kind for a in series.values()}) > 1:
        every = every.astype(np.float64)
    q = fit_quantization(every, quantize, levels, f"npz file {path}")
    train, test, y_train, y_test = given_or_holdout(series, ys)
    ds = sequence_dataset(name, train, test, q, train_labels=y_train, test_labels=y_test)
    logger.info("%s: %d series of %d steps as 1-D sequences, event (1, %d), %s; `genmodels sample` writes x_user in "
                "these units", name, ds.n_train + ds.n_test, train.shape[1], train.shape[1], q.describe())
    return ds


# ----------------------------------------------------------------------------- registration

FOLDER_OPTIONS = (
    DataOption("alpha", "composite", ALPHA_MODES,
               "composite, the default: transparent pixels over the background; keep: alpha as an extra channel"),
    DataOption("background", "white", tuple(BACKGROUNDS), "default white"),
    DataOption("resize", "none", help="the shorter side to N pixels (bicubic), then the centre N x N"),
    DataOption("crop", "none", help="the centre N x N square (default: resize's N)"),
    DataOption("flip", "false", ("false", "true"), "true: random horizontal flips in training (never in evaluation)"),
    DataOption("stream", "auto", STREAM_MODES, "true: decode images from disk as they are read (folders larger than "
               "memory); auto: when the decoded images would exceed 2 GiB"),
)
NPZ_OPTIONS = (
    DataOption("layout", "auto", ("auto", "sequence"),
               "sequence: x of shape [N, L] as N 1-D series, event (1, L), for wavenet"),
    DataOption("quantize", "auto", ("auto", "levels", "uniform", "mulaw"),
               "sequences; auto: integers 0..K-1 as levels, floats in uniform bins over their range"),
    DataOption("levels", "auto", help="sequences; default 256 for floats, max+1 for integers", minimum=2),
)


def _load_folder_entry(arg: str, seed: int) -> Dataset:
    path, opts = parse_options("folder:", arg)
    if not path:
        raise DataError(f"dataset 'folder:{arg}' names no path; write it as 'folder:DIR'")
    size = {k: None if opts[k] == "none" else int(opts[k]) for k in ("resize", "crop")}
    return load_image_folder(path, f"folder:{arg}", alpha=opts["alpha"], background=opts["background"], **size,
                             flip=opts["flip"] == "true", stream=opts["stream"])


def _load_npz_entry(arg: str, seed: int) -> Dataset:
    path, opts = parse_options("npz:", arg)
    if not path:
        raise DataError(f"dataset 'npz:{arg}' names no path; write it as 'npz:FILE'")
    return load_npz(path, f"npz:{arg}", **opts)


DATASETS.register("idx:", DatasetEntry(
    lambda arg, seed: load_idx_dir(arg, f"idx:{arg}"),
    "a folder of MNIST-format IDX files (train-/t10k-images-idx3-ubyte[.gz], labels optional)",
    pattern="idx:DIR", paths=True))
DATASETS.register("folder:", DatasetEntry(
    _load_folder_entry,
    "a folder of png/jpg/bmp/gif/webp images of one size (recursive), 90/10 split; grey stays 1 channel; "
    "one subfolder per class gives labels",
    pattern="folder:DIR", options=FOLDER_OPTIONS, paths=True))
DATASETS.register("npz:", DatasetEntry(
    _load_npz_entry,
    "numpy.savez file with key x (or train/test), labels y optional; uint8 = 8-bit, float = continuous, by rank",
    pattern="npz:FILE", options=NPZ_OPTIONS, paths=True))
