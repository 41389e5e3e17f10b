"""Masked convolutions and the PixelCNN backbones built from them (van den Oord et al. 2016a, "Pixel Recurrent
Neural Networks", §3.4; van den Oord et al. 2016b, "Conditional Image Generation with PixelCNN Decoders", §2).

A backbone maps an image ``x`` ``[B, C, H, W]`` to ``P`` numbers per pixel and data channel, ``[B, C, P, H, W]``,
such that the numbers of channel ``c`` at pixel ``(i, j)`` depend only on the pixels before ``(i, j)`` in raster
order (all their channels) and on the channels ``c' < c`` of pixel ``(i, j)`` itself (the R→G→B ordering of
PixelRNN §3.4). It knows nothing of distributions: the model (:mod:`genmodels.autoregressive.pixelcnn`) reads the
``P`` numbers as the parameters of p(x_{i,c} | x_{<(i,c)}).

Notation:

==================  ===============================================================================================
``C``               data channels (colours), generated in the order 0, 1, …, C−1 at each pixel
``F``               hidden features; feature ``f`` of an ``n``-wide layer belongs to colour group
                    ``g(f) = ⌊f·C/n⌋`` (:func:`colour_groups`), contiguous blocks as in PixelRNN Fig. 4
mask A              first layer: at the centre tap, group ``c`` sees data channels ``c' < c`` (none for C = 1);
                    taps before the centre in raster order see everything, taps after it nothing (PixelRNN §3.4)
mask B              later layers: at the centre tap, group ``c`` sees groups ``c' ≤ c`` (PixelRNN §3.4)
``r``               half-width ⌊k/2⌋ of a k×k kernel
vertical stack v    gated PixelCNN: v at row i sees rows i−r … i, all columns j−r … j+r (unmasked);
                    it reaches the horizontal stack only shifted down one row, so no pixel of row i leaks
horizontal stack h  gated PixelCNN: h at (i, j) sees row i, columns j−r … j (centre tap masked A/B), plus the
                    vertical stack at (i−1, j) through a 1×1 convolution (PixelCNN-Decoders Fig. 2)
gate                tanh(W_f ∗ x) ⊙ σ(W_g ∗ x) (PixelCNN-Decoders Eq. 2)
``y``, ``V^T h``    class conditioning (``n_labels`` > 0): each gate reads tanh(W_f ∗ x + V_f^T h) ⊙
                    σ(W_g ∗ x + V_g^T h) with ``h`` the one-hot of the label ``y`` (PixelCNN-Decoders Eq. 4), so
                    ``V^T h`` is row ``y`` of a learned ``[n_labels, 2F]`` table: a per-layer, per-stack class bias
==================  ===============================================================================================

The plain PixelCNN (``kind="plain"``) stacks k×k masked convolutions; its receptive field has a blind spot
above-right of each pixel (PixelCNN-Decoders §2.2, Fig. 1). The gated one (``kind="gated"``) splits it into the
two stacks and has none: every pixel above within reach of the vertical stack and left within reach of the
horizontal stack is seen (:attr:`MaskedConvNet.rows_above` is the upward reach).

Class conditioning (``n_labels`` > 0; built only then, so an unconditional backbone has exactly the parameters and
random initialization it had before). The gated backbone follows PixelCNN-Decoders Eq. 4 in both stacks: the class
term ``V^T h`` is added to the pre-activations of every gate, vertical and horizontal (but the last layer's
vertical gate, whose output nothing reads). The plain backbone has no gates, so it gets the nearest thing the
architecture allows: a learned class bias ``b_l[y]`` added to the output of each masked convolution (the first one
and every residual block's). A bias depends on no pixel, so neither breaks causality.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["colour_groups", "centre_channel_mask", "MaskedConv2d", "GatedLayer", "MaskedConvNetConfig",
           "MaskedConvNet", "GatedSamplingCache", "label_table"]

MaskType = Literal["A", "B"]


def colour_groups(n: int, n_colours: int) -> Tensor:
    """``[n]`` long: the colour group ``⌊f·C/n⌋`` of each of ``n`` features (contiguous blocks, every group non-empty
    when ``n ≥ C``)."""
    return torch.arange(n) * n_colours // n


def centre_channel_mask(out_groups: Tensor, in_groups: Tensor, mask_type: MaskType) -> Tensor:
    """``[out, in]`` float 0/1: which input features the centre tap may use (PixelRNN §3.4): group ``c`` sees
    groups ``c' < c`` (mask A) or ``c' ≤ c`` (mask B)."""
    if mask_type == "A":
        return (in_groups[None, :] < out_groups[:, None]).float()
    return (in_groups[None, :] <= out_groups[:, None]).float()


class MaskedConv2d(nn.Conv2d):
    """A convolution whose taps after a centre tap (raster order) are zeroed, and whose centre tap is channel-masked.

    The input is padded so that the output at ``(i, j)`` is centred (its centre tap) on input pixel ``(i, j)``:
    a full k×k kernel centred at ``(k//2, k//2)`` is PixelRNN's masked convolution (§3.4, Fig. 4); a 1×(r+1)
    kernel centred on its last tap is the gated PixelCNN's horizontal-stack convolution.

    Args:
        in_channels, out_channels: widths. kernel_size: ``(kh, kw)`` or an int.
        mask_type: ``"A"`` (first layer: the centre excludes the current channel) or ``"B"`` (includes it).
        n_colours: C, the data channels the features are grouped by (:func:`colour_groups`).
        centre: the centre tap ``(ci, cj)``; default the kernel's middle.
        in_groups: colour group of each input feature; default :func:`colour_groups` (for the data itself, mask A
            layers pass ``arange(C)``).
        out_groups: colour group of each output feature; default :func:`colour_groups`.
    Shapes:
        ``[B, in_channels, H, W] → [B, out_channels, H, W]``.
    Raises:
        ValueError: for an unknown mask type or a centre outside the kernel.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 mask_type: MaskType, n_colours: int = 1, centre: tuple[int, int] | None = None,
                 in_groups: Tensor | None = None, out_groups: Tensor | None = None, bias: bool = True):
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        super().__init__(in_channels, out_channels, (kh, kw), padding=0, bias=bias)
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        ci, cj = (kh // 2, kw // 2) if centre is None else centre
        if not (0 <= ci < kh and 0 <= cj < kw):
            raise ValueError(f"centre {(ci, cj)} lies outside the {kh}×{kw} kernel")
        in_groups = colour_groups(in_channels, n_colours) if in_groups is None else in_groups
        out_groups = colour_groups(out_channels, n_colours) if out_groups is None else out_groups
        mask = torch.zeros(out_channels, in_channels, kh, kw)
        mask[:, :, :ci, :] = 1.0  # rows above the centre
        mask[:, :, ci, :cj] = 1.0  # left of the centre in its row
        mask[:, :, ci, cj] = centre_channel_mask(out_groups, in_groups, mask_type)  # PixelRNN §3.4, masks A and B
        self.register_buffer("mask", mask, persistent=False)
        self.pad = (cj, kw - 1 - cj, ci, kh - 1 - ci)  # (left, right, top, bottom): output centred on the centre tap
        self.mask_type = mask_type

    def forward(self, x: Tensor) -> Tensor:
        """The masked convolution, ``[B, in_channels, H, W] -> [B, out_channels, H, W]`` (same size: padded so each
        output sits on the kernel's centre tap; PixelRNN §3.4)."""
        return F.conv2d(F.pad(x, self.pad), self.weight * self.mask, self.bias)


def label_table(n_labels: int, dim: int) -> nn.Embedding:
    """``V`` of PixelCNN-Decoders Eq. 4 for a one-hot ``h`` over ``n_labels`` labels: ``V^T h`` is row ``y`` of this
    ``[n_labels, dim]`` table, initialized as :class:`torch.nn.Linear` initializes a map from ``n_labels`` inputs,
    U(±1/√n_labels), so it starts as small as the convolutions' own biases."""
    table = nn.Embedding(n_labels, dim)
    bound = n_labels ** -0.5
    nn.init.uniform_(table.weight, -bound, bound)
    return table


def _check_labels(conditional: bool, y: Tensor | None) -> None:
    """Raise for labels given to an unconditional layer, or none to a conditional one."""
    if not conditional and y is not None:
        raise ValueError("this backbone is unconditional (n_labels = 0): it takes no class labels")
    if conditional and y is None:
        raise ValueError("this backbone is class-conditional: give the labels y (the null label for p(x | ∅))")


def _label_bias(table: nn.Embedding | None, y: Tensor | None) -> Tensor | float:
    """``[B, dim]`` rows ``y`` of a label table, or 0 for an unconditional layer.

    Raises:
        ValueError: labels for an unconditional layer, or none for a conditional one.
    """
    _check_labels(table is not None, y)
    return 0.0 if table is None else table(y)


def _gate(a: Tensor) -> Tensor:
    """tanh(a_f) ⊙ σ(a_g) for ``a = [a_f, a_g]`` along channels (PixelCNN-Decoders Eq. 2):
    ``[B, 2F, …] → [B, F, …]``."""
    f, g = a.chunk(2, dim=1)
    return torch.tanh(f) * torch.sigmoid(g)


class GatedLayer(nn.Module):
    """One gated PixelCNN layer with a vertical and a horizontal stack (PixelCNN-Decoders §2.2, Fig. 2, Eq. 2).

        v' = tanh(W_{v,f} ∗ v + V_{v,f}^T h_y) ⊙ σ(W_{v,g} ∗ v + V_{v,g}^T h_y)      (Eq. 2 / Eq. 4, vertical)
        a  = W_h ∗ h + W_{v→h} · shift_down(W_v ∗ v) + V_h^T h_y         (Fig. 2: the 1×1 link from v to h)
        h' = h + W_o · (tanh(a_f) ⊙ σ(a_g))                              (Eq. 2 and Fig. 2's residual)

    ``h_y`` is the one-hot of the class label (PixelCNN-Decoders Eq. 4), present only when ``n_labels`` > 0; the
    link into the horizontal stack branches off the vertical convolution before its class term, as in Fig. 2.
    The first layer reads the data (C channels) in both stacks, masks its horizontal centre tap with mask A and has
    no residual (its input is the image, not features).

    Args:
        in_channels: C for the first layer, else F. channels: F. kernel: k (odd), the vertical kernel is
            (r+1)×k and the horizontal one 1×(r+1), r = k//2. first: whether this is the first layer.
        n_colours: C. n_labels: rows of the class tables V_v, V_h (:func:`label_table`); 0: unconditional.
        last: whether this is the last layer, whose vertical output nothing reads: it has no V_v (no parameter
            without a gradient) and returns its vertical gate without the class term.
    Shapes:
        ``(v, h)`` ``[B, in_channels, H, W]`` each, ``y`` ``[B]`` long ``→ (v', h')`` ``[B, F, H, W]`` each.
    """

    def __init__(self, in_channels: int, channels: int, kernel: int, first: bool, n_colours: int,
                 n_labels: int = 0, last: bool = False):
        super().__init__()
        r = kernel // 2
        self.r, self.first = r, first
        gate_groups = colour_groups(channels, n_colours).repeat(2)  # [2F]: the f and g halves, same groups
        in_groups = torch.arange(n_colours) if first else colour_groups(in_channels, n_colours)
        self.v_conv = nn.Conv2d(in_channels, 2 * channels, (r + 1, kernel))  # rows i−r … i, columns j−r … j+r
        self.h_conv = MaskedConv2d(in_channels, 2 * channels, (1, r + 1), "A" if first else "B", n_colours,
                                   centre=(0, r), in_groups=in_groups, out_groups=gate_groups)
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)  # rows above only: no mask needed
        self.h_out = MaskedConv2d(channels, channels, 1, "B", n_colours)
        # V_v, V_h of Eq. 4: built only for a conditional backbone (an unconditional one keeps its parameters)
        self.v_label = label_table(n_labels, 2 * channels) if n_labels and not last else None
        self.h_label = label_table(n_labels, 2 * channels) if n_labels else None

    def label_biases(self, y: Tensor | None) -> tuple[Tensor | float, Tensor | float]:
        """``(V_v^T h_y, V_h^T h_y)``, ``[B, 2F]`` each (0 for an unconditional layer, and for the vertical stack of the
        last one; PixelCNN-Decoders Eq. 4)."""
        _check_labels(self.h_label is not None, y)
        return (0.0 if self.v_label is None else self.v_label(y)), _label_bias(self.h_label, y)

    def forward(self, v: Tensor, h: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(v', h') from (v, h) and the labels ``y`` of a conditional layer, shapes in the class docstring
        (PixelCNN-Decoders Eq. 2, Eq. 4, Fig. 2)."""
        r = self.r
        bv, bh = self.label_biases(y)
        v_pre = self.v_conv(F.pad(v, (r, r, r, 0)))  # [B, 2F, H, W]: output row i from input rows i−r … i
        v_above = F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1]  # shift down one row: row i holds v_pre of row i−1
        a = self.h_conv(h) + self.v_to_h(v_above)  # [B, 2F, H, W]
        v_pre_y = v_pre if isinstance(bv, float) else v_pre + bv[:, :, None, None]  # Eq. 4: + V^T h inside each gate
        if not isinstance(bh, float):
            a = a + bh[:, :, None, None]
        h_new = self.h_out(_gate(a))
        return _gate(v_pre_y), (h_new if self.first else h + h_new)


class _PlainBlock(nn.Module):
    """ReLU → k×k masked convolution (mask B) with a residual connection (a simplified PixelRNN Fig. 5 block); a
    conditional block adds a learned class bias b[y] to the convolution's output (the plain backbone's stand-in for
    PixelCNN-Decoders Eq. 4, which it cannot follow literally: it has no gate)."""

    def __init__(self, channels: int, kernel: int, n_colours: int, n_labels: int = 0):
        super().__init__()
        self.conv = MaskedConv2d(channels, channels, kernel, "B", n_colours)
        self.label = label_table(n_labels, channels) if n_labels else None

    def forward(self, h: Tensor, y: Tensor | None = None) -> Tensor:
        """h + conv(ReLU(h)) (+ b[y]), ``[B, F, H, W]`` in and out."""
        out = h + self.conv(F.relu(h))
        return out if y is None else out + _label_bias(self.label, y)[:, :, None, None]


@dataclass(frozen=True)
class MaskedConvNetConfig:
    """A PixelCNN backbone.

    Attributes:
        kind: ``gated`` (vertical and horizontal stacks, no blind spot; PixelCNN-Decoders) or ``plain`` (stacked
            masked k×k convolutions, PixelRNN §3.4; has a blind spot).
        n_layers: layers in all, the first one included (≥ 1).
        channels: F, hidden features per stack.
        first_kernel: k of the first layer (odd; PixelRNN uses 7×7).
        kernel: k of the later layers (odd).
        head_channels: width of the 1×1 output head (ReLU → 1×1 → ReLU → 1×1, mask B; PixelRNN §3.4).
    Raises:
        ValueError: naming the bad field.
    """

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        "n_layers": (1, 128), "channels": (1, 1024), "first_kernel": (1, 31), "kernel": (1, 31),
        "head_channels": (1, 4096)}

    kind: Literal["gated", "plain"] = "gated"
    n_layers: int = 6
    channels: int = 32
    first_kernel: int = 7
    kernel: int = 3
    head_channels: int = 64

    def __post_init__(self) -> None:
        if self.kind not in ("gated", "plain"):
            raise ValueError(f"kind must be 'gated' or 'plain', got {self.kind!r}")
        if self.n_layers < 1 or self.channels < 1 or self.head_channels < 1:
            raise ValueError(f"n_layers, channels and head_channels must be ≥ 1, got {self.n_layers}, "
                             f"{self.channels}, {self.head_channels}")
        for name in ("first_kernel", "kernel"):
            k = getattr(self, name)
            if k < 1 or k % 2 == 0:
                raise ValueError(f"{name} must be odd and ≥ 1 (a centre tap), got {k}")


class MaskedConvNet(nn.Module):
    """The PixelCNN backbone (module docstring): ``[B, C, H, W] → [B, C, P, H, W]``, causal in raster order and,
    within a pixel, in channel order.

    Args:
        n_colours: C. out_per_colour: P. config: :class:`MaskedConvNetConfig`.
        n_labels: rows of each layer's class table (the K classes and the null label); 0 (default): unconditional,
            no class parameters (module docstring, "Class conditioning").
    Raises:
        ValueError: if ``channels`` or ``head_channels`` < C (each colour needs its own features).
    """

    def __init__(self, n_colours: int, out_per_colour: int, config: MaskedConvNetConfig, n_labels: int = 0):
        super().__init__()
        self.rows_above: int  # how many rows above a pixel can influence its output (the upward reach)
        if min(config.channels, config.head_channels) < n_colours:
            raise ValueError(f"channels ({config.channels}) and head_channels ({config.head_channels}) must be ≥ the "
                             f"{n_colours} data channels: each colour needs its own features")
        C, Fc, cfg = n_colours, config.channels, config
        self.n_colours, self.out_per_colour, self.config, self.n_labels = C, out_per_colour, config, n_labels
        kernels = [cfg.first_kernel] + [cfg.kernel] * (cfg.n_layers - 1)
        if cfg.kind == "gated":
            self.layers = nn.ModuleList(GatedLayer(C if l == 0 else Fc, Fc, k, l == 0, C, n_labels,
                                                   last=l == len(kernels) - 1)
                                        for l, k in enumerate(kernels))
            # h at row i reads v_pre of row i−1, which reaches r_1 + … + r_l rows further up
            self.rows_above = 1 + sum(k // 2 for k in kernels)
        else:
            self.first = MaskedConv2d(C, Fc, cfg.first_kernel, "A", C, in_groups=torch.arange(C))
            self.layers = nn.ModuleList(_PlainBlock(Fc, k, C, n_labels) for k in kernels[1:])
            self.rows_above = sum(k // 2 for k in kernels)
        out_groups = torch.arange(C * out_per_colour) // out_per_colour  # [C·P]: colour c owns outputs c·P … c·P+P−1
        self.head1 = MaskedConv2d(Fc, cfg.head_channels, 1, "B", C)
        self.head2 = MaskedConv2d(cfg.head_channels, C * out_per_colour, 1, "B", C, out_groups=out_groups)
        if cfg.kind == "plain" and n_labels:  # the first convolution's class bias
            self.first_label = label_table(n_labels, Fc)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """``x`` ``[B, C, H, W]`` and, for a conditional backbone, labels ``y`` ``[B]`` long → ``[B, C, P, H, W]``.

        Raises:
            ValueError: labels for an unconditional backbone, or none for a conditional one.
        """
        _check_labels(self.n_labels > 0, y)
        if self.config.kind == "gated":
            v = h = x
            for layer in self.layers:
                v, h = layer(v, h, y)
        else:
            h = self.first(x)
            if y is not None:
                h = h + self.first_label(y)[:, :, None, None]
            for layer in self.layers:
                h = layer(h, y)
        return self._head(h)

    def _head(self, h: Tensor) -> Tensor:
        """ReLU → 1×1 → ReLU → 1×1 (mask B), ``[B, F, H, W] → [B, C, P, H, W]``."""
        out = self.head2(F.relu(self.head1(F.relu(h))))  # [B, C·P, H, W]
        B, _, H, W = out.shape
        return out.view(B, self.n_colours, self.out_per_colour, H, W)

    def incremental(self, x: Tensor, y: Tensor | None = None) -> GatedSamplingCache:
        """A per-layer activation cache for generating into ``x`` ``[n, C, H, W]`` pixel by pixel (gated only), with
        the labels ``y`` ``[n]`` of a conditional backbone.

        Raises:
            ValueError: for the plain backbone (its k×k masked convolutions have no row-wise split to cache).
        """
        if self.config.kind != "gated":
            raise ValueError("the activation cache needs the gated backbone (kind='gated'); the plain one samples "
                             "with a full or row-band pass per pixel")
        return GatedSamplingCache(self, x, y)


class GatedSamplingCache:
    """Per-layer activations of a gated :class:`MaskedConvNet` while an image is generated in raster order (the idea
    of Ramachandran et al. 2017, "Fast Generation for Convolutional Autoregressive Models": keep every layer's
    activations and compute only what a new pixel changes).

    In the gated network the two stacks split the work by rows: the vertical stack at row i−1 and the link into row
    i depend only on rows < i, so they are computed once per row, for the whole row (:meth:`start_row`, after row
    i−1 is complete); the horizontal stack at (i, j) needs only the r taps to its left in each layer and the link,
    so each pixel costs one 1×(r+1) tap, one gate and two 1×1 maps per layer (:meth:`pixel`). The conditionals
    equal those of the full pass (same weights, same arithmetic up to summation order).

    A conditional backbone's class terms (Eq. 4) are looked up once, for the labels ``y``.

    Args:
        net: a gated backbone. x: ``[n, C, H, W]``, the image being generated (read, never written).
        y: ``[n]`` labels of a conditional backbone, else None.
    """

    def __init__(self, net: MaskedConvNet, x: Tensor, y: Tensor | None = None):
        _check_labels(net.n_labels > 0, y)
        self.net, self.x = net, x
        self.bias = [layer.label_biases(y) for layer in net.layers]  # (V_v^T h_y, V_h^T h_y) per layer, or (0, 0)
        n, _, H, W = x.shape
        Fc = net.config.channels
        # v[l]: the input of layer l's vertical stack, v[0] = x; filled row by row
        self.v = [x] + [x.new_zeros(n, Fc, H, W) for _ in net.layers[1:]]
        self.h = [x.new_zeros(n, Fc, W) for _ in net.layers]  # h[l]: layer l's horizontal output on the current row
        self.link: list[Tensor] = []  # [n, 2F, W] per layer: W_{v→h}·v_pre of the row above
        self.row = -1

    def start_row(self, i: int) -> None:
        """Compute the vertical stack on row i−1 (complete by now) and each layer's link into row i."""
        self.link = []
        for l, layer in enumerate(self.net.layers):
            r = layer.r
            if i == 0:  # nothing above: the shifted input is the zero padding
                v_pre = self.x.new_zeros(self.x.shape[0], layer.v_to_h.in_channels, 1, self.x.shape[3])
            else:
                lo = max(0, i - 1 - r)
                rows = self.v[l][:, :, lo:i]  # [n, F_in, ≤ r+1, W]: rows i−1−r … i−1
                v_pre = layer.v_conv(F.pad(rows, (r, r, r + 1 - rows.shape[2], 0)))  # [n, 2F, 1, W], row i−1
                if l + 1 < len(self.net.layers):
                    bv = self.bias[l][0]  # Eq. 4's class term of the vertical gate
                    v_in = v_pre if isinstance(bv, float) else v_pre + bv[:, :, None, None]
                    self.v[l + 1][:, :, i - 1] = _gate(v_in)[:, :, 0]
            self.link.append(layer.v_to_h(v_pre)[:, :, 0])  # [n, 2F, W]
        self.row = i

    def refresh(self, i: int, a: int, b: int) -> None:
        """Recompute every layer's horizontal stack on row i, columns a … b, from the current ``x`` (row i up to
        column b) and the cached columns left of a: one vectorized pass over the stretch. :meth:`pixel` calls it for
        one column; a caller that skips some pixels (they are given, not generated) calls it on the stretch before
        the next pixel it evaluates, so that pixel's taps read current activations. Call :meth:`start_row` (i) first.

        Raises:
            ValueError: if the cache is not on row i.
        """
        if self.row != i:
            raise ValueError(f"call start_row({i}) before pixel({i}, ·); the cache is on row {self.row}")
        h_in = self.x[:, :, i]  # [n, C, W]: layer 1's horizontal input is the data row
        for l, layer in enumerate(self.net.layers):
            r, conv = layer.r, layer.h_conv
            window = F.pad(h_in[:, :, max(0, a - r):b + 1], (max(0, r - a), 0))  # [n, F_in, b−a+1+r]: taps a−r … b
            pre = F.conv2d(window.unsqueeze(2), conv.weight * conv.mask, conv.bias)[:, :, 0]  # [n, 2F, b−a+1]
            pre = pre + self.link[l][:, :, a:b + 1]
            bh = self.bias[l][1]  # Eq. 4's class term of the horizontal gate
            if not isinstance(bh, float):
                pre = pre + bh[:, :, None]
            h_new = layer.h_out(_gate(pre)[:, :, None])[:, :, 0]  # [n, F, b−a+1]
            self.h[l][:, :, a:b + 1] = h_new if layer.first else h_in[:, :, a:b + 1] + h_new
            h_in = self.h[l]

    def pixel(self, i: int, j: int) -> Tensor:
        """The backbone's output at (i, j), ``[n, C, P]``, from the current ``x`` (row i left of j, and the channels
        of (i, j) already set) and the cache. Call :meth:`start_row` (i) first.

        Raises:
            ValueError: if the cache is not on row i.
        """
        self.refresh(i, j, j)
        return self.net._head(self.h[-1][:, :, j, None, None])[:, :, :, 0, 0]  # [n, C, P]
