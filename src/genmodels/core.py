"""The one interface every model family implements, its typed outputs, and the bits/dim convention.

Units. Every model computes negative log-likelihoods in **nats**, one value per example (``[B]``).
Reports convert them to **bits per dimension** (``bpd``) with :func:`nats_to_bpd`.

The dequantization convention (written down once, here). Discrete data with ``n_bins`` levels
``k ∈ {0, …, n_bins−1}`` is stored on the model's scale as ``x = 2k/(n_bins−1) − 1 ∈ [−1, 1]``, so
one bin is an interval of width ``Δ = 2/(n_bins−1)`` centred on ``x``. Then, for every density
``p`` on the model's scale and ``u ~ U(−Δ/2, Δ/2)^D`` (uniform dequantization, Theis et al. 2016, Eq. 6),

    −log P(k) ≤ E_u[−log p(x + u)] − D·log Δ,

so a continuous-density model reports ``nll_continuous − D·log Δ`` (:func:`discrete_nll_from_density`)
and a model with a discretized decoder (DDPM's ``L_0``, VDM, VAE decoders) integrates its density over
the same bins directly (the edge bins extend to ±∞, Ho et al. 2020, Eq. 13). Both are upper bounds on,
or equal to, the NLL of the *discrete* data, and so are comparable across families.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

__all__ = [
    "DataSpec",
    "NLLKind",
    "NLLOutput",
    "NoLikelihoodError",
    "GenerativeModel",
    "nats_to_bpd",
    "log_bin_width",
    "discrete_nll_from_density",
    "uniform_dequantize",
]

NLLKind = Literal["exact", "bound", "estimate"]
"""What ``nll`` returns: ``exact`` (flows, autoregressive), ``bound`` (−ELBO: VAEs, DDPM, VDM) or
``estimate`` (e.g. the probability-flow ODE with a stochastic trace estimator)."""


@dataclass(frozen=True)
class DataSpec:
    """What a dataset looks like to a model.

    Attributes:
        name: the dataset name it was loaded from (e.g. ``"fashion-mnist"``).
        event_shape: shape of one example, e.g. ``(1, 28, 28)`` for images (C, H, W) or ``(2,)``.
        n_bins: number of levels of discrete data (256 for 8-bit images, 17 for ``digits``), or ``None``
            for continuous data (2-D toys, real vectors).
        value_range: the range the tensors are scaled to; always ``(−1, 1)`` for discrete data.
    """

    name: str
    event_shape: tuple[int, ...]
    n_bins: int | None = None
    value_range: tuple[float, float] = (-1.0, 1.0)

    @property
    def dim(self) -> int:
        """Number of dimensions D of one example (the denominator of bits/dim)."""
        return math.prod(self.event_shape)

    @property
    def is_image(self) -> bool:
        """True for (C, H, W) events."""
        return len(self.event_shape) == 3

    @property
    def is_discrete(self) -> bool:
        """True when the data has a finite number of levels (``n_bins`` is set)."""
        return self.n_bins is not None

    def to_json(self) -> dict:
        """A JSON-serializable dict; inverse of :meth:`from_json`."""
        return {"name": self.name, "event_shape": list(self.event_shape), "n_bins": self.n_bins,
                "value_range": list(self.value_range)}

    @classmethod
    def from_json(cls, d: dict) -> DataSpec:
        """Rebuild a spec saved by :meth:`to_json`."""
        return cls(name=d["name"], event_shape=tuple(d["event_shape"]), n_bins=d["n_bins"],
                   value_range=tuple(d["value_range"]))


@dataclass
class NLLOutput:
    """Per-example negative log-likelihood and its named parts.

    Attributes:
        nll: ``[B]`` NLL in nats (of the discrete data, for discrete data).
        terms: named parts, each ``[B]`` in nats, that sum to ``nll`` (e.g. for DDPM ``prior`` = L_T,
            ``diffusion`` = Σ_{t≥2} L_t, ``reconstruction`` = L_0).
        kind: ``exact``, ``bound`` (an upper bound, −ELBO) or ``estimate``.
    """

    nll: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    kind: NLLKind = "bound"


class NoLikelihoodError(NotImplementedError, ValueError):
    """Raised by ``nll``/``nll_terms`` of a model that has no tractable likelihood (an energy-based model, whose
    normalizing constant Z_θ is intractable; a score network, which models only ∇_x log p): no made-up number is
    returned. It is a :class:`NotImplementedError` (the method does not exist for this model) and a
    :class:`ValueError` (so the command line reports it as a one-line error)."""


class GenerativeModel(nn.Module):
    """Base class of every model family (DESIGN.md, "The one interface").

    Subclasses set ``spec`` (a :class:`DataSpec`) and ``nll_kind``, and implement :meth:`loss`,
    :meth:`nll_terms` and :meth:`sample`. Every random operation takes a ``torch.Generator`` so
    results are reproducible; ``generator=None`` uses torch's global RNG.
    """

    spec: DataSpec
    nll_kind: ClassVar[NLLKind] = "bound"

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Training objective per example.

        Args:
            x: ``[B, *event_shape]`` data on the model's scale (``[−1, 1]`` for discrete data).
        Returns:
            ``[B]`` loss (the trainer averages it).
        """
        raise NotImplementedError

    def nll_terms(self, x: Tensor, generator: torch.Generator | None = None, **kw) -> NLLOutput:
        """NLL (or its bound) per example with its named parts, in nats; see :class:`NLLOutput`."""
        raise NotImplementedError

    def nll(self, x: Tensor, generator: torch.Generator | None = None, **kw) -> Tensor:
        """``[B]`` NLL in nats: exact, an upper bound (−ELBO) or an estimate, as ``nll_kind`` says."""
        return self.nll_terms(x, generator, **kw).nll

    def sample(self, n: int, generator: torch.Generator | None = None, **kw) -> Tensor:
        """Draw ``n`` samples, ``[n, *event_shape]``, on the data scale (``[−1, 1]`` for images)."""
        raise NotImplementedError

    def train_metrics(self) -> dict[str, float]:
        """Named scalars of the last training call of :meth:`loss` (e.g. a VAE's reconstruction and KL per layer),
        which the trainer adds to each ``metrics.jsonl`` line; empty by default."""
        return {}

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters (CPU for a model without parameters)."""
        return module_device(self)


def module_device(module: torch.nn.Module) -> torch.device:
    """Device of a module's first parameter, else of its first buffer, else CPU."""
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def log_bin_width(spec: DataSpec) -> float:
    """``log Δ`` with ``Δ = 2/(n_bins−1)``, the width of one bin on the ``[−1, 1]`` scale.

    Raises:
        ValueError: if ``spec`` is continuous (``n_bins`` is None).
    """
    if spec.n_bins is None:
        raise ValueError(f"dataset {spec.name!r} is continuous; it has no bins")
    return math.log(2.0 / (spec.n_bins - 1))


def discrete_nll_from_density(nll_continuous: Tensor, spec: DataSpec) -> Tensor:
    """Upper bound on the discrete NLL from a density's NLL on uniformly dequantized data.

    ``−log P(k) ≤ −log p(x + u) − D·log Δ`` (module docstring; Theis et al. 2016, Eq. 6).

    Args:
        nll_continuous: ``[B]`` nats, ``−log p(x + u)`` on the model's ``[−1, 1]`` scale.
    Returns:
        ``[B]`` nats, an upper bound on ``−log P(k)``.
    """
    return nll_continuous - spec.dim * log_bin_width(spec)


def uniform_dequantize(x: Tensor, spec: DataSpec, generator: torch.Generator | None = None,
                       dtype: torch.dtype | None = None) -> Tensor:
    """``x + Δ(u − ½)``, u ~ U(0, 1)^D: discrete data spread uniformly over its bins (the module docstring's
    convention; Theis et al. 2016, Eq. 6), so a density's NLL of the result, through
    :func:`discrete_nll_from_density`, bounds the discrete NLL.

    Args:
        x: ``[B, *event_shape]`` discrete data on the ``[−1, 1]`` scale.
        generator: draws u. dtype: of u and the result (default ``x``'s).
    Returns:
        the dequantized data, shaped like ``x``.
    Raises:
        ValueError: if ``spec`` is continuous.
    """
    dtype = dtype or x.dtype
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=dtype)
    return x.to(dtype) + math.exp(log_bin_width(spec)) * (u - 0.5)


def nats_to_bpd(nll_nats: Tensor | float, spec: DataSpec | int) -> Tensor | float:
    """Convert an NLL in nats per example to bits per dimension: ``nll / (D · ln 2)``.

    Args:
        nll_nats: a tensor of any shape, or a float, in nats per example.
        spec: the data spec (or D directly).
    """
    dim = spec if isinstance(spec, int) else spec.dim
    return nll_nats / (dim * math.log(2.0))
