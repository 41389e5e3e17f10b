"""Invertible transforms of normalizing flows: couplings (NICE, RealNVP), NICE's scaling, squeeze, actnorm, the
invertible 1×1 convolution (Glow), the logit pre-processing, and their composition.

Every transform is an ``nn.Module`` with

    forward(x, context=None) -> (z, log_det)     z = f(x), log_det = log |det ∂z/∂x|, [B] nats
    inverse(z, context=None) -> x                x = f⁻¹(z)

so a flow's density is log p(x) = log N(f(x); 0, I) + Σ_layers log_det (seed 004, "Normalizing Flows": the
change-of-variables formula summed over layers; RealNVP, Dinh et al. 2017, Eq. 3). ``context`` (``[B, n_context]``,
e.g. a class-label embedding, or None) conditions the coupling networks of a conditional flow and is ignored by every
other layer: for each context the transform stays a bijection of x, so log p(x | y) = log p_Z(f(x; y) | y) +
Σ_layers log_det(x; y) is as exact as the unconditional density.

Notation:

==================  ==============================================================================================
``x``, ``z``        a transform's input and output (``[B, D]`` vectors or ``[B, C, H, W]`` images)
``x_a``, ``x_b``    the conditioning part (passed through unchanged) and the transformed part of a coupling
``b``               RealNVP's binary mask (Eq. 9): 1 on x_a, 0 on x_b (checkerboard or channel-wise)
``m``, ``t``        the shift network's output (NICE's m, RealNVP's t)
``log_s``           RealNVP's s: the log-scale of an affine coupling, bounded (``tanh`` or Glow's ``sigmoid``)
``log_det``         log |det ∂z/∂x| per example, ``[B]``, nats
``context``         ``[B, n_context]`` input of a coupling's network beside x_a (a label embedding), or None
``alpha``           α of the logit pre-processing (RealNVP §4.1; 0.05 for images)
``lo``, ``hi``      the interval the logit maps onto ℝ (the data range extended by half a bin)
``P, L, U, s``      the LU factors of Glow's 1×1 convolution W = P L (U + diag(s)) (Glow §3.2)
==================  ==============================================================================================

Sources: NICE (Dinh, Krueger & Bengio 2014; seed 004's additive coupling x = z + F(u)), RealNVP (Dinh,
Sohl-Dickstein & Bengio 2017), Glow (Kingma & Dhariwal 2018).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nets.coupling import CouplingMLP, CouplingNetConfig, CouplingResNet

__all__ = [
    "Transform", "Compose", "Partition", "HalvesPartition", "ChannelPartition", "CheckerboardPartition",
    "AdditiveCoupling", "AffineCoupling", "ScaleLayer", "Squeeze", "ActNorm", "InvertibleConv1x1", "Logit",
    "Flatten", "ScaleFn", "sum_except_batch",
]

ScaleFn = Literal["tanh", "sigmoid"]
"""How an affine coupling bounds its log-scale: ``tanh``, log_s = α ⊙ tanh(h) with a learned α per channel
(RealNVP's released code, from memory; identity at a zero h), or ``sigmoid``, log_s = log σ(h + 2) (Glow's code;
scale in (0, 1), σ(2) ≈ 0.88 at a zero h)."""


def sum_except_batch(t: Tensor) -> Tensor:
    """Σ over every dimension but the first: ``[B, ...] -> [B]``."""
    return t.reshape(t.shape[0], -1).sum(1)


def _check_input(x: Tensor, ndim: int, channels: int | None, who: str) -> None:
    """ValueError unless ``x`` is ``[B, channels]`` (ndim 2) or ``[B, channels, H, W]`` (ndim 4)."""
    if x.ndim != ndim or (channels is not None and x.shape[1] != channels):
        want = f"[B, {channels}]" if ndim == 2 else f"[B, {channels}, H, W]"
        raise ValueError(f"{who} expects input of shape {want}, got {tuple(x.shape)}; build it for the shape of "
                         f"your data")


class Transform(nn.Module):
    """An invertible map with a tractable log-determinant (module docstring). Subclasses implement both methods;
    ``context`` (``[B, n_context]`` or None) reaches the coupling networks and is ignored by the other layers."""

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """z = f(x; context) and log |det ∂z/∂x|, ``[B]`` nats."""
        raise NotImplementedError

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """x = f⁻¹(z; context)."""
        raise NotImplementedError


class Compose(Transform):
    """f = f_L ∘ … ∘ f_1: log-determinants add (seed 004, "Normalizing Flows"; RealNVP Eq. 3's chain rule).

    Args:
        transforms: f_1, …, f_L in the order ``forward`` applies them.
    """

    def __init__(self, transforms: list[Transform] | tuple[Transform, ...] = ()):
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Apply f_1 … f_L; ``log_det`` ``[B]`` is the sum of theirs."""
        log_det = x.new_zeros(x.shape[0])
        for t in self.transforms:
            x, ld = t(x, context)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """Apply f_L⁻¹ … f_1⁻¹."""
        for t in reversed(self.transforms):
            z = t.inverse(z, context)
        return z


# ============================================================================ partitions of a coupling layer


class Partition(nn.Module):
    """How a coupling layer splits its input into (x_a, x_b) and puts (x_a, z_b) back together.

    Attributes:
        n_cond, n_target: features (vectors) or channels (images) of x_a (the net's input) and of x_b (what the
            net's output transforms).
        image: True for ``[B, C, H, W]`` inputs.
    """

    n_cond: int
    n_target: int
    image: bool

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(x_a, x_b)."""
        raise NotImplementedError

    def merge(self, x_a: Tensor, z_b: Tensor) -> Tensor:
        """The output from the unchanged x_a and the transformed z_b."""
        raise NotImplementedError

    def restrict(self, h: Tensor) -> Tensor:
        """Zero the entries of a net output that do not belong to x_b (the (1 − b) ⊙ of RealNVP Eq. 9)."""
        return h


class HalvesPartition(Partition):
    """Vectors ``[B, D]``: x_a = the even (``parity=0``) or odd (``parity=1``) coordinates, x_b the others (NICE
    §3.2 and §5.1: "partition … by separating odd and even components", alternating between layers).

    Raises:
        ValueError: for D < 2 (nothing to couple).
    """

    def __init__(self, dim: int, parity: int):
        super().__init__()
        if dim < 2:
            raise ValueError(f"a coupling layer needs at least 2 dimensions to split, got D = {dim}")
        idx = torch.arange(dim)
        idx_a, idx_b = idx[idx % 2 == parity % 2], idx[idx % 2 != parity % 2]
        self.dim, self.n_cond, self.n_target, self.image = dim, len(idx_a), len(idx_b), False
        self.register_buffer("idx_a", idx_a, persistent=False)
        self.register_buffer("idx_b", idx_b, persistent=False)
        self.register_buffer("unperm", torch.argsort(torch.cat([idx_a, idx_b])), persistent=False)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(x_a, x_b): the ``parity`` coordinates and the others, ``[B, ⌈D/2⌉]`` / ``[B, ⌊D/2⌋]``.
        Raises ValueError for a wrong shape.
        """
        _check_input(x, 2, self.dim, "a vector coupling layer")
        return x[:, self.idx_a], x[:, self.idx_b]

    def merge(self, x_a: Tensor, z_b: Tensor) -> Tensor:
        """``[B, D]``: x_a and z_b back at their coordinates."""
        return torch.cat([x_a, z_b], 1)[:, self.unperm]


class ChannelPartition(Partition):
    """Images ``[B, C, H, W]``: x_a = the first ⌊C/2⌋ channels (``parity=0``) or the last ⌈C/2⌉ (``parity=1``),
    x_b the rest (RealNVP §3.5, the channel-wise mask, alternating; Glow §3.3, "split")."""

    def __init__(self, channels: int, parity: int):
        super().__init__()
        if channels < 2:
            raise ValueError(f"a channel-wise coupling needs ≥ 2 channels, got {channels}; squeeze first")
        self.channels, self.parity, self.image = channels, parity % 2, True
        self.cut = channels // 2
        first, second = self.cut, channels - self.cut
        self.n_cond, self.n_target = (first, second) if self.parity == 0 else (second, first)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(x_a, x_b): the two channel groups, ``[B, C_a, H, W]`` / ``[B, C_b, H, W]``.
        Raises ValueError for a wrong shape.
        """
        _check_input(x, 4, self.channels, "a channel-wise coupling layer")
        lo, hi = x[:, :self.cut], x[:, self.cut:]
        return (lo, hi) if self.parity == 0 else (hi, lo)

    def merge(self, x_a: Tensor, z_b: Tensor) -> Tensor:
        """``[B, C, H, W]``: the two channel groups back in their order."""
        return torch.cat([x_a, z_b] if self.parity == 0 else [z_b, x_a], 1)


class CheckerboardPartition(Partition):
    """Images ``[B, C, H, W]``: RealNVP's checkerboard mask b(i, j) = (i + j + parity) mod 2 == 0 (§3.5, Fig. 3),
    x_a = b ⊙ x (the net sees the whole image with x_b zeroed), z = b ⊙ x + (1 − b) ⊙ z_b (Eq. 9)."""

    def __init__(self, channels: int, parity: int):
        super().__init__()
        self.channels, self.parity, self.image = channels, parity % 2, True
        self.n_cond = self.n_target = channels

    def mask(self, x: Tensor) -> Tensor:
        """b, ``[1, 1, H, W]``: 1 on x_a."""
        i = torch.arange(x.shape[2], device=x.device)[:, None]
        j = torch.arange(x.shape[3], device=x.device)[None, :]
        return ((i + j + self.parity) % 2 == 0).to(x.dtype)[None, None]

    def split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(b ⊙ x, x), both ``[B, C, H, W]``: the net sees x with x_b zeroed (RealNVP Eq. 9).
        Raises ValueError for a wrong shape.
        """
        _check_input(x, 4, self.channels, "a checkerboard coupling layer")
        return x * self.mask(x), x

    def merge(self, x_a: Tensor, z_b: Tensor) -> Tensor:
        """b ⊙ x_a + (1 − b) ⊙ z_b, ``[B, C, H, W]`` (RealNVP Eq. 9)."""
        return x_a + (1 - self.mask(z_b)) * z_b  # RealNVP Eq. 9 (x_a = b ⊙ x)

    def restrict(self, h: Tensor) -> Tensor:
        """(1 − b) ⊙ h: a net output kept on x_b's squares only."""
        return h * (1 - self.mask(h))


# ============================================================================ coupling layers


def _coupling_net(partition: Partition, n_out_per_target: int, config: CouplingNetConfig,
                  n_context: int = 0) -> nn.Module:
    """A ResNet (images) or MLP (vectors) from x_a (and a ``[B, n_context]`` context) to ``n_out_per_target`` values
    per entry of x_b."""
    n_out = n_out_per_target * partition.n_target
    if partition.image:
        return CouplingResNet(partition.n_cond, n_out, config, n_context)
    return CouplingMLP(partition.n_cond, n_out, config, n_context)


class AdditiveCoupling(Transform):
    """NICE's additive coupling (Dinh et al. 2014, §3.2, "additive coupling layer"; seed 004, "x = z + F_Θ(u), v = u"):

        z_a = x_a,  z_b = x_b + m(x_a);    inverse x_b = z_b − m(z_a);    log_det = 0 (volume preserving).

    Args:
        partition: the split (:class:`HalvesPartition`, :class:`ChannelPartition`, :class:`CheckerboardPartition`).
        net: the network m (zero-initialized output: the layer starts as the identity). n_context: features of the
            context m reads beside x_a (a conditional flow's label embedding; 0: none), m(x_a, context).
    """

    def __init__(self, partition: Partition, net: CouplingNetConfig = CouplingNetConfig(), n_context: int = 0):
        super().__init__()
        self.partition = partition
        self.net = _coupling_net(partition, 1, net, n_context)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(z, log_det): z_b = x_b + m(x_a), z_a = x_a; log_det = 0, ``[B]`` (NICE §3.2)."""
        x_a, x_b = self.partition.split(x)
        # NICE §3.2: y_I2 = x_I2 + m(x_I1); seed 004: x = z + F_Θ(u)
        z_b = x_b + self.partition.restrict(self.net(x_a, context))
        return self.partition.merge(x_a, z_b), x.new_zeros(x.shape[0])  # unit Jacobian determinant

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """x: x_b = z_b − m(z_a), x_a = z_a (NICE §3.2)."""
        z_a, z_b = self.partition.split(z)
        # NICE §3.2: x_I2 = y_I2 − m(y_I1); seed 004: z = x − F_Θ(u)
        x_b = z_b - self.partition.restrict(self.net(z_a, context))
        return self.partition.merge(z_a, x_b)


class AffineCoupling(Transform):
    """RealNVP's affine coupling (Dinh et al. 2017, Eqs. 6–9; seed 004, "x = z ⊙ exp(F_Θ(u)) + F_Ψ(u)"):

        z_a = x_a,  z_b = x_b ⊙ exp(log_s(x_a)) + t(x_a)       (Eqs. 4–5 and 7; Eq. 9 with a mask b)
        x_b = (z_b − t(z_a)) ⊙ exp(−log_s(z_a))                (Eq. 8)
        log_det = Σ log_s(x_a)                                  (Eq. 6's triangular Jacobian, det = exp Σ s)

    with (h, t) = NN(x_a) and log_s bounded by ``scale`` (:data:`ScaleFn`).

    Args:
        partition: the split. net: the network's config. scale: ``tanh`` or ``sigmoid``. n_context: features of the
            context the network reads beside x_a (a conditional flow's label embedding; 0: none),
            (h, t) = NN(x_a, context).
    Raises:
        ValueError: for an unknown ``scale``.
    """

    def __init__(self, partition: Partition, net: CouplingNetConfig = CouplingNetConfig(), scale: ScaleFn = "tanh",
                 n_context: int = 0):
        super().__init__()
        if scale not in ("tanh", "sigmoid"):
            raise ValueError(f"scale must be 'tanh' or 'sigmoid', got {scale!r}")
        self.partition, self.scale = partition, scale
        self.net = _coupling_net(partition, 2, net, n_context)
        if scale == "tanh":  # α per channel (images) or per feature (vectors), starts at 1
            shape = (partition.n_target, 1, 1) if partition.image else (partition.n_target,)
            self.tanh_scale = nn.Parameter(torch.ones(shape))

    def log_scale_and_shift(self, x_a: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(log_s, t), each shaped like x_b, zero outside x_b."""
        h, t = self.net(x_a, context).chunk(2, dim=1)
        if self.scale == "tanh":
            log_s = self.tanh_scale * torch.tanh(h)
        else:
            log_s = F.logsigmoid(h + 2.0)  # Glow's code: scale = σ(h + 2)
        return self.partition.restrict(log_s), self.partition.restrict(t)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(z, log_det): z_b = x_b ⊙ exp(log_s) + t; log_det = Σ log_s, ``[B]`` nats (RealNVP Eqs. 6–7, 9)."""
        x_a, x_b = self.partition.split(x)
        log_s, t = self.log_scale_and_shift(x_a, context)
        z_b = x_b * torch.exp(log_s) + t  # RealNVP Eq. 7 (Eq. 9 with the mask)
        return self.partition.merge(x_a, z_b), sum_except_batch(log_s)  # log|det| = Σ_j s_j (Eq. 6)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """x: x_b = (z_b − t) ⊙ exp(−log_s), from z_a (RealNVP Eq. 8)."""
        z_a, z_b = self.partition.split(z)
        log_s, t = self.log_scale_and_shift(z_a, context)
        x_b = (z_b - t) * torch.exp(-log_s)  # RealNVP Eq. 8
        return self.partition.merge(z_a, x_b)


# ============================================================================ element-wise and reshaping layers


class ScaleLayer(Transform):
    """NICE's diagonal scaling (Dinh et al. 2014, §3.3): z = exp(s) ⊙ x, log_det = Σ_i s_i (the same for every
    example), with one learned s_i per dimension (starts at 0: the identity).

    Args:
        event_shape: shape of one input, e.g. ``(D,)`` or ``(C, H, W)``.
    """

    def __init__(self, event_shape: tuple[int, ...]):
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.log_scale = nn.Parameter(torch.zeros(self.event_shape))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(exp(s) ⊙ x, Σ s expanded to ``[B]``) (NICE §3.3). Raises ValueError for a wrong event shape."""
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"ScaleLayer expects [B, {', '.join(map(str, self.event_shape))}], got {tuple(x.shape)}")
        z = x * torch.exp(self.log_scale)  # NICE §3.3: h ↦ exp(S) ⊙ h
        return z, self.log_scale.sum().expand(x.shape[0])  # log|det| = Σ_i S_ii

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """exp(−s) ⊙ z."""
        return z * torch.exp(-self.log_scale)


class Squeeze(Transform):
    """Space-to-depth (RealNVP §3.6, Fig. 3): each 2×2×C block becomes a 1×1×4C one, ``[B, C, H, W] ->
    [B, 4C, H/2, W/2]``; a permutation, so log_det = 0.

    Raises:
        ValueError: for an input that is not an image or has an odd height or width.
    """

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(``[B, 4C, H/2, W/2]``, zeros ``[B]``) (RealNVP §3.6). Raises ValueError for an odd size."""
        _check_input(x, 4, None, "squeeze")
        B, C, H, W = x.shape
        if H % 2 or W % 2:
            raise ValueError(f"squeeze needs an even height and width, got {H}×{W}; use fewer scales/levels "
                             f"(28×28 allows two squeezes: 28 → 14 → 7)")
        z = x.reshape(B, C, H // 2, 2, W // 2, 2).permute(0, 1, 3, 5, 2, 4)  # [B, C, 2, 2, H/2, W/2]
        return z.reshape(B, 4 * C, H // 2, W // 2), x.new_zeros(B)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """``[B, 4C, h, w] -> [B, C, 2h, 2w]``. Raises ValueError unless the channels are a multiple of 4."""
        _check_input(z, 4, None, "squeeze's inverse")
        B, C4, h, w = z.shape
        if C4 % 4:
            raise ValueError(f"squeeze's inverse needs a multiple of 4 channels, got {C4}")
        x = z.reshape(B, C4 // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)  # [B, C, H/2, 2, W/2, 2]
        return x.reshape(B, C4 // 4, 2 * h, 2 * w)


class Flatten(Transform):
    """``[B, *event_shape] -> [B, D]`` (NICE on flattened pixels); log_det = 0."""

    def __init__(self, event_shape: tuple[int, ...]):
        super().__init__()
        self.event_shape = tuple(event_shape)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(``[B, D]``, zeros ``[B]``). Raises ValueError for a wrong event shape."""
        if tuple(x.shape[1:]) != self.event_shape:
            raise ValueError(f"Flatten expects [B, {', '.join(map(str, self.event_shape))}], got {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """``[B, D] -> [B, *event_shape]``."""
        return z.reshape(z.shape[0], *self.event_shape)


def _channel_view(p: Tensor, x: Tensor) -> Tensor:
    """A per-channel ``[C]`` tensor broadcast against ``[B, C]`` or ``[B, C, H, W]``."""
    return p.view(1, -1, *([1] * (x.ndim - 2)))


def _spatial_size(x: Tensor) -> int:
    """H·W for images, 1 for vectors: how many times a per-channel log-scale enters log|det|."""
    return math.prod(x.shape[2:])


class ActNorm(Transform):
    """Glow's activation normalization (Kingma & Dhariwal 2018, §3.1, Table 1):
    z = exp(log_scale) ⊙ (x + bias) per channel, log_det = H·W·Σ_c log_scale_c.

    Data-dependent initialization (§3.1): the first ``forward`` call sets bias = −mean and
    log_scale = −log(std + 1e-6) of that batch, per channel (over batch and pixels), so its output has zero mean
    and unit variance; under ``torch.distributed`` the statistics are averaged over processes. The ``initialized``
    buffer is part of the ``state_dict``, so a reloaded model keeps its weights and does not initialize again.

    Args:
        channels: C (features for ``[B, C]`` vectors, channels for ``[B, C, H, W]`` images).
    Raises:
        ValueError (first call): for a wrong channel count, or fewer than 2 values per channel to initialize from.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.bias = nn.Parameter(torch.zeros(channels))
        self.log_scale = nn.Parameter(torch.zeros(channels))
        self.register_buffer("initialized", torch.tensor(False))

    def _check(self, x: Tensor) -> None:
        if x.ndim not in (2, 4) or x.shape[1] != self.channels:
            raise ValueError(f"ActNorm expects [B, {self.channels}] or [B, {self.channels}, H, W], got "
                             f"{tuple(x.shape)}")

    @torch.no_grad()
    def initialize(self, x: Tensor) -> None:
        """Set bias and log_scale from the batch ``x`` (Glow §3.1) and mark the layer initialized."""
        self._check(x)
        dims = [0, *range(2, x.ndim)]
        count = x.numel() // self.channels
        if count < 2:
            raise ValueError("ActNorm's data-dependent initialization needs ≥ 2 values per channel; call the model "
                             "first on a batch of at least 2 examples")
        stats = torch.stack([x.mean(dims), (x * x).mean(dims)]).double()  # [2, C]: E[x], E[x²]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)
            stats /= torch.distributed.get_world_size()
        mean, var = stats[0], (stats[1] - stats[0] ** 2).clamp_min(0)
        self.bias.copy_(-mean)
        self.log_scale.copy_(-torch.log(var.sqrt() + 1e-6))
        self.initialized.fill_(True)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(exp(log_scale) ⊙ (x + bias), H·W·Σ log_scale expanded to ``[B]``) (Glow Table 1);
        the first call initializes from x (class docstring).
        """
        self._check(x)
        if not self.initialized:
            self.initialize(x)
        z = (x + _channel_view(self.bias, x)) * torch.exp(_channel_view(self.log_scale, x))  # Glow Table 1
        return z, (_spatial_size(x) * self.log_scale.sum()).expand(x.shape[0])  # h·w·sum(log|s|)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """z ⊙ exp(−log_scale) − bias."""
        self._check(z)
        return z * torch.exp(-_channel_view(self.log_scale, z)) - _channel_view(self.bias, z)


class InvertibleConv1x1(Transform):
    """Glow's invertible 1×1 convolution, LU-parameterized (Kingma & Dhariwal 2018, §3.2, Table 1):
    W = P L (U + diag(sign(s) ⊙ exp(log|s|))), z = W x at every pixel, log_det = H·W·Σ log|s|.

    P (a permutation) and sign(s) are fixed buffers; L (unit lower triangular), U (strictly upper triangular) and
    log|s| are learned. W starts as a random rotation (a QR factor of a Gaussian matrix, Glow §3.2; drawn from
    torch's global RNG, like every initial weight). On vectors ``[B, C]`` it is an invertible linear map.

    Args:
        channels: C.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        w = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))[0]
        P, L, U = torch.linalg.lu(w)
        s = torch.diagonal(U)
        self.register_buffer("P", P.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.register_buffer("l_mask", torch.tril(torch.ones(channels, channels), -1), persistent=False)
        self.L = nn.Parameter(L.float() * self.l_mask)
        self.U = nn.Parameter(torch.triu(U, 1).float())
        self.log_s = nn.Parameter(torch.log(s.abs()).float())

    def weight(self) -> Tensor:
        """W = P L (U + diag(s)), ``[C, C]`` (Glow §3.2)."""
        eye = torch.eye(self.channels, dtype=self.L.dtype, device=self.L.device)
        lower = self.L * self.l_mask + eye
        upper = self.U * self.l_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.P @ lower @ upper

    def _check(self, x: Tensor) -> None:
        if x.ndim not in (2, 4) or x.shape[1] != self.channels:
            raise ValueError(f"InvertibleConv1x1 expects [B, {self.channels}] or [B, {self.channels}, H, W], got "
                             f"{tuple(x.shape)}")

    @staticmethod
    def _mix(w: Tensor, x: Tensor) -> Tensor:
        if x.ndim == 2:
            return x @ w.T
        return F.conv2d(x, w[:, :, None, None])

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(W x at every pixel, H·W·Σ log|s| expanded to ``[B]``) (Glow Table 1).
        Raises ValueError for a wrong shape.
        """
        self._check(x)
        log_det = _spatial_size(x) * self.log_s.sum()  # Glow Table 1: h·w·sum(log|s|)
        return self._mix(self.weight(), x), log_det.expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """W⁻¹ z at every pixel (W inverted in float64)."""
        self._check(z)
        w_inv = torch.linalg.inv(self.weight().double()).to(z.dtype)
        return self._mix(w_inv, z)


class Logit(Transform):
    """RealNVP's logit pre-processing (Dinh et al. 2017, §4.1): u = (x − lo)/(hi − lo) ∈ [0, 1],
    p = α + (1 − 2α)·u, z = logit(p) = log p − log(1 − p), with the exact per-dimension log-derivative

        log |dz/dx| = log(1 − 2α) − log(hi − lo) − log p − log(1 − p).

    For discrete data on [−1, 1] with bin width Δ, dequantized values x + u lie in [−1 − Δ/2, 1 + Δ/2], the
    interval ``lo, hi`` should cover: for 8-bit data this is RealNVP's (k + noise)/256 ∈ [0, 1).

    Args:
        alpha: α ∈ (0, ½), keeps p away from 0 and 1 (0.05 for images in RealNVP §4.1).
        lo, hi: the interval mapped onto [α, 1 − α].
    Raises:
        ValueError: for α ∉ (0, ½) or lo ≥ hi; in ``forward``, for x where p ∉ (0, 1) (outside the logit's domain).
    """

    def __init__(self, alpha: float, lo: float, hi: float):
        super().__init__()
        if not 0 < alpha < 0.5 or not lo < hi:
            raise ValueError(f"Logit needs 0 < alpha < 0.5 and lo < hi, got alpha={alpha}, lo={lo}, hi={hi}")
        self.alpha, self.lo, self.hi = float(alpha), float(lo), float(hi)
        # the constant part of log|dz/dx| per dimension, in float64
        self._log_const = math.log1p(-2 * self.alpha) - math.log(self.hi - self.lo)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(logit(p), Σ log|dz/dx| ``[B]`` nats) (class docstring). Raises ValueError outside the domain."""
        p = self.alpha + (1 - 2 * self.alpha) * (x - self.lo) / (self.hi - self.lo)  # RealNVP §4.1
        if not bool(((p > 0) & (p < 1)).all()):
            raise ValueError(f"Logit: input outside its domain (values must map into (0, 1); the data range "
                             f"[{self.lo:g}, {self.hi:g}] maps onto [α, 1 − α]); got values in "
                             f"[{x.min().item():g}, {x.max().item():g}]")
        log_p, log_1mp = torch.log(p), torch.log1p(-p)
        z = log_p - log_1mp  # logit(p)
        log_det = sum_except_batch(self._log_const - log_p - log_1mp)  # d logit(p)/dp = 1/(p(1 − p))
        return z, log_det

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """lo + (hi − lo)·(sigmoid(z) − α)/(1 − 2α)."""
        u = (torch.sigmoid(z) - self.alpha) / (1 - 2 * self.alpha)
        return self.lo + (self.hi - self.lo) * u

    def extra_repr(self) -> str:
        """α and the interval, for ``print(model)``."""
        return f"alpha={self.alpha}, lo={self.lo:g}, hi={self.hi:g}"
