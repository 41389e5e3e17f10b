"""Causal, dilated 1-D convolutions and WaveNet's gated residual block, each with a one-step form for fast generation.

Notation:

==========  =========================================================================================================
``C``       channels of the residual stream; ``S`` channels of the skip stream
``k``       kernel size (WaveNet uses 2); ``d`` dilation
``h_t``     ``[B, C]`` a layer's input at time t; a causal conv sees only h_{t−(k−1)d}, …, h_{t−d}, h_t
gate        z = tanh(W_f ∗ h) ⊙ σ(W_g ∗ h) (WaveNet, van den Oord et al. 2016, Eq. 2)
``y``       global conditioning (``n_labels`` > 0): z = tanh(W_f ∗ h + V_f^T h_y) ⊙ σ(W_g ∗ h + V_g^T h_y), h_y the
            one-hot of the label (WaveNet §2.5), so V^T h_y is row y of a learned table, one per layer, broadcast
            over time
residual    h ← h + W_r z (1×1); skip s = W_s z (1×1) (WaveNet §2.4, Fig. 4)
queue       the (k−1)d most recent inputs of one layer, a ring buffer (Paine et al. 2016, "Fast Wavenet")
==========  =========================================================================================================

A :class:`CausalConv1d` left-pads its input with (k−1)·d zeros, so output t depends on inputs t−(k−1)d … t and its
receptive field grows by (k−1)·d. Its :meth:`CausalConv1d.step` computes output t from input t and a
:class:`ConvQueue` of the past inputs, in O(k·C_in·C_out) work instead of a convolution over the whole past; the queue
starts at zero, the same zeros the padding puts before the sequence, so the steps reproduce :meth:`forward` exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .masked import label_table

__all__ = ["CausalConv1d", "ConvQueue", "GatedResidualBlock"]


class ConvQueue:
    """Ring buffer of the last ``(k−1)·d`` inputs of one causal conv (Paine et al. 2016, "Fast Wavenet").

    Args:
        batch: B. channels: C_in. kernel_size: k. dilation: d.
        device, dtype: of the buffer (zeros: the causal padding).
    """

    def __init__(self, batch: int, channels: int, kernel_size: int, dilation: int, *,
                 device: torch.device | None = None, dtype: torch.dtype | None = None):
        self.size = (kernel_size - 1) * dilation
        self.dilation = dilation
        self.taps = kernel_size - 1
        self.buf = torch.zeros(batch, channels, max(self.size, 1), device=device, dtype=dtype)  # [B, C, (k−1)d]
        self.t = 0  # number of inputs pushed so far

    def past(self) -> Tensor:
        """``[B, C, k−1]`` the inputs at times t−(k−1)d, …, t−d (oldest first), zeros before the start."""
        idx = [(self.t - j * self.dilation) % self.size for j in range(self.taps, 0, -1)]
        return self.buf[:, :, idx]

    def push(self, h_t: Tensor) -> None:
        """Store ``h_t`` ``[B, C]`` (the input at time t; it overwrites the one at t−(k−1)d) and advance t."""
        if self.size:
            self.buf[:, :, self.t % self.size] = h_t
        self.t += 1


class CausalConv1d(nn.Conv1d):
    """A causal, dilated 1-D convolution: ``[B, C_in, L] → [B, C_out, L]``, output t sees inputs ≤ t only.

    Args:
        in_channels, out_channels: C_in, C_out.
        kernel_size: k ≥ 1. dilation: d ≥ 1. bias: add a bias.
    Source: WaveNet (van den Oord et al. 2016), §2.1 (causal convolutions, Fig. 2) and Fig. 3 (dilated).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 2, dilation: int = 1,
                 bias: bool = True):
        if kernel_size < 1 or dilation < 1:
            raise ValueError(f"kernel_size and dilation must be ≥ 1, got {kernel_size} and {dilation}")
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)
        self.left_pad = (kernel_size - 1) * dilation

    @property
    def receptive_field(self) -> int:
        """Inputs that one output sees: (k−1)·d + 1."""
        return self.left_pad + 1

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C_in, L] → [B, C_out, L]``, zeros padded on the left (the past before the sequence)."""
        return super().forward(F.pad(x, (self.left_pad, 0)))

    def new_queue(self, batch: int) -> ConvQueue:
        """An empty (all-zero) :class:`ConvQueue` for :meth:`step`, on this conv's device and dtype."""
        return ConvQueue(batch, self.in_channels, self.kernel_size[0], self.dilation[0],
                         device=self.weight.device, dtype=self.weight.dtype)

    def step(self, x_t: Tensor, queue: ConvQueue) -> Tensor:
        """Output at time t from input ``x_t`` ``[B, C_in]`` and the past inputs in ``queue``: ``[B, C_out]``.

        Equal to ``forward(x)[:, :, t]`` when steps 0…t were fed x_0…x_t; pushes ``x_t`` onto ``queue``.
        """
        window = torch.cat([queue.past(), x_t[:, :, None]], dim=2) if queue.taps else x_t[:, :, None]  # [B, C_in, k]
        queue.push(x_t)
        out = torch.einsum("bik,oik->bo", window, self.weight)  # the conv at one time step
        return out + self.bias if self.bias is not None else out


class GatedResidualBlock(nn.Module):
    """One WaveNet layer: dilated causal conv → gated activation → residual and skip 1×1 convs.

    ``z = tanh(W_f ∗ h) ⊙ σ(W_g ∗ h)`` (WaveNet Eq. 2; W_f and W_g are the two halves of one conv with 2C outputs),
    ``h_out = h + W_r z``, ``skip = W_s z`` (WaveNet §2.4, Fig. 4). With global conditioning (``n_labels`` > 0),
    ``z = tanh(W_f ∗ h + V_f^T h_y) ⊙ σ(W_g ∗ h + V_g^T h_y)`` (WaveNet §2.5), V_f and V_g the two halves of one
    ``[n_labels, 2C]`` table (:func:`~genmodels.nets.masked.label_table`), the same at every time step.

    Args:
        channels: C (residual stream). skip_channels: S. kernel_size: k. dilation: d.
        residual: False for the last layer of a stack, whose residual output nothing reads: it then has no W_r
            (no parameter without a gradient) and returns its input h unchanged.
        n_labels: rows of the conditioning table (the K classes and the null label); 0 (default): unconditional, no
            table.
    """

    def __init__(self, channels: int, skip_channels: int, kernel_size: int = 2, dilation: int = 1,
                 residual: bool = True, n_labels: int = 0):
        super().__init__()
        self.conv = CausalConv1d(channels, 2 * channels, kernel_size, dilation)  # W_f and W_g stacked
        self.res = nn.Conv1d(channels, channels, 1) if residual else None  # W_r
        self.skip = nn.Conv1d(channels, skip_channels, 1)  # W_s
        self.label = label_table(n_labels, 2 * channels) if n_labels else None  # V_f and V_g stacked (§2.5)

    @property
    def receptive_field(self) -> int:
        """(k−1)·d + 1."""
        return self.conv.receptive_field

    def _condition(self, pre: Tensor, y: Tensor | None) -> Tensor:
        """``W ∗ h + V^T h_y`` (WaveNet §2.5): ``pre`` ``[B, 2C, …]`` plus row ``y`` of the table, broadcast over time.

        Raises:
            ValueError: labels for an unconditional block, or none for a conditional one.
        """
        if self.label is None:
            if y is not None:
                raise ValueError("this WaveNet block is unconditional (n_labels = 0): it takes no labels")
            return pre
        if y is None:
            raise ValueError("this WaveNet block is globally conditioned: give the labels y (the null label for ∅)")
        v = self.label(y)  # [B, 2C]
        return pre + v.view(*v.shape, *([1] * (pre.dim() - 2)))

    def forward(self, h: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``h [B, C, L]`` (and labels ``y`` ``[B]`` of a conditional block) ``→ (h_out [B, C, L], skip [B, S, L])``."""
        f, g = self._condition(self.conv(h), y).chunk(2, dim=1)  # [B, C, L] each
        z = torch.tanh(f) * torch.sigmoid(g)  # WaveNet Eq. 2 (§2.5 with y)
        h_out = h + self.res(z) if self.res is not None else h  # WaveNet §2.4, Fig. 4
        return h_out, self.skip(z)

    def step(self, h_t: Tensor, queue: ConvQueue, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One time step: ``h_t [B, C] → (h_out_t [B, C], skip_t [B, S])``; equal to a column of :meth:`forward`."""
        f, g = self._condition(self.conv.step(h_t, queue), y).chunk(2, dim=1)
        z = torch.tanh(f) * torch.sigmoid(g)  # WaveNet Eq. 2 (§2.5 with y)
        h_out = h_t + F.linear(z, self.res.weight[:, :, 0], self.res.bias) if self.res is not None else h_t
        return h_out, F.linear(z, self.skip.weight[:, :, 0], self.skip.bias)
