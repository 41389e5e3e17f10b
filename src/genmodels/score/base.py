"""What the score-based model families share: no likelihood, samplers of their own, a count of score evaluations.

A score-based model (:class:`~genmodels.score.ebm.EBM`, :class:`~genmodels.score.ncsn.NCSN`) learns ∇_x log p (or the
score of noised data) and samples by Langevin-type dynamics. It has no tractable likelihood: an energy model's
normalizing constant Z_θ = ∫ e^{−f_θ(x)} dx is intractable, and a score network has no density at all. So ``nll``
raises :class:`~genmodels.core.NoLikelihoodError` instead of returning a made-up number, and the models are compared
by the quality of their samples (``genmodels evaluate RUN --sampler …``).

The samplers are the model's own (a name in :attr:`ScoreModel.samplers`); :meth:`ScoreModel.draw` runs one and
returns the interface's :class:`~genmodels.core.SampleOutput` (samples, NFE, trajectory), so the batched sampler,
the NFE sweep and the CLI take these models like any other family.
"""

from __future__ import annotations

from typing import ClassVar, Literal, get_args

import torch
from torch import Tensor

from ..core import GenerativeModel, NLLOutput, NoLikelihoodError

__all__ = ["ScoreModel", "Init"]

Init = Literal["uniform", "gaussian"]
"""Where a sampling chain starts: ``uniform`` on the data's ``value_range`` in every dimension (NCSN's uniform-noise
initialization, Song & Ermon 2019, from memory) or ``gaussian`` (a normal whose scale each family documents)."""


class ScoreModel(GenerativeModel):
    """Base class of the score-based families.

    Subclasses set :attr:`samplers` (the first is the default), :attr:`sampler_options` and
    :attr:`no_likelihood_reason`, and implement :meth:`draw`, :meth:`default_steps`, :meth:`nfe`,
    :meth:`steps_for_nfe` and :meth:`preview`.
    """

    has_likelihood = False
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
    def sample(self, n: int, generator: torch.Generator | None = None, **kw) -> Tensor:
        """``[n, *event_shape]`` samples on the data scale: :meth:`draw` (all keywords pass through) without the
        NFE and trajectory."""
        return self.draw(n, generator, **kw).x0

    def figures(self, data, out, generator=None, *, sampler=None, steps=None):
        """Samples, Langevin chains over time and, on 2-D data, the learned score field beside the data's
        (:func:`genmodels.score.figures.write_figures`)."""
        from .figures import write_figures

        return write_figures(self, data, out, generator)

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
