"""Normalizing flows as generative models: NICE, RealNVP and Glow over a standard normal base (seed 004,
"Reversible Models" and "Normalizing Flows").

Notation:

=====================  ============================================================================================
``x``                  data on the model's scale (``[−1, 1]`` for discrete data), ``[B, *event_shape]``
``u``                  uniform dequantization noise, U(−Δ/2, Δ/2)^D (Theis et al. 2016; :mod:`genmodels.core`)
``Δ``                  the bin width 2/(n_bins − 1) on the ``[−1, 1]`` scale
``f``                  the flow: logit pre-processing (discrete data), then the levels of transforms
``z``                  f(x) flattened, ``[B, D]``: the factored-out pieces of every level, then the last level's
                       output (RealNVP §3.6); base p_Z = N(0, I), or N(μ_y, diag σ_y²) for a class-conditional flow
``y``                  the class label of a conditional flow, ``[B]`` in 0..K (K: the null label ∅)
``e(y)``               its embedding, ``[B, LABEL_DIM]``: the context of every coupling network
``log_det``            log |det ∂f/∂x| per example, ``[B]`` nats (the sum of the layers', RealNVP Eq. 3)
``T``                  sampling temperature: z ~ N(0, T² I) (Glow §5); N(μ_y, T² σ_y²) for a conditional flow
=====================  ============================================================================================

The likelihood (change of variables; seed 004; RealNVP Eq. 3):

    log p(x) = log N(f(x); 0, I) + log |det ∂f/∂x|.

Class-conditional flows (``cond.num_classes = K > 0``) model p(x | y) with the same change of variables,

    log p(x | y) = log N(f(x; e(y)); μ_y, diag σ_y²) + log |det ∂f(x; e(y))/∂x|,

exact for every y: the base is class-conditional, a learned mean μ_y and log-scale log σ_y per class and dimension
of z (a zero-initialized linear map of the one-hot label, so every class starts at N(0, I): the class-conditional
prior of Glow, Kingma & Dhariwal 2018, the ``ycond`` option of their code), and each coupling network reads the
label embedding e(y) beside x_a (a zero-initialized projection of e(y) added to its first layer's features;
:mod:`genmodels.nets.coupling`), so f(·; e(y)) is a bijection for each y, and a fresh conditional flow computes
exactly the unconditional flow built at the same seed. With label dropout (``cond.p_uncond``)
the null label ∅ = K trains p(x | ∅) ≈ p(x); y = None asks for it.

For discrete data the model's density is fitted to x + u and the reported NLL is the upper bound on the discrete
NLL of :func:`~genmodels.core.discrete_nll_from_density`, −log p(x + u) − D·log Δ (one u per evaluation), in the
named parts ``prior`` (−log N(z)), ``log_det`` (−Σ the flow layers' log_det), ``logit`` (−log_det of the
pre-processing) and ``dequantization`` (−D·log Δ). For continuous data (2-D toys) there is no dequantization, no logit
and the NLL is −log p(x) in nats.

Families (registered in :data:`genmodels.families.MODELS`):

- ``nice`` (Dinh et al. 2014): additive couplings on alternating halves (even/odd coordinates; images are flattened)
  with MLPs, then a diagonal scaling layer;
- ``realnvp`` (Dinh et al. 2017): affine couplings; for images the multiscale architecture of §3.6: per scale 3
  checkerboard couplings, squeeze, 3 channel-wise couplings, factor out half the channels; the last scale has 4
  checkerboard couplings; ResNet coupling networks;
- ``glow`` (Kingma & Dhariwal 2018): steps of actnorm → invertible 1×1 convolution → affine coupling; for images
  L levels of squeeze → K steps → split (the factored half goes to the N(0, I) base; Glow's learned conditional
  prior at each split is not implemented).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..core import (
    Conditioning,
    DataSpec,
    GenerativeModel,
    NLLOutput,
    Progress,
    SampleOutput,
    log_bin_width,
    nats_to_bpd,
    uniform_dequantize,
)
from ..nets.coupling import CouplingNetConfig
from .transforms import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ChannelPartition,
    CheckerboardPartition,
    Compose,
    Flatten,
    HalvesPartition,
    InvertibleConv1x1,
    Logit,
    ScaleFn,
    ScaleLayer,
    Squeeze,
    Transform,
)

__all__ = ["FlowConfig", "NICEConfig", "RealNVPConfig", "GlowConfig", "Flow", "NICE", "RealNVP", "Glow",
           "default_nice_config", "default_realnvp_config", "default_glow_config", "max_squeezes", "LABEL_DIM"]

LABEL_DIM = 16
"""Width of a class-conditional flow's label embedding e(y), the context every coupling network reads."""


# ============================================================================ configs


@dataclass(frozen=True)
class FlowConfig:
    """What every flow config shares.

    Attributes:
        logit_alpha: α of the logit pre-processing for discrete data (RealNVP §4.1: 0.05 for images); None
            models the dequantized data directly. Not used for continuous data.
        net: the coupling networks (MLP width/depth for vectors and NICE; ResNet channels/blocks for images).

    Each family's config ends with ``cond`` (:class:`~genmodels.core.Conditioning`): K > 0 classes make the flow
    class-conditional (module docstring), 0 (the default) leaves it as it always was.
    Raises:
        ValueError: for α ∉ (0, ½).
    """

    logit_alpha: float | None = 0.05
    net: CouplingNetConfig = field(default_factory=CouplingNetConfig)

    def __post_init__(self) -> None:
        if self.logit_alpha is not None and not 0 < self.logit_alpha < 0.5:
            raise ValueError(f"logit_alpha must be in (0, 0.5) or None, got {self.logit_alpha}")


def _positive(cls: str, **fields: int) -> None:
    bad = {k: v for k, v in fields.items() if v < 1}
    if bad:
        raise ValueError(f"{cls}: these must be ≥ 1: {bad}")


@dataclass(frozen=True)
class NICEConfig(FlowConfig):
    """NICE (Dinh et al. 2014): ``n_couplings`` additive couplings on alternating even/odd halves of the (flattened)
    data, each with an MLP ``net``, then the diagonal scaling layer (§3.3). NICE used 4 couplings of 5×1000 ReLU
    layers on MNIST (§5.1)."""

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"n_couplings": (1, 64)}

    n_couplings: int = 4
    net: CouplingNetConfig = field(default_factory=lambda: CouplingNetConfig(hidden=1000, depth=1))
    cond: Conditioning = field(default_factory=Conditioning)

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("NICEConfig", n_couplings=self.n_couplings)


@dataclass(frozen=True)
class RealNVPConfig(FlowConfig):
    """RealNVP (Dinh et al. 2017).

    Images (multiscale, §3.6): ``n_scales`` scales; each but the last is ``checkerboard_couplings`` checkerboard
    couplings, a squeeze, ``channel_couplings`` channel-wise couplings and a factor-out of half the channels; the last
    is ``final_couplings`` checkerboard couplings (RealNVP: 3, 3, 4). ``n_scales − 1`` squeezes, so 28×28 allows
    ``n_scales ≤ 3``. Vectors: ``n_couplings`` couplings on alternating halves.

    Attributes:
        scale: the log-scale's bound (:data:`~genmodels.flows.transforms.ScaleFn`).
        net: ResNet coupling networks (``hidden`` channels, ``depth`` residual blocks) or MLPs (vectors).
    """

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "n_scales": (1, 16), "checkerboard_couplings": (0, 64), "channel_couplings": (0, 64),
        "final_couplings": (1, 64), "n_couplings": (1, 256)}

    n_scales: int = 3
    checkerboard_couplings: int = 3
    channel_couplings: int = 3
    final_couplings: int = 4
    n_couplings: int = 8
    scale: ScaleFn = "tanh"
    cond: Conditioning = field(default_factory=Conditioning)

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("RealNVPConfig", n_scales=self.n_scales, final_couplings=self.final_couplings,
                  n_couplings=self.n_couplings)
        if self.checkerboard_couplings < 0 or self.channel_couplings < 0:
            raise ValueError("RealNVPConfig: checkerboard_couplings and channel_couplings must be ≥ 0")
        if self.scale not in ("tanh", "sigmoid"):
            raise ValueError(f"RealNVPConfig: scale must be 'tanh' or 'sigmoid', got {self.scale!r}")


@dataclass(frozen=True)
class GlowConfig(FlowConfig):
    """Glow (Kingma & Dhariwal 2018): a step is actnorm → invertible 1×1 convolution → affine coupling (§3, Fig. 2a).

    Images (§3, Fig. 2b): ``n_levels`` levels of squeeze → ``steps_per_level`` steps → split (not after the last);
    ``n_levels`` squeezes, so 28×28 allows ``n_levels ≤ 2``. Vectors: ``steps_per_level`` steps (one level).

    Attributes:
        scale: the log-scale's bound (Glow: ``sigmoid``).
    """

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"n_levels": (1, 16), "steps_per_level": (1, 256)}

    n_levels: int = 2
    steps_per_level: int = 8
    scale: ScaleFn = "sigmoid"
    cond: Conditioning = field(default_factory=Conditioning)

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive("GlowConfig", n_levels=self.n_levels, steps_per_level=self.steps_per_level)
        if self.scale not in ("tanh", "sigmoid"):
            raise ValueError(f"GlowConfig: scale must be 'tanh' or 'sigmoid', got {self.scale!r}")


# ============================================================================ building levels


@dataclass
class Level:
    """One scale of a flow: its transforms, and whether half its output channels are factored out to the base."""

    transforms: list[Transform]
    split: bool = False


class _ShapeTracker:
    """Follows the event shape through squeezes and splits while a flow is built (so errors come at construction)."""

    def __init__(self, event_shape: tuple[int, ...], family: str):
        self.shape, self.family, self.start = tuple(event_shape), family, tuple(event_shape)
        self.factored: list[tuple[int, ...]] = []  # shapes of the factored-out pieces, in order

    @property
    def channels(self) -> int:
        """C of the current shape (features for vectors)."""
        return self.shape[0]

    def squeeze(self, what: str) -> Squeeze:
        """A :class:`Squeeze`, after recording (C, H, W) → (4C, H/2, W/2). Raises ValueError for an odd size,
        naming ``what`` needed it and how many squeezes the data allows."""
        C, H, W = self.shape
        if H % 2 or W % 2:
            raise ValueError(_squeeze_message(self.family, what, self.start, H, W))
        self.shape = (4 * C, H // 2, W // 2)
        return Squeeze()

    def split(self) -> bool:
        """Factor out the first ⌊C/2⌋ channels (recorded in ``factored``); returns True (a level's ``split``)."""
        C, H, W = self.shape
        if C < 2:
            raise ValueError(f"{self.family}: cannot factor out half of {C} channel(s)")
        self.factored.append((C // 2, H, W))
        self.shape = (C - C // 2, H, W)
        return True


_SQUEEZES_PER_FIELD = {"n_levels": 0, "n_scales": 1}
"""Config field → how many more levels than squeezes it counts (Glow: one squeeze per level; RealNVP: n_scales − 1)."""


def _squeeze_message(family: str, what: str, start: tuple[int, ...], H: int, W: int) -> str:
    """Why a squeeze of an odd H×W input fails, and the ``--set`` value (or the image size) that fixes it."""
    allowed = max_squeezes(start)
    _, h, w = start
    chain = [f"{h}×{w}" if h != w else str(h)]
    for _ in range(allowed):
        h, w = h // 2, w // 2
        chain.append(f"{h}×{w}" if h != w else str(h))
    odd = H if H % 2 else W
    why = (f"{family}: {what} needs a squeeze (halving height and width) of a {H}×{W} input ({odd} is odd); "
           f"{'×'.join(map(str, start))} data allows at most {allowed} squeeze{'s' if allowed != 1 else ''}"
           f"{' (' + ' → '.join(chain) + ')' if allowed else ''}")
    field = what.partition("=")[0].strip()
    if field in _SQUEEZES_PER_FIELD:
        most = allowed + _SQUEEZES_PER_FIELD[field]
        if most >= 1:
            return f"{why}: use --set {field}={most}{' (or fewer)' if most > 1 else ''}"
        even = " or ".join(dict.fromkeys(f"{a}×{b}" for a, b in ((H - H % 2, W - W % 2), (H + H % 2, W + W % 2))))
        return (f"{why}, and {family} squeezes at every level ({field} ≥ 1): crop or pad the images to an even size "
                f"(e.g. {even}), or use realnvp with --set n_scales=1 (no squeeze)")
    return f"{why}; lower {field} (--set {field}=...)"


def max_squeezes(event_shape: tuple[int, ...]) -> int:
    """How many 2×2 squeezes a (C, H, W) event allows: the times H and W can both be halved (28 → 2, 8 → 3)."""
    _, H, W = event_shape
    n = 0
    while H % 2 == 0 and W % 2 == 0 and H > 1 and W > 1:
        H, W, n = H // 2, W // 2, n + 1
    return n


# ============================================================================ the model


class Flow(GenerativeModel):
    """A normalizing flow over a standard normal base, or a class-conditional one (module docstring). Subclasses
    build the levels (:meth:`build_levels`); this class adds the pre-processing, dequantization, likelihood,
    sampling and, for a conditional flow, the label embedding and the per-class base.

    ``forward(x, y=None) -> (z [B, D], log_det [B])`` is the whole map f on the model's scale (including the logit of
    discrete data, no dequantization) and ``inverse(z, y=None) -> x`` its inverse, so a flow is itself a transform;
    ``y`` (``[B]`` labels of a conditional flow; None: the null label) selects the couplings' context.

    Args:
        config: the family's config. spec: the data (vectors ``(D,)`` or images ``(C, H, W)``).
    Raises:
        ValueError: for another event shape, or a configuration that would squeeze an odd size.
    """

    nll_kind: ClassVar[str] = "exact"
    samplers: ClassVar[tuple[str, ...]] = ("inverse",)
    """``inverse``: z ~ N(0, T²I), x = f⁻¹(z); one inverse pass per sample (:meth:`nfe` = 1)."""
    sampler_options: ClassVar[dict[str, tuple[str, ...]]] = {"inverse": ("temperature",)}
    family: ClassVar[str] = "flow"

    def __init__(self, config: FlowConfig, spec: DataSpec):
        super().__init__()
        self.config, self.spec = config, spec
        self.set_conditioning(getattr(config, "cond", None))
        # context features of each coupling network: the label embedding's width (0 for an unconditional flow)
        self.n_context = LABEL_DIM if self.num_classes is not None else 0
        if not (spec.is_image or len(spec.event_shape) == 1):
            raise ValueError(f"{self.family} models vectors (D,) or images (C, H, W), got event shape "
                             f"{spec.event_shape}")
        self.preprocess: Logit | None = None
        if spec.is_discrete and config.logit_alpha is not None:
            half_bin = math.exp(log_bin_width(spec)) / 2  # x + u ∈ [lo − Δ/2, hi + Δ/2]
            lo, hi = spec.value_range
            self.preprocess = Logit(config.logit_alpha, lo - half_bin, hi + half_bin)
        tracker = _ShapeTracker(spec.event_shape, self.family)
        levels = self.build_levels(tracker)
        self.levels = nn.ModuleList(Compose(level.transforms) for level in levels)
        self.splits: tuple[bool, ...] = tuple(level.split for level in levels)
        self.z_shapes: tuple[tuple[int, ...], ...] = (*tracker.factored, tracker.shape)  # the pieces of z, in order
        assert sum(math.prod(s) for s in self.z_shapes) == spec.dim
        if self.num_classes is not None:
            # e(y): the couplings' context; (μ_y, log σ_y) of the base, a zero-initialized linear map of the one-hot
            # label (Glow's class-conditional prior), so every class starts at N(0, I)
            self.label_embedding = nn.Embedding(self.num_label_embeddings, LABEL_DIM)
            self.base_params = nn.Embedding(self.num_label_embeddings, 2 * spec.dim)
            nn.init.zeros_(self.base_params.weight)

    def build_levels(self, tracker: _ShapeTracker) -> list[Level]:
        """The flow's :class:`Level` s, in order, calling ``tracker.squeeze()`` and ``tracker.split()`` where they
        squeeze and factor out (subclasses)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the map f and its inverse
    def _check_x(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != self.spec.event_shape or x.ndim != len(self.spec.event_shape) + 1:
            raise ValueError(f"{self.family} was built for events of shape {self.spec.event_shape} (data "
                             f"{self.spec.name!r}); got a batch of shape {tuple(x.shape)}; expected "
                             f"[B, {', '.join(map(str, self.spec.event_shape))}]")

    def _context(self, y: Tensor | None, n: int) -> Tensor | None:
        """e(y) ``[n, LABEL_DIM]`` for a conditional flow (y None: the null label), None for an unconditional one.

        Raises:
            ValueError: a bad label (:meth:`~genmodels.core.GenerativeModel.check_label`).
        """
        y = self.labels_or_null(y, n)
        return None if y is None else self.label_embedding(y)

    def _encode(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(z ``[B, D]``, the logit's log_det ``[B]``, the flow layers' log_det ``[B]``), the couplings reading
        ``context`` ``[B, LABEL_DIM]`` (None: unconditional)."""
        self._check_x(x)
        log_det_pre = x.new_zeros(x.shape[0])
        h = x
        if self.preprocess is not None:
            h, log_det_pre = self.preprocess(h)
        log_det = x.new_zeros(x.shape[0])
        pieces = []
        for level, split in zip(self.levels, self.splits, strict=True):
            h, ld = level(h, context)
            log_det = log_det + ld
            if split:  # RealNVP §3.6: factor out half the channels to the base
                c = h.shape[1] // 2
                pieces.append(h[:, :c].flatten(1))
                h = h[:, c:]
        pieces.append(h.flatten(1))
        return torch.cat(pieces, 1), log_det_pre, log_det

    def forward(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """z = f(x; e(y)) ``[B, D]`` and log |det ∂z/∂x| ``[B]`` (nats), for ``x`` ``[B, *event_shape]`` on the
        model's scale (no dequantization); ``y`` ``[B]`` labels of a conditional flow (None: the null label).

        Raises:
            ValueError: for a wrong event shape, (discrete data) values outside the logit's domain, or a bad label.
        """
        z, log_det_pre, log_det = self._encode(x, self._context(y, x.shape[0]))
        return z, log_det_pre + log_det

    def inverse(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """x = f⁻¹(z; e(y)), ``[B, *event_shape]`` for ``z`` ``[B, D]``; ``y`` as in :meth:`forward`.

        Raises:
            ValueError: for ``z`` not of shape ``[B, D]``, or a bad label.
        """
        if z.ndim != 2 or z.shape[1] != self.spec.dim:
            raise ValueError(f"{self.family}.inverse expects z of shape [B, {self.spec.dim}], got {tuple(z.shape)}")
        context = self._context(y, z.shape[0])
        sizes = [math.prod(s) for s in self.z_shapes]
        pieces = [p.reshape(len(z), *s) for p, s in zip(z.split(sizes, 1), self.z_shapes, strict=True)]
        h, k = pieces[-1], len(pieces) - 2
        for level, split in zip(reversed(self.levels), reversed(self.splits), strict=True):
            if split:
                h = torch.cat([pieces[k], h], 1)
                k -= 1
            h = level.inverse(h, context)
        if self.preprocess is not None:
            h = self.preprocess.inverse(h)
        return h

    def base(self, y: Tensor | None, n: int) -> tuple[Tensor, Tensor] | None:
        """(μ_y, log σ_y), each ``[n, D]``, of a conditional flow's base N(μ_y, diag σ_y²) (y None: the null label);
        None for an unconditional flow (base N(0, I)).

        Raises:
            ValueError: a bad label.
        """
        y = self.labels_or_null(y, n)
        if y is None:
            return None
        mean, log_scale = self.base_params(y).chunk(2, dim=1)
        return mean, log_scale

    def base_log_prob(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """log p_Z(z | y), ``[B]`` nats, for ``z`` ``[B, D]``: log N(z; 0, I) for an unconditional flow,
        log N(z; μ_y, diag σ_y²) = −½ Σ_d ((z_d − μ_d)/σ_d)² − Σ_d log σ_d − (D/2) log 2π for a conditional one
        (``y`` ``[B]``; None: the null label).

        Raises:
            ValueError: a bad label.
        """
        params = self.base(y, z.shape[0])
        if params is None:
            return -0.5 * (z * z).sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)
        mean, log_scale = (p.to(z.dtype) for p in params)
        u = (z - mean) * torch.exp(-log_scale)  # standardized: z = μ_y + σ_y ⊙ u
        return -0.5 * (u * u).sum(1) - log_scale.sum(1) - 0.5 * z.shape[1] * math.log(2 * math.pi)

    def log_prob(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """log p(x | y) = log p_Z(f(x; e(y)) | y) + log |det ∂f/∂x| (RealNVP Eq. 3; module docstring), ``[B]`` nats:
        the continuous density on the model's scale, without dequantization (e.g. for a 2-D density map). ``y``:
        ``[B]`` labels of a conditional flow (None: the null label, p(x | ∅)); none for an unconditional one.

        Raises:
            ValueError: for a wrong event shape or a bad label.
        """
        y = self.labels_or_null(y, x.shape[0])
        z, log_det = self(x, y)
        return self.base_log_prob(z, y) + log_det

    # ------------------------------------------------------------------ likelihood
    def dequantize(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x + u, u ~ U(−Δ/2, Δ/2)^D (uniform dequantization; :mod:`genmodels.core`'s convention) for discrete data;
        ``x`` unchanged for continuous data."""
        return uniform_dequantize(x, self.spec, generator) if self.spec.is_discrete else x

    def _nll_terms(self, x: Tensor, generator: torch.Generator | None, y: Tensor | None) -> NLLOutput:
        """The NLL's parts for labels ``y`` already resolved (None only for an unconditional flow)."""
        context = None if y is None else self.label_embedding(y)
        z, log_det_pre, log_det = self._encode(self.dequantize(x, generator), context)
        terms = {"prior": -self.base_log_prob(z, y), "log_det": -log_det}
        if self.preprocess is not None:
            terms["logit"] = -log_det_pre
        if self.spec.is_discrete:  # −log P(k) ≤ −log p(x + u) − D·log Δ (core.discrete_nll_from_density)
            terms["dequantization"] = torch.full_like(log_det, -self.spec.dim * log_bin_width(self.spec))
        return NLLOutput(sum(terms.values()), terms, "exact")

    @torch.no_grad()
    def nll_terms(self, x: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None) -> NLLOutput:
        """The exact NLL per example in nats (for discrete data: the dequantized upper bound on the discrete NLL,
        one noise draw u per call), with the parts ``prior``, ``log_det``, ``logit`` (discrete data with a logit)
        and ``dequantization`` (discrete data) that sum to it (module docstring); for a conditional flow, of
        p(x | y).

        Args:
            x: ``[B, *event_shape]`` on the model's scale. generator: draws the dequantization noise.
            y: ``[B]`` labels of a conditional flow; None: the null label, −log p(x | ∅).
        Raises:
            ValueError: for a wrong event shape, or a bad label (any label for an unconditional flow).
        """
        return self._nll_terms(x, generator, self.labels_or_null(y, x.shape[0]))

    def loss(self, x: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """The NLL of :meth:`nll_terms` in bits/dim, ``[B]`` (nats / (D ln 2), so learning rates transfer across
        data sizes), with gradients; a conditional flow trains on ``y`` after label dropout (each label replaced by
        the null label with probability ``p_uncond``; Ho & Salimans 2022, Algorithm 1).

        Raises:
            ValueError: a bad label (any label for an unconditional flow).
        """
        y = self.drop_labels(y, x.shape[0], generator)
        return nats_to_bpd(self._nll_terms(x, generator, y).nll, self.spec)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0,
               y: Tensor | None = None) -> Tensor:
        """x = f⁻¹(z), z ~ N(0, T² I) (T = ``temperature``, Glow §5), ``[n, *event_shape]``; clipped to the data
        range for discrete data (not rounded to the bins). A conditional flow draws from p(x | y):
        z = μ_y + T·σ_y ⊙ ε, ε ~ N(0, I), x = f⁻¹(z; e(y)) (``y`` ``[n]``; None: the null label).

        Raises:
            ValueError: for n < 1 or T ≤ 0, or a bad label.
        """
        if n < 1 or not temperature > 0:
            raise ValueError(f"sample needs n ≥ 1 and temperature > 0, got n={n}, temperature={temperature}")
        y = self.labels_or_null(y, n)
        p = next(self.parameters())
        z = temperature * torch.randn(n, self.spec.dim, generator=generator, device=p.device, dtype=p.dtype)
        params = self.base(y, n)
        if params is not None:
            mean, log_scale = params
            z = mean + torch.exp(log_scale) * z  # N(μ_y, T² σ_y²)
        x = self.inverse(z, y)
        if self.spec.is_discrete:
            x = x.clamp(*self.spec.value_range)
        return x

    def draw(self, n: int, generator: torch.Generator | None = None, *, sampler: str | None = None,
             steps: int | None = None, y: Tensor | None = None, progress: Progress | None = None,
             keep_trajectory: bool = False, **options) -> SampleOutput:
        """:meth:`sample` (with ``temperature``, and ``y`` for a conditional flow), one inverse pass per sample.

        Raises:
            KeyError: another sampler. ValueError: an option other than ``temperature``, ``steps`` (there are
                none), or a bad label.
        """
        name = self.check_sampler(sampler, options)
        self.check_label(y, n)
        if steps is not None:
            raise ValueError(f"a {type(self).__name__} samples in one inverse pass: --steps does not apply")
        return SampleOutput(x0=self.sample(n, generator, y=y, **options), nfe=self.nfe(name) or 0)


# ============================================================================ the three families

    def figures(self, data, out, generator=None, *, sampler=None, steps=None):
        """Samples at temperatures 1 and 0.7 (images), or the learned density map and samples (2-D data)
        (:func:`genmodels.flows.figures.write_figures`)."""
        from .figures import write_figures

        return write_figures(self, data, out, generator)


class NICE(Flow):
    """NICE (Dinh et al. 2014; module docstring). Images are flattened and coupled by MLPs, as in NICE §5.1."""

    description = "NICE: additive coupling flow, exact likelihood (Dinh et al. 2014)"

    family = "nice"

    def build_levels(self, tracker: _ShapeTracker):
        """One level: (flatten,) ``n_couplings`` additive couplings on alternating halves, then the scaling (§3.3)."""
        cfg, D = self.config, self.spec.dim
        steps: list[Transform] = [Flatten(self.spec.event_shape)] if self.spec.is_image else []
        steps += [AdditiveCoupling(HalvesPartition(D, parity=i % 2), cfg.net, self.n_context)
                  for i in range(cfg.n_couplings)]
        steps.append(ScaleLayer((D,)))  # NICE §3.3
        tracker.shape = (D,)
        return [Level(steps)]



class RealNVP(Flow):
    """RealNVP (Dinh et al. 2017; module docstring): the multiscale architecture of §3.6 for images."""

    description = "RealNVP: affine coupling flow, multiscale, exact likelihood (Dinh et al. 2017)"

    family = "realnvp"

    def build_levels(self, tracker: _ShapeTracker):
        """Vectors: ``n_couplings`` affine couplings on alternating halves. Images: §3.6's scales (class config)."""
        cfg = self.config
        coupling = lambda partition: AffineCoupling(partition, cfg.net, cfg.scale, self.n_context)  # noqa: E731
        if not self.spec.is_image:
            D = self.spec.dim
            return [Level([coupling(HalvesPartition(D, i % 2)) for i in range(cfg.n_couplings)])]
        levels = []
        for scale in range(cfg.n_scales):
            C = tracker.channels
            if scale == cfg.n_scales - 1:  # the last scale: 4 checkerboard couplings (§3.6)
                levels.append(Level([coupling(CheckerboardPartition(C, i % 2)) for i in range(cfg.final_couplings)]))
                break
            steps: list[Transform] = [coupling(CheckerboardPartition(C, i % 2))
                                      for i in range(cfg.checkerboard_couplings)]
            steps.append(tracker.squeeze(f"n_scales={cfg.n_scales} (scale {scale + 1})"))
            steps += [coupling(ChannelPartition(tracker.channels, i % 2)) for i in range(cfg.channel_couplings)]
            levels.append(Level(steps, split=tracker.split()))
        return levels



class Glow(Flow):
    """Glow (Kingma & Dhariwal 2018; module docstring): steps of actnorm → 1×1 conv → affine coupling."""

    description = "Glow: actnorm, invertible 1×1 convolutions, affine couplings (Kingma & Dhariwal 2018)"

    family = "glow"

    def _step(self, channels: int, image: bool) -> list[Transform]:
        cfg = self.config
        partition = ChannelPartition(channels, 0) if image else HalvesPartition(channels, 0)
        return [ActNorm(channels), InvertibleConv1x1(channels),
                AffineCoupling(partition, cfg.net, cfg.scale, self.n_context)]

    def build_levels(self, tracker: _ShapeTracker):
        """Vectors: K steps. Images: ``n_levels`` of squeeze → K steps → split, no split after the last (§3)."""
        cfg = self.config
        if not self.spec.is_image:
            D = self.spec.dim
            return [Level([t for _ in range(cfg.steps_per_level) for t in self._step(D, False)])]
        levels = []
        for level in range(cfg.n_levels):
            steps: list[Transform] = [tracker.squeeze(f"n_levels={cfg.n_levels} (level {level + 1})")]
            steps += [t for _ in range(cfg.steps_per_level) for t in self._step(tracker.channels, True)]
            levels.append(Level(steps, split=level < cfg.n_levels - 1 and tracker.split()))
        return levels



# ============================================================================ presets and registration


def _image_size(spec: DataSpec) -> str:
    """``vector``, ``small`` (≤ 16×16, e.g. 8×8 ``digits``) or ``large`` (e.g. 28×28)."""
    if not spec.is_image:
        return "vector"
    return "small" if max(spec.event_shape[1:]) <= 16 else "large"


def default_nice_config(spec: DataSpec) -> NICEConfig:
    """The NICE preset: 2-D toys/vectors 6 couplings of SiLU MLPs (2×64); 8×8 images 4 couplings of 2×256 ReLU
    MLPs; larger images NICE's 4 couplings (§5.1) of one 1000-wide ReLU layer (NICE used five; ≈ 3.1 M parameters on
    28×28)."""
    size = _image_size(spec)
    if size == "vector":
        return NICEConfig(n_couplings=6, net=CouplingNetConfig(hidden=64, depth=2, activation="silu"))
    if size == "small":
        return NICEConfig(n_couplings=4, net=CouplingNetConfig(hidden=256, depth=2))
    return NICEConfig(n_couplings=4, net=CouplingNetConfig(hidden=1000, depth=1))


def default_realnvp_config(spec: DataSpec) -> RealNVPConfig:
    """The RealNVP preset: 2-D toys/vectors 8 couplings of SiLU MLPs (2×64); images RealNVP's multiscale
    architecture (3 checkerboard, squeeze, 3 channel-wise couplings per scale, 4 checkerboard at the last) with
    ResNet coupling nets: 8×8 two scales, 32 channels, 2 blocks; 28×28 three scales (the most 28 allows), 32 channels,
    1 block (the first scale's convolutions run at full resolution and dominate the cost: ≈ 0.33 M parameters,
    ≈ 0.7 s per batch-64 step on one busy CPU thread; 2 blocks: 0.63 M, 1.2 s)."""
    size = _image_size(spec)
    if size == "vector":
        return RealNVPConfig(n_couplings=8, net=CouplingNetConfig(hidden=64, depth=2, activation="silu"))
    n_scales = min(3 if size == "large" else 2, max_squeezes(spec.event_shape) + 1)
    return RealNVPConfig(n_scales=n_scales, net=CouplingNetConfig(hidden=32, depth=2 if size == "small" else 1))


def default_glow_config(spec: DataSpec) -> GlowConfig:
    """The Glow preset: 2-D toys/vectors 8 steps with SiLU MLPs (2×64); images 2 levels (the most 28×28 allows) of
    K steps with ResNet coupling nets: 8×8 K = 4, 32 channels, 1 block; 28×28 K = 8, 48 channels, 1 block."""
    size = _image_size(spec)
    if size == "vector":
        return GlowConfig(steps_per_level=8, net=CouplingNetConfig(hidden=64, depth=2, activation="silu"))
    n_levels = max(1, min(2, max_squeezes(spec.event_shape)))
    if size == "small":
        return GlowConfig(n_levels=n_levels, steps_per_level=4, net=CouplingNetConfig(hidden=32, depth=1))
    return GlowConfig(n_levels=n_levels, steps_per_level=8, net=CouplingNetConfig(hidden=48, depth=1))
