"""Class labels and classifier-free guidance for the diffusion samplers (Ho & Salimans 2022).

A sampler of :mod:`.samplers` (and :mod:`.pc`, :mod:`.ode`) reads the network only through
``model.model_output(x_t, i, clip_x0)`` and ``model.denoise(x_t, logsnr, clip_x0)``. :class:`Guided` is a stand-in
for the model that answers those two with the labels of the samples being drawn bound in, and, for a guidance scale
w ≠ 0, with the guided prediction

    ε̃(x, λ) = (1 + w)·ε̂(x, λ, y) − w·ε̂(x, λ, ∅)                    (Ho & Salimans 2022, Eq. 6)

so every sampler takes guidance unchanged. Everything else (``schedule``, ``spec``, ``config``, ``T``, ``device``,
``net``, …) is the model's own.

======================  ==========================================================================================
one batched call        x, λ (or i) are stacked twice and the labels as [y, ∅]: one network call on 2B examples,
                        which counts as two network evaluations (the NFE report doubles)
combination             ε̃, x̃_0 and ṽ are the same affine combination of the two predictions (the weights sum to 1,
                        and x_0 = (x − σε)/α, v = αε − σx_0 are affine in ε at fixed x and λ), so they stay
                        consistent with each other with no division by α (finite also at zero terminal SNR)
clipping                after combining: x̃_0 is clamped to [−1, 1] and ε̃ re-read from it, as
                        :func:`~genmodels.diffusion.gaussian.predict` does for one prediction
w = 0                   one call of the conditional network, nothing combined: bitwise the conditional sampler
======================  ==========================================================================================
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from . import gaussian as G

if TYPE_CHECKING:
    from .base import DiffusionModel, ModelOutput

__all__ = ["Guided", "guided", "combine"]


def combine(cond: G.Prediction, uncond: G.Prediction, w: float, x_t: Tensor, logsnr: Tensor,
            clip_x0: bool) -> G.Prediction:
    """The guided prediction (1 + w)·cond − w·uncond in all three parameterizations (Ho & Salimans 2022, Eq. 6),
    then x̃_0 clamped to [−1, 1] (and ε̃, ṽ re-read from it) when ``clip_x0``.

    Args:
        cond, uncond: unclipped predictions at (x_t, λ) with the labels y and ∅, each field ``[B, ...]``.
        w: the guidance scale. x_t: ``[B, ...]``. logsnr: ``[B]`` λ.
    Returns:
        :class:`~genmodels.diffusion.gaussian.Prediction`, each field ``[B, ...]``.
    """
    x0 = (1 + w) * cond.x0 - w * uncond.x0
    if clip_x0:
        return G.predict(x0, x_t, logsnr, "x0", clip_x0=True)  # ε̃ = (x_t − α clamp(x̃_0))/σ
    return G.Prediction(eps=(1 + w) * cond.eps - w * uncond.eps, x0=x0, v=(1 + w) * cond.v - w * uncond.v)


class Guided:
    """A diffusion model with the labels of the batch being sampled bound in, and classifier-free guidance of
    scale ``w`` (module docstring). Pass it to any sampler in place of the model.

    Args:
        model: a class-conditional :class:`~genmodels.diffusion.base.DiffusionModel`.
        y: ``[n]`` int64 labels (resolved: the null label where unconditional samples are wanted); the samplers
            call the network on batches of exactly n.
        w: the guidance scale (0: the conditional model, one network call per evaluation).
    Raises:
        ValueError: a guidance scale without a conditional model (an unconditional model has no ∅).
    """

    def __init__(self, model: DiffusionModel, y: Tensor, w: float = 0.0):
        self.model, self.y, self.w = model, y, float(w)
        self.y_pair = torch.cat([y, torch.full_like(y, model.null_label)]) if self.w != 0 else None

    @property
    def evaluations(self) -> int:
        """Network evaluations per call of :meth:`model_output` or :meth:`denoise`: 2 when guided, else 1."""
        return 1 if self.y_pair is None else 2

    def __getattr__(self, name: str) -> Any:
        """Everything but the two network readings is the model's own (``schedule``, ``spec``, ``config``, …)."""
        if name in ("model", "y", "w", "y_pair"):  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.model, name)

    def model_output(self, x_t: Tensor, i: Tensor, clip_x0: bool = False) -> ModelOutput:
        """The (guided) network at step indices ``i`` (``[n]``): :meth:`DiffusionModel.model_output` with the bound
        labels; for w ≠ 0 one call on [x_t, x_t], [i, i], [y, ∅], combined by :func:`combine`."""
        if self.y_pair is None:
            return self.model.model_output(x_t, i, clip_x0=clip_x0, y=self.y)
        out = self.model.model_output(torch.cat([x_t, x_t]), torch.cat([i, i]), clip_x0=False, y=self.y_pair)
        return self._combine(out, x_t, clip_x0)

    def denoise(self, x_t: Tensor, logsnr: Tensor, clip_x0: bool = False) -> ModelOutput:
        """The (guided) network at any λ (``[n]``): :meth:`DiffusionModel.denoise` with the bound labels; for w ≠ 0
        one call on the doubled batch, combined by :func:`combine`."""
        if self.y_pair is None:
            return self.model.denoise(x_t, logsnr, clip_x0=clip_x0, y=self.y)
        out = self.model.denoise(torch.cat([x_t, x_t]), torch.cat([logsnr, logsnr]), clip_x0=False, y=self.y_pair)
        return self._combine(out, x_t, clip_x0)

    def _combine(self, out: ModelOutput, x_t: Tensor, clip_x0: bool) -> ModelOutput:
        """The doubled batch's output ``out`` (2n) read as the guided prediction for the n examples."""
        n = x_t.shape[0]
        p = out.pred
        cond = G.Prediction(eps=p.eps[:n], x0=p.x0[:n], v=p.v[:n])
        uncond = G.Prediction(eps=p.eps[n:], x0=p.x0[n:], v=p.v[n:])
        logsnr = out.logsnr[:n]
        return replace(out, pred=combine(cond, uncond, self.w, x_t, logsnr, clip_x0), logsnr=logsnr)


def guided(model: DiffusionModel, y: Tensor | None, w: float = 0.0) -> DiffusionModel | Guided:
    """What the samplers read: ``model`` itself for an unconditional model (``y`` None: its numbers are those of a
    model built before labels existed), else :class:`Guided` with the labels ``y`` and scale ``w``.

    Args:
        y: ``[n]`` resolved labels (:meth:`~genmodels.core.GenerativeModel.labels_or_null`), or None for an
            unconditional model.
    Raises:
        ValueError: w ≠ 0 with ``y`` None (nothing to guide towards).
    """
    if y is None:
        if w != 0:
            raise ValueError("classifier-free guidance needs class labels and a class-conditional model")
        return model
    return Guided(model, y, w)
