"""The pictures that explain an autoregressive model (PixelCNN, WaveNet): samples at two softmax temperatures on
images, waveforms and WAV files on sequences. The models' ``figures()`` call :func:`write_figures`; the loss curve
is the caller's.

Imported lazily (by the models' ``figures()``), never at ``import genmodels`` time: the pictures need matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["write_figures", "TEMPERATURE"]

TEMPERATURE = 0.7
"""The reduced temperature of ``samples_t0.7.png``: each conditional's logits divided by 0.7 before the softmax,
p(x_i | x_<i)^{1/T} renormalized, which sharpens every step's distribution (fewer, cleaner strokes)."""


def write_figures(model, data, out: Path, generator: torch.Generator) -> list[Path]:
    """An autoregressive model's pictures in the folder ``out``.

    Images: ``samples.png``, 64 ancestral samples x_i ~ p(x_i | x_<i) in raster order, and ``samples_t0.7.png``, 64
    at softmax temperature 0.7. 1-D sequences ``(C, L)``: 8 samples, as :func:`genmodels.viz.save_samples` writes
    them: a waveform picture ``samples.png`` and, for audio data (``spec.sample_rate`` set, e.g. ``speech``),
    ``samples_K.wav`` for K = 0..7. Other event shapes: nothing.

    Args:
        model: a trained PixelCNN or WaveNet in eval mode (``sample(n, generator, temperature=…)``).
        data: the :class:`~genmodels.data.Dataset` it was trained on (not read: the pictures are samples only).
        out: the figures folder (RUN/figures); created.
        generator: draws the samples.
    Returns:
        the written paths, in the order above (the picture before its WAV files).
    """
    from ..viz import save_samples, save_temperature_grids

    out = Path(out)
    written: list[Path] = []
    spec, g = model.spec, generator
    if spec.is_image:
        with torch.no_grad():
            written += save_temperature_grids(lambda n, t: model.sample(n, g, temperature=t), out,
                                              (1.0, TEMPERATURE), scale=max(1, 32 // spec.event_shape[-1]))
    elif spec.is_sequence:
        with torch.no_grad():
            written += save_samples(model.sample(8, g), spec, out / "samples.png")
    return written
