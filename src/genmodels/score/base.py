"""What the score-based model families share: no likelihood, samplers of their own, a count of score evaluations.

A score-based model (:class:`~genmodels.score.ebm.EBM`, :class:`~genmodels.score.ncsn.NCSN`) learns ∇_x log p (or the
score of noised data) and samples by Langevin-type dynamics. It has no tractable likelihood: an energy model's
normalizing constant Z_θ = ∫ e^{−f_θ(x)} dx is intractable, and a score network has no density at all. So ``nll``
raises :class:`~genmodels.core.NoLikelihoodError` instead of returning a made-up number, and the models are compared
by the quality of their samples (``genmodels evaluate RUN --sampler …``).

The samplers are the model's own (a name in :attr:`ScoreModel.samplers`), not the diffusion samplers of
:data:`genmodels.diffusion.samplers.SAMPLERS`; :meth:`ScoreModel.draw` runs one and returns the diffusion samplers'
:class:`~genmodels.diffusion.samplers.SamplerOutput` (samples, NFE, trajectory), so
:func:`~genmodels.diffusion.samplers.sample_in_batches` and the NFE sweep take these models too.
"""

from __future__ import annotations

from typing import Callable, ClassVar, Iterable, Literal, get_args

import torch
from torch import Tensor

from ..core import GenerativeModel, NLLOutput, NoLikelihoodError
from ..diffusion.samplers import SamplerOutput

__all__ = ["ScoreModel", "Init"]

Init = Literal["uniform", "gaussian"]
"""Where a sampling chain starts: ``uniform`` on the data's ``value_range`` in every dimension (NCSN's uniform-noise
initialization, Song & Ermon 2019, from memory) or ``gaussian`` (a normal whose scale each family documents)."""
Progress = Callable[[Iterable], Iterable]


class ScoreModel(GenerativeModel):
    """Base class of the score-based families.

    Subclasses set :attr:`samplers` (the first is the default) and :attr:`no_likelihood_reason`, and implement
    :meth:`draw`, :meth:`default_steps`, :meth:`steps_for_nfe` and :meth:`preview_kwargs`.
    """

    samplers: ClassVar[tuple[str, ...]] = ()
    """Names of this family's samplers; the first is the default."""
    no_likelihood_reason: ClassVar[str] = ""
    """Why the family has no likelihood, one clause (used in :class:`NoLikelihoodError` messages)."""

    # ------------------------------------------------------------------ likelihood: none
    def nll_terms(self, x: Tensor, generator: torch.Generator | None = None, **kw) -> NLLOutput:
        """Always raises: the model has no tractable likelihood.

        Raises:
            NoLikelihoodError: (a NotImplementedError and a ValueError) saying why, and what to measure instead.
        """
        raise NoLikelihoodError(
            f"{type(self).__name__} reports no likelihood: {self.no_likelihood_reason}. Compare its samples instead "
            f"(genmodels.metrics.sample_quality, or `genmodels evaluate RUN --sampler {self.samplers[0]}`)")

    # ------------------------------------------------------------------ sampling
    def check_sampler(self, sampler: str | None) -> str:
        """The sampler's name (``None``: the default, ``samplers[0]``).

        Raises:
            KeyError: for a name this family does not have; the message lists the ones it has.
        """
        if sampler is None:
            return self.samplers[0]
        if sampler not in self.samplers:
            raise KeyError(f"a {type(self).__name__} samples with {' or '.join(self.samplers)}, not {sampler!r}")
        return sampler

    def draw(self, n: int, generator: torch.Generator | None = None, *, sampler: str | None = None,
             steps: int | None = None, progress: Progress | None = None, keep_trajectory: bool = False,
             trajectory_stride: int = 1, **kw) -> SamplerOutput:
        """Run a sampler: ``SamplerOutput(x0 [n, *event_shape], nfe, trajectory)``; see the subclass."""
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator | None = None, **kw) -> Tensor:
        """``[n, *event_shape]`` samples on the data scale: :meth:`draw` (all keywords pass through) without the
        NFE and trajectory."""
        return self.draw(n, generator, **kw).x0

    def default_steps(self, sampler: str | None = None) -> int:
        """The ``steps`` a sampler uses when none is given (from the config)."""
        raise NotImplementedError

    def steps_for_nfe(self, sampler: str, nfe: int) -> int:
        """The largest ``steps`` whose default run spends at most ``nfe`` score evaluations (0 if none does)."""
        raise NotImplementedError

    def preview_kwargs(self) -> dict:
        """Keywords of :meth:`sample` for the sample grids drawn during training: a cheaper run of the default sampler
        (fewer steps); empty: the default run."""
        return {}

    # ------------------------------------------------------------------ helpers for subclasses
    def initial_state(self, n: int, generator: torch.Generator | None, init: Init, gaussian_std: float) -> Tensor:
        """``[n, *event_shape]`` chain starts: uniform on ``spec.value_range`` (``gaussian`` where that range is
        not finite), or N(0, ``gaussian_std``² I).

        Raises:
            ValueError: for an unknown ``init``.
        """
        if init not in get_args(Init):
            raise ValueError(f"init must be one of {', '.join(get_args(Init))}; got {init!r}")
        shape, dev = (n, *self.spec.event_shape), self.device
        lo, hi = self.spec.value_range
        if init == "uniform" and torch.isfinite(torch.tensor([lo, hi])).all():
            return lo + (hi - lo) * torch.rand(shape, generator=generator, device=dev)
        return gaussian_std * torch.randn(shape, generator=generator, device=dev)

    def finish(self, x: Tensor) -> Tensor:
        """Discrete data lives on ``value_range``: clamp the final samples there (only at the end of a chain,
        never inside it); continuous data is left alone."""
        if self.spec.is_discrete:
            lo, hi = self.spec.value_range
            return x.clamp(lo, hi)
        return x
