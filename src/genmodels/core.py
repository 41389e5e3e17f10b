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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from .data.base import Dataset

Progress = Callable[[Iterable], Iterable]
"""A wrapper of an iterator that shows progress (e.g. ``tqdm``); every loop that takes one runs without it too."""

__all__ = [
    "DataSpec",
    "Conditioning",
    "SampleOutput",
    "EvalOptions",
    "Progress",
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
        sample_rate: for audio sequences (``(1, L)`` events), samples per second: samples are then also written
            as WAV files; ``None`` for everything else.
        num_classes: number of classes K of labelled data (labels ``0..K−1``), ``None`` for unlabelled data.
        class_names: the K class names where known (``fashion-mnist``: ``"T-shirt/top"``, …; ``folder:`` with one
            subfolder per class: the subfolder names), else ``None``.

    The class fields do not take part in ``==`` (a run saved before labels existed resumes on the same data); the
    data fingerprint covers the labels themselves.
    """

    name: str
    event_shape: tuple[int, ...]
    n_bins: int | None = None
    value_range: tuple[float, float] = (-1.0, 1.0)
    sample_rate: int | None = None
    num_classes: int | None = field(default=None, compare=False)
    class_names: tuple[str, ...] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.num_classes is not None and self.num_classes < 1:
            raise ValueError(f"DataSpec {self.name!r}: num_classes must be ≥ 1 or None, got {self.num_classes}")
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(self.class_names))
            if self.num_classes is None or len(self.class_names) != self.num_classes:
                raise ValueError(f"DataSpec {self.name!r}: {len(self.class_names)} class names for "
                                 f"num_classes={self.num_classes}; give one name per class")

    def class_name(self, k: int) -> str:
        """The name of class ``k`` (its number as text where the data has no names)."""
        return self.class_names[k] if self.class_names is not None else str(k)

    @property
    def dim(self) -> int:
        """Number of dimensions D of one example (the denominator of bits/dim)."""
        return math.prod(self.event_shape)

    @property
    def is_image(self) -> bool:
        """True for (C, H, W) events."""
        return len(self.event_shape) == 3

    @property
    def is_sequence(self) -> bool:
        """True for (C, L) events (e.g. ``speech``, (1, 2048))."""
        return len(self.event_shape) == 2

    @property
    def is_discrete(self) -> bool:
        """True when the data has a finite number of levels (``n_bins`` is set)."""
        return self.n_bins is not None

    def to_json(self) -> dict:
        """A JSON-serializable dict; inverse of :meth:`from_json`."""
        d = {"name": self.name, "event_shape": list(self.event_shape), "n_bins": self.n_bins,
             "value_range": list(self.value_range)}
        if self.sample_rate is not None:
            d["sample_rate"] = self.sample_rate
        if self.num_classes is not None:
            d["num_classes"] = self.num_classes
        if self.class_names is not None:
            d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_json(cls, d: dict) -> DataSpec:
        """Rebuild a spec saved by :meth:`to_json`."""
        return cls(name=d["name"], event_shape=tuple(d["event_shape"]), n_bins=d["n_bins"],
                   value_range=tuple(d["value_range"]), sample_rate=d.get("sample_rate"),
                   num_classes=d.get("num_classes"), class_names=d.get("class_names"))


@dataclass(frozen=True)
class Conditioning:
    """Class conditioning of a model: every family's config has one, as its field ``cond``.

    A conditional model has label embeddings for the K classes and one more, the **null label** ``K`` (``∅``), and
    trains on ``∅`` instead of the true label with probability ``p_uncond`` (label dropout, Ho & Salimans 2022,
    Algorithm 1), so one network is both p(x | y) and p(x | ∅) ≈ p(x). Classifier-free guidance and the
    unconditional samples of a conditional model read it at ``∅``.

    Attributes:
        num_classes: K; 0 for an unconditional model (no label parameters at all, so its numbers are those of a
            model built before conditioning existed).
        p_uncond: probability of training on the null label (0.1, as in Ho & Salimans 2022 §4; 0 disables it).
    """

    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"num_classes": (0, 100_000), "p_uncond": (0.0, 1.0)}
    num_classes: int = 0
    p_uncond: float = 0.1

    @property
    def enabled(self) -> bool:
        """True for a class-conditional model (``num_classes > 0``)."""
        return self.num_classes > 0


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


@dataclass
class SampleOutput:
    """What drawing samples returns (:meth:`GenerativeModel.draw`, every sampler function).

    Attributes:
        x0: ``[n, *event_shape]`` samples on the data scale.
        nfe: network evaluations per sample (the mean over batches for adaptive samplers).
        trajectory: ``[K, n, *event_shape]`` the chain from its start to the end when asked for
            (``keep_trajectory=True``), else None.
        timesteps: the original step indices visited, from high noise to low (discrete diffusion samplers).
    """

    x0: Tensor
    nfe: int
    trajectory: Tensor | None = None
    timesteps: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class EvalOptions:
    """The likelihood-evaluation options a family may honour; :attr:`GenerativeModel.eval_options` names the fields
    that apply to it, and callers reject the others when they differ from these defaults.

    Attributes:
        t_samples: diffusion bounds: stratified (importance-sampled) steps or times per example.
        exact: diffusion bounds: sum all T steps (T network evaluations per example).
        calibrate: DDPM: fit the step proposal on 128 training examples first (never the evaluated ones).
        k: VAEs: importance samples of the IWAE bound (Burda et al. 2016, Eq. 8); 1 is the ELBO.
    """

    t_samples: int = 4
    exact: bool = False
    calibrate: bool = True
    k: int = 1

    def __post_init__(self) -> None:
        if self.t_samples < 1 or self.k < 1:
            raise ValueError(f"t_samples and k must be ≥ 1, got t_samples={self.t_samples}, k={self.k}")

    def changed(self) -> list[str]:
        """Names of the fields that differ from their defaults."""
        default = EvalOptions()
        return [f for f in ("t_samples", "exact", "calibrate", "k") if getattr(self, f) != getattr(default, f)]


class GenerativeModel(nn.Module):
    """Base class of every model family (DESIGN.md, "The one interface").

    Subclasses set ``spec`` (a :class:`DataSpec`) and ``nll_kind``, and implement :meth:`loss`,
    :meth:`nll_terms` and :meth:`sample`. Every random operation takes a ``torch.Generator`` so
    results are reproducible; ``generator=None`` uses torch's global RNG.

    Beyond that, a family *declares* what it can do, so that callers (CLI, metrics, reports) never ask which family
    a model is: its samplers (:attr:`samplers`, the first the default) and their options
    (:attr:`sampler_options`), what a sample costs (:meth:`nfe`, :meth:`steps_for_nfe`), whether it has a
    likelihood (:attr:`has_likelihood`, :attr:`has_ode_likelihood`), which evaluation options apply
    (:attr:`eval_options`, :meth:`nll_kwargs`, :meth:`eval_extras`) and the pictures that explain it
    (:meth:`figures`). The class label ``y`` (``[B]`` int64, or None) is part of every signature; an unconditional
    model (``num_classes`` None) rejects a label (:meth:`check_label`).
    """

    spec: DataSpec
    nll_kind: ClassVar[NLLKind] = "bound"
    description: ClassVar[str] = ""
    """One line for ``genmodels models``: the family and its paper."""
    samplers: ClassVar[tuple[str, ...]] = ("ancestral",)
    """Names of the family's samplers; the first is the default."""
    sampler_options: ClassVar[dict[str, tuple[str, ...]]] = {}
    """Per sampler, the names of the keyword options :meth:`draw` accepts for it."""
    has_likelihood: ClassVar[bool] = True
    """False for a family whose ``nll`` raises :class:`NoLikelihoodError`."""
    has_ode_likelihood: ClassVar[bool] = False
    """True for a family with an ODE likelihood (:meth:`ode_log_likelihood`: a diffusion model's probability-flow
    ODE, a flow-matching model's flow)."""
    nll_per_curve_point: ClassVar[bool] = True
    """Whether the training's learning curve evaluates :meth:`nll_terms` at each point. False for a family whose NLL
    is an ODE solve (tens to hundreds of network evaluations per example, with their backward passes): on
    Fashion-MNIST one point would cost more than minutes of training."""
    eval_options: ClassVar[tuple[str, ...]] = ()
    """The fields of :class:`EvalOptions` that this family's evaluation honours."""
    num_classes: int | None = None
    """Number of classes K of a class-conditional model; None for an unconditional one. Set by
    :meth:`set_conditioning`; the null label is ``K`` (:attr:`null_label`)."""
    p_uncond: float = 0.0
    """Probability of training on the null label (label dropout; :class:`Conditioning`)."""
    inpainters: ClassVar[tuple[str, ...]] = ()
    """Names of the family's methods that fill in missing values (:meth:`inpaint`), the first the default; empty
    for a family that cannot."""
    fast_sampler: ClassVar[str | None] = None
    """A sampler of :attr:`samplers` made for few network evaluations (≈10–20 per sample: DPM-Solver++ for diffusion),
    which ``genmodels compare`` also scores at those budgets; None for a family without one."""
    guidance_samplers: ClassVar[tuple[str, ...]] = ()
    """The samplers of :attr:`samplers` that take classifier-free guidance (``guidance_scale``) for a conditional
    model; empty for a family whose samplers have no guidance."""
    samples_need_grad: ClassVar[bool] = False
    """True for a family whose samplers differentiate the network (Langevin dynamics on an energy: ∇_x f_θ); the
    others are sampled under ``torch.inference_mode`` (:func:`genmodels.sampling.draw_in_batches`)."""

    def loss(self, x: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """Training objective per example.

        Args:
            x: ``[B, *event_shape]`` data on the model's scale (``[−1, 1]`` for discrete data).
            y: ``[B]`` class labels of a conditional model, or None.
        Returns:
            ``[B]`` loss (the trainer averages it).
        """
        raise NotImplementedError

    def nll_terms(self, x: Tensor, generator: torch.Generator | None = None, **kw) -> NLLOutput:
        """NLL (or its bound) per example with its named parts, in nats; see :class:`NLLOutput`."""
        raise NotImplementedError

    def ode_log_likelihood(self, x: Tensor, generator: torch.Generator | None = None, **options: Any) -> Any:
        """log p(x) under the family's ODE, for a family with :attr:`has_ode_likelihood` (a diffusion model's
        probability-flow ODE, a flow-matching model's flow): a :class:`~genmodels.cnf.CNFLikelihood`-like result
        with ``log_p``, ``log_p_prior``, ``divergence`` (``[B]`` float64 nats), ``nfe`` and ``trace``. ``x``
        ``[B, *event_shape]`` is used as given (dequantize discrete data first); ``options`` are the family's
        keyword-only ODE options (``trace``, ``hutchinson_samples``, ``rtol``, ``atol``, …), which
        :func:`genmodels.metrics.likelihood.evaluate_ode_nll` reads from the signature.

        Raises:
            NoLikelihoodError: for a family without one (the default).
        """
        raise NoLikelihoodError(f"a {type(self).__name__} has no ODE likelihood; families with one list "
                                f"'+ ode' under likelihood in `genmodels models`")

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

    # ------------------------------------------------------------------ class labels
    def set_conditioning(self, cond: Conditioning | None) -> None:
        """Record the config's :class:`Conditioning` (families call it in ``__init__``, before building the label
        embeddings, which have :attr:`num_label_embeddings` rows)."""
        if cond is not None and cond.enabled:
            self.num_classes = cond.num_classes
            self.p_uncond = cond.p_uncond

    @property
    def null_label(self) -> int:
        """The index of the null label ∅ (``num_classes``).

        Raises:
            ValueError: for an unconditional model.
        """
        if self.num_classes is None:
            raise ValueError(f"this {type(self).__name__} is unconditional: it has no null label")
        return self.num_classes

    @property
    def num_label_embeddings(self) -> int:
        """Rows of a label embedding table: the K classes and the null label."""
        return self.null_label + 1

    def check_label(self, y: Tensor | None, n: int | None = None) -> None:
        """Raise for a bad label.

        A conditional model takes ``y`` ``[n]`` integers in ``0..K`` (``K``, the null label, asks for the
        unconditional model) or None (all null).

        Raises:
            ValueError: ``y`` given to an unconditional model, or not a 1-D integer tensor of length ``n``, or a
                class outside ``0..K−1`` (the message names the range).
        """
        if y is None:
            return
        if self.num_classes is None:
            raise ValueError(f"this {type(self).__name__} is unconditional: it takes no class label "
                             f"(train it with --conditional to sample or score by class)")
        if not isinstance(y, Tensor) or y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise ValueError(f"class labels must be a 1-D integer tensor, got "
                             f"{getattr(y, 'dtype', type(y).__name__)} of shape {tuple(getattr(y, 'shape', ()))}")
        if n is not None and y.shape[0] != n:
            raise ValueError(f"{y.shape[0]} class labels for {n} examples; give one label per example")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) > self.num_classes):
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            raise ValueError(f"class {bad} is out of range: this model has classes 0..{self.num_classes - 1}")

    def labels_or_null(self, y: Tensor | None, n: int, device: torch.device | None = None) -> Tensor | None:
        """The labels a conditional network reads: ``y`` (checked), or the null label for all ``n`` when ``y`` is
        None; None for an unconditional model (which must get no label)."""
        self.check_label(y, n)
        if self.num_classes is None:
            return None
        device = device if device is not None else self.device
        if y is None:
            return torch.full((n,), self.null_label, dtype=torch.long, device=device)
        return y.to(device=device, dtype=torch.long)

    def drop_labels(self, y: Tensor | None, n: int, generator: torch.Generator | None = None) -> Tensor | None:
        """Training labels after label dropout: each replaced by the null label with probability ``p_uncond``
        (Ho & Salimans 2022, Algorithm 1, line 3). Draws from ``generator`` only for a conditional model with
        ``p_uncond > 0`` (an unconditional model's random stream is unchanged). None → all null; an unconditional
        model returns None."""
        y = self.labels_or_null(y, n)
        if y is None or self.p_uncond <= 0:
            return y
        drop = torch.rand(n, generator=generator, device=y.device) < self.p_uncond
        return torch.where(drop, torch.full_like(y, self.null_label), y)

    # ------------------------------------------------------------------ what the family can do

    def check_sampler(self, sampler: str | None, options: dict[str, Any] | None = None) -> str:
        """The sampler's name (``None``: the default, ``samplers[0]``), after checking its ``options``' names.

        Raises:
            KeyError: for a name this family does not have (the message lists the ones it has).
            ValueError: for an option the sampler does not take (the message lists the ones it takes).
        """
        name = self.samplers[0] if sampler is None else sampler
        if name not in self.samplers:
            raise KeyError(f"a {type(self).__name__} samples with {' | '.join(self.samplers)}, not {name!r}")
        allowed = self.sampler_options.get(name, ())
        bad = sorted(set(options or {}) - set(allowed))
        if bad:
            takes = ", ".join(allowed) if allowed else "no options"
            raise ValueError(f"the {name!r} sampler of a {type(self).__name__} takes {takes}; got {', '.join(bad)}")
        return name

    def default_steps(self, sampler: str | None = None) -> int | None:
        """The ``steps`` a sampler uses when none is given; None for a sampler without a step count."""
        return None

    def nfe(self, sampler: str | None = None, steps: int | None = None, guidance_scale: float = 0.0) -> int | None:
        """Network evaluations per sample of ``sampler`` at ``steps`` (None: its default); None where it is only
        known after the run (an adaptive solver). A guided run (``guidance_scale`` ≠ 0) counts both the conditional
        and the unconditional evaluation of each step. Default: one pass."""
        return 1

    def check_guidance(self, sampler: str | None, guidance_scale: float, y: Tensor | None) -> None:
        """Raise for classifier-free guidance that cannot apply: a guidance scale on an unconditional model, on a
        sampler outside :attr:`guidance_samplers`, or without labels to guide towards.

        Raises:
            ValueError: naming the problem and the fix.
        """
        if guidance_scale == 0:
            return
        if not math.isfinite(guidance_scale):
            raise ValueError(f"guidance_scale must be finite, got {guidance_scale}")
        if self.num_classes is None:
            raise ValueError(f"guidance needs a class-conditional model; this {type(self).__name__} is "
                             f"unconditional (train it with --conditional, or drop --guidance)")
        name = self.samplers[0] if sampler is None else sampler
        if name not in self.guidance_samplers:
            takes = " | ".join(self.guidance_samplers) or "none"
            raise ValueError(f"the {name!r} sampler of a {type(self).__name__} takes no guidance; samplers with "
                             f"guidance: {takes}")
        if y is None:
            raise ValueError("guidance steers towards a class: give the classes to draw (--class K or all)")

    def steps_for_nfe(self, sampler: str, nfe: int) -> int | None:
        """The largest ``steps`` whose run spends at most ``nfe`` evaluations per sample (0 if none does); None for a
        sampler without a step count (its cost is :meth:`nfe`)."""
        return None

    def draw(self, n: int, generator: torch.Generator | None = None, *, sampler: str | None = None,
             steps: int | None = None, y: Tensor | None = None, progress: Progress | None = None,
             keep_trajectory: bool = False, **options: Any) -> SampleOutput:
        """Draw ``n`` samples with a named sampler and report what they cost.

        Default (families with one fixed-cost sampler and no step count): :meth:`sample` with ``options``
        (e.g. ``temperature``) and the labels ``y`` where given, NFE from :meth:`nfe`, no trajectory.

        Args:
            n: number of samples. sampler: a name in :attr:`samplers` (None: the default). steps: the sampler's
                step count where it has one. y: ``[n]`` labels of a conditional model. progress: wraps the
                sampler's step iterator. keep_trajectory: also return the chain. **options: the sampler's options
                (:attr:`sampler_options`).
        Returns:
            :class:`SampleOutput` with ``x0`` ``[n, *event_shape]``.
        Raises:
            KeyError: unknown sampler. ValueError: an option or ``steps`` the sampler does not take, or a label
                for an unconditional model.
        """
        name = self.check_sampler(sampler, options)
        self.check_label(y)
        if steps is not None and self.default_steps(name) is None:
            raise ValueError(f"the {name!r} sampler of a {type(self).__name__} has no step count; drop --steps")
        label = {} if y is None else {"y": y}  # an unconditional family's sample() need not take a label
        return SampleOutput(x0=self.sample(n, generator, **options, **label), nfe=self.nfe(name, steps) or 0)

    def inpaint(self, x: Tensor, known: Tensor, generator: torch.Generator | None = None, *,
                method: str | None = None, y: Tensor | None = None, progress: Progress | None = None,
                **options: Any) -> SampleOutput:
        """Fill in the unknown entries of ``x`` given the known ones: a sample of p(x_unknown | x_known[, y]).

        Args:
            x: ``[B, *event_shape]`` examples on the data scale; only the entries where ``known`` is true are read.
            known: bool, ``[B, *event_shape]`` or ``[1, *event_shape]`` (broadcast): True where ``x`` is observed
                (:mod:`genmodels.masks` makes them).
            method: a name in :attr:`inpainters` (None: the first). y: ``[B]`` labels of a conditional model.
            **options: the method's own (e.g. RePaint's ``jump_length``, ``jump_n_sample``; ``steps``).
        Returns:
            :class:`SampleOutput` whose ``x0`` equals ``x`` where ``known`` and is filled in elsewhere.
        Raises:
            ValueError: a family without inpainting (:attr:`inpainters` empty), an unknown method or option, or a
                mask whose shape does not match.
        """
        raise ValueError(f"a {type(self).__name__} cannot fill in missing values; families that can: those whose "
                         f"`genmodels models` entry lists inpainting")

    def check_inpaint(self, method: str | None, x: Tensor, known: Tensor) -> str:
        """The method's name (None: ``inpainters[0]``) after checking it and the mask's shape against ``x``.

        Raises:
            ValueError: no inpainting, an unknown method, or ``known`` not shaped ``[B or 1, *event_shape]``.
        """
        if not self.inpainters:
            raise ValueError(f"a {type(self).__name__} cannot fill in missing values (it has no inpainting method)")
        name = self.inpainters[0] if method is None else method
        if name not in self.inpainters:
            raise ValueError(f"a {type(self).__name__} fills in with {' | '.join(self.inpainters)}, not {name!r}")
        shape = tuple(self.spec.event_shape)
        if tuple(x.shape[1:]) != shape:
            raise ValueError(f"the images have shape {tuple(x.shape[1:])}, the model's data {shape}")
        if known.dim() != x.dim() or tuple(known.shape[1:]) != shape or known.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"the mask has shape {tuple(known.shape[1:])}, the images {shape}; make a mask of "
                             f"the data's size")
        return name

    def preview(self) -> dict[str, Any]:
        """Keywords of :meth:`draw` for the sample grids drawn during training: a cheap run of the default sampler
        (e.g. 50 DDIM steps for a diffusion model); empty: the default run."""
        return {}

    def nll_kwargs(self, options: EvalOptions, train: Tensor | None = None,
                   generator: torch.Generator | None = None, n_examples: int | None = None) -> dict[str, Any]:
        """Keywords of :meth:`nll_terms` for an evaluation with ``options`` (only the fields in
        :attr:`eval_options` are read); ``train`` gives pilot examples for estimators that calibrate on data
        (never the evaluated ones), ``n_examples`` the number to be evaluated (so that a calibration costs no more
        than the evaluation it serves)."""
        return {}

    def eval_extras(self, x: Tensor, report: Any, options: EvalOptions) -> dict[str, Any]:
        """Family-specific entries of an evaluation's JSON (e.g. a VAE's ELBO beside its IWAE bound and its active
        units), given the evaluated examples ``x`` and the :class:`~genmodels.metrics.likelihood.NLLReport`."""
        return {}

    def figures(self, data: Dataset, out: Path, generator: torch.Generator | None = None, *,
                sampler: str | None = None, steps: int | None = None) -> list[Path]:
        """The pictures that explain this model, written under the folder ``out``; returns their paths (the family's
        ``figures.py``). ``sampler``/``steps``: how a family whose pictures run a sampler runs it (None: a few-step
        default, :attr:`fast_sampler` where the family has one); families whose pictures draw nothing ignore them.
        Default: none, and ``genmodels pictures`` writes a sample grid and the loss curve alone."""
        return []

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
