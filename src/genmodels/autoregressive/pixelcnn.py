"""PixelCNN: an exact-likelihood autoregressive model of discrete images (van den Oord et al. 2016a, "Pixel Recurrent
Neural Networks"; van den Oord et al. 2016b, "Conditional Image Generation with PixelCNN Decoders"; seed 004).

The image's levels ``k ∈ {0, …, n_bins−1}``, one per pixel and channel, are factorized in raster order and, within a
pixel, in channel order (PixelRNN Eq. 1–2; seed 004, "P(x) = Π_i p(x[i] | x[0:i])"):

    log p(x) = Σ_{i=1}^{H·W} Σ_{c=1}^{C} log p(x_{i,c} | x_{<i}, x_{i,<c}),

each factor read off a masked-convolution backbone (:mod:`genmodels.nets.masked`) in one pass for all pixels.

Notation:

====================  ===============================================================================================
``x``                 data on the model's scale, ``x = 2k/(n_bins−1) − 1 ∈ [−1, 1]`` (:mod:`genmodels.core`)
``k``                 the level (bin) of each pixel and channel, ``round((x + 1)(n_bins−1)/2)``
``params``            the backbone's ``P`` numbers per pixel and channel, ``[B, C, P, H, W]``
``softmax`` head      P = n_bins logits; p(k | ·) = softmax(logits)_k (PixelRNN §5.3, "discrete softmax")
``logistic_mixture``  P = 3K: mixture logits π, locations μ, log-scales log s;
                      p(k | ·) = Σ_m π_m [σ((x + δ − μ_m)/s_m) − σ((x − δ − μ_m)/s_m)], δ = 1/(n_bins−1), the edge
                      bins to ±∞ (PixelCNN++, Salimans et al. 2017, Eq. 2); each colour has its own mixture,
                      conditioned on the earlier colours through the backbone's channel masks (PixelCNN++ instead
                      makes the later colours' means linear in the earlier ones, its Eq. 3)
``temperature T``     sampling draws k ∝ p(k | ·)^{1/T} (T = 1: the model's own distribution)
====================  ===============================================================================================

Units: ``nll_terms`` in nats per example (exact, ``{"autoregressive": nll}``); ``loss`` in bits/dim.

Sampling is sequential, one (incremental) backbone evaluation per pixel and channel (:meth:`PixelCNN.nfe` = C·H·W). By
default the gated backbone keeps every layer's activations (:class:`~genmodels.nets.masked.GatedSamplingCache`):
the vertical stack runs once per row, the horizontal stack on one pixel per step. The alternative ``cache="rows"``
runs the whole backbone on the band of ``rows_above + 1`` rows that can influence the current row (the band's top
edge lies beyond the receptive field, so the conditionals are the same). Measured on the 28×28 preset, 16 images,
1 thread (a shared, loaded 2-core machine): ``layers`` 4.3 s, ``rows`` 67 s, ``none`` (whole image per pixel)
≈ 105 s: the row band pays ≈1.6×, the layer cache ≈25×.

**Class conditioning** (``cond.num_classes`` = K > 0): the conditional gated PixelCNN of PixelCNN-Decoders §2.3,
Eq. 4, y = tanh(W_f ∗ x + V_f^T h) ⊙ σ(W_g ∗ x + V_g^T h) with h the one-hot of the label over the K classes and the
null label ∅ = K, in every gate of both stacks (:mod:`genmodels.nets.masked`; the plain backbone, which has no
gates, gets a per-layer class bias instead). Label dropout (``cond.p_uncond``) makes the same network p(x | ∅) ≈ p(x).
The NLL is the exact −log p(x | y).

**Completion** (:meth:`PixelCNN.inpaint`, method ``raster``): the unknown levels are drawn one at a time in the
model's own order (raster, then channel) from p(x_i | x_{<i}), i a (pixel, channel) position, with the known levels
clamped. Per image, let U be its unknown positions, E the known ones before its first unknown one, and L the known
ones after it (the "late" known ones). The draw has probability

    q(x_U) = Π_{i ∈ U} p(x_i | x_{<i}),   and   p(x_U | x_E, x_L) ∝ p(x) = q(x_U) · Π_{i ∈ L} p(x_i | x_{<i}) · p(x_E),

so q *is* the exact conditional when L is empty (every known position precedes every unknown one, a raster
prefix: e.g. the top half known), and otherwise ignores what the late known pixels say. There ``particles`` = N
completions are drawn per image, each weighted by w = Π_{i ∈ L} p(x_i | x_{<i}) (computed exactly, in the same
passes), and one is resampled ∝ w: sampling-importance-resampling (Rubin 1987), exact only as N → ∞ (its output
distribution approaches p(x_U | x_known) with a bias of order 1/N; N = 1 is the raster proposal q itself). The
weights' effective sample size (Σw)²/Σw² is logged at DEBUG level. A conditional model completes from
p(x_U | x_known, y) the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core import Conditioning, DataSpec, GenerativeModel, NLLOutput, Progress, SampleOutput, nats_to_bpd
from ..distributions import LOG_SCALE_MIN, discretized_logistic_log_likelihood
from ..nets.masked import GatedSamplingCache, MaskedConvNet, MaskedConvNetConfig

log = logging.getLogger(__name__)

__all__ = ["PixelCNNConfig", "PixelCNN", "default_config"]

Head = Literal["softmax", "logistic_mixture"]
Cache = Literal["auto", "layers", "rows", "none"]


@dataclass(frozen=True)
class PixelCNNConfig:
    """A PixelCNN.

    Attributes:
        net: the masked-convolution backbone (:class:`~genmodels.nets.masked.MaskedConvNetConfig`: gated or plain,
            layers, channels, kernels, head width).
        head: ``softmax`` (an n_bins-way categorical per pixel and channel) or ``logistic_mixture`` (a discretized
            mixture of logistics, PixelCNN++ Eq. 2).
        n_mixtures: K, the mixture components of the ``logistic_mixture`` head.
        cond: class conditioning (PixelCNN-Decoders Eq. 4; module docstring); the default, 0 classes, is
            unconditional and builds no label parameters.
    Raises:
        ValueError: naming the bad field.
    """

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"n_mixtures": (1, 100)}

    net: MaskedConvNetConfig = field(default_factory=MaskedConvNetConfig)
    head: Head = "softmax"
    n_mixtures: int = 5
    cond: Conditioning = field(default_factory=Conditioning)

    def __post_init__(self) -> None:
        if self.head not in ("softmax", "logistic_mixture"):
            raise ValueError(f"head must be 'softmax' or 'logistic_mixture', got {self.head!r}")
        if self.n_mixtures < 1:
            raise ValueError(f"n_mixtures must be ≥ 1, got {self.n_mixtures}")


class PixelCNN(GenerativeModel):
    """PixelCNN on discrete images (module docstring), with an exact NLL.

    Args:
        config: :class:`PixelCNNConfig`. spec: the data; must be images ``(C, H, W)`` with ``n_bins`` levels.
    Raises:
        ValueError: for continuous data (no ``n_bins``: PixelCNN models discrete levels; quantize the data, e.g. load a
            discrete dataset), for non-image data, or for fewer than 2 levels.
    """

    nll_kind = "exact"
    description = "PixelCNN: gated masked convolutions, exact likelihood (van den Oord et al. 2016)"
    sampler_options: ClassVar[dict[str, tuple[str, ...]]] = {"ancestral": ("temperature", "cache")}
    inpainters: ClassVar[tuple[str, ...]] = ("raster",)
    inpaint_options: ClassVar[dict[str, tuple[str, ...]]] = {"raster": ("particles", "cache")}
    """Per inpainting method, the keyword options :meth:`inpaint` takes."""

    def __init__(self, config: PixelCNNConfig, spec: DataSpec):
        super().__init__()
        if not spec.is_discrete:
            raise ValueError(f"PixelCNN models discrete levels, but dataset {spec.name!r} is continuous (n_bins is "
                             f"None); use a discrete image dataset (e.g. 'digits', 'mnist5k') or a model for "
                             f"continuous data (a flow, VAE or DDPM)")
        if not spec.is_image:
            raise ValueError(f"PixelCNN models images (C, H, W); dataset {spec.name!r} has event shape "
                             f"{spec.event_shape}")
        if spec.n_bins < 2:
            raise ValueError(f"PixelCNN needs n_bins ≥ 2 levels, got {spec.n_bins}")
        self.config, self.spec = config, spec
        self.set_conditioning(config.cond)
        self.n_bins = spec.n_bins
        params = self.n_bins if config.head == "softmax" else 3 * config.n_mixtures
        n_labels = self.num_label_embeddings if self.num_classes is not None else 0  # K classes + ∅ (Eq. 4)
        self.net = MaskedConvNet(spec.event_shape[0], params, config.net, n_labels)

    def nfe(self, sampler: str | None = None, steps: int | None = None, guidance_scale: float = 0.0) -> int:
        """Network evaluations per sample: one (incremental) evaluation per pixel and channel, C·H·W (PixelCNN has
        no guidance)."""
        return self.spec.dim

    def figures(self, data, out, generator=None, *, sampler=None, steps=None):
        """Samples at temperatures 1 and 0.7 (images), or waveforms and WAV files (audio sequences)
        (:func:`genmodels.autoregressive.figures.write_figures`)."""
        from .figures import write_figures

        return write_figures(self, data, out, generator)

    # ------------------------------------------------------------------ data ↔ levels
    def levels(self, x: Tensor) -> Tensor:
        """The level ``k`` of each value of ``x`` (long, same shape): ``round((x + 1)(n_bins−1)/2)``.

        Raises:
            ValueError: for a wrong shape, non-finite values, values outside [−1, 1] or off the level grid (by more
                than a quarter bin: continuous or dequantized data).
        """
        if x.ndim != 4 or tuple(x.shape[1:]) != tuple(self.spec.event_shape):
            raise ValueError(f"PixelCNN expects x of shape [B, {', '.join(map(str, self.spec.event_shape))}], got "
                             f"{list(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or infinite values; clean the data before evaluating PixelCNN")
        half = (self.n_bins - 1) / 2
        u = (x.detach().double() + 1) * half  # on the level scale
        k = torch.round(u)
        if (k < 0).any() or (k > self.n_bins - 1).any() or ((u - k).abs() > 0.25).any():
            raise ValueError(f"x must be discrete data on the grid 2k/(n_bins−1) − 1 with n_bins = {self.n_bins} "
                             f"(values in [−1, 1], no dequantization noise); got values off that grid, in "
                             f"[{x.min().item():.4g}, {x.max().item():.4g}]. Pass the dataset's discrete tensors")
        return k.long()

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the parameters."""
        return next(self.parameters()).dtype

    def grid(self, dtype: torch.dtype | None = None) -> Tensor:
        """``[n_bins]``: the level values ``2k/(n_bins−1) − 1``, computed in float64 and rounded once to ``dtype``
        (default the parameters'), so the bins tile [−1, 1] as exactly as the dtype allows."""
        k = torch.arange(self.n_bins, dtype=torch.float64, device=self.device)
        return (k * 2 / (self.n_bins - 1) - 1).to(dtype or self.dtype)

    def to_data(self, k: Tensor) -> Tensor:
        """Levels → data scale: ``2k/(n_bins−1) − 1`` (exact grid values, the parameters' dtype)."""
        return self.grid()[k]

    # ------------------------------------------------------------------ the conditionals
    def params(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The backbone's output ``[B, C, P, H, W]`` for ``x`` ``[B, C, H, W]``: at (c, i, j) the parameters of
        p(x_{(i,j),c} | x before it [, y]); ``y`` ``[B]`` labels of a conditional model (None: the null label).

        Raises:
            ValueError: a label for an unconditional model, or out of range.
        """
        return self.net(x, self.labels_or_null(y, x.shape[0]))

    def _mixture(self, p: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Split params ``[B, C, 3K, …]`` along dim 2 into log π (normalized), μ and log s (clamped at PixelCNN++'s
        −7), ``[B, C, K, …]`` each."""
        logit_pi, loc, log_scale = p.chunk(3, dim=2)
        return F.log_softmax(logit_pi, dim=2), loc, log_scale.clamp(min=LOG_SCALE_MIN)

    def log_prob_levels(self, params: Tensor) -> Tensor:
        """log p(k | ·) for every level k, normalized: ``[B, C, P, …] → [B, C, n_bins, …]`` (nats).

        ``softmax``: log_softmax of the logits. ``logistic_mixture``: log Σ_m π_m P_logistic(bin k; μ_m, s_m),
        PixelCNN++ Eq. 2 with the stable CDF difference of :func:`~genmodels.distributions.
        discretized_logistic_log_likelihood` (edge bins to ±∞), so the n_bins probabilities sum to 1.
        """
        if self.config.head == "softmax":
            return F.log_softmax(params, dim=2)
        log_pi, loc, log_scale = self._mixture(params)  # [B, C, K, …] each
        extra = params.ndim - 3
        grid = self.grid(params.dtype).view(1, 1, 1, -1, *([1] * extra))  # [1, 1, 1, n_bins, …]
        lp = discretized_logistic_log_likelihood(grid, loc.unsqueeze(3), log_scale.unsqueeze(3), self.n_bins)
        return torch.logsumexp(log_pi.unsqueeze(3) + lp, dim=2)  # [B, C, n_bins, …]

    def log_prob_observed(self, params: Tensor, x: Tensor, k: Tensor) -> Tensor:
        """log p(x_{i,c} | x_{<(i,c)}) at the observed levels, ``[B, C, H, W]`` nats.

        Args:
            params: ``[B, C, P, H, W]``. x: ``[B, C, H, W]`` data. k: its levels (:meth:`levels`).
        """
        if self.config.head == "softmax":
            return F.log_softmax(params, dim=2).gather(2, k.unsqueeze(2)).squeeze(2)
        log_pi, loc, log_scale = self._mixture(params)  # [B, C, K, H, W]
        xk = self.grid(params.dtype)[k].unsqueeze(2)  # [B, C, 1, H, W], exactly on the grid
        lp = discretized_logistic_log_likelihood(xk, loc, log_scale, self.n_bins)  # PixelCNN++ Eq. 2, per component
        return torch.logsumexp(log_pi + lp, dim=2)

    # ------------------------------------------------------------------ the interface
    def nll_terms(self, x: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None,
                  **kw) -> NLLOutput:
        """Exact NLL −Σ_{i,c} log p(x_{i,c} | x_{<(i,c)} [, y]) (module docstring), ``[B]`` nats, one term
        ``autoregressive``. ``generator`` is unused (nothing is random). ``y``: ``[B]`` labels of a conditional model,
        −log p(x | y); None reads the null label, −log p(x | ∅).

        Raises:
            ValueError: for data off the level grid or of the wrong shape (:meth:`levels`), a bad label, or unknown
                keywords.
        """
        if kw:
            raise ValueError(f"PixelCNN.nll takes no options; got {', '.join(sorted(kw))}")
        return self._nll(x, self.labels_or_null(y, x.shape[0]))

    def _nll(self, x: Tensor, y: Tensor | None) -> NLLOutput:
        """:meth:`nll_terms` with the network's labels resolved (None: unconditional)."""
        k = self.levels(x)
        x = self.to_data(k).to(x.dtype)  # snap to the exact grid
        nll = -self.log_prob_observed(self.net(x, y), x, k).flatten(1).sum(1)  # [B]
        return NLLOutput(nll=nll, terms={"autoregressive": nll}, kind="exact")

    def loss(self, x: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """The exact NLL in bits/dim, ``[B]``; a conditional model trains on ``y`` after label dropout
        (:meth:`~genmodels.core.GenerativeModel.drop_labels`, drawn from ``generator``)."""
        y = self.drop_labels(y, x.shape[0], generator)
        return nats_to_bpd(self._nll(x, y).nll, self.spec)

    def draw(self, n: int, generator: torch.Generator | None = None, *, sampler: str | None = None,
             steps: int | None = None, y: Tensor | None = None, progress: Progress | None = None,
             keep_trajectory: bool = False, **options: Any) -> SampleOutput:
        """:meth:`sample` by the interface (:meth:`~genmodels.core.GenerativeModel.draw`), with the labels ``y``
        ``[n]`` of a conditional model (None: the null label) and ``progress`` wrapping the row loop.

        Raises:
            KeyError: unknown sampler. ValueError: an unknown option, ``steps`` (PixelCNN has no step count) or a
                bad label.
        """
        name = self.check_sampler(sampler, options)
        if steps is not None:
            raise ValueError(f"the {name!r} sampler of a PixelCNN has no step count; drop --steps")
        return SampleOutput(x0=self.sample(n, generator, y=y, progress=progress, **options), nfe=self.nfe(name))

    def _cache(self, cache: Cache) -> Cache:
        """``cache`` checked, ``auto`` resolved: ``layers`` for the gated backbone, else ``rows``."""
        if cache not in ("auto", "layers", "rows", "none"):
            raise ValueError(f"cache must be 'auto', 'layers', 'rows' or 'none', got {cache!r}")
        if cache == "auto":
            return "layers" if self.config.net.kind == "gated" else "rows"
        return cache

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0, *,
               y: Tensor | None = None, cache: Cache = "auto", progress: Callable | None = None, **kw) -> Tensor:
        """Draw ``n`` images pixel by pixel in raster order, channels in order.

        Args:
            n: number of images. generator: the source of every random draw (Gumbel noise, one ``[n, n_bins]``
                draw per pixel and channel, in the same order for every ``cache``). temperature: T > 0; levels are
                drawn ∝ p(k | ·)^{1/T}.
            y: ``[n]`` labels of a conditional model, p(x | y); None: the null label, p(x | ∅).
            cache: how the conditionals are computed (all give the same ones, up to float rounding):
                ``layers``: per-layer activation cache (gated backbone; :class:`~genmodels.nets.masked.
                GatedSamplingCache`), ``rows``: one backbone pass per pixel on the band of ``rows_above + 1`` rows
                ending at the current row, ``none``: one pass per pixel on the whole image; ``auto``: ``layers`` for
                the gated backbone, else ``rows``.
            progress: wraps the row loop (e.g. ``tqdm``), optional.
        Returns:
            ``[n, C, H, W]`` exact level values ``2k/(n_bins−1) − 1`` on the data scale.
        Raises:
            ValueError: for n < 1, T ≤ 0, an unknown cache, ``layers`` with the plain backbone, a bad label, or
                unknown keywords.
        """
        if kw:
            raise ValueError(f"PixelCNN samples in raster order and takes only temperature, y, cache and progress; "
                             f"got {', '.join(sorted(kw))}")
        if n < 1 or not temperature > 0:
            raise ValueError(f"need n ≥ 1 and temperature > 0, got n={n}, temperature={temperature}")
        cache = self._cache(cache)
        y = self.labels_or_null(y, n)
        C, H, W = self.spec.event_shape
        x = torch.zeros(n, C, H, W, device=self.device, dtype=self.dtype)
        scan = _RasterScan(self, x, y, cache)
        for i in (range(H) if progress is None else progress(range(H))):
            scan.start_row(i)
            for j in range(W):
                for c in range(C):
                    p = scan.pixel(i, j)[:, c:c + 1]  # [n, 1, P]
                    logp = self.log_prob_levels(p)[:, 0] / temperature  # [n, n_bins]
                    x[:, c, i, j] = self.to_data(_gumbel_max(logp, generator))
        return x

    # ------------------------------------------------------------------ completion
    @torch.no_grad()
    def inpaint(self, x: Tensor, known: Tensor, generator: torch.Generator | None = None, *,
                method: str | None = None, y: Tensor | None = None, progress: Progress | None = None,
                **options: Any) -> SampleOutput:
        """Complete the unknown levels of ``x`` from the model's conditional p(x_unknown | x_known [, y]) (module
        docstring, "Completion"; the issue's "exact completion of the unobserved pixels in raster order").

        The unknown positions are drawn in the model's order (raster, then channel), each from
        p(x_{i,c} | x_{<(i,c)}) with the known levels clamped. **Exact** (the draw's distribution is p(x_U | x_known)
        itself) when every known position of an image precedes all its unknown ones; otherwise ``particles``
        completions per image are weighted by the likelihood of the later known positions,
        Π_{i known, after an unknown} p(x_i | x_{<i}), and one is resampled: **asymptotically exact** in
        ``particles`` (sampling-importance-resampling; particles = 1 there samples the raster proposal, which
        ignores the later known pixels).

        Args:
            x: ``[B, C, H, W]`` images on the data scale; only the entries where ``known`` is true are read (they must
                lie on the level grid, as :meth:`levels` checks).
            known: bool ``[B or 1, C, H, W]``: True where ``x`` is observed.
            generator: the source of every draw: one Gumbel ``[B·N, n_bins]`` per position with an unknown value in
                some image, then (N > 1) one ``[B, N]`` draw to resample.
            method: ``"raster"`` (the only one; None picks it). y: ``[B]`` labels of a conditional model (None: the
                null label). progress: wraps the row loop.
            **options: ``particles`` N ≥ 1 (default 1 when every image's known set is a raster prefix, where 1 is
                exact, else 16); ``cache`` as in :meth:`sample`.
        Returns:
            :class:`~genmodels.core.SampleOutput` with ``x0`` ``[B, C, H, W]``, equal to ``x`` where ``known`` and on
            the level grid elsewhere, and ``nfe`` the network evaluations: one per position (pixel and channel) whose
            conditional is read, i.e. those unknown in some image, plus (N > 1) those weighed; the same for every
            image of the batch, which shares the passes. (The layer cache also brings its horizontal stack up to date
            over a row's known pixels before the next position it reads, one vectorized pass per stretch, not
            counted.)
        Raises:
            ValueError: an unknown method or option, a mask or images of the wrong shape, a non-boolean mask, known
                values off the grid, particles < 1, or a bad label.
        """
        name = self.check_inpaint(method, x, known)
        allowed = self.inpaint_options[name]
        bad = sorted(set(options) - set(allowed))
        if bad:
            raise ValueError(f"the {name!r} completion of a PixelCNN takes {', '.join(allowed)}; got {', '.join(bad)}")
        if known.dtype != torch.bool:
            raise ValueError(f"the mask must be boolean (True where the pixel is known), got {known.dtype}")
        cache = self._cache(options.get("cache", "auto"))
        B = x.shape[0]
        C, H, W = self.spec.event_shape
        known = known.to(x.device).expand_as(x)
        k_obs = self.levels(torch.where(known, x, torch.full_like(x, -1.0)))  # [B, C, H, W]: only known entries read
        y_net = self.labels_or_null(y, B)
        unknown = ~known
        rank = torch.arange(C * H * W, device=x.device).view(H, W, C).permute(2, 0, 1)  # [C, H, W]: the model's order
        first = torch.where(unknown, rank, C * H * W).flatten(1).min(1).values  # [B]: each image's first unknown
        late = known & (rank > first.view(B, 1, 1, 1))  # [B, C, H, W]: known, but after an unknown position
        particles = options.get("particles", 16 if late.any() else 1)
        if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
            raise ValueError(f"particles must be an integer ≥ 1, got {particles!r}")
        N = particles
        weigh = N > 1 and bool(late.any())
        drawn = unknown.any(0)  # [C, H, W]: positions drawn in some image
        needed = drawn | late.any(0) if weigh else drawn  # [C, H, W]: positions whose conditional is read
        drawn_at, needed_at = drawn.tolist(), needed.tolist()  # nested lists [c][i][j]: no tensor reads in the loop
        # the N particles of image b are rows b·N … b·N+N−1
        xs = torch.where(known, self.to_data(k_obs).to(self.dtype), torch.zeros((), dtype=self.dtype,
                                                                                  device=x.device))
        xs, kn, lt, ks = (t.repeat_interleave(N, 0) for t in (xs, known, late, k_obs))
        ys = None if y_net is None else y_net.repeat_interleave(N)
        logw = torch.zeros(B * N, dtype=torch.float64, device=x.device)
        scan = _RasterScan(self, xs, ys, cache)
        for i in (range(H) if progress is None else progress(range(H))):
            scan.start_row(i)
            done = 0  # the horizontal activations of row i are current left of column `done`
            for j in needed[:, i].any(0).nonzero().flatten().tolist():
                if j > done:
                    scan.refresh(i, done, j - 1)  # the known stretch before j (and j−1 if drawn after its pass)
                out = None
                for c in range(C):
                    if not needed_at[c][i][j]:
                        continue
                    if out is None:
                        out = scan.pixel(i, j)  # [B·N, C, P]
                    logp = self.log_prob_levels(out[:, c:c + 1])[:, 0]  # [B·N, n_bins]
                    if drawn_at[c][i][j]:
                        draw = self.to_data(_gumbel_max(logp, generator))
                        xs[:, c, i, j] = torch.where(kn[:, c, i, j], xs[:, c, i, j], draw)
                        out = None  # the later channels' conditionals read this one
                    if weigh:  # the SIR weight: log p(x_i | x_{<i}) of a known position after an unknown one
                        lp = logp.gather(1, ks[:, c, i, j, None])[:, 0].double()
                        logw += torch.where(lt[:, c, i, j], lp, torch.zeros_like(lp))
                # a level drawn after the last pass leaves column j's cached activations stale: refresh it first
                done = j if out is None else j + 1
        xs = xs.view(B, N, C, H, W)
        if N > 1:
            lw = logw.view(B, N)
            pick = _gumbel_max(lw, generator)  # [B]: one particle per image, ∝ its weight
            w = torch.softmax(lw, dim=1)
            ess = 1.0 / w.pow(2).sum(1)  # (Σw)²/Σw² of the normalized weights
            log.debug("PixelCNN completion: %d particles per image, effective sample size %.1f–%.1f", N,
                      float(ess.min()), float(ess.max()))
            xs = xs[torch.arange(B, device=x.device), pick]
        else:
            xs = xs[:, 0]
        return SampleOutput(x0=torch.where(known, x, xs.to(x.dtype)), nfe=int(needed.sum()))


def _gumbel_max(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    """``[n]`` long: one draw per row from softmax(``logits`` ``[n, V]``) by the Gumbel-max trick, from one
    ``[n, V]`` uniform draw of ``generator``."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    gumbel = -torch.log(-torch.log(u.clamp(min=torch.finfo(u.dtype).tiny)))
    return torch.argmax(logits + gumbel, dim=1)  # Gumbel-max: k ~ softmax(logits)


class _RasterScan:
    """The conditionals' parameters of an image being filled in place in raster order, by one of the caches of
    :meth:`PixelCNN.sample`: ``layers`` (:class:`~genmodels.nets.masked.GatedSamplingCache`), ``rows`` (a backbone
    pass on the band of ``rows_above + 1`` rows ending at the current row) or ``none`` (a pass on the whole image).

    Args:
        model: the PixelCNN. x: ``[n, C, H, W]`` the image being filled (read at every call). y: ``[n]`` resolved
            labels of a conditional model, else None. cache: ``layers``, ``rows`` or ``none``.
    """

    def __init__(self, model: PixelCNN, x: Tensor, y: Tensor | None, cache: Cache):
        self.net, self.x, self.y, self.cache = model.net, x, y, cache
        self.layers: GatedSamplingCache | None = model.net.incremental(x, y) if cache == "layers" else None
        self.top = 0

    def start_row(self, i: int) -> None:
        """Begin row i (every row in order, rows 0 … H−1; the layer cache computes the vertical stack here)."""
        if self.layers is not None:
            self.layers.start_row(i)
        self.top = max(0, i - self.net.rows_above) if self.cache == "rows" else 0  # rows above cannot influence i
        self.row = i

    def pixel(self, i: int, j: int) -> Tensor:
        """``[n, C, P]``: the parameters at pixel (i, j) from the current ``x`` (row i, after :meth:`start_row`)."""
        if self.layers is not None:
            return self.layers.pixel(i, j)
        return self.net(self.x[:, :, self.top:i + 1], self.y)[:, :, :, i - self.top, j]

    def refresh(self, i: int, a: int, b: int) -> None:
        """Bring the layer cache up to date over columns a … b of row i, given there rather than generated (a full or
        band pass reads ``x`` afresh and needs nothing)."""
        if self.layers is not None:
            self.layers.refresh(i, a, b)


def default_config(spec: DataSpec) -> PixelCNNConfig:
    """The PixelCNN preset: a gated backbone (no blind spot) sized to the image.

    - ≤ 16 px (``digits``, 8×8, 17 levels): 5 layers, 5×5 first kernel (the reach covers the image), 64 channels,
      softmax head; 0.38 M parameters, ≈0.2 s per batch-64 training step on 1 thread, 0.2 s to sample 16 images.
      The two heads tied in a 25 s check (test 1.954 vs 1.958 bits/dim), so the simpler softmax.
    - larger (28×28, 256 levels): 8 layers, 7×7 first kernel, 32 channels (reach: 11 rows up), discretized
      logistic-mixture head (K = 5); 0.16 M parameters, 1.0–1.7 s per batch-64 step on 1 loaded thread, 4.3 s to
      sample 16 images. The mixture beat the 256-way softmax in a 28 s check on ``mnist5k`` (test 2.35 vs 2.41
      bits/dim at the same number of steps, each step 10–20% cheaper). A convolution's compute per pixel equals its
      parameter count, so 0.5 M parameters would cost ≈3× this step time on 28×28 images; widen ``net.channels``
      for a longer budget.

    (Timings on a shared 2-core CPU that was running another job: indicative only.)
    """
    _C, H, W = spec.event_shape if spec.is_image else (1, 1, 1)
    if max(H, W) <= 16:
        return PixelCNNConfig(net=MaskedConvNetConfig(n_layers=5, channels=64, first_kernel=5, head_channels=128),
                              head="softmax")
    return PixelCNNConfig(net=MaskedConvNetConfig(n_layers=8, channels=32, first_kernel=7, head_channels=64),
                          head="logistic_mixture", n_mixtures=5)
