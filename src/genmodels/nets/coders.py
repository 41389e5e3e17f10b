"""Encoder and decoder backbones for latent-variable models (VAEs). They know nothing of probability.

An encoder maps an example to a feature vector, ``[B, *event_shape] -> [B, features]``, optionally reading a
context vector ``[B, context_dim]`` beside it (a class-label embedding: the CVAE's q(z | x, y), Sohn et al. 2015);
a decoder maps a vector to the parameters of an output distribution with ``params_per_dim`` numbers per data dimension,
``[B, in_dim] -> [B, params_per_dim·C, H, W]`` for images or ``[B, params_per_dim·D]`` for vectors. The heads that
turn features into distribution parameters live with the models (:mod:`genmodels.vae`).

Two kinds, chosen by :class:`CoderConfig.backbone`:

- ``mlp``: flatten, ``depth`` hidden layers of width ``hidden`` (the MLP VAE of Kingma & Welling 2014, App. C,
  and of pythae's MNIST benchmarks with ``depth=1, hidden=512``); the context is concatenated to the flattened input;
- ``conv``: two stride-2 3×3 convolutions (each followed by a stride-1 one) and a linear layer; the context is
  concatenated to the flattened feature maps, the linear layer's input; the decoder mirrors it with transposed
  convolutions that land exactly on the input size (any H, W).

With ``context_dim = 0`` (the default) an encoder has exactly the layers, and draws exactly the initial weights, it
had before contexts existed.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

__all__ = ["CoderConfig", "make_encoder", "make_decoder", "MLPEncoder", "MLPDecoder", "ConvEncoder", "ConvDecoder"]

Backbone = Literal["mlp", "conv"]


@dataclass(frozen=True)
class CoderConfig:
    """Encoder/decoder backbone.

    Attributes:
        backbone: ``mlp`` (any event shape, flattened) or ``conv`` (images only).
        hidden: width of the MLP's hidden layers, and of the conv backbone's linear layer.
        depth: hidden layers of the MLP (≥ 1).
        channels: width of the first conv level (the second has twice as many).
        activation: ``relu`` (pythae's and Kingma & Welling's choice), ``elu`` or ``silu``.
    """

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"hidden": (1, 4096), "depth": (1, 64), "channels": (1, 512)}

    backbone: Backbone = "mlp"
    hidden: int = 512
    depth: int = 2
    channels: int = 32
    activation: Literal["relu", "elu", "silu"] = "relu"

    def __post_init__(self) -> None:
        if self.backbone not in ("mlp", "conv"):
            raise ValueError(f"backbone must be 'mlp' or 'conv', got {self.backbone!r}")
        if self.activation not in ("relu", "elu", "silu"):
            raise ValueError(f"activation must be relu, elu or silu, got {self.activation!r}")
        if self.hidden < 1 or self.depth < 1 or self.channels < 1:
            raise ValueError(f"hidden, depth and channels must be ≥ 1, "
                             f"got {self.hidden}, {self.depth}, {self.channels}")


def _act(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}[name]()


def _mlp(sizes: list[int], activation: str, last_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(_act(activation))
    return nn.Sequential(*layers)


def _with_context(h: Tensor, context: Tensor | None, context_dim: int) -> Tensor:
    """``[B, n] -> [B, n + context_dim]``: h with the context appended (h itself without one).

    Raises:
        ValueError: a context missing, unexpected or of the wrong width.
    """
    if context is None and context_dim == 0:
        return h
    if context is None or context.dim() != 2 or context.shape != (h.shape[0], context_dim):
        got = None if context is None else tuple(context.shape)
        raise ValueError(f"this encoder reads a context of shape [B, {context_dim}] (B = {h.shape[0]}); got {got}")
    return torch.cat([h, context.to(h.dtype)], 1)


class MLPEncoder(nn.Module):
    """``[B, *event_shape] (+ context [B, context_dim]) -> [B, hidden]``: flatten, append the context, then ``depth``
    Linear+activation layers.

    Args:
        event_shape: shape of one example. config: :class:`CoderConfig`. context_dim: width of the context vector
            (0: none).
    """

    def __init__(self, event_shape: tuple[int, ...], config: CoderConfig, context_dim: int = 0):
        super().__init__()
        self.features, self.context_dim = config.hidden, context_dim
        self.net = _mlp([math.prod(event_shape) + context_dim] + [config.hidden] * config.depth, config.activation,
                        True)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """x ``[B, *event_shape]``, context ``[B, context_dim]`` (None without one) -> ``[B, hidden]``.

        Raises:
            ValueError: a context missing, unexpected or of the wrong width.
        """
        return self.net(_with_context(x.flatten(1), context, self.context_dim))


class MLPDecoder(nn.Module):
    """``[B, in_dim] -> [B, params_per_dim·C, H, W]`` (or ``[B, params_per_dim·D]``): ``depth`` hidden layers, then a
    linear output; parameter ``j`` of channel ``c`` is output channel ``j·C + c``.

    Args:
        in_dim: size of the input vector. event_shape: shape of one example. params_per_dim: numbers per data
            dimension (1 for Bernoulli logits, 2 for a location and a log-scale). config: :class:`CoderConfig`.
    """

    def __init__(self, in_dim: int, event_shape: tuple[int, ...], params_per_dim: int, config: CoderConfig):
        super().__init__()
        self.event_shape, self.params_per_dim = tuple(event_shape), params_per_dim
        out = params_per_dim * math.prod(event_shape)
        self.net = _mlp([in_dim] + [config.hidden] * config.depth + [out], config.activation, False)

    def forward(self, z: Tensor) -> Tensor:
        """z ``[B, in_dim]`` -> ``[B, params_per_dim·C, *spatial]`` (``[B, params_per_dim·D]`` for vectors)."""
        h = self.net(z)
        if len(self.event_shape) == 1:
            return h
        c, *spatial = self.event_shape
        return h.view(len(z), self.params_per_dim, c, *spatial).flatten(1, 2)


def _conv_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """Spatial sizes after 0, 1, 2 stride-2 3×3 convolutions with padding 1."""
    sizes = [(h, w)]
    for _ in range(2):
        h, w = (h + 1) // 2, (w + 1) // 2
        sizes.append((h, w))
    return sizes


class ConvEncoder(nn.Module):
    """``[B, C, H, W] (+ context [B, context_dim]) -> [B, hidden]``: (3×3 conv stride 2, 3×3 conv) × 2 levels,
    flatten, append the context, linear.

    Args:
        event_shape: ``(C, H, W)``. config: :class:`CoderConfig`. context_dim: width of the context vector (0: none).
    Raises:
        ValueError: if the event is not an image.
    """

    def __init__(self, event_shape: tuple[int, ...], config: CoderConfig, context_dim: int = 0):
        super().__init__()
        if len(event_shape) != 3:
            raise ValueError(f"the conv backbone needs images (C, H, W), got event shape {event_shape}; use 'mlp'")
        c, h, w = event_shape
        ch = config.channels
        self.features, self.context_dim = config.hidden, context_dim
        (h2, w2) = _conv_sizes(h, w)[-1]
        self.net = nn.Sequential(
            nn.Conv2d(c, ch, 3, stride=2, padding=1), _act(config.activation),
            nn.Conv2d(ch, ch, 3, padding=1), _act(config.activation),
            nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1), _act(config.activation),
            nn.Conv2d(2 * ch, 2 * ch, 3, padding=1), _act(config.activation),
            nn.Flatten(), nn.Linear(2 * ch * h2 * w2 + context_dim, config.hidden), _act(config.activation))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """x ``[B, C, H, W]``, context ``[B, context_dim]`` (None without one) -> ``[B, hidden]``.

        Raises:
            ValueError: a context missing, unexpected or of the wrong width.
        """
        if context is None and self.context_dim == 0:
            return self.net(x)
        h = _with_context(self.net[:-2](x), context, self.context_dim)  # [B, 2·ch·H/4·W/4 + context_dim]
        return self.net[-2:](h)


class ConvDecoder(nn.Module):
    """``[B, in_dim] -> [B, params_per_dim·C, H, W]``: linear to ``2·channels`` maps at H/4, then (3×3 conv,
    transposed 3×3 conv stride 2) × 2 levels landing exactly on (H, W), and a 3×3 output convolution.

    Args:
        in_dim: size of the input vector. event_shape: ``(C, H, W)``. params_per_dim: numbers per pixel
            channel. config: :class:`CoderConfig`.
    Raises:
        ValueError: if the event is not an image.
    """

    def __init__(self, in_dim: int, event_shape: tuple[int, ...], params_per_dim: int, config: CoderConfig):
        super().__init__()
        if len(event_shape) != 3:
            raise ValueError(f"the conv backbone needs images (C, H, W), got event shape {event_shape}; use 'mlp'")
        c, h, w = event_shape
        ch, act = config.channels, config.activation
        self.sizes = _conv_sizes(h, w)
        self.ch = ch
        h2, w2 = self.sizes[-1]
        self.inp = nn.Sequential(nn.Linear(in_dim, config.hidden), _act(act),
                                 nn.Linear(config.hidden, 2 * ch * h2 * w2), _act(act))
        self.conv2 = nn.Conv2d(2 * ch, 2 * ch, 3, padding=1)
        self.up2 = nn.ConvTranspose2d(2 * ch, ch, 3, stride=2, padding=1)
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.up1 = nn.ConvTranspose2d(ch, ch, 3, stride=2, padding=1)
        self.out = nn.Conv2d(ch, params_per_dim * c, 3, padding=1)
        self.act = _act(act)

    def forward(self, z: Tensor) -> Tensor:
        """z ``[B, in_dim]`` -> ``[B, params_per_dim·C, H, W]``."""
        h2, w2 = self.sizes[2]
        x = self.inp(z).view(len(z), 2 * self.ch, h2, w2)
        x = self.act(self.conv2(x))
        x = self.act(self.up2(x, output_size=self.sizes[1]))
        x = self.act(self.conv1(x))
        x = self.act(self.up1(x, output_size=self.sizes[0]))
        return self.out(x)


def make_encoder(event_shape: tuple[int, ...], config: CoderConfig, context_dim: int = 0) -> MLPEncoder | ConvEncoder:
    """The encoder backbone ``config.backbone`` asks for, reading a ``[B, context_dim]`` context beside the example
    when ``context_dim > 0``; its output size is ``.features``."""
    return (ConvEncoder if config.backbone == "conv" else MLPEncoder)(event_shape, config, context_dim)


def make_decoder(in_dim: int, event_shape: tuple[int, ...], params_per_dim: int,
                 config: CoderConfig) -> MLPDecoder | ConvDecoder:
    """The decoder backbone ``config.backbone`` asks for."""
    return (ConvDecoder if config.backbone == "conv" else MLPDecoder)(in_dim, event_shape, params_per_dim, config)
