"""The pictures that explain a normalizing flow (NICE, RealNVP, Glow): samples at two temperatures on images, the
learned density beside the true one on 2-D data. The flows' ``figures()`` call :func:`write_figures`; the loss curve
is the caller's.

Imported lazily (by the models' ``figures()``), never at ``import genmodels`` time: the pictures need matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["write_figures", "TEMPERATURE"]

TEMPERATURE = 0.7
"""The reduced temperature of ``samples_t0.7.png``: the base distribution's std, as in Glow §5 (Kingma & Dhariwal
2018: sampling z ~ N(0, T²I) with T < 1 trades diversity for quality)."""


def write_figures(model, data, out: Path, generator: torch.Generator) -> list[Path]:
    """A flow's pictures in the folder ``out``.

    Images: ``samples.png``, 64 samples x = f⁻¹(z), z ~ N(0, I); ``samples_t0.7.png``, 64 samples at temperature 0.7,
    z ~ N(0, 0.7² I) (Glow §5).

    2-D data: ``density.png``, the learned log-density log p_θ on a 200 × 200 grid over the first 1000 test points
    (15 % margin), held-out points on top, beside the true log-density where the toy has one in closed form; and
    ``samples.png``, 2000 samples. Other event shapes: nothing.

    Args:
        model: a trained flow in eval mode (``sample(n, generator, temperature=…)`` and ``log_prob``).
        data: the :class:`~genmodels.data.Dataset` it was trained on (``data.spec.name`` names the toy).
        out: the figures folder (RUN/figures); created.
        generator: draws the samples.
    Returns:
        the written paths, in the order above.
    """
    from ..data.toys import toy_has_density, toy_log_density
    from ..viz import save_density_maps, save_grid, save_temperature_grids

    out = Path(out)
    written: list[Path] = []
    spec, g = model.spec, generator
    if spec.is_image:
        with torch.no_grad():
            written += save_temperature_grids(lambda n, t: model.sample(n, g, temperature=t), out,
                                              (1.0, TEMPERATURE), scale=max(1, 32 // spec.event_shape[-1]))
    elif spec.event_shape == (2,):
        name = data.spec.name
        test = data.test[:1000]
        lo, hi = test.min(0).values, test.max(0).values
        pad = 0.15 * (hi - lo)
        extent = (float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1]))
        H = 200
        xs, ys = torch.linspace(extent[0], extent[1], H), torch.linspace(extent[2], extent[3], H)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)  # row 0 at the bottom
        dtype = next(model.parameters()).dtype
        with torch.no_grad():
            log_p = torch.cat([model.log_prob(b.to(model.device, dtype)).double().cpu() for b in grid.split(5000)])
        panels = [(f"{_family(model)}: log p_θ, test data on top", log_p.reshape(H, H), test)]
        try:
            if toy_has_density(name):
                panels.insert(0, ("true log p", toy_log_density(name, grid).double().reshape(H, H), None))
        except ValueError:
            pass
        written.append(save_density_maps(panels, extent, out / "density.png"))
        with torch.no_grad():
            written.append(save_grid(model.sample(2000, g), out / "samples.png"))
    return written


def _family(model) -> str:
    """The family's registered name, e.g. ``realnvp`` for a :class:`RealNVP` (the class name in lower case)."""
    return type(model).__name__.lower()
