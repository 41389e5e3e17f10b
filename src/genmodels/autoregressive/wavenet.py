"""WaveNet (van den Oord et al. 2016, "WaveNet: A Generative Model for Raw Audio"): an autoregressive model of 1-D
discrete sequences (μ-law audio) built from causal, dilated, gated convolutions, with fast generation by per-layer
queues (Paine et al. 2016, "Fast Wavenet Generation Algorithm").

Notation:

=====================  ===============================================================================================
``x_1 … x_L``          one sequence of codes k ∈ {0, …, n_bins−1} (μ-law codes for ``speech``); on the data scale
                       2k/(n_bins−1) − 1
p(x)                   Π_t p(x_t | x_1, …, x_{t−1}) (WaveNet Eq. 1), each factor an n_bins-way softmax (§2.2)
start token            code ``n_bins``: the input that predicts x_1, so the product covers all L samples
input                  the previous sample x_{t−1} (or the start token), embedded: a lookup in an
                       (n_bins+1) × C table, which is exactly a one-hot vector times a 1×1 conv's weight, at O(C)
                       instead of O(n_bins·C) per step and without an [B, n_bins, L] one-hot tensor
dilations              1, 2, 4, …, 2^(c−1) (c = ``cycle_length``), the cycle repeated ``n_cycles`` times (§2.1)
gate                   z = tanh(W_f ∗ h) ⊙ σ(W_g ∗ h) (Eq. 2)
residual, skip         h ← h + W_r z; s = Σ_layers W_s z (§2.4, Fig. 4)
output                 logits = W_2 ReLU(W_1 ReLU(s)), 1×1 convs (Fig. 4), softmax over n_bins (§2.2)
R                      receptive field 1 + Σ_layers (k−1)·d: x_t is predicted from x_{t−R}, …, x_{t−1}
queue                  per layer, the last (k−1)·d inputs: one generated sample costs O(layers) (Paine et al. 2016)
``y``, h_y             global conditioning (§2.5): a class label, one per sequence; every gate reads
                       z = tanh(W_f ∗ h + V_f^T h_y) ⊙ σ(W_g ∗ h + V_g^T h_y), h_y the one-hot of y over the K
                       classes and the null label ∅ = K (label dropout: p(x | ∅) ≈ p(x), Ho & Salimans 2022)
=====================  ===============================================================================================

The NLL is exact: −log p(x) = −Σ_t log softmax(logits_t)[x_t], in nats; the loss is the same in bits per sample.
A class-conditional WaveNet (``cond.num_classes`` = K > 0) gives the exact −log p(x | y) the same way; y = None reads
the null label.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..core import Conditioning, DataSpec, GenerativeModel, NLLOutput, Progress, SampleOutput, nats_to_bpd
from ..nets.causal import GatedResidualBlock

__all__ = ["WaveNetConfig", "WaveNet", "default_config"]


@dataclass(frozen=True)
class WaveNetConfig:
    """A WaveNet (van den Oord et al. 2016, §2).

    Attributes:
        residual_channels: C, channels of the residual stream (and of the input embedding).
        skip_channels: S, channels of the skip stream and of the output head.
        cycle_length: c, layers per dilation cycle: dilations 1, 2, …, 2^(c−1) (§2.1).
        n_cycles: how many times the cycle is repeated (the paper's stacked blocks).
        kernel_size: k of every dilated conv (2 in the paper).
        cond: class conditioning (global conditioning, §2.5); the default, 0 classes, is unconditional and builds
            no label parameters.
    Raises:
        ValueError: if a field is < 1.
    """

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "residual_channels": (1, 1024), "skip_channels": (1, 4096), "cycle_length": (1, 16), "n_cycles": (1, 64),
        "kernel_size": (1, 16)}

    residual_channels: int = 64
    skip_channels: int = 128
    cycle_length: int = 8
    n_cycles: int = 2
    kernel_size: int = 2
    cond: Conditioning = field(default_factory=Conditioning)

    def __post_init__(self) -> None:
        for name in ("residual_channels", "skip_channels", "cycle_length", "n_cycles", "kernel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"WaveNetConfig.{name} must be ≥ 1, got {getattr(self, name)}")

    @property
    def dilations(self) -> tuple[int, ...]:
        """Dilation of each layer: (1, 2, …, 2^(c−1)) × n_cycles."""
        return tuple(2 ** i for i in range(self.cycle_length)) * self.n_cycles

    @property
    def receptive_field(self) -> int:
        """R = 1 + Σ (k−1)·d: the number of past samples each prediction sees."""
        return 1 + sum((self.kernel_size - 1) * d for d in self.dilations)


class WaveNet(GenerativeModel):
    """WaveNet over discrete sequences with event shape ``(1, L)`` (e.g. the ``speech`` dataset).

    Args:
        config: a :class:`WaveNetConfig`.
        spec: discrete data (``n_bins`` set) with event shape ``(1, L)``.
    Raises:
        ValueError: for continuous data or another event shape (the message says which data fits).
    Source: van den Oord et al. 2016 (§2, Eqs. 1–2, Fig. 4); Paine et al. 2016 (fast generation).
    """

    nll_kind = "exact"
    description = "WaveNet: dilated causal convolutions over sequences, exact likelihood (van den Oord et al. 2016)"
    sampler_options: ClassVar[dict[str, tuple[str, ...]]] = {"ancestral": ("temperature", "length", "cache")}

    def __init__(self, config: WaveNetConfig, spec: DataSpec):
        super().__init__()
        _check_spec(spec)
        self.config, self.spec = config, spec
        self.set_conditioning(config.cond)
        self.n_bins = spec.n_bins
        C, S = config.residual_channels, config.skip_channels
        n_labels = self.num_label_embeddings if self.num_classes is not None else 0  # K classes + ∅ (§2.5)
        self.embed = nn.Embedding(self.n_bins + 1, C)  # codes 0..n_bins−1 and the start token n_bins
        last = len(config.dilations) - 1  # its residual output is unused (Fig. 4): no W_r
        self.blocks = nn.ModuleList(GatedResidualBlock(C, S, config.kernel_size, d, residual=i < last,
                                                       n_labels=n_labels)
                                    for i, d in enumerate(config.dilations))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(S, S, 1), nn.ReLU(), nn.Conv1d(S, self.n_bins, 1))  # Fig. 4

    @property
    def receptive_field(self) -> int:
        """R = 1 + Σ_layers (k−1)·d: x_t is predicted from the R samples x_{t−R}, …, x_{t−1}."""
        return self.config.receptive_field

    def nfe(self, sampler: str | None = None, steps: int | None = None, guidance_scale: float = 0.0) -> int:
        """Network evaluations per sample: one (incremental) pass per position, L (WaveNet has no guidance)."""
        return self.spec.event_shape[-1]

    def figures(self, data, out, generator=None, *, sampler=None, steps=None):
        """Samples at temperatures 1 and 0.7 (images), or waveforms and WAV files (audio sequences)
        (:func:`genmodels.autoregressive.figures.write_figures`)."""
        from .figures import write_figures

        return write_figures(self, data, out, generator)

    # ------------------------------------------------------------------------- the network

    def codes(self, x: Tensor) -> Tensor:
        """Data ``[B, 1, L]`` on the ``[−1, 1]`` scale → codes ``[B, L]`` int64, ``k = round((x+1)(n_bins−1)/2)``
        clamped to the levels.

        Raises:
            ValueError: if ``x`` is not ``[B, 1, L]`` with L ≥ 1.
        """
        if x.dim() != 3 or x.shape[1] != 1 or x.shape[2] < 1:
            raise ValueError(f"WaveNet takes sequences [B, 1, L] (event shape (1, L)), got {list(x.shape)}")
        from ..data.base import unscale_discrete  # here: the data package loads PIL/scipy, not wanted at import

        return unscale_discrete(x[:, 0], self.n_bins)

    def logits(self, k: Tensor, y: Tensor | None = None) -> Tensor:
        """``[B, n_bins, L]`` logits of p(x_t | x_{<t}[, y]) for every t, from codes ``k`` ``[B, L]`` (teacher
        forcing) and, for a conditional model, labels ``y`` ``[B]`` (None: the null label).

        Raises:
            ValueError: a label for an unconditional model or out of range.
        """
        return self._logits(k, self.labels_or_null(y, k.shape[0]))

    def _logits(self, k: Tensor, y: Tensor | None) -> Tensor:
        """:meth:`logits` with the network's labels already resolved (None: unconditional)."""
        start = torch.full_like(k[:, :1], self.n_bins)
        inputs = torch.cat([start, k[:, :-1]], dim=1)  # [B, L]: the start token, then x_1 … x_{L−1}
        return self._stack(self.embed(inputs).transpose(1, 2), y)  # [B, C, L] → [B, n_bins, L]

    def logits_from_onehot(self, onehot: Tensor, y: Tensor | None = None) -> Tensor:
        """:meth:`logits` of a one-hot (or any real) input ``[B, n_bins, L]``: differentiable in the input, for
        checking causality and the receptive field by autograd. ``[B, n_bins, L]``."""
        e = torch.einsum("bvl,vc->bcl", onehot, self.embed.weight[: self.n_bins])  # one-hot × 1×1 conv = lookup
        start = self.embed.weight[self.n_bins][None, :, None].expand(onehot.shape[0], -1, 1)
        return self._stack(torch.cat([start, e[:, :, :-1]], dim=2), self.labels_or_null(y, onehot.shape[0]))

    def _stack(self, h: Tensor, y: Tensor | None = None) -> Tensor:
        """Embedded, shifted inputs ``[B, C, L]`` (and resolved labels ``[B]`` of a conditional model) → logits
        ``[B, n_bins, L]``."""
        skip = 0
        for block in self.blocks:
            h, s = block(h, y)  # §2.4: residual stream and skip output; §2.5: global conditioning on y
            skip = skip + s
        return self.head(skip)  # Fig. 4: ReLU → 1×1 → ReLU → 1×1

    # ------------------------------------------------------------------------- likelihood

    def nll_terms(self, x: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None,
                  **kw) -> NLLOutput:
        """Exact NLL ``−log p(x [| y]) = −Σ_t log p(x_t | x_{<t} [, y])`` (WaveNet Eq. 1; §2.5 with y), nats.

        Args:
            x: ``[B, 1, L]`` on the data scale (any L ≥ 1; the preset was trained on the spec's L).
            generator: unused (the NLL is deterministic).
            y: ``[B]`` labels of a conditional model; None reads the null label, p(x | ∅).
        Returns:
            :class:`NLLOutput` with ``nll`` ``[B]`` and ``terms = {"autoregressive": nll}``, ``kind = "exact"``.
        Raises:
            ValueError: if ``x`` is not ``[B, 1, L]``, or for a bad label (:meth:`check_label`).
        """
        return self._nll(x, self.labels_or_null(y, x.shape[0]))

    def _nll(self, x: Tensor, y: Tensor | None) -> NLLOutput:
        """:meth:`nll_terms` with the network's labels resolved."""
        k = self.codes(x)  # [B, L]
        logp = F.log_softmax(self._logits(k, y), dim=1)  # [B, n_bins, L], §2.2
        nll = -logp.gather(1, k[:, None]).squeeze(1).sum(dim=1)  # [B], Eq. 1
        return NLLOutput(nll=nll, terms={"autoregressive": nll}, kind="exact")

    def loss(self, x: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        """``[B]`` exact NLL in bits per sample (the maximum-likelihood objective); a conditional model trains on
        ``y`` after label dropout (:meth:`~genmodels.core.GenerativeModel.drop_labels`, drawn from ``generator``).
        Raises as :meth:`nll_terms`."""
        y = self.drop_labels(y, x.shape[0], generator)
        return nats_to_bpd(self._nll(x, y).nll, x[0].numel())

    # ------------------------------------------------------------------------- sampling

    def draw(self, n: int, generator: torch.Generator | None = None, *, sampler: str | None = None,
             steps: int | None = None, y: Tensor | None = None, progress: Progress | None = None,
             keep_trajectory: bool = False, **options: Any) -> SampleOutput:
        """:meth:`sample` by the interface (:meth:`~genmodels.core.GenerativeModel.draw`), with the labels ``y``
        ``[n]`` of a conditional model (None: the null label) and ``progress`` wrapping the time loop.

        Raises:
            KeyError: unknown sampler. ValueError: an unknown option, ``steps`` (WaveNet has no step count) or a bad
                label.
        """
        name = self.check_sampler(sampler, options)
        if steps is not None:
            raise ValueError(f"the {name!r} sampler of a WaveNet has no step count; drop --steps")
        return SampleOutput(x0=self.sample(n, generator, y=y, progress=progress, **options), nfe=self.nfe(name))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0,
               length: int | None = None, *, y: Tensor | None = None, cache: bool = True,
               progress: Progress | None = None, **kw) -> Tensor:
        """Draw ``n`` sequences sample by sample, x_t ~ softmax(logits_t / temperature).

        Args:
            n: number of sequences.
            generator: drives the one uniform per sequence and step (inverse-CDF sampling).
            temperature: > 0; 1 samples the model, < 1 sharpens it.
            length: L of the samples (default the spec's).
            y: ``[n]`` labels of a conditional model, p(x | y) (§2.5); None: the null label, p(x | ∅).
            cache: True uses the per-layer queues (Paine et al. 2016), O(layers) per sample; False re-runs the
                whole network on the prefix at every step (O(L²) in all; for checking). Both give the same samples
                for the same generator, up to float rounding.
            progress: wraps the time loop (e.g. ``tqdm``), optional.
        Returns:
            ``[n, 1, length]`` on the data scale 2k/(n_bins−1) − 1.
        Raises:
            ValueError: if ``n``, ``length`` or ``temperature`` is not positive, or for a bad label.
        """
        length = self.spec.event_shape[-1] if length is None else length
        if n < 1 or length < 1 or not temperature > 0:
            raise ValueError(f"need n ≥ 1, length ≥ 1 and temperature > 0, got {n}, {length}, {temperature}")
        y = self.labels_or_null(y, n)
        steps: Iterable[int] = range(length) if progress is None else progress(range(length))
        device = self.device
        k = torch.zeros(n, length, dtype=torch.long, device=device)
        u = torch.rand(n, length, generator=generator, device=device, dtype=torch.float64)  # [n, L]
        if cache:
            queues = [block.conv.new_queue(n) for block in self.blocks]
            prev = torch.full((n,), self.n_bins, dtype=torch.long, device=device)  # the start token
            for t in steps:
                h, skip = self.embed(prev), 0  # [n, C]
                for block, queue in zip(self.blocks, queues, strict=True):
                    h, s = block.step(h, queue, y)  # Paine et al. 2016: O(1) per layer from the queue
                    skip = skip + s
                prev = k[:, t] = _draw(self.head(skip[:, :, None])[:, :, 0], temperature, u[:, t])
        else:
            for t in steps:
                k[:, t] = _draw(self._logits(k[:, : t + 1], y)[:, :, t], temperature, u[:, t])
        return ((2.0 * k - (self.n_bins - 1)) / (self.n_bins - 1)).float()[:, None]  # [n, 1, L]


def _draw(logits: Tensor, temperature: float, u: Tensor) -> Tensor:
    """Inverse-CDF draw from softmax(logits / temperature) ``[n, V]`` with uniforms ``u`` ``[n]``: codes ``[n]``."""
    cdf = torch.softmax(logits.double() / temperature, dim=1).cumsum(dim=1)  # [n, V]
    return (cdf < (u * cdf[:, -1])[:, None]).sum(dim=1).clamp(max=logits.shape[1] - 1)


_SEQUENCE_FIX = ("your own series: --data 'npz:FILE?layout=sequence' with x of shape [N, L] (N series of L steps; "
                 "floats are quantized to 256 levels, integers 0..K-1 kept), or --data 'wav:DIR' (WAV files); or the "
                 "'speech' dataset")


def _sequence_fix(spec: DataSpec) -> str:
    """The fix for data WaveNet cannot take: the user's npz file as a sequence, else the ways to give one."""
    name = spec.name
    series = len(spec.event_shape) == 1 or tuple(spec.event_shape[:2]) == (1, 1)  # x [N, L] or [N, 1, L]
    if name.lower().startswith("npz:") and "layout=sequence" not in name and series:
        fixed = name + ("&" if "?" in name else "?") + "layout=sequence"
        return (f"load its x of shape [N, L] as N sequences of L steps: --data '{fixed}' (floats are quantized to "
                f"256 levels, integers 0..K-1 kept; `genmodels datasets`)")
    return "use " + _SEQUENCE_FIX


def _check_spec(spec: DataSpec) -> None:
    if spec.n_bins is None:
        raise ValueError(f"WaveNet models discrete sequences (a softmax over n_bins levels); {spec.name!r} is "
                         f"continuous. {_sequence_fix(spec)[0].upper()}{_sequence_fix(spec)[1:]}")
    if len(spec.event_shape) != 2 or spec.event_shape[0] != 1 or spec.event_shape[1] < 1:
        images = " ('pixelcnn' models images)" if len(spec.event_shape) == 3 else ""
        raise ValueError(f"WaveNet models one-channel sequences with event shape (1, L); {spec.name!r} has "
                         f"{tuple(spec.event_shape)}. {_sequence_fix(spec)[0].upper()}{_sequence_fix(spec)[1:]}"
                         f"{images}")
    if spec.n_bins < 2:
        raise ValueError(f"WaveNet needs at least 2 levels; {spec.name!r} has n_bins = {spec.n_bins}")


def default_config(spec: DataSpec) -> WaveNetConfig:
    """The WaveNet preset for ``speech`` and any discrete ``(1, L)`` data: C = 32, S = 128, dilations 1 … 128 twice
    (16 layers, R = 511 samples = 64 ms at 8 kHz); 0.21 M parameters for 256 levels. Sized for a CPU: one Adam step on
    a batch of 16 × 2048 samples took 1.5–1.9 s on one thread of a shared 2-core machine (C = 48 gives 0.35 M
    parameters at about 1.6× the time); sampling 2048 steps with the queues, about 3 ms a step.

    Raises:
        ValueError: as :class:`WaveNet`, for data it cannot model.
    """
    _check_spec(spec)
    return WaveNetConfig(residual_channels=32, skip_channels=128, cycle_length=8, n_cycles=2, kernel_size=2)
