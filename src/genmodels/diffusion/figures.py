"""The pictures that explain a diffusion model (DDPM, VDM): the forward process, the reverse trajectory and the noise
schedule. :meth:`DDPM.figures` / :meth:`VDM.figures` call :func:`write_figures`; the loss curve is the caller's.

Imported lazily (by the models' ``figures()``), never at ``import genmodels`` time: the pictures need matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["write_figures"]

N_IMAGES = 8
"""Images per frame of the strips (one row each); 2-D data uses :data:`N_POINTS` points."""
N_POINTS = 500
"""Points per frame of the strips on 2-D data."""


def write_figures(model, data, out: Path, generator: torch.Generator) -> list[Path]:
    """A diffusion model's pictures in the folder ``out``.

    Images and 2-D data:

    - ``forward.png``: the forward process q(x_t | x_0) (DDPM Eq. 4, x_t = α_t x_0 + σ_t ε) of 8 test images (500 test
      points on 2-D data) at x_0 and t = 1, T/10, T/4, T/2, 3T/4, T (one noise draw per frame);
    - ``reverse.png``: one ancestral run of all T steps (DDPM Algorithm 2) at t = T, 3T/4, T/2, T/4, T/10 and x_0;
    - ``reverse.gif`` (images only): the same run in about 50 frames.

    Every model: ``schedule.png``, ᾱ_t and log-SNR λ_t against t/T of the curves :meth:`schedule_curves` returns
    (DDPM: its own schedule among the linear and cosine references; VDM: the learned γ beside the fixed ones).

    Args:
        model: a trained DDPM or VDM in eval mode (``T``, ``schedule``, ``spec`` and ``schedule_curves()``).
        data: the :class:`~genmodels.data.Dataset` it was trained on (its ``test`` split is noised).
        out: the figures folder (RUN/figures); created.
        generator: draws the forward noise, then the sampler's; the pictures are a function of its state.
    Returns:
        the written paths, in the order above.
    """
    from ..viz import save_gif, save_schedule_plot, save_strip
    from . import gaussian as G
    from .samplers import ancestral

    out = Path(out)
    written: list[Path] = []
    spec = model.spec
    T = model.T
    ts = sorted({0, T // 10, T // 4, T // 2, 3 * T // 4, T - 1})
    if spec.is_image or spec.event_shape == (2,):
        n = N_IMAGES if spec.is_image else N_POINTS
        x0 = data.test[:n]
        frames = [x0] + [G.q_sample(x0, model.schedule.logsnr[t].expand(len(x0)),
                                    torch.randn(x0.shape, generator=generator)) for t in ts]
        scale = {"scale": max(1, 32 // spec.event_shape[-1])} if spec.is_image else {}
        written.append(save_strip(torch.stack(frames), out / "forward.png", ["x0"] + [f"t={t + 1}" for t in ts],
                                  **scale))
        run = ancestral(model, n, steps=T, generator=generator, keep_trajectory=True)
        keep = sorted({0, T // 4, T // 2, 3 * T // 4, 9 * T // 10, T})  # trajectory[k] is x_{T−k}
        written.append(save_strip(run.trajectory[keep], out / "reverse.png",
                                  [f"t={T - k}" if k < T else "x0" for k in keep], **scale))
        if spec.is_image:
            gif_idx = [*range(0, T + 1, max(1, T // 50)), T]
            written.append(save_gif(run.trajectory[gif_idx], out / "reverse.gif"))
    curves = model.schedule_curves()  # the plot puts schedules of different T on t/T
    written.append(save_schedule_plot({k: (s.alphas_cumprod, s.logsnr) for k, s in curves.items()},
                                      out / "schedule.png"))
    return written
