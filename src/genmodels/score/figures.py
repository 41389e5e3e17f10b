"""The pictures that explain a score-based model (EBM, NCSN): samples, Langevin chains over time, and on 2-D data the
learned score field beside the data's and the chains' paths from noise to the data. The models' ``figures()`` call
:func:`write_figures`; the loss curve is the caller's.

The score-field picture differs between the families; each model declares its rows through a method
``score_field_rows(data, heat, arrows, extent, H, A) -> (rows, title)`` that calls :func:`ebm_score_field_rows` or
:func:`ncsn_score_field_rows` here.

Imported lazily (by the models' ``figures()``), never at ``import genmodels`` time: the pictures need matplotlib.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from ..viz import FieldPanel

__all__ = ["write_figures", "write_score_field", "ebm_score_field_rows", "ncsn_score_field_rows", "langevin_updates",
           "kde", "true_score"]

HEAT, ARROWS = 80, 21
"""Sizes of the score-field picture's grids: an ``H × H`` heat map of log-densities, an ``A × A`` grid of arrows."""
KDE_POINTS = 3000
"""Training points of the data side's blurred empirical distribution (every KDE costs H²·3000 distances)."""
NCSN_LEVELS = (2.0, 0.5, 0.1)
"""The σ the NCSN score-field picture shows: the ladder's levels nearest to these in log σ."""


def langevin_updates(model) -> int:
    """Langevin updates of one chain of the model's default sampler: K = ``default_steps()`` for an EBM, L·T for an
    NCSN (T = ``default_steps()`` updates at each of its L levels).

    Read off the model's declared cost, which is affine in the step count: ``nfe(steps)`` = updates(steps) + the
    evaluations that update no chain state (the final denoising step, Tweedie's x + σ² s_θ(x)), so the updates are
    ``nfe() − nfe(steps=0)``.
    """
    return model.nfe() - model.nfe(steps=0)


def write_figures(model, data, out: Path, generator: torch.Generator) -> list[Path]:
    """A score-based model's pictures in the folder ``out``.

    2-D data: ``samples.png``, 1000 samples of the default sampler; ``langevin.png``, the chains at six times from
    the start to the end; ``trajectories.png``, the paths of 10 chains from noise to the data over 2000 test points;
    ``score_field.png``, the learned score as arrows over a log-density beside the data's own
    (:func:`write_score_field`). Images: ``samples.png`` (36 samples) and ``langevin.png`` (8 chains at six times).
    Other event shapes: nothing.

    The chain is recorded every ``stride = max(1, U // 50)`` updates, U = :func:`langevin_updates` (≈ 50 frames).

    Args:
        model: a trained EBM or NCSN in eval mode (``draw``, ``default_steps``, ``check_sampler``, ``score`` and
            ``score_field_rows``).
        data: the :class:`~genmodels.data.Dataset` it was trained on (``train`` for the data's score field,
            ``test`` beneath the chains; ``data.spec.name`` names the toy).
        out: the figures folder (RUN/figures); created.
        generator: draws the chains' starts and noise.
    Returns:
        the written paths, in the order ``samples``, ``langevin``, ``trajectories``, ``score_field``.
    """
    from ..viz import save_grid, save_strip, save_trajectories

    out = Path(out)
    written: list[Path] = []
    spec = model.spec
    if not (spec.is_image or spec.event_shape == (2,)):
        return written
    updates = langevin_updates(model)
    stride = max(1, updates // 50)
    run = model.draw(36 if spec.is_image else 1000, generator, keep_trajectory=True, trajectory_stride=stride)
    traj = run.trajectory  # [K, n, ...]: the start, every stride-th update, the end
    keep = sorted({round(k * (len(traj) - 1) / 5) for k in range(6)})
    labels = [f"update {min(k * stride, updates)}" if k < len(traj) - 1 else f"end ({run.nfe} NFE)" for k in keep]
    if spec.is_image:
        scale = max(1, 32 // spec.event_shape[-1])
        written.append(save_grid(run.x0, out / "samples.png", scale=scale))
        written.append(save_strip(traj[keep][:, :8].clamp(-1, 1), out / "langevin.png", labels, scale=scale))
    else:
        written.append(save_grid(run.x0, out / "samples.png"))
        written.append(save_strip(traj[keep], out / "langevin.png", labels))
        written.append(save_trajectories(traj, out / "trajectories.png", background=data.test[:2000],
                                         title=f"{type(model).__name__.lower()}: {model.check_sampler(None)} chains "
                                               f"from noise ({run.nfe} score evaluations)"))
        written.append(write_score_field(model, data, out / "score_field.png"))
    return written


def write_score_field(model, data, path: Path) -> Path:
    """``score_field.png``: the learned score as arrows over a log-density, beside the data's own, on 2-D data.

    The window is a square around the first 5000 test points (20 % margin), with an 80 × 80 heat map of
    log-densities and a 21 × 21 grid of arrows (:func:`genmodels.viz.save_score_fields`). The rows are the model's
    (``model.score_field_rows``: :func:`ebm_score_field_rows`, :func:`ncsn_score_field_rows`).

    Args:
        model: a 2-D EBM or NCSN with ``score_field_rows(data, heat, arrows, extent, H, A) -> (rows, title)``.
        data: its :class:`~genmodels.data.Dataset`. path: destination PNG.
    Returns:
        ``path``.
    """
    from ..viz import save_score_fields

    extent = _window(data.test[:5000].double())
    H, A = HEAT, ARROWS
    heat, arrows = _grid(extent, H), _grid(extent, A)
    rows, title = model.score_field_rows(data, heat, arrows, extent, H, A)
    return save_score_fields(rows, extent, path, title=title)


def ebm_score_field_rows(model, data, heat: Tensor, arrows: Tensor, extent: tuple[float, float, float, float],
                         H: int, A: int) -> tuple[list[list[FieldPanel]], str]:
    """An EBM's row of the score-field picture: the data at the noise level the model learned (σ for DSM, σ = 0 for
    the explicit and sliced losses), then the model, −∇f_θ as arrows over e^{−f_θ}/Z, Z summed over the window's
    heat-map cells (so the shade is a log-density on the window, in nats); a DSM model's row starts with the toy's
    true log p where it has one.

    Args:
        model: the EBM (``config.sigma``, ``config.loss_type``, ``energy``, ``score``).
        data: its :class:`~genmodels.data.Dataset`.
        heat: ``[H·H, 2]`` float64 points of the heat map, row-major from the bottom-left (:func:`_grid`).
        arrows: ``[A·A, 2]`` float64 points of the arrows, same order.
        extent: ``(x0, x1, y0, y1)`` of the window. H, A: the two grids' sizes.
    Returns:
        ``(rows, title)``: one row of :class:`~genmodels.viz.FieldPanel`, and the figure's title.
    """
    from ..data.toys import toy_log_density
    from ..viz import FieldPanel

    sigma = model.config.sigma if model.config.loss_type == "dsm" else 0.0
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        f = model.energy(heat.to(model.device, dtype)).double().cpu()
    cell = ((extent[1] - extent[0]) / (H - 1)) * ((extent[3] - extent[2]) / (H - 1))
    log_p = -f - torch.logsumexp(-f, 0) - math.log(cell)  # e^{−f}/Z with Z summed over the window
    what = f"the σ={sigma:g}-noised data (DSM)" if sigma else f"the data ({model.config.loss_type.upper()})"
    rows = [[data_field_panel(data, sigma, heat, arrows, H, A),
             FieldPanel("EBM: log e^{−f}/Z (window) and −∇f", log_p.reshape(H, H),
                        _learned(model, arrows).reshape(A, A, 2))]]
    if sigma and _has_density(data.spec.name):
        rows[0].insert(0, FieldPanel("true log p", toy_log_density(data.spec.name, heat).reshape(H, H)))
    return rows, f"score of {what}: data (left) and learned (right)"


def ncsn_score_field_rows(model, data, heat: Tensor, arrows: Tensor, extent: tuple[float, float, float, float],
                          H: int, A: int) -> tuple[list[list[FieldPanel]], str]:
    """An NCSN's two rows of the score-field picture, at the levels of its ladder nearest to σ = 2, 0.5 and 0.1 in
    log σ: the σ-noised data (top, its log-density and score) and the noise-conditional score s_θ(x, σ) as arrows
    over the same log-density (bottom), which denoising score matching trains it to match (NCSN Eq. 5–6).

    Args:
        model: the NCSN (``sigmas``, ``score(x, σ)``).
        data: its :class:`~genmodels.data.Dataset`.
        heat, arrows: ``[H·H, 2]`` and ``[A·A, 2]`` float64 grid points (:func:`_grid`). extent: the window (unused:
            the signature is the one every model's ``score_field_rows`` has). H, A: the grids' sizes.
    Returns:
        ``(rows, title)``: two rows of :class:`~genmodels.viz.FieldPanel`, and the figure's title.
    """
    from ..viz import FieldPanel

    sig = model.sigmas.cpu()
    idx = sorted({int(torch.argmin((sig.log() - math.log(t)).abs())) for t in NCSN_LEVELS})
    top, bottom = [], []
    for i in idx:
        s_i = float(sig[i])
        panel = data_field_panel(data, s_i, heat, arrows, H, A)
        top.append(panel)
        bottom.append(FieldPanel(f"NCSN s_θ(x, σ={s_i:.3g})", panel.log_density,
                                 _learned(model, arrows, s_i).reshape(A, A, 2)))
    title = f"the σ-noised data (top) and the learned noise-conditional score (bottom), at {len(idx)} levels"
    return [top, bottom], title


def data_field_panel(data, sigma: float, heat: Tensor, arrows: Tensor, H: int, A: int) -> FieldPanel:
    """The data's panel at noise level σ: the toy's closed-form log p and ∇log p (:func:`true_score`) at σ = 0 where
    it has them, else the σ-noised empirical distribution of the first 3000 training points (:func:`kde`), with
    Scott's bandwidth h = σ̄·N^{−1/6} (2-D; σ̄ the mean std of the two coordinates) at σ = 0.

    Args:
        data: the :class:`~genmodels.data.Dataset`. sigma: σ ≥ 0. heat, arrows: ``[H·H, 2]``, ``[A·A, 2]`` grid
            points. H, A: the grids' sizes.
    Returns:
        a :class:`~genmodels.viz.FieldPanel` with an ``[H, H]`` log-density and ``[A, A, 2]`` scores.
    """
    from ..data.toys import toy_log_density
    from ..viz import FieldPanel

    name = data.spec.name
    if sigma == 0 and _has_density(name):
        return FieldPanel("data: true log p and ∇log p", toy_log_density(name, heat).reshape(H, H),
                          true_score(name, arrows).reshape(A, A, 2))
    train = data.train[:KDE_POINTS]  # enough for the picture; every KDE costs H²·3000
    h = sigma or float(train.double().std(0).mean()) * len(train) ** (-1 / 6)  # Scott's bandwidth in 2-D
    label = f"data ∗ N(0, {sigma:.3g}²)" if sigma else f"data (KDE, Scott h={h:.2g})"
    return FieldPanel(f"{label}: log q, ∇log q", kde(train, heat, h).reshape(H, H),
                      kde(train, arrows, h, score=True).reshape(A, A, 2))


def kde(points: Tensor, at: Tensor, sigma: float, score: bool = False) -> Tensor:
    """log q (or ∇log q with ``score``) at ``at`` ``[M, 2]`` of q = (points) ∗ N(0, σ²I), the empirical distribution
    of ``points`` ``[N, 2]`` blurred by Gaussian noise of std σ: exact for the points, so the score of the σ-noised
    training data that denoising score matching targets (Vincent 2011). By Tweedie's formula,
    ∇log q(x) = (E[x_i | x] − x)/σ² = (Σ_i w_i x_i − x)/σ², w = softmax(−‖x − x_i‖²/(2σ²)).

    Args:
        points: ``[N, 2]`` data. at: ``[M, 2]`` where to evaluate. sigma: σ > 0, in data units.
        score: return the score instead of the log-density.
    Returns:
        ``[M]`` log-densities (nats) or ``[M, 2]`` scores (per data unit), float64.
    """
    pts, out = points.double(), []
    for chunk in at.double().split(1024):
        logits = -torch.cdist(chunk, pts).pow(2) / (2 * sigma**2)  # [m, N]
        if score:
            out.append((torch.softmax(logits, 1) @ pts - chunk) / sigma**2)
        else:
            out.append(torch.logsumexp(logits, 1) - math.log(len(pts)) - math.log(2 * math.pi * sigma**2))
    return torch.cat(out)


def true_score(name: str, at: Tensor) -> Tensor:
    """∇ log p of the toy ``name`` with a closed-form density, by central differences (h = 1e-4) of its log-density
    (:func:`genmodels.data.toys.toy_log_density`): ``[M, 2]`` float64 at ``at`` ``[M, 2]``; non-finite where the
    density is 0 nearby, e.g. off a checkerboard's squares."""
    from ..data.toys import toy_log_density

    h, at = 1e-4, at.double()
    cols = []
    for d in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[d] = h
        cols.append((toy_log_density(name, at + e) - toy_log_density(name, at - e)) / (2 * h))
    return torch.stack(cols, 1)


def _window(test: Tensor) -> tuple[float, float, float, float]:
    """A square window ``(x0, x1, y0, y1)`` around 2-D points ``[M, 2]``, 20 % margin."""
    lo, hi = test.min(0).values, test.max(0).values
    mid, half = (lo + hi) / 2, float((hi - lo).max()) * 0.6
    return (mid[0].item() - half, mid[0].item() + half, mid[1].item() - half, mid[1].item() + half)


def _grid(extent: tuple[float, float, float, float], k: int) -> Tensor:
    """``[k·k, 2]`` float64 points of a k×k grid over the window, row-major from the bottom-left."""
    xs = torch.linspace(extent[0], extent[1], k, dtype=torch.float64)
    ys = torch.linspace(extent[2], extent[3], k, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], -1).reshape(-1, 2)


def _has_density(name: str) -> bool:
    """Whether the dataset ``name`` is a toy with a closed-form density (False for any other dataset)."""
    from ..data import DataError
    from ..data.toys import toy_has_density

    try:
        return toy_has_density(name)
    except DataError:
        return False


def _learned(model, points: Tensor, sigma: float | None = None) -> Tensor:
    """The model's score at ``points`` ``[M, 2]`` (float64 → the model's dtype and back), at σ for an NCSN."""
    x = points.to(model.device, next(model.parameters()).dtype)
    with torch.no_grad():
        s = model.score(x) if sigma is None else model.score(x, sigma)
    return s.double().cpu()
