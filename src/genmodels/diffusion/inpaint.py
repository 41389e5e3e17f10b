"""Inpainting with a Gaussian diffusion model: RePaint and the replacement method.

Both fill in the unknown entries of x given the known ones (``known`` True) with an *unconditional* model (or a
class-conditional one at labels ``y``), on an S-step process respaced from the model's T steps
(``DiscreteSchedule.respace``, as the ancestral sampler). Level ``a`` ∈ {S−1, …, 0} is x at the kept step
``timesteps[a]``; level −1 is x_0. With m the mask (1 = known) and x_0^known the given values:

==================  ==========================================================================================
reverse step a→a−1  x^known_{a−1} ~ q(x_{a−1} | x_0^known) = N(α_{a−1} x_0^known, σ²_{a−1} I)   (DDPM Eq. 4)
                    x^unknown_{a−1} ~ p_θ(x_{a−1} | x_a) = N(μ̃(x_a, x̂_0), σ²_a)  (DDPM Algorithm 2; no noise at a = 0)
                    x_{a−1} = m ⊙ x^known_{a−1} + (1 − m) ⊙ x^unknown_{a−1}        (RePaint Eq. 8, Algorithm 1)
forward step a→a+1  x_{a+1} ~ q(x_{a+1} | x_a) = N(√(1 − β_{a+1}) x_a, β_{a+1} I)  (RePaint Algorithm 1, line 9;
                    the whole x, one step of the respaced process)
==================  ==========================================================================================

``repaint`` (Lugmayr et al. 2022, "RePaint: Inpainting using Denoising Diffusion Probabilistic Models",
Algorithm 1) visits the levels in the order of :func:`jump_schedule` (their code's ``get_schedule_jump``): down one
level at a time, and at every ``jump_length``-th level go back up ``jump_length`` forward steps, ``jump_n_sample − 1``
times, so that the unknown part is resampled until it agrees with the known part (§4.2: the replaced known part
is drawn independently of what the model generated, and the reverse step alone cannot make them consistent).
``replace`` is the plain replacement method (Sohl-Dickstein et al. 2015, §3.3; Song et al. 2021, "Score-Based
Generative Modeling through SDEs", Appendix I.2): the same reverse steps with no resampling
(``jump_n_sample = 1``), S network evaluations; it is biased where the unknown entries are correlated with the
known ones (the Gaussian check of ``tests/diffusion/test_inpaint.py``).

The known entries of the result are exactly those of ``x``.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from ..core import Progress, SampleOutput
from ..registry import Registry
from . import gaussian as G
from .guidance import guided

if TYPE_CHECKING:
    from .base import DiffusionModel

__all__ = ["Inpainter", "jump_schedule", "repaint_nfe", "repaint", "replace", "INPAINTERS", "default_inpaint_steps",
           "run_inpainter"]

DEFAULT_STEPS = 250
"""RePaint's respaced step count (T = 1000 respaced to 250, Lugmayr et al. 2022, §5), at most the model's T."""


class Inpainter(Protocol):
    """The signature every inpainting method has (its own options follow as keywords)."""

    def __call__(self, model: DiffusionModel, x: Tensor, known: Tensor, *, steps: int | None = None,
                 generator: torch.Generator | None = None, y: Tensor | None = None, guidance_scale: float = 0.0,
                 progress: Progress | None = None, keep_trajectory: bool = False) -> SampleOutput: ...


_COMMON = ("model", "x", "known", "generator", "y", "guidance_scale", "progress", "keep_trajectory")
"""Parameters every inpainter takes; the rest (``steps``, RePaint's ``jump_length``, …) are its options."""


def _positive_int(name: str, value: Any) -> int:
    """``value`` as an int ≥ 1 (a whole-number float is accepted, as option parsers give), else a ValueError."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")
    return value


def jump_schedule(steps: int, jump_length: int = 10, jump_n_sample: int = 10) -> list[int]:
    """The levels RePaint visits: its code's ``get_schedule_jump`` (Lugmayr et al. 2022, Algorithm 1 with §4.2's
    jumps; ``jump2``/``jump3`` off, as in their configs), the same schedule as diffusers' ``RePaintScheduler``.

    The list starts at level S − 1 (x ~ N(0, I)) and ends at −1 (x_0). Each step to a lower level is a reverse
    step (one network evaluation), each step to a higher one a forward step. At every level t ∈ {0, j, 2j, …} below
    S − j (j = ``jump_length``) the walk goes back up j levels and down again, ``jump_n_sample − 1`` times.

    >>> jump_schedule(5, jump_length=2, jump_n_sample=2)
    [4, 3, 2, 3, 4, 3, 2, 1, 0, 1, 2, 1, 0, -1]
    >>> jump_schedule(3, jump_length=1, jump_n_sample=1)
    [2, 1, 0, -1]

    Args:
        steps: S ≥ 1 levels. jump_length: j ≥ 1. jump_n_sample: r ≥ 1 (1: no resampling).
    Returns:
        the levels, a list of ints in [−1, S − 1].
    Raises:
        ValueError: for a value < 1.
    """
    steps = _positive_int("steps", steps)
    j = _positive_int("jump_length", jump_length)
    r = _positive_int("jump_n_sample", jump_n_sample)
    jumps = {t: r - 1 for t in range(0, steps - j, j)}
    t, ts = steps, []
    while t >= 1:
        t -= 1
        ts.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(j):
                t += 1
                ts.append(t)
    ts.append(-1)
    return ts


def repaint_nfe(steps: int, jump_length: int = 10, jump_n_sample: int = 10) -> int:
    """Network evaluations per example of :func:`repaint`: S + (r − 1)·j·⌈(S − j)/j⌉, the reverse steps of
    :func:`jump_schedule` (a forward step costs none); with r = 1 it is S.

    >>> repaint_nfe(250, jump_length=10, jump_n_sample=10)
    2410
    """
    steps = _positive_int("steps", steps)
    j = _positive_int("jump_length", jump_length)
    r = _positive_int("jump_n_sample", jump_n_sample)
    return steps + (r - 1) * j * len(range(0, steps - j, j))


def default_inpaint_steps(model: DiffusionModel) -> int:
    """The default S: RePaint's 250 levels, at most the model's T."""
    return min(DEFAULT_STEPS, model.T)


def _walk(model: DiffusionModel, x: Tensor, known: Tensor, levels: list[int], steps: int,
          generator: torch.Generator | None, y: Tensor | None, guidance_scale: float, progress: Progress | None,
          keep_trajectory: bool) -> SampleOutput:
    """Walk the levels of an S-step respaced process (a reverse step down, a forward step up; module docstring).

    The network is read as the samplers read it (:func:`~genmodels.diffusion.guidance.guided`): the model itself
    for an unconditional model, else with the labels ``y`` (None: the null label) bound in and guidance of scale w.
    """
    if not 1 <= steps <= model.T:
        raise ValueError(f"steps must be between 1 and T={model.T}, got {steps}")
    if known.dtype != torch.bool:
        raise ValueError(f"the mask must be a bool tensor (True = known), got {known.dtype}")
    n = x.shape[0]
    known = known.to(x.device).expand_as(x)
    x0 = torch.where(known, x, torch.zeros_like(x))  # only the known entries are read (the rest may be NaN)
    sched = model.schedule.respace(steps)
    log_var = G.reverse_log_variance(sched.betas, sched.alphas_cumprod_prev, sched.alphas_cumprod,
                                     model.config.variance) if steps > 1 else sched.betas.log()
    std = torch.exp(0.5 * log_var).tolist()
    clip = model.config.clip_x0
    reader = guided(model, model.labels_or_null(y, n, x.device), guidance_scale)
    per_call = getattr(reader, "evaluations", 1)  # 2 for a guided reading (both passes count)

    def noise() -> Tensor:
        """Standard normal noise shaped like ``x`` from the run's generator."""
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    xt = noise()  # level S − 1: x ~ N(0, I)
    traj = [xt] if keep_trajectory else None
    visited: list[int] = []
    pairs = list(itertools.pairwise(levels))
    for a, b in progress(pairs) if progress else pairs:
        if b < a:  # reverse step a -> a − 1
            i = sched.timesteps[a].expand(n)
            pred = reader.model_output(xt, i, clip_x0=clip).pred
            visited.append(int(sched.timesteps[a]))
            ls, lt = sched.logsnr_prev[a].expand(n), sched.logsnr[a].expand(n)
            mean, _ = G.q_posterior(pred.x0, xt, ls, lt)  # μ̃(x_a, x̂_0), DDPM Eq. 7
            if a == 0:
                x_known, x_unknown = x0, mean  # level −1 is x_0 itself; no noise at the last step
            else:
                x_known = G.q_sample(x0, ls, noise())  # q(x_{a−1} | x_0), RePaint Algorithm 1 line 5
                x_unknown = mean + std[a] * noise()  # p_θ(x_{a−1} | x_a), line 7
            xt = torch.where(known, x_known, x_unknown)  # line 8
        else:  # forward step a -> a + 1: x_{a+1} ~ N(√(1 − β) x_a, β I), line 9
            beta = float(sched.betas[b])
            xt = (1 - beta) ** 0.5 * xt + beta**0.5 * noise()
        if traj is not None:
            traj.append(xt)
    out = torch.where(known, x, xt)  # the known entries exactly as given
    return SampleOutput(x0=out, nfe=len(visited) * per_call, trajectory=torch.stack(traj) if traj else None,
                        timesteps=visited)


@torch.no_grad()
def repaint(model: DiffusionModel, x: Tensor, known: Tensor, *, steps: int | None = None, jump_length: int = 10,
            jump_n_sample: int = 10, generator: torch.Generator | None = None, y: Tensor | None = None,
            guidance_scale: float = 0.0, progress: Progress | None = None,
            keep_trajectory: bool = False) -> SampleOutput:
    """RePaint (Lugmayr et al. 2022, Algorithm 1) with its resampling schedule (:func:`jump_schedule`).

    Args:
        model: a :class:`~genmodels.diffusion.base.DiffusionModel` (DDPM or VDM: ``schedule``, ``T``,
            ``model_output``, ``config.variance``, ``config.clip_x0``).
        x: ``[B, *event_shape]`` on the data scale; only the entries where ``known`` is True are read.
        known: bool ``[B or 1, *event_shape]``, True where ``x`` is observed (:mod:`genmodels.masks`).
        steps: S levels, 1 ≤ S ≤ T (default :func:`default_inpaint_steps`, 250). jump_length: j ≥ 1 (paper: 10).
        jump_n_sample: r ≥ 1 (paper: 10; 1 is :func:`replace`). generator: draws every noise.
        y: ``[B]`` labels of a conditional model, or None (the null label: p(x_unknown | x_known)); not checked
            here (:func:`run_inpainter` checks them). guidance_scale: w of classifier-free guidance in every reverse
            step, ε̃ = (1 + w)·ε̂(x, y) − w·ε̂(x, ∅) (Ho & Salimans 2022, Eq. 6); 0: the conditional model.
        progress: wraps the loop over the schedule's moves. keep_trajectory: keep x after every move.
    Returns:
        :class:`~genmodels.core.SampleOutput`: ``x0`` ``[B, *event_shape]`` equal to ``x`` where known;
        ``nfe`` = :func:`repaint_nfe` (every reverse step, resampled ones included; twice that when guided);
        ``timesteps`` the original step of each network evaluation, in order.
    Raises:
        ValueError: S outside [1, T], j or r < 1, or a mask that is not bool.
    """
    steps = default_inpaint_steps(model) if steps is None else _positive_int("steps", steps)
    levels = jump_schedule(steps, jump_length, jump_n_sample)
    return _walk(model, x, known, levels, steps, generator, y, guidance_scale, progress, keep_trajectory)


@torch.no_grad()
def replace(model: DiffusionModel, x: Tensor, known: Tensor, *, steps: int | None = None,
            generator: torch.Generator | None = None, y: Tensor | None = None, guidance_scale: float = 0.0,
            progress: Progress | None = None, keep_trajectory: bool = False) -> SampleOutput:
    """The replacement method (Sohl-Dickstein et al. 2015, §3.3; Song et al. 2021, Appendix I.2): each reverse step's
    known part replaced by a draw of q(x_{a−1} | x_0^known), no resampling. :func:`repaint` with r = 1 (the same
    draws); S network evaluations. Arguments as :func:`repaint`."""
    return repaint(model, x, known, steps=steps, jump_length=1, jump_n_sample=1, generator=generator, y=y,
                   guidance_scale=guidance_scale, progress=progress, keep_trajectory=keep_trajectory)


INPAINTERS: Registry[Inpainter] = Registry("inpainting method")
INPAINTERS.register("repaint", repaint)
INPAINTERS.register("replace", replace)


def _options(fn: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(p for p in inspect.signature(fn).parameters if p not in _COMMON)


def run_inpainter(model: DiffusionModel, x: Tensor, known: Tensor, generator: torch.Generator | None = None, *,
                  method: str | None = None, y: Tensor | None = None, guidance_scale: float = 0.0,
                  progress: Progress | None = None, **options: Any) -> SampleOutput:
    """What :meth:`DiffusionModel.inpaint` does: check the method, the mask's shape, the labels and the guidance
    (:meth:`~genmodels.core.GenerativeModel.check_inpaint`, ``check_label``, ``check_guidance`` as for the
    ``ancestral`` sampler, whose step the reverse steps are), then run the method.

    Args:
        method: ``repaint`` (the default, :attr:`DiffusionModel.inpainters` [0]) or ``replace``.
        y: ``[B]`` labels of a conditional model, or None. guidance_scale: w (0: no guidance).
        **options: the method's own: ``steps``, and RePaint's ``jump_length``, ``jump_n_sample``;
            ``keep_trajectory``.
    Raises:
        ValueError: an unknown method or option, a mask of the wrong shape, or a label the model cannot take.
    """
    name = model.check_inpaint(method, x, known)
    model.check_label(y, x.shape[0])
    model.check_guidance("ancestral", guidance_scale, y)
    fn = INPAINTERS.get(name)
    allowed = (*_options(fn), "keep_trajectory")
    bad = [k for k in options if k not in allowed]
    if bad:
        raise ValueError(f"the {name!r} inpainting method takes no option {bad[0]!r}; its options: "
                         f"{', '.join(allowed)}")
    return fn(model, x, known, generator=generator, y=y, guidance_scale=guidance_scale, progress=progress, **options)
