"""Sample quality of a class-conditional model against the guidance scale: the guidance sweep.

For each guidance scale w (classifier-free guidance, Ho & Salimans 2022, Eq. 6: ε̃ = (1 + w)·ε(x, y) − w·ε(x, ∅)),
``n_per_class`` samples of every class are drawn with the same seed, then scored twice:

- **fidelity to the class**: the dataset's feature classifier (:func:`~genmodels.metrics.features.feature_extractor`,
  the same network whose features give the Fréchet distance) reads each sample; the row reports how often it
  recognizes the class that was asked for (and, beside it, the classifier's accuracy on real test images — the
  ceiling a perfect model would reach);
- **distribution**: the Fréchet distance (and KID, precision, recall) of the class-balanced samples against the
  test split (:func:`~genmodels.metrics.sample_quality.sample_quality`; the test splits of ``digits``, ``mnist5k``
  and ``fashion-mnist`` are close to balanced), with the real-data floor.

Guidance trades the second for the first (Ho & Salimans 2022, Fig. 4: FID rises and IS rises with w); the sweep
measures where the trade sits for the user's model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..core import GenerativeModel, Progress
from ..data.base import Dataset
from ..sampling import draw_in_batches
from .features import feature_extractor
from .sample_quality import _prepare_samples, sample_quality

__all__ = ["GuidanceRow", "guidance_sweep", "guidance_table", "class_labels"]


def class_labels(num_classes: int, n_per_class: int) -> Tensor:
    """``[K·n]`` int64: ``n_per_class`` of class 0, then of class 1, …: one grid row per class."""
    return torch.arange(num_classes).repeat_interleave(n_per_class)


@dataclass
class GuidanceRow:
    """One guidance scale of the sweep.

    Attributes:
        guidance_scale: w. nfe: network evaluations per sample (both passes of a guided step counted).
        class_accuracy: fraction of samples the feature classifier assigns to the requested class.
        per_class_accuracy: the same, per class (``[K]``).
        quality: :func:`~genmodels.metrics.sample_quality.sample_quality`'s scores and floors.
        seconds_per_sample: sampling wall time per sample.
    """

    guidance_scale: float
    nfe: int
    class_accuracy: float
    per_class_accuracy: list[float]
    quality: dict[str, Any] = field(default_factory=dict)
    seconds_per_sample: float = 0.0
    samples: Tensor | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        """A JSON-ready dict (the samples left out)."""
        return {k: v for k, v in self.__dict__.items() if k != "samples"}


def guidance_sweep(model: GenerativeModel, dataset: Dataset, scales: Sequence[float], *, n_per_class: int = 50,
                   sampler: str | None = None, steps: int | None = None, seed: int = 0, batch_size: int = 100,
                   progress: Progress | None = None, on_row=None) -> list[GuidanceRow]:
    """Draw ``n_per_class`` samples of every class at each guidance scale and score them (module docstring).

    Args:
        model: a class-conditional model whose ``sampler`` takes guidance (``guidance_samplers``).
        dataset: its data (image data with a feature classifier: ``digits``, ``mnist5k``, ``fashion-mnist``).
        scales: the guidance scales w (0 = the conditional model alone).
        seed: every scale draws from a generator seeded ``seed`` (the same initial noise for every w).
        on_row: called with each finished :class:`GuidanceRow`.
    Returns:
        the rows in the order of ``scales``.
    Raises:
        ValueError: an unconditional model, a sampler without guidance, data without a feature classifier.
    """
    if model.num_classes is None:
        raise ValueError(f"the guidance sweep needs a class-conditional model; this {type(model).__name__} is "
                         f"unconditional (train it with --conditional)")
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be ≥ 1, got {n_per_class}")
    fe = feature_extractor(dataset, progress=progress)  # trained once (with gradients) if not cached
    y = class_labels(model.num_classes, n_per_class)
    rows = []
    for w in scales:
        model.check_guidance(sampler, float(w), y)
        opts = {"guidance_scale": float(w)} if w else {}
        start = time.perf_counter()
        with torch.no_grad():
            out = draw_in_batches(model, len(y), sampler, steps=steps, generator=torch.Generator().manual_seed(seed),
                                  batch_size=batch_size, progress=progress, y=y, **opts)
        seconds = (time.perf_counter() - start) / len(y)
        x = _prepare_samples(out.x0, dataset)
        with torch.no_grad():
            pred = fe.classifier(x).argmax(dim=1)
        hit = (pred == y).double()
        quality = sample_quality(out.x0, dataset, generator=torch.Generator().manual_seed(seed))
        row = GuidanceRow(float(w), out.nfe, hit.mean().item(),
                          [hit[y == k].mean().item() for k in range(model.num_classes)], quality, seconds, out.x0)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def guidance_table(rows: Sequence[GuidanceRow], classifier_accuracy: float | None = None) -> str:
    """A markdown table: w, NFE, class accuracy, FD (floor), KID, precision, recall, seconds per sample."""
    ceiling = f" (real test images: {classifier_accuracy:.1%})" if classifier_accuracy is not None else ""
    lines = [f"| w | NFE | requested class recognized{ceiling} | FD (floor) | KID | precision | recall | s/sample |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        q = r.quality
        kid = q.get("kid")
        kid_text = f"{kid[0]:.4f}" if isinstance(kid, (list, tuple)) else "–"
        lines.append(f"| {r.guidance_scale:g} | {r.nfe} | {r.class_accuracy:.1%} | {q['fd']:.2f} "
                     f"({q['fd_floor']:.2f}) | {kid_text} | {q['precision']:.3f} | {q['recall']:.3f} | "
                     f"{r.seconds_per_sample:.3f} |")
    return "\n".join(lines)
