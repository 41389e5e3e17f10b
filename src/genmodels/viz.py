"""Pictures of tensors: sample grids, trajectory strips and GIFs, schedule plots, loss curves, 2-D score fields
and sampling chains.

Every function here is a pure function of its tensor arguments: it knows nothing of diffusion, models or
training. Two kinds of input are understood:

- images ``[N, C, H, W]`` with ``C`` in ``{1, 3}`` on a known ``value_range`` (the data scale, ``(-1, 1)``
  by default), drawn pixel for pixel with Pillow;
- points ``[N, 2]`` (2-D toy data), drawn as a matplotlib scatter plot.

Files are written atomically (:mod:`genmodels.fileio`: a temporary file in the same folder, fsync, then
``os.replace``), so a killed run never leaves a half-written picture; parent folders are created.
matplotlib is imported lazily and used through its object API (``matplotlib.figure.Figure``, which renders
with Agg), so ``import genmodels.viz`` is cheap and no global pyplot backend or state is touched.

Notation: ``N`` images, ``C`` channels, ``H x W`` pixels, ``K`` time points (frames), ``n`` images per
time point, ``T`` schedule steps.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from .fileio import atomic_open

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure
    from PIL import Image as PILImage

__all__ = [
    "to_uint8",
    "make_grid",
    "save_grid",
    "save_strip",
    "save_gif",
    "save_schedule_plot",
    "save_loss_curve",
    "save_quality_vs_cost",
    "save_guidance_sweep",
    "save_latent_scatter",
    "FieldPanel",
    "save_score_fields",
    "save_trajectories",
    "save_samples", "save_temperature_grids",
]

PathLike = str | os.PathLike[str]
ValueRange = tuple[float, float]


# ----------------------------------------------------------------------------------------------------
# Tensor helpers
# ----------------------------------------------------------------------------------------------------


def _check_value_range(value_range: Sequence[float]) -> tuple[float, float]:
    if len(value_range) != 2:
        raise ValueError(f"value_range must be (low, high), got {value_range!r}")
    lo, hi = float(value_range[0]), float(value_range[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"value_range must be finite with low < high, got {value_range!r}")
    return lo, hi


def to_uint8(x: Tensor, value_range: ValueRange = (-1.0, 1.0)) -> Tensor:
    """Map values on ``value_range`` to bytes: ``low -> 0``, ``high -> 255``.

    Args:
        x: tensor of any shape and real dtype, on ``value_range`` (values outside are clamped). Any device;
            gradients are not tracked. NaN is drawn as ``low`` (black), so a diverged sample shows up as a
            dark tile instead of an error in the middle of a run.
        value_range: ``(low, high)`` of the data scale, e.g. ``(-1, 1)`` for model samples or
            ``(0, 255)`` for raw pixels.

    Returns:
        CPU ``torch.uint8`` tensor of the same shape: ``round((clamp(x) - low) / (high - low) * 255)``.

    Raises:
        ValueError: if ``value_range`` is not two finite numbers with ``low < high``.
    """
    lo, hi = _check_value_range(value_range)
    x = torch.as_tensor(x).detach().to(device="cpu", dtype=torch.float64)
    x = torch.nan_to_num(x, nan=lo).clamp(lo, hi)
    return torch.round((x - lo) / (hi - lo) * 255.0).to(torch.uint8)


def _check_images(x: Tensor, what: str = "x") -> Tensor:
    x = torch.as_tensor(x)
    if x.dim() != 4 or x.shape[1] not in (1, 3) or x.shape[0] == 0:
        raise ValueError(
            f"{what} must be images [N, C, H, W] with N >= 1 and C in {{1, 3}}, got shape {tuple(x.shape)}"
        )
    return x


def _is_points(x: Tensor) -> bool:
    return x.dim() == 2 and x.shape[1] == 2


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _upscale(img: Tensor, scale: int) -> Tensor:
    """Nearest-neighbour upscaling of ``img [C, H, W]`` by an integer factor -> ``[C, H*scale, W*scale]``."""
    if scale == 1:
        return img
    return img.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)


def make_grid(
    x: Tensor,
    nrow: int | None = None,
    padding: int = 2,
    value_range: ValueRange = (-1.0, 1.0),
    *,
    pad_value: int = 0,
) -> Tensor:
    """Tile a batch of images into one picture.

    Images are laid out row by row, ``nrow`` per row, with ``padding`` pixels of ``pad_value`` around and
    between tiles (the torchvision convention): the result is
    ``[C, rows * (H + padding) + padding, nrow * (W + padding) + padding]`` with ``rows = ceil(N / nrow)``.
    Image ``i`` has its top-left pixel at
    ``(padding + (i // nrow) * (H + padding), padding + (i % nrow) * (W + padding))``; unused cells of the
    last row are left at ``pad_value``.

    Args:
        x: images ``[N, C, H, W]``, ``C`` in ``{1, 3}``, on ``value_range`` (clamped; see :func:`to_uint8`).
        nrow: images per row (columns); default ``ceil(sqrt(N))``. Capped at ``N``.
        padding: pixels between and around tiles, ``>= 0``.
        value_range: ``(low, high)`` mapped to ``(0, 255)``.
        pad_value: byte value ``0..255`` of the padding (0 = black).

    Returns:
        CPU ``torch.uint8`` tensor ``[C, H', W']``.

    Raises:
        ValueError: for any other shape of ``x``, ``nrow < 1``, ``padding < 0``, a ``pad_value`` outside
            ``0..255`` or a bad ``value_range``.
    """
    x = _check_images(x)
    n, c, h, w = x.shape
    if nrow is None:
        nrow = math.ceil(math.sqrt(n))
    nrow = min(_check_int("nrow", nrow, 1), n)
    padding = _check_int("padding", padding, 0)
    pad_value = _check_int("pad_value", pad_value, 0)
    if pad_value > 255:
        raise ValueError(f"pad_value must be in 0..255, got {pad_value}")
    tiles = to_uint8(x, value_range)  # [N, C, H, W] uint8
    rows = math.ceil(n / nrow)
    grid = torch.full(
        (c, rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value, dtype=torch.uint8
    )
    for i in range(n):
        top = padding + (i // nrow) * (h + padding)
        left = padding + (i % nrow) * (w + padding)
        grid[:, top : top + h, left : left + w] = tiles[i]
    return grid


def _to_pil(img: Tensor) -> PILImage.Image:
    """``[C, H, W]`` uint8 with ``C`` in {1, 3} -> a Pillow image in mode ``L`` or ``RGB``."""
    from PIL import Image

    arr = img.permute(1, 2, 0).contiguous().numpy()  # [H, W, C]
    if arr.shape[2] == 1:
        return Image.fromarray(arr[:, :, 0])  # uint8 [H, W] -> mode L
    return Image.fromarray(arr)  # uint8 [H, W, 3] -> mode RGB


# ----------------------------------------------------------------------------------------------------
# Atomic file writing
# ----------------------------------------------------------------------------------------------------


def _save_pil(image: PILImage.Image, path: PathLike, **kw) -> Path:
    with atomic_open(path, parents=True) as f:
        image.save(f, **kw)
    return Path(path)


def _save_figure(fig: Figure, path: PathLike, dpi: int = 100) -> Path:
    with atomic_open(path, parents=True) as f:
        fig.savefig(f, format="png", dpi=dpi)
    return Path(path)


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure  # lazy: matplotlib is slow to import; Figure renders with Agg

    return Figure(figsize=(width, height), layout="constrained")


def _points_numpy(x: Tensor) -> np.ndarray:
    return torch.as_tensor(x).detach().to(device="cpu", dtype=torch.float64).numpy()


def _scatter(ax, pts: np.ndarray, title: str | None = None, adjustable: str = "datalim") -> None:
    ax.scatter(pts[:, 0], pts[:, 1], s=4, alpha=0.6, linewidths=0)
    ax.set_aspect("equal", adjustable=adjustable)  # shared axes need "box"
    if title is not None:
        ax.set_title(title)


# ----------------------------------------------------------------------------------------------------
# Grids, strips, GIFs
# ----------------------------------------------------------------------------------------------------


def save_grid(
    x: Tensor,
    path: PathLike,
    nrow: int | None = None,
    *,
    value_range: ValueRange = (-1.0, 1.0),
    padding: int = 2,
    scale: int = 1,
) -> Path:
    """Save a batch of images as a PNG grid, or a batch of 2-D points as a PNG scatter plot.

    Args:
        x: either images ``[N, C, H, W]`` with ``C`` in ``{1, 3}`` on ``value_range`` (grayscale or RGB,
            laid out by :func:`make_grid`), or points ``[N, 2]`` (any finite scale; axes fit the data).
        path: destination; PNG is written whatever the suffix. Parent folders are created; the write is
            atomic.
        nrow: images per row; default ``ceil(sqrt(N))``. Ignored for points.
        value_range: ``(low, high)`` of the image data, mapped to bytes ``(0, 255)``. Ignored for points.
        padding: pixels between tiles, before upscaling. Ignored for points.
        scale: integer nearest-neighbour upscaling of the whole grid, e.g. ``4`` so 8x8 digits are visible;
            the PNG is ``scale`` times the size of :func:`make_grid`'s output. Ignored for points.

    Returns:
        ``Path`` of the written file.

    Raises:
        ValueError: if ``x`` is neither ``[N, C, H, W]`` (``C`` in {1, 3}) nor ``[N, 2]``, or an argument is
            out of range (``nrow < 1``, ``padding < 0``, ``scale < 1``, bad ``value_range``).
    """
    x = torch.as_tensor(x)
    if _is_points(x):
        fig = _new_figure(4.0, 4.0)
        _scatter(fig.add_subplot(), _points_numpy(x))
        return _save_figure(fig, path)
    if x.dim() != 4:
        raise ValueError(
            "save_grid expects images [N, C, H, W] (C in {1, 3}) or points [N, 2], "
            f"got shape {tuple(x.shape)}"
        )
    scale = _check_int("scale", scale, 1)
    grid = _upscale(make_grid(x, nrow, padding, value_range), scale)
    return _save_pil(_to_pil(grid), path, format="PNG")


def save_strip(
    frames: Tensor,
    path: PathLike,
    labels: list[str] | None = None,
    value_range: ValueRange = (-1.0, 1.0),
    *,
    padding: int = 2,
    scale: int = 1,
) -> Path:
    """Save a trajectory as one PNG: one column per time point, one row per image.

    Made for the forward process (``x_0 -> x_T``) and reverse trajectories, but knows nothing of them.

    Args:
        frames: either images ``[K, n, C, H, W]`` (``K`` time points of ``n`` images, ``C`` in {1, 3}, on
            ``value_range``) -> a ``n x K`` grid with each label written above its column on a white
            band; or points ``[K, n, 2]`` -> ``K`` square scatter panels side by side on one shared window
            (covering every finite point), each titled with its label.
        path: destination PNG; parent folders are created; the write is atomic.
        labels: ``K`` strings such as ``"t=0"``, ``"t=250"``; ``None`` for no labels (images) or
            ``"0".."K-1"`` titles (points).
        value_range: ``(low, high)`` of the image data. Ignored for points.
        padding: pixels between tiles, before upscaling. Ignored for points.
        scale: integer nearest-neighbour upscaling of the images. Ignored for points.

    Returns:
        ``Path`` of the written file.

    Raises:
        ValueError: if ``frames`` is neither ``[K, n, C, H, W]`` nor ``[K, n, 2]`` with ``K, n >= 1``, if
            ``len(labels) != K``, or an argument is out of range.
    """
    frames = torch.as_tensor(frames)
    is_points = frames.dim() == 3 and frames.shape[2] == 2
    is_images = frames.dim() == 5 and frames.shape[2] in (1, 3)
    if not (is_points or is_images) or frames.shape[0] == 0 or frames.shape[1] == 0:
        raise ValueError(
            "save_strip expects frames [K, n, C, H, W] (C in {1, 3}) or points [K, n, 2] with K, n >= 1, "
            f"got shape {tuple(frames.shape)}"
        )
    k = frames.shape[0]
    if labels is not None and len(labels) != k:
        raise ValueError(f"save_strip got {len(labels)} labels for {k} time points; pass one label per frame")

    if is_points:
        pts = _points_numpy(frames)  # [K, n, 2]
        fig = _new_figure(2.5 * k, 2.8)
        axes = fig.subplots(1, k, sharex=True, sharey=True, squeeze=False)[0]
        finite = pts[np.isfinite(pts).all(axis=-1)]  # [M, 2]
        if finite.size:  # one square window over every panel, so motion between panels is visible
            lo, hi = float(finite.min()), float(finite.max())
            margin = 0.05 * (hi - lo) or 1.0
            axes[0].set_xlim(lo - margin, hi + margin)
            axes[0].set_ylim(lo - margin, hi + margin)
        for i, ax in enumerate(axes):
            _scatter(ax, pts[i], labels[i] if labels is not None else str(i), adjustable="box")
        return _save_figure(fig, path)

    from PIL import Image, ImageDraw, ImageFont

    scale = _check_int("scale", scale, 1)
    columns = [_upscale(make_grid(frames[i], 1, padding, value_range), scale) for i in range(k)]
    c, col_h, col_w = columns[0].shape  # every column: [C, n * (H + padding) + padding, W + padding * 2]
    mode, white, black = ("L", 255, 0) if c == 1 else ("RGB", (255, 255, 255), (0, 0, 0))

    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new(mode, (1, 1)))
    boxes = [measure.textbbox((0, 0), s, font=font) for s in labels] if labels is not None else []
    text_w = max((b[2] - b[0] for b in boxes), default=0)
    text_h = max((b[3] - b[1] for b in boxes), default=0)
    cell_w = max(col_w, text_w + 4)  # a column widens to fit its label
    band_h = text_h + 6 if labels is not None else 0

    canvas = Image.new(mode, (k * cell_w, band_h + col_h), white)
    draw = ImageDraw.Draw(canvas)
    for i, column in enumerate(columns):
        canvas.paste(_to_pil(column), (i * cell_w + (cell_w - col_w) // 2, band_h))
        if labels is not None:
            left, top, right, _ = boxes[i]
            x0 = i * cell_w + (cell_w - (right - left)) // 2 - left
            draw.text((x0, 3 - top), labels[i], fill=black, font=font)
    return _save_pil(canvas, path, format="PNG")


def save_gif(
    frames: Tensor,
    path: PathLike,
    value_range: ValueRange = (-1.0, 1.0),
    duration_ms: int = 80,
    *,
    nrow: int | None = None,
    padding: int = 2,
    scale: int = 1,
    loop: int = 0,
) -> Path:
    """Save a trajectory of image batches as an animated GIF, one grid per frame.

    Args:
        frames: images ``[K, N, C, H, W]``: ``K`` frames, each a batch of ``N`` images (``C`` in {1, 3}) on
            ``value_range``, drawn with :func:`make_grid`.
        path: destination GIF; parent folders are created; the write is atomic.
        value_range: ``(low, high)`` of the image data.
        duration_ms: display time of each frame in milliseconds, ``>= 1``.
        nrow: images per row of each grid; default ``ceil(sqrt(N))``.
        padding: pixels between tiles, before upscaling.
        scale: integer nearest-neighbour upscaling of each grid.
        loop: number of times to loop, ``0`` for forever.

    Returns:
        ``Path`` of the written file. Pillow merges consecutive identical frames into one longer frame, so
        the file can have fewer than ``K`` frames when the trajectory stands still.

    Raises:
        ValueError: if ``frames`` is not ``[K, N, C, H, W]`` with ``K, N >= 1`` and ``C`` in {1, 3}, or an
            argument is out of range.
    """
    frames = torch.as_tensor(frames)
    if frames.dim() != 5 or frames.shape[0] == 0 or frames.shape[1] == 0 or frames.shape[2] not in (1, 3):
        raise ValueError(
            f"save_gif expects frames [K, N, C, H, W] with K, N >= 1 and C in {{1, 3}}, got shape "
            f"{tuple(frames.shape)} (for 2-D points use save_strip)"
        )
    duration_ms = _check_int("duration_ms", duration_ms, 1)
    scale = _check_int("scale", scale, 1)
    images = [
        _to_pil(_upscale(make_grid(frame, nrow, padding, value_range), scale)) for frame in frames
    ]
    return _save_pil(
        images[0],
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=duration_ms,
        loop=_check_int("loop", loop, 0),
    )


# ----------------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------------


def save_schedule_plot(schedules: Mapping[str, tuple[Tensor, Tensor]], path: PathLike) -> Path:
    """Plot noise schedules: ``alphas_cumprod`` vs t (left) and logSNR vs t (right).

    The horizontal axis is the step ``t = 1..T`` when every schedule has the same ``T``, otherwise the
    normalized time ``t / T`` in ``(0, 1]`` so schedules of different lengths line up. Non-finite logSNR
    values (e.g. ``+inf`` at ``t = 0``) are left out of the plot.

    Args:
        schedules: name (e.g. ``"linear"``, ``"cosine"``) -> ``(alphas_cumprod [T], logsnr [T])``, where
            ``alphas_cumprod`` is in ``[0, 1]`` (unitless, ``ᾱ_t``) and ``logsnr = log(ᾱ_t / (1 - ᾱ_t))``
            in nats. Entry ``i`` belongs to step ``t = i + 1``.
        path: destination PNG; parent folders are created; the write is atomic.

    Returns:
        ``Path`` of the written file.

    Raises:
        ValueError: if ``schedules`` is empty, or a pair is not two 1-D tensors of the same length
            ``T >= 1``.
    """
    if not schedules:
        raise ValueError("save_schedule_plot needs at least one schedule, got an empty mapping")
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, pair in schedules.items():
        if len(pair) != 2:
            raise ValueError(f"schedule {name!r} must be a pair (alphas_cumprod [T], logsnr [T])")
        ac, ls = (_points_numpy(v) for v in pair)
        if ac.ndim != 1 or ls.ndim != 1 or ac.shape != ls.shape or ac.size == 0:
            raise ValueError(
                f"schedule {name!r} must be (alphas_cumprod [T], logsnr [T]), two 1-D tensors of the same "
                f"length T >= 1; got shapes {ac.shape} and {ls.shape}"
            )
        curves[str(name)] = (ac, ls)
    same_T = len({ac.size for ac, _ in curves.values()}) == 1

    fig = _new_figure(9.0, 3.5)
    ax_ac, ax_ls = fig.subplots(1, 2)
    for name, (ac, ls) in curves.items():
        T = ac.size
        t = np.arange(1, T + 1, dtype=np.float64)
        if not same_T:
            t = t / T
        ax_ac.plot(t, ac, label=name)
        finite = np.isfinite(ls)
        ax_ls.plot(t[finite], ls[finite], label=name)
    xlabel = "t" if same_T else "t / T"
    ax_ac.set(xlabel=xlabel, ylabel="alphas_cumprod  ᾱ_t", title="signal kept")
    ax_ls.set(xlabel=xlabel, ylabel="logSNR = log(ᾱ_t / (1 − ᾱ_t))", title="log signal-to-noise ratio")
    ax_ls.axhline(0.0, color="0.7", linewidth=0.8)
    for ax in (ax_ac, ax_ls):
        ax.grid(alpha=0.3)
        ax.legend()
    return _save_figure(fig, path)


def _read_metric(metrics_jsonl_path: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` sorted by step; the last record of a repeated step wins."""
    if not metrics_jsonl_path.is_file():
        raise FileNotFoundError(f"metrics file not found: {metrics_jsonl_path} (a run writes metrics.jsonl)")
    lines = metrics_jsonl_path.read_text(encoding="utf-8").splitlines()
    last = max((i for i, s in enumerate(lines) if s.strip()), default=-1)
    by_step: dict[float, float] = {}
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if i == last:  # a run killed mid-write can leave a partial last line
                continue
            raise ValueError(f"{metrics_jsonl_path}:{i + 1}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict) or "step" not in record or key not in record:
            continue  # other kinds of records (e.g. evaluation lines) lack this key
        try:
            by_step[float(record["step"])] = float(record[key])
        except (TypeError, ValueError):
            raise ValueError(
                f"{metrics_jsonl_path}:{i + 1}: 'step' and {key!r} must be numbers, "
                f"got {record['step']!r} and {record[key]!r}"
            ) from None
    if not by_step:
        raise ValueError(f"{metrics_jsonl_path} has no records with both 'step' and {key!r}")
    steps = np.array(sorted(by_step), dtype=np.float64)
    return steps, np.array([by_step[s] for s in steps], dtype=np.float64)


def _ema_smooth(values: np.ndarray, smoothing: float) -> np.ndarray:
    """Debiased exponential moving average (as TensorBoard draws it); non-finite values are skipped."""
    out = np.empty_like(values)
    avg, weight = 0.0, 0.0
    for i, v in enumerate(values):
        if np.isfinite(v):
            avg = smoothing * avg + (1.0 - smoothing) * v
            weight = smoothing * weight + (1.0 - smoothing)
        out[i] = avg / weight if weight > 0 else np.nan
    return out


def save_loss_curve(
    metrics_jsonl_path: PathLike, path: PathLike, key: str = "loss", *, smoothing: float = 0.9
) -> Path:
    """Plot one metric of a run against the training step, raw and smoothed.

    Reads ``metrics.jsonl`` (one JSON object per line). Lines without ``"step"`` or ``key`` are skipped
    (other kinds of records); if a step appears more than once (a resumed run logs again the steps after
    its last checkpoint) the last record wins; a malformed *last* line (a run killed mid-write) is skipped.
    The y axis is logarithmic when every finite value is positive.

    Args:
        metrics_jsonl_path: the run's ``metrics.jsonl``.
        path: destination PNG; parent folders are created; the write is atomic.
        key: the metric to plot (e.g. ``"loss"``, ``"bpd"``), in whatever unit the run logged it.
        smoothing: weight in ``[0, 1)`` of the debiased exponential moving average drawn over the raw
            curve; ``0`` draws no smoothing.

    Returns:
        ``Path`` of the written file.

    Raises:
        FileNotFoundError: if ``metrics_jsonl_path`` does not exist.
        ValueError: if a line other than the last is not valid JSON, a record has a non-numeric ``step`` or
            ``key``, no record has both, or ``smoothing`` is outside ``[0, 1)``.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    steps, values = _read_metric(Path(metrics_jsonl_path), key)
    finite = values[np.isfinite(values)]

    fig = _new_figure(6.0, 4.0)
    ax = fig.add_subplot()
    if smoothing > 0:
        ax.plot(steps, values, color="C0", alpha=0.3, linewidth=1.0, label="raw")
        ax.plot(steps, _ema_smooth(values, smoothing), color="C0", linewidth=1.8, label=f"EMA {smoothing:g}")
        ax.legend()
    else:
        ax.plot(steps, values, color="C0", linewidth=1.2)
    if len(steps) == 1:  # a line of one point draws nothing: mark it
        ax.plot(steps, values, "o", color="C0")
    if finite.size and (finite > 0).all():
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel=key, title=f"{key} vs step")
    ax.grid(alpha=0.3, which="both")
    return _save_figure(fig, path)


def save_quality_vs_cost(curves: Mapping[str, Sequence[tuple[float, float, float]]], path: PathLike, *,
                         metric: str = "Fréchet distance", floor: float | None = None,
                         references: Mapping[str, float] | None = None) -> Path:
    """Plot a sample-quality metric against NFE (left) and wall time per sample (right), one line per sampler.

    Args:
        curves: sampler name -> points ``(nfe, seconds_per_sample, value)``; points are sorted by NFE.
        path: destination PNG (atomic write, parents created).
        metric: axis label of the value (lower is better for distances).
        floor: drawn as a dashed line, e.g. the distance of the test split to the train split.
        references: label -> value drawn as dotted horizontal lines (e.g. 1000-step ancestral).
    Returns:
        ``Path`` of the written file.
    Raises:
        ValueError: if ``curves`` is empty or a point is not (nfe > 0, seconds > 0, value).
    """
    if not curves:
        raise ValueError("save_quality_vs_cost needs at least one sampler's points")
    fig = _new_figure(10.0, 3.8)
    ax_n, ax_t = fig.subplots(1, 2, sharey=True)
    for name, pts in curves.items():
        p = sorted((float(a), float(b), float(c)) for a, b, c in pts)
        if not p or any(a <= 0 or b <= 0 for a, b, _ in p):
            raise ValueError(f"sampler {name!r}: points must be (nfe > 0, seconds_per_sample > 0, value), got {pts}")
        arr = np.array(p)
        ax_n.plot(arr[:, 0], arr[:, 2], marker="o", label=name)
        ax_t.plot(arr[:, 1], arr[:, 2], marker="o", label=name)
    for ax, xlabel in ((ax_n, "network evaluations (NFE)"), (ax_t, "seconds per sample")):
        if floor is not None:
            ax.axhline(floor, color="0.4", linestyle="--", linewidth=1, label="reference: test vs train")
        for label, v in (references or {}).items():
            ax.axhline(v, color="0.6", linestyle=":", linewidth=1, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, which="both")
    ax_n.set_ylabel(metric)
    ax_n.legend(fontsize=8)
    return _save_figure(fig, path)


def save_guidance_sweep(scales: Sequence[float], class_accuracy: Sequence[float], fd: Sequence[float],
                        path: PathLike, *, fd_floor: float | None = None,
                        classifier_accuracy: float | None = None) -> Path:
    """The guidance sweep: the guidance scale w on the x-axis; left axis, how often the feature classifier recognizes
    the requested class (with its accuracy on real test images, the ceiling, dotted); right axis, the Fréchet
    distance to the test split (with the real-data floor, dashed).

    Args:
        scales: w per point. class_accuracy: fractions in [0, 1]. fd: Fréchet distances (≥ 0).
        path: destination PNG (atomic write, parents created).
    Returns:
        ``Path`` of the written file.
    Raises:
        ValueError: empty or unequal-length inputs.
    """
    if not scales or not (len(scales) == len(class_accuracy) == len(fd)):
        raise ValueError(f"save_guidance_sweep needs equal, non-empty lists; got {len(scales)} scales, "
                         f"{len(class_accuracy)} accuracies and {len(fd)} distances")
    fig = _new_figure(6.4, 3.8)
    ax = fig.subplots()
    order = np.argsort(np.asarray(scales, dtype=float))
    w = np.asarray(scales, dtype=float)[order]
    ax.plot(w, 100 * np.asarray(class_accuracy, dtype=float)[order], marker="o", color="C0",
            label="requested class recognized")
    if classifier_accuracy is not None:
        ax.axhline(100 * classifier_accuracy, color="C0", linestyle=":", linewidth=1,
                   label="classifier on real test images")
    ax.set(xlabel="guidance scale w", ylabel="requested class recognized (%)")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(w, np.asarray(fd, dtype=float)[order], marker="s", color="C3", label="Fréchet distance")
    if fd_floor is not None:
        ax2.axhline(fd_floor, color="C3", linestyle="--", linewidth=1, label="FD floor (train vs test)")
    ax2.set_ylabel("Fréchet distance (classifier features)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="center right")
    return _save_figure(fig, path)


def save_latent_scatter(z: Tensor, path: PathLike, labels: Tensor | None = None, *,
                        title: str = "posterior means of the test set") -> Path:
    """Scatter 2-D latent codes ``z`` ``[N, 2]``, coloured by class ``labels`` ``[N]`` (int) when given.

    Args:
        z: ``[N, 2]`` points (e.g. the posterior means E_q[z | x] of a VAE with a 2-D latent).
        path: destination PNG (atomic write, parents created).
        labels: ``[N]`` integer classes, or None for one colour.
    Returns:
        ``Path`` of the written file.
    Raises:
        ValueError: if ``z`` is not ``[N, 2]`` or ``labels`` does not have N entries.
    """
    pts = _points_numpy(z)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"save_latent_scatter expects [N, 2] latent codes, got shape {tuple(pts.shape)}")
    fig = _new_figure(5.0, 4.4)
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(pts[:, 0], pts[:, 1], s=4, alpha=0.6, linewidths=0)
    else:
        lab = torch.as_tensor(labels).cpu().numpy()
        if lab.shape != (len(pts),):
            raise ValueError(f"labels must have shape [{len(pts)}], got {tuple(lab.shape)}")
        sc = ax.scatter(pts[:, 0], pts[:, 1], c=lab, cmap="tab10", s=4, alpha=0.7, linewidths=0,
                        vmin=-0.5, vmax=9.5 if lab.max() < 10 else lab.max() + 0.5)
        fig.colorbar(sc, ax=ax, label="class",
                     ticks=sorted(set(lab.tolist())) if len(set(lab.tolist())) <= 20 else None)
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(title)
    ax.set_aspect("equal", adjustable="datalim")
    return _save_figure(fig, path)


# ----------------------------------------------------------------------------------------------------
# Score fields and Langevin trajectories (2-D)
# ----------------------------------------------------------------------------------------------------


@dataclass
class FieldPanel:
    """One panel of :func:`save_score_fields`.

    Attributes:
        title: drawn above the panel.
        log_density: ``[H, W]`` log-density (nats, any additive constant) on a regular grid over the figure's
            ``extent``, row 0 at the bottom (``y = y0``), column 0 at the left; drawn as a heatmap of the top
            ``depth`` nats (−inf, e.g. outside a checkerboard's squares, is drawn as the floor). None: no heatmap.
        score: ``[h, w, 2]`` vectors (∇_x log p) on a regular grid over the same ``extent`` (corners included),
            same orientation; drawn as arrows. Non-finite vectors are left out. None: no arrows.
    """

    title: str
    log_density: Tensor | None = None
    score: Tensor | None = None


def _check_extent(extent: Sequence[float]) -> tuple[float, float, float, float]:
    if len(extent) != 4:
        raise ValueError(f"extent must be (x0, x1, y0, y1), got {extent!r}")
    x0, x1, y0, y1 = (float(v) for v in extent)
    if not all(math.isfinite(v) for v in (x0, x1, y0, y1)) or not (x0 < x1 and y0 < y1):
        raise ValueError(f"extent must be finite with x0 < x1 and y0 < y1, got {extent!r}")
    return x0, x1, y0, y1


def _draw_log_density(ax, log_density: Tensor, extent: tuple[float, float, float, float], depth: float,
                      title: str) -> None:
    """A ``[H, W]`` log-density (row 0 at the bottom) as a heat map of its top ``depth`` nats on ``ax``."""
    ld = _points_numpy(log_density)
    if ld.ndim != 2:
        raise ValueError(f"panel {title!r}: log_density must be [H, W], got {ld.shape}")
    top = np.nanmax(np.where(np.isfinite(ld), ld, -np.inf))
    top = top if np.isfinite(top) else 0.0
    img = np.clip(np.nan_to_num(ld, nan=-np.inf, neginf=-np.inf), top - depth, top)
    ax.imshow(img, origin="lower", extent=extent, cmap="viridis", aspect="auto", interpolation="bilinear")


def save_density_maps(panels: Sequence[tuple[str, Tensor, Tensor | None]], extent: Sequence[float], path: PathLike,
                      *, depth: float = 8.0, title: str | None = None) -> Path:
    """Log-densities on one 2-D window as heat maps side by side, each with optional points on top (e.g. a flow's
    learned log p_θ with held-out data, beside the toy's true log p).

    Args:
        panels: ``(title, log_density, points)`` per panel: ``log_density`` ``[H, W]`` in nats on a regular grid over
            ``extent`` (row 0 at the bottom, column 0 at the left); ``points`` ``[M, 2]`` drawn as white dots, or None.
        extent: ``(x0, x1, y0, y1)``.
        path: destination PNG (atomic write, parents created).
        depth: nats below each panel's maximum that are shown (lower values are drawn as the floor).
        title: figure title.
    Returns:
        ``Path`` of the written file.
    Raises:
        ValueError: for no panels, a bad extent, a log-density that is not ``[H, W]`` or points that are not ``[M, 2]``.
    """
    if not panels:
        raise ValueError("save_density_maps needs at least one panel")
    x0, x1, y0, y1 = _check_extent(extent)
    fig = _new_figure(3.6 * len(panels), 3.6 + (0.3 if title else 0.0))
    for j, (name, log_density, points) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), j + 1)
        _draw_log_density(ax, log_density, (x0, x1, y0, y1), depth, name)
        if points is not None:
            pts = _points_numpy(points)
            if pts.ndim != 2 or pts.shape[1] != 2:
                raise ValueError(f"panel {name!r}: points must be [M, 2], got {pts.shape}")
            ax.scatter(pts[:, 0], pts[:, 1], s=2, color="white", alpha=0.6, linewidths=0)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_aspect("equal")
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save_figure(fig, path)


def save_waveforms(x: Tensor, path: PathLike, *, title: str | None = None) -> Path:
    """1-D sequences as stacked line plots, one row each (e.g. WaveNet's samples of μ-law-coded speech).

    Args:
        x: ``[N, L]`` or ``[N, 1, L]`` values (any scale; each row gets its own axis).
        path: destination PNG (atomic write, parents created).
        title: figure title.
    Returns:
        ``Path`` of the written file.
    Raises:
        ValueError: if ``x`` is not ``[N, L]`` / ``[N, 1, L]`` with N, L ≥ 1.
    """
    w = _points_numpy(torch.as_tensor(x))
    if w.ndim == 3 and w.shape[1] == 1:
        w = w[:, 0]
    if w.ndim != 2 or 0 in w.shape:
        raise ValueError(f"save_waveforms expects [N, L] or [N, 1, L] sequences, got {tuple(np.shape(x))}")
    fig = _new_figure(8.0, 1.1 * len(w) + (0.3 if title else 0.0))
    axes = fig.subplots(len(w), 1, squeeze=False)[:, 0]
    for ax, row in zip(axes, w, strict=True):
        ax.plot(row, linewidth=0.5, color="C0")
        ax.set_xlim(0, len(row) - 1)
        ax.tick_params(labelsize=6)
    axes[-1].set_xlabel("position", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save_figure(fig, path)


def save_score_fields(panels: Sequence[Sequence[FieldPanel]], extent: Sequence[float], path: PathLike, *,
                      depth: float = 8.0, title: str | None = None) -> Path:
    """Score vector fields over log-densities, as a grid of panels (rows × columns) on one 2-D window.

    Arrows show the direction of the score everywhere: each panel's vectors are drawn with length
    ``min(|s|/q, 1)`` grid cells, ``q`` the 90th percentile of ``|s|`` in that panel, so that the large scores far
    from the data (``|s| ~ distance/σ²``) do not hide the field near it.

    Args:
        panels: rows of :class:`FieldPanel` (rows may differ in length).
        extent: ``(x0, x1, y0, y1)``, the window every panel covers.
        path: destination PNG (atomic write, parents created).
        depth: nats of log-density shown below each panel's maximum (lower values are drawn as the floor).
        title: figure title.
    Returns:
        ``Path`` of the written file.
    Raises:
        ValueError: for no panels, a bad extent, or a field of the wrong shape.
    """
    rows = [list(r) for r in panels if len(r)]
    if not rows:
        raise ValueError("save_score_fields needs at least one panel")
    x0, x1, y0, y1 = _check_extent(extent)
    ncol = max(len(r) for r in rows)
    fig = _new_figure(3.4 * ncol, 3.4 * len(rows) + (0.3 if title else 0.0))
    axes = fig.subplots(len(rows), ncol, squeeze=False)
    for i, row in enumerate(rows):
        for j in range(ncol):
            ax = axes[i][j]
            if j >= len(row):
                ax.set_axis_off()
                continue
            panel = row[j]
            if panel.log_density is not None:
                _draw_log_density(ax, panel.log_density, (x0, x1, y0, y1), depth, panel.title)
            if panel.score is not None:
                sc = _points_numpy(panel.score)
                if sc.ndim != 3 or sc.shape[2] != 2:
                    raise ValueError(f"panel {panel.title!r}: score must be [h, w, 2], got {sc.shape}")
                h, w = sc.shape[:2]
                gx, gy = np.meshgrid(np.linspace(x0, x1, w), np.linspace(y0, y1, h))
                norm = np.linalg.norm(sc, axis=-1)
                finite = np.isfinite(norm)
                q = np.quantile(norm[finite], 0.9) if finite.any() else 1.0
                q = q if q > 0 else 1.0
                length = np.minimum(norm / q, 1.0)
                with np.errstate(invalid="ignore", divide="ignore"):
                    u = np.where(norm > 0, sc[..., 0] / norm, 0.0) * length
                    v = np.where(norm > 0, sc[..., 1] / norm, 0.0) * length
                cell = min((x1 - x0) / max(w - 1, 1), (y1 - y0) / max(h - 1, 1))
                u, v = np.where(finite, u * cell, np.nan), np.where(finite, v * cell, np.nan)
                ax.quiver(gx, gy, u, v, angles="xy", scale_units="xy", scale=1.0, color="white",
                          edgecolor="black", linewidth=0.3, width=0.006)
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
            ax.set_aspect("equal")
            ax.set_title(panel.title, fontsize=8)
            ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save_figure(fig, path)


def save_trajectories(trajectory: Tensor, path: PathLike, *, background: Tensor | None = None, n_paths: int = 10,
                      title: str | None = None) -> Path:
    """Sampling chains in 2-D: the paths of ``n_paths`` chains from their start (cross) to their end (dot), faint for
    the first 60% of the time points and strong after, over the final states of all chains and, in grey, reference
    points (e.g. held-out data). The window covers the final states and the reference points; excursions beyond it
    (an annealed chain at large σ) are cut at its edge.

    Args:
        trajectory: ``[K, n, 2]`` states of ``n`` chains at ``K`` time points (the first is the start).
        path: destination PNG (atomic write, parents created).
        background: ``[M, 2]`` points drawn in grey beneath, or None.
        n_paths: how many chains (the first ones) to draw as paths; ``>= 0``.
        title: figure title.
    Returns:
        ``Path`` of the written file.
    Raises:
        ValueError: if ``trajectory`` is not ``[K, n, 2]`` with K, n ≥ 1, or ``background`` is not ``[M, 2]``.
    """
    traj = _points_numpy(trajectory)
    if traj.ndim != 3 or traj.shape[2] != 2 or traj.shape[0] == 0 or traj.shape[1] == 0:
        raise ValueError(f"save_trajectories expects a trajectory [K, n, 2] with K, n >= 1, got {traj.shape}")
    n_paths = _check_int("n_paths", n_paths, 0)
    fig = _new_figure(5.0, 5.0)
    ax = fig.add_subplot()
    if background is not None:
        bg = _points_numpy(background)
        if bg.ndim != 2 or bg.shape[1] != 2:
            raise ValueError(f"background must be [M, 2] points, got {bg.shape}")
        ax.scatter(bg[:, 0], bg[:, 1], s=3, color="0.75", linewidths=0, label="data")
    end = traj[-1]
    ax.scatter(end[:, 0], end[:, 1], s=3, color="C0", alpha=0.6, linewidths=0, label="chain ends")
    for i in range(min(n_paths, traj.shape[1])):
        color = f"C{1 + i % 9}"
        late = int(0.6 * (traj.shape[0] - 1))  # the early part faint, the approach to the data strong
        ax.plot(traj[:late + 1, i, 0], traj[:late + 1, i, 1], color=color, linewidth=0.6, alpha=0.25)
        ax.plot(traj[late:, i, 0], traj[late:, i, 1], color=color, linewidth=0.9, alpha=0.9)
        ax.scatter(traj[0, i, 0], traj[0, i, 1], marker="x", s=18, color=color)
        ax.scatter(traj[-1, i, 0], traj[-1, i, 1], marker="o", s=14, color=color, edgecolors="black",
                   linewidths=0.4)
    shown = np.concatenate([end] + ([bg] if background is not None else []))  # the window: where chains end
    finite = shown[np.isfinite(shown).all(axis=-1)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        margin = 0.15 * (hi - lo) or 1.0
        ax.set_xlim(lo - margin, hi + margin)
        ax.set_ylim(lo - margin, hi + margin)
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="upper right")
    if title:
        ax.set_title(title, fontsize=9)
    return _save_figure(fig, path)


def save_samples(x: Tensor, spec, path: PathLike, title: str | None = None, nrow: int | None = None) -> list[Path]:
    """What ``genmodels sample`` writes for samples ``x`` of any family, chosen by the data's event shape.

    - images ``(C, H, W)``: a grid (:func:`save_grid`), small images upscaled to tiles of about 64 px
      (``scale = max(1, 64 // W)``);
    - sequences ``(C, L)``: a waveform picture of the first 8 (:func:`save_waveforms`, titled ``title`` or
      ``"N samples of NAME"``) and, when the data is audio (``spec.sample_rate`` set, e.g. ``speech`` at 8000 Hz),
      the first 8 as WAV files beside it, ``STEM_K.wav`` for K = 0..7 (:func:`genmodels.data.save_wav`: μ-law
      codes decoded to 16-bit linear PCM);
    - anything else (2-D points ``(2,)``): a scatter plot (:func:`save_grid`).

    Args:
        x: ``[n, *spec.event_shape]`` samples on the data scale (``[−1, 1]`` for discrete data).
        spec: the :class:`~genmodels.core.DataSpec` of the data (its ``event_shape``, ``name`` and ``sample_rate``).
        path: destination PNG (atomic write, parents created).
        title: the waveform picture's title (sequences only).
        nrow: images per grid row (None: a square grid), e.g. the samples per class for one row per class.
    Returns:
        the written paths: the picture first, then any WAV files.
    Raises:
        ValueError: ``x`` that does not fit the writer its shape selects (see those functions).
    """
    path = Path(path)
    if spec.is_image:
        return [save_grid(x, path, nrow, scale=max(1, 64 // x.shape[-1]))]
    if not spec.is_sequence:
        return [save_grid(x, path)]
    written = [save_waveforms(x[:8], path, title=title or f"{len(x)} samples of {spec.name}")]
    if spec.sample_rate is not None:
        from .data.speech import save_wav  # scipy's WAV writer: loaded for audio only

        for i in range(min(8, len(x))):
            written.append(Path(save_wav(x[i], path.with_name(f"{path.stem}_{i}.wav"), spec.sample_rate)))
    return written


def save_temperature_grids(sample: Callable[[int, float], Tensor], out: PathLike,
                           temperatures: Sequence[float] = (1.0, 0.7), n: int = 64,
                           scale: int = 1) -> list[Path]:
    """Sample grids at each temperature, ``samples.png`` for T = 1 and ``samples_tT.png`` for the others (e.g.
    ``samples_t0.7.png``): what a temperature means is the family's (a flow's base std, Glow §5; an autoregressive
    model's softmax temperature).

    Args:
        sample: ``sample(n, T) -> [n, C, H, W]`` images on the data scale. out: the folder. n: images per grid.
        scale: integer upscaling of the tiles (:func:`save_grid`).
    Returns:
        the written paths, in the order of ``temperatures``.
    """
    out = Path(out)
    return [save_grid(sample(n, t), out / ("samples.png" if t == 1.0 else f"samples_t{t:g}.png"), scale=scale)
            for t in temperatures]
