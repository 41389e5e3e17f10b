"""A small UNet backbone for images (Ronneberger et al. 2015, as adapted by Ho et al. 2020, App. B).

Residual blocks with group norm and an adaptive scale/shift from the noise embedding (Dhariwal & Nichol
2021, §3), self-attention only at the lowest resolutions, stride-2 convolutions down and nearest-neighbour
upsampling + convolution up. It knows nothing of diffusion: ``forward(x, c_noise)`` maps an image and one
scalar per example to an image of the same shape. Built with ``num_labels``, it is class-conditional:
``forward(x, c_noise, y)`` adds a learned embedding of the label ``y`` to the noise embedding (improved-diffusion's
``label_emb``, Nichol & Dhariwal 2021; EDM, Karras et al. 2022), so every residual block sees both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .embeddings import LabelEmbedding, NoiseEmbedding, add_label_embedding

__all__ = ["UNetConfig", "UNet", "unet_preset"]


@dataclass(frozen=True)
class UNetConfig:
    """UNet hyper-parameters.

    Attributes:
        channels: width of the first level.
        channel_mult: width multiplier of each level; the number of levels (one downsampling between each).
        num_res_blocks: residual blocks per level on the way down (one more on the way up, for the skips).
        attn_levels: indices of the levels with self-attention after each residual block (the middle block
            always has one). Keep these at the low resolutions: attention costs O((HW)²).
        num_heads: attention heads.
        dropout: dropout inside residual blocks.
        groups: group-norm groups (must divide every level's width).
    """

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {
        # level widths channels·mult ≤ 4096 (ADM's largest is 1024), ≤ 8 levels (a 256-px image has 9), ≤ 8 blocks each
        "channels": (1, 512), "channel_mult": (1, 8), "len(channel_mult)": (1, 8), "num_res_blocks": (0, 8),
        "attn_levels": (0, 7), "len(attn_levels)": (0, 8), "num_heads": (1, 64), "groups": (1, 512), "dropout": (0, 1)}

    channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 2
    attn_levels: tuple[int, ...] = (2,)
    num_heads: int = 4
    dropout: float = 0.0
    groups: int = 8


def unet_preset(spec) -> UNetConfig:
    """The UNet of the noise-conditional presets (DDPM, VDM, NCSN) for images ``spec``: two levels with attention
    at the lower one up to 16 px, else the :class:`UNetConfig` defaults (three levels, attention at the lowest)."""
    if max(spec.event_shape[1:]) <= 16:
        return UNetConfig(channel_mult=(1, 2), attn_levels=(1,))
    return UNetConfig()


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GN→SiLU→conv, GN·(1+scale)+shift from the embedding, SiLU→dropout→conv (zero-init), plus a skip.

    ``forward(x [B, C_in, H, W], emb [B, E]) -> [B, C_out, H, W]``.
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """x ``[B, C_in, H, W]``, emb ``[B, E]`` -> ``[B, C_out, H, W]``."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)  # (B, C_out, 1, 1) each
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the H·W positions, with a residual: ``[B, C, H, W] -> [B, C, H, W]``."""

    def __init__(self, channels: int, num_heads: int, groups: int):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"attention width {channels} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` -> ``[B, C, H, W]``."""
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).reshape(B, 3, self.num_heads, C // self.num_heads, H * W)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # (B, nh, HW, hs) each
        h = F.scaled_dot_product_attention(q, k, v)  # (B, nh, HW, hs)
        return x + self.proj(h.transpose(-1, -2).reshape(B, C, H, W))


class UNet(nn.Module):
    """``forward(x [B, C, H, W], c_noise [B], y [B] | None) -> [B, C_out, H, W]``.

    Args:
        in_channels: C of the images. config: :class:`UNetConfig`.
        out_channels: C_out (default C; more input channels than output ones when the input carries extra
            features, e.g. VDM's Fourier features).
        num_labels: the number of label values ``y`` may take (a conditional model passes its K classes plus the
            null label); None (the default) builds no label embedding at all: the unconditional UNet, parameter
            for parameter.
    Raises:
        ValueError: if ``config.groups`` does not divide a level's width or an attention level does not exist.
    """

    def __init__(self, in_channels: int, config: UNetConfig = UNetConfig(), out_channels: int | None = None,
                 num_labels: int | None = None):
        super().__init__()
        cfg = self.config = config
        widths = [cfg.channels * m for m in cfg.channel_mult]
        if any(w % cfg.groups for w in widths):
            raise ValueError(f"groups={cfg.groups} must divide every level width {widths}")
        if any(not 0 <= lvl < len(widths) for lvl in cfg.attn_levels):
            raise ValueError(f"attn_levels {cfg.attn_levels} must be within 0..{len(widths) - 1}")
        emb_dim = 4 * cfg.channels
        self.embed = NoiseEmbedding(cfg.channels, emb_dim)
        self.conv_in = nn.Conv2d(in_channels, cfg.channels, 3, padding=1)

        def block(c_in: int, c_out: int) -> ResBlock:
            """A residual block of this UNet's embedding size, groups and dropout."""
            return ResBlock(c_in, c_out, emb_dim, cfg.groups, cfg.dropout)

        def attn(c: int, level: int) -> nn.Module:
            """Self-attention where ``level`` is in ``attn_levels``, else identity."""
            return Attention(c, cfg.num_heads, cfg.groups) if level in cfg.attn_levels else nn.Identity()

        self.down = nn.ModuleList()
        skip_widths = [cfg.channels]
        c = cfg.channels
        for level, w in enumerate(widths):
            for _ in range(cfg.num_res_blocks):
                self.down.append(nn.ModuleList([block(c, w), attn(w, level)]))
                c = w
                skip_widths.append(c)
            if level < len(widths) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skip_widths.append(c)
        self.mid = nn.ModuleList([block(c, c), Attention(c, cfg.num_heads, cfg.groups), block(c, c)])
        self.up = nn.ModuleList()
        for level, w in reversed(list(enumerate(widths))):
            for _ in range(cfg.num_res_blocks + 1):
                self.up.append(nn.ModuleList([block(c + skip_widths.pop(), w), attn(w, level)]))
                c = w
            if level > 0:
                self.up.append(nn.Conv2d(c, c, 3, padding=1))  # after nearest upsampling to the skip's size
        self.out = nn.Sequential(nn.GroupNorm(cfg.groups, c), nn.SiLU(),
                                 _zero(nn.Conv2d(c, out_channels or in_channels, 3, padding=1)))
        # built last, so that the other layers draw the same initial weights as the unconditional UNet's
        self.label_emb = LabelEmbedding(num_labels, emb_dim) if num_labels is not None else None

    def forward(self, x: Tensor, c_noise: Tensor, y: Tensor | None = None) -> Tensor:
        """x ``[B, C, H, W]``, c_noise ``[B]``, y ``[B]`` int64 (a conditional UNet only) -> ``[B, C_out, H, W]``.

        Raises:
            ValueError: a label for an unconditional UNet, or none for a conditional one.
        """
        emb = add_label_embedding(self.embed(c_noise), self.label_emb, y, "UNet")  # (B, 4·channels)
        h = self.conv_in(x)
        skips = [h]
        for layer in self.down:
            if isinstance(layer, nn.ModuleList):
                h = layer[1](layer[0](h, emb))
            else:
                h = layer(h)  # stride-2 downsampling
            skips.append(h)
        h = self.mid[2](self.mid[1](self.mid[0](h, emb)), emb)
        for layer in self.up:
            if isinstance(layer, nn.ModuleList):
                h = layer[1](layer[0](torch.cat([h, skips.pop()], dim=1), emb))
            else:
                h = layer(F.interpolate(h, size=skips[-1].shape[-2:], mode="nearest"))  # upsample to skip size
        return self.out(h)
