"""What the Gaussian diffusion families (DDPM, VDM) share: the network read at a noise level, the samplers, what a
sample costs, the likelihood options and the pictures.

A diffusion model is a :class:`DiffusionModel`: it runs its network at a step of its T-step process
(:meth:`~DiffusionModel.model_output`) or at any logSNR λ in [``logsnr_min``, ``logsnr_max``]
(:meth:`~DiffusionModel.denoise`), both read as ε̂, x̂_0 and v̂ (:class:`ModelOutput`). Every sampler of
:data:`genmodels.diffusion.samplers.SAMPLERS` takes any such model, so sampling is written once, here.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from ..core import EvalOptions, GenerativeModel, Progress, SampleOutput
from . import gaussian as G
from .grids import nfe_for_steps, steps_for_nfe
from .samplers import SAMPLERS
from .schedules import DiscreteSchedule

if TYPE_CHECKING:
    from ..data.base import Dataset

__all__ = ["ModelOutput", "DiffusionModel"]


@dataclass
class ModelOutput:
    """The network at one step, read in every parameterization.

    Attributes:
        pred: ε̂, x̂_0, v̂, each ``[B, ...]``.
        logsnr: ``[B]`` λ_t of the step.
    """

    pred: G.Prediction
    logsnr: Tensor


_COMMON = ("model", "n", "steps", "generator", "progress", "keep_trajectory")
"""Parameters every sampler of :data:`SAMPLERS` takes; the rest are its own options."""

_GRID_LIMITED = ("ancestral", "ddim", "euler_maruyama", "pc")
"""Samplers on the training steps (at most T levels)."""


class DiffusionModel(GenerativeModel):
    """Base class of DDPM and VDM.

    Subclasses set ``config`` (with ``clip_x0``) and :attr:`schedule`, and implement :attr:`T`, :attr:`logsnr_min`,
    :attr:`logsnr_max`, :meth:`model_output`, :meth:`denoise` and :meth:`schedule_curves`.
    """

    nll_kind = "bound"
    schedule: DiscreteSchedule
    """The T-step process the samplers respace (``alphas_cumprod``, ``logsnr``, …)."""
    samplers: ClassVar[tuple[str, ...]] = ("ancestral", *(s for s in SAMPLERS.names() if s != "ancestral"))
    sampler_options: ClassVar[dict[str, tuple[str, ...]]] = {
        name: tuple(p for p in inspect.signature(SAMPLERS.get(name)).parameters if p not in _COMMON)
        for name in SAMPLERS.names()}
    has_ode_likelihood = True
    eval_options: ClassVar[tuple[str, ...]] = ("t_samples", "exact")

    # ------------------------------------------------------------------ what subclasses provide
    @property
    def T(self) -> int:
        """Number of steps of the (discrete) process the samplers respace."""
        raise NotImplementedError

    @property
    def logsnr_min(self) -> float:
        """λ at the noisiest level the network has seen."""
        raise NotImplementedError

    @property
    def logsnr_max(self) -> float:
        """λ at the cleanest level the network has seen."""
        raise NotImplementedError

    def model_output(self, x_t: Tensor, i: Tensor, clip_x0: bool = False) -> ModelOutput:
        """The network at step indices ``i`` (``[B]``) of the T-step process; ``x_t`` ``[B, *event_shape]``."""
        raise NotImplementedError

    def denoise(self, x_t: Tensor, logsnr: Tensor, clip_x0: bool = False) -> ModelOutput:
        """The network at any λ (``[B]``, clamped to [``logsnr_min``, ``logsnr_max``])."""
        raise NotImplementedError

    def schedule_curves(self) -> dict[str, DiscreteSchedule]:
        """Named schedules for the schedule plot (objects with ``alphas_cumprod`` and ``logsnr``)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ sampling
    def default_steps(self, sampler: str | None = None) -> int | None:
        """All T steps; None for the adaptive ``ode`` sampler (its tolerances set its cost)."""
        return None if nfe_for_steps(self.check_sampler(sampler), 1) is None else self.T

    def nfe(self, sampler: str | None = None, steps: int | None = None) -> int | None:
        """Evaluations per sample (:func:`~genmodels.diffusion.grids.nfe_for_steps`); None for ``ode``."""
        name = self.check_sampler(sampler)
        return nfe_for_steps(name, self.T if steps is None else steps)

    def steps_for_nfe(self, sampler: str, nfe: int) -> int | None:
        """The N of :func:`~genmodels.diffusion.grids.steps_for_nfe`; 0 where it exceeds the T training steps a
        grid-limited sampler can visit (``ancestral``, ``ddim``, ``euler_maruyama``, ``pc``); None for ``ode``."""
        name = self.check_sampler(sampler)
        if nfe_for_steps(name, 1) is None:  # adaptive: no step count
            return None
        steps = steps_for_nfe(name, nfe)
        return 0 if name in _GRID_LIMITED and steps > self.T else steps

    @torch.no_grad()
    def draw(self, n: int, generator: torch.Generator | None = None, *, sampler: str | None = None,
             steps: int | None = None, y: Tensor | None = None, progress: Progress | None = None,
             keep_trajectory: bool = False, **options: Any) -> SampleOutput:
        """Run a sampler of :data:`~genmodels.diffusion.samplers.SAMPLERS` on ``steps`` levels (default all T):
        ``ancestral`` (DDPM Algorithm 2), ``ddim`` (Song et al. 2021, Eq. 12), ``dpm++``, ``heun``,
        ``euler_maruyama``, ``ode`` or ``pc``; ``options`` are the sampler's own (``eta``, ``rtol``, …)."""
        name = self.check_sampler(sampler, options)
        self.check_label(y)
        fn = SAMPLERS.get(name)
        return fn(self, n, steps=self.T if steps is None else steps, generator=generator, progress=progress,
                  keep_trajectory=keep_trajectory, **options)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, *, sampler: str = "ancestral",
               steps: int | None = None, progress: Progress | None = None, y: Tensor | None = None,
               **sampler_kwargs: Any) -> Tensor:
        """``[n, *event_shape]`` samples on the data scale: :meth:`draw` without the NFE.

        Raises:
            KeyError: for an unknown sampler.
        """
        return self.draw(n, generator, sampler=sampler, steps=steps, y=y, progress=progress, **sampler_kwargs).x0

    def preview(self) -> dict[str, Any]:
        """50 DDIM steps (at most T) for the grids drawn during training."""
        return {"sampler": "ddim", "steps": min(50, self.T)}

    # ------------------------------------------------------------------ evaluation and pictures
    def nll_kwargs(self, options: EvalOptions, train: Tensor | None = None,
                   generator: torch.Generator | None = None, n_examples: int | None = None) -> dict[str, Any]:
        """``exact`` (all T terms) or ``t_samples`` stratified terms per example."""
        return {"exact": True} if options.exact else {"t_samples": options.t_samples}

    def figures(self, data: Dataset, out: Path, generator: torch.Generator | None = None) -> list[Path]:
        """Forward-process strip, reverse trajectory (PNG and GIF) and the schedule plot
        (:func:`genmodels.diffusion.figures.write_figures`)."""
        from .figures import write_figures

        return write_figures(self, data, out, generator)
