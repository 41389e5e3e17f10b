"""What the Gaussian diffusion families (DDPM, VDM) share: the network read at a noise level, the samplers, what a
sample costs, the likelihood options and the pictures.

A diffusion model is a :class:`DiffusionModel`: it runs its network at a step of its T-step process
(:meth:`~DiffusionModel.model_output`) or at any logSNR λ in [``logsnr_min``, ``logsnr_max``]
(:meth:`~DiffusionModel.denoise`), both read as ε̂, x̂_0 and v̂ (:class:`ModelOutput`). Every sampler of
:data:`genmodels.diffusion.samplers.SAMPLERS` takes any such model, so sampling is written once, here.

A class-conditional model (``config.cond.num_classes`` = K > 0) adds a learned embedding of the label y to the
noise-level embedding of its backbone (improved-diffusion's ``label_emb``, Nichol & Dhariwal 2021; EDM, Karras et
al. 2022); label K is the null label ∅, trained with probability ``p_uncond`` (label dropout, Ho & Salimans 2022).
Every sampler then takes classifier-free guidance, ``draw(…, y=y, guidance_scale=w)``: the samplers read the model
through :class:`~genmodels.diffusion.guidance.Guided`, whose ε̃ = (1 + w)·ε̂(x, y) − w·ε̂(x, ∅) (Eq. 6).
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
from .guidance import guided
from .inpaint import run_inpainter
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
        name: (*(p for p in inspect.signature(SAMPLERS.get(name)).parameters if p not in _COMMON), "guidance_scale")
        for name in SAMPLERS.names()}
    guidance_samplers: ClassVar[tuple[str, ...]] = samplers
    fast_sampler: ClassVar[str | None] = "dpm++"  # DPM-Solver++(2M), Lu et al. 2022: good samples in 10–20 NFE
    inpainters: ClassVar[tuple[str, ...]] = ("repaint", "replace")  # genmodels.diffusion.inpaint.INPAINTERS
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

    def model_output(self, x_t: Tensor, i: Tensor, clip_x0: bool = False, y: Tensor | None = None) -> ModelOutput:
        """The network at step indices ``i`` (``[B]``) of the T-step process; ``x_t`` ``[B, *event_shape]``; ``y``
        ``[B]`` int64 labels of a conditional model (None: the null label), not checked here."""
        raise NotImplementedError

    def denoise(self, x_t: Tensor, logsnr: Tensor, clip_x0: bool = False, y: Tensor | None = None) -> ModelOutput:
        """The network at any λ (``[B]``, clamped to [``logsnr_min``, ``logsnr_max``]); ``y`` as in
        :meth:`model_output`."""
        raise NotImplementedError

    def schedule_curves(self) -> dict[str, DiscreteSchedule]:
        """Named schedules for the schedule plot (objects with ``alphas_cumprod`` and ``logsnr``)."""
        raise NotImplementedError

    def backbone(self, x: Tensor, c_noise: Tensor, y: Tensor | None) -> Tensor:
        """The backbone at ``x`` (``[B, ...]``) and ``c_noise`` (``[B]``): ``net(x, c_noise)`` for an unconditional
        model, ``net(x, c_noise, y)`` for a conditional one, with the null label where ``y`` is None.

        Labels are not checked here (the public methods do it once, with
        :meth:`~genmodels.core.GenerativeModel.labels_or_null`); a label for an unconditional model reaches the
        backbone, which refuses it (ValueError)."""
        if y is None and self.num_classes is not None:
            y = torch.full((x.shape[0],), self.null_label, dtype=torch.long, device=x.device)
        return self.net(x, c_noise) if y is None else self.net(x, c_noise, y)

    # ------------------------------------------------------------------ sampling
    def default_steps(self, sampler: str | None = None) -> int | None:
        """All T steps; None for the adaptive ``ode`` sampler (its tolerances set its cost)."""
        return None if nfe_for_steps(self.check_sampler(sampler), 1) is None else self.T

    def nfe(self, sampler: str | None = None, steps: int | None = None, guidance_scale: float = 0.0) -> int | None:
        """Evaluations per sample (:func:`~genmodels.diffusion.grids.nfe_for_steps`), twice that with guidance
        (``guidance_scale`` ≠ 0: the conditional and the unconditional pass of each step); None for ``ode``."""
        name = self.check_sampler(sampler)
        nfe = nfe_for_steps(name, self.T if steps is None else steps)
        return None if nfe is None else nfe * (2 if guidance_scale != 0 else 1)

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
             steps: int | None = None, y: Tensor | None = None, guidance_scale: float = 0.0,
             progress: Progress | None = None, keep_trajectory: bool = False, **options: Any) -> SampleOutput:
        """Run a sampler of :data:`~genmodels.diffusion.samplers.SAMPLERS` on ``steps`` levels (default all T):
        ``ancestral`` (DDPM Algorithm 2), ``ddim`` (Song et al. 2021, Eq. 12), ``dpm++``, ``heun``,
        ``euler_maruyama``, ``ode`` or ``pc``; ``options`` are the sampler's own (``eta``, ``rtol``, …).

        Args:
            y: ``[n]`` int64 class labels of a conditional model (None: the null label, i.e. samples of p(x)).
            guidance_scale: w of classifier-free guidance, ε̃ = (1 + w)·ε̂(x, y) − w·ε̂(x, ∅) (Ho & Salimans 2022,
                Eq. 6), in every sampler; 0 is the conditional model, bitwise, at one network call per step.
        Returns:
            :class:`~genmodels.core.SampleOutput`; its ``nfe`` counts both passes of a guided step.
        Raises:
            KeyError: unknown sampler. ValueError: an option the sampler does not take, a label for an
                unconditional model or out of range, guidance without a conditional model or without ``y``.
        """
        name = self.check_sampler(sampler, options)
        self.check_guidance(name, guidance_scale, y)
        reader = guided(self, self.labels_or_null(y, n), guidance_scale)
        fn = SAMPLERS.get(name)
        out = fn(reader, n, steps=self.T if steps is None else steps, generator=generator, progress=progress,
                 keep_trajectory=keep_trajectory, **options)
        if reader is not self:
            out.nfe *= reader.evaluations
        return out

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, *, sampler: str = "ancestral",
               steps: int | None = None, progress: Progress | None = None, y: Tensor | None = None,
               **sampler_kwargs: Any) -> Tensor:
        """``[n, *event_shape]`` samples on the data scale: :meth:`draw` without the NFE.

        Raises:
            KeyError: for an unknown sampler.
        """
        return self.draw(n, generator, sampler=sampler, steps=steps, y=y, progress=progress, **sampler_kwargs).x0

    @torch.no_grad()
    def inpaint(self, x: Tensor, known: Tensor, generator: torch.Generator | None = None, *,
                method: str | None = None, y: Tensor | None = None, progress: Progress | None = None,
                **options: Any) -> SampleOutput:
        """Fill in the unknown entries with ``repaint`` (Lugmayr et al. 2022, the default) or ``replace`` (the
        replacement method): :func:`genmodels.diffusion.inpaint.run_inpainter`; ``options``: ``steps``,
        ``jump_length``, ``jump_n_sample`` (RePaint), ``guidance_scale``, ``keep_trajectory``."""
        return run_inpainter(self, x, known, generator, method=method, y=y, progress=progress, **options)

    def preview(self) -> dict[str, Any]:
        """50 DDIM steps (at most T) for the grids drawn during training."""
        return {"sampler": "ddim", "steps": min(50, self.T)}

    def ode_log_likelihood(self, x: Tensor, generator: torch.Generator | None = None, *, trace: str = "auto",
                           hutchinson_samples: int = 1, noise: str = "rademacher", rtol: float = 1e-5,
                           atol: float = 1e-5, method: str = "dopri5", logsnr_max: float | None = None,
                           logsnr_min: float | None = None, dtype: torch.dtype | None = None,
                           y: Tensor | None = None) -> Any:
        """log p(x) under the probability-flow ODE: :func:`genmodels.diffusion.ode.ode_log_likelihood` (its
        arguments and errors), an :class:`~genmodels.diffusion.ode.ODELikelihood`."""
        from .ode import ode_log_likelihood

        return ode_log_likelihood(self, x, trace=trace, hutchinson_samples=hutchinson_samples, noise=noise,
                                  rtol=rtol, atol=atol, method=method, generator=generator, logsnr_max=logsnr_max,
                                  logsnr_min=logsnr_min, dtype=dtype, y=y)

    # ------------------------------------------------------------------ evaluation and pictures
    def nll_kwargs(self, options: EvalOptions, train: Tensor | None = None,
                   generator: torch.Generator | None = None, n_examples: int | None = None) -> dict[str, Any]:
        """``exact`` (all T terms) or ``t_samples`` stratified terms per example."""
        return {"exact": True} if options.exact else {"t_samples": options.t_samples}

    def figures(self, data: Dataset, out: Path, generator: torch.Generator | None = None, *,
                sampler: str | None = None, steps: int | None = None) -> list[Path]:
        """Forward-process strip, reverse trajectory (PNG and GIF) and the schedule plot
        (:func:`genmodels.diffusion.figures.write_figures`); the trajectory is ``sampler`` (default
        :attr:`fast_sampler`, DPM-Solver++) at ``steps`` (default :data:`~genmodels.diffusion.figures.FEW_STEPS`)."""
        from .figures import write_figures

        return write_figures(self, data, out, generator, sampler=sampler, steps=steps)
