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


FEW_STEPS = 20
"""The reverse trajectory's default steps (with the family's fast sampler): seconds at 32×32, where all T ancestral
steps took minutes."""


def write_figures(model, data, out: Path, generator: torch.Generator, *, sampler: str | None = None,
                  steps: int | None = None) -> list[Path]:
    """A diffusion model's pictures in the folder ``out``.

    Images and 2-D data:

    - ``forward.png``: the forward process q(x_t | x_0) (DDPM Eq. 4, x_t = α_t x_0 + σ_t ε) of 8 test images (500 test
      points on 2-D data) at x_0 and t = 1, T/10, T/4, T/2, 3T/4, T (one noise draw per frame);
    - ``reverse.png``: one run of ``sampler`` (default the model's ``fast_sampler``, DPM-Solver++(2M), Lu et al.
      2022b) with ``steps`` steps (default :data:`FEW_STEPS`; ``--sampler ancestral --steps T`` is DDPM Algorithm 2
      over all T steps), its state after 0, ¼, ½, ¾, 9/10 of the steps and at the end;
    - ``reverse.gif`` (images only): the same run in at most about 50 frames.

    Every model: ``schedule.png``, ᾱ_t and log-SNR λ_t against t/T of the curves :meth:`schedule_curves` returns
    (DDPM: its own schedule among the linear and cosine references; VDM: the learned γ beside the fixed ones).

    Args:
        model: a trained DDPM or VDM in eval mode (``T``, ``schedule``, ``spec`` and ``schedule_curves()``).
        data: the :class:`~genmodels.data.Dataset` it was trained on (its ``test`` split is noised).
        out: the figures folder (RUN/figures); created.
        generator: draws the forward noise, then the sampler's; the pictures are a function of its state.
        sampler: one of ``model.samplers`` with a trajectory. steps: its steps.
    Returns:
        the written paths, in the order above.
    """
    from ..viz import save_gif, save_schedule_plot, save_strip
    from . import gaussian as G

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
        sampler = sampler or model.fast_sampler or model.samplers[0]
        steps = steps or (FEW_STEPS if model.default_steps(sampler) is not None else None)
        run = model.draw(n, generator, sampler=sampler, steps=steps, keep_trajectory=True)
        S = len(run.trajectory) - 1  # trajectory[k]: the state after k of the S steps
        keep = sorted({0, S // 4, S // 2, 3 * S // 4, 9 * S // 10, S})
        written.append(save_strip(run.trajectory[keep], out / "reverse.png",
                                  [f"{sampler} {k}/{S}" if k < S else "x0" for k in keep], **scale))
        if spec.is_image:
            gif_idx = sorted({*range(0, S + 1, max(1, S // 50)), S})
            written.append(save_gif(run.trajectory[gif_idx], out / "reverse.gif"))
    curves = model.schedule_curves()  # the plot puts schedules of different T on t/T
    written.append(save_schedule_plot({k: (s.alphas_cumprod, s.logsnr) for k, s in curves.items()},
                                      out / "schedule.png"))
    return written
