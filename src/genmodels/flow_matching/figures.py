"""The pictures that explain a flow-matching model: the probability path it was trained on and the flow it learned.
:meth:`FlowMatching.figures <genmodels.flow_matching.model.FlowMatching.figures>` calls :func:`write_figures`; the
loss curve and the sample grid are the caller's.

Imported lazily, never at ``import genmodels`` time: the pictures need matplotlib.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["write_figures", "FEW_STEPS"]

N_IMAGES = 8
N_POINTS = 500
FEW_STEPS = 10
"""The flow's default steps in the pictures (with the model's fast sampler, midpoint: 20 evaluations)."""
TIMES = (0.0, 0.25, 0.5, 0.75, 1.0)


def write_figures(model, data, out: Path, generator: torch.Generator, *, sampler: str | None = None,
                  steps: int | None = None) -> list[Path]:
    """A flow-matching model's pictures in the folder ``out`` (images and 2-D data; nothing for other shapes):

    - ``path.png``: the conditional path x_t = α_t x_1 + σ_t x_0 (:mod:`genmodels.flow_matching.paths`) from noise
      (t = 0) to 8 test images (500 test points on 2-D data), one noise draw, at t = 0, ¼, ½, ¾, 1;
    - ``flow.png``: one solve of the learned ODE by ``sampler`` (default the model's ``fast_sampler``) in ``steps``
      steps (default :data:`FEW_STEPS`), its state after 0, ¼, ½, ¾ of the steps and at the end;
    - ``flow.gif`` (images): the same solve, every step; ``trajectories.png`` (2-D): ten of its paths from noise
      to sample over the test points — straight paths are what reflow and OT coupling buy.

    Returns:
        the written paths.
    """
    from ..viz import save_gif, save_strip, save_trajectories

    spec = model.spec
    if not (spec.is_image or spec.event_shape == (2,)):
        return []
    out = Path(out)
    n = N_IMAGES if spec.is_image else N_POINTS
    x1 = data.test[:n].to(model.device, torch.float32 if spec.is_image else torch.float64)
    x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype).to(model.device)
    scale = {"scale": max(1, 32 // spec.event_shape[-1])} if spec.is_image else {}
    frames = [model.path.sample(x0, x1, torch.full((n,), t, dtype=torch.float64, device=x1.device))[0]
              for t in TIMES]
    written = [save_strip(torch.stack(frames).float().cpu(), out / "path.png", [f"t={t:g}" for t in TIMES],
                          **scale)]
    sampler = sampler or model.fast_sampler or model.samplers[0]
    steps = steps or (FEW_STEPS if model.default_steps(sampler) is not None else None)
    run = model.draw(n, generator, sampler=sampler, steps=steps, keep_trajectory=True)
    traj = run.trajectory.float().cpu()
    S = len(traj) - 1
    keep = sorted({0, S // 4, S // 2, 3 * S // 4, S})
    written.append(save_strip(traj[keep], out / "flow.png", [f"{sampler} {k}/{S}" if k < S else "x1" for k in keep],
                              **scale))
    if spec.is_image:
        written.append(save_gif(traj, out / "flow.gif"))
    else:
        written.append(save_trajectories(traj, out / "trajectories.png", background=data.test[:2000].float(),
                                         title=f"{sampler}, {run.nfe} NFE"))
    return written
