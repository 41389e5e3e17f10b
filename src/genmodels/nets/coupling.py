"""Coupling networks of normalizing flows: the functions (s, t) = NN(x_a) inside a coupling layer. Backbones only;
they know nothing of flows (see :mod:`genmodels.flows.transforms`).

- :class:`CouplingMLP` for vectors (NICE, Dinh et al. 2014, §5.1: ReLU MLPs; RealNVP's toy experiments);
- :class:`CouplingResNet` for images (RealNVP, Dinh et al. 2017, §4.1: deep convolutional residual networks with
  3×3 convolutions; Glow, Kingma & Dhariwal 2018, §3.3: a final zero-initialized convolution).

Both end in a **zero-initialized** layer, so the network's output is 0 at initialization and every coupling layer
starts as the identity (Glow §3.3, "zero initialization"). The residual blocks' second convolution is zero-initialized
too (SkipInit/Fixup style), so that a deep stack without normalization starts as conv → act → conv; no batch norm, so
every example's Jacobian depends on that example only (RealNVP's batch norm would couple the examples of a batch).

Both take an optional **context** (``n_context`` features per example, e.g. a class-label embedding of a
class-conditional flow): a **zero-initialized** linear projection of it is added to the first layer's pre-activation
(a per-example bias of the first hidden features, broadcast over H×W for the ResNet), as conditional PixelCNN's
V^T h and Glow's class-conditional code do. It is not concatenated to x_a: extra input features or constant channels
would enlarge the first layer's fan-in and so shrink its default initial weights on x_a (by √((c_in + n_context)/c_in):
≈ 4× for a 1-channel checkerboard coupling and a 16-wide embedding) while N(0, 1) embedding channels swamp the
first features with a per-class constant, and the conditional flow trained much worse than the unconditional one.
The projection draws no random numbers, so a conditional net has exactly the initial weights of the unconditional
one at the same seed and, its projection being 0, computes exactly the same function at initialization. The context
enters only the conditioner, never the coupled variables, so a coupling stays invertible in x for every context and
its Jacobian stays triangular. With ``n_context = 0`` (the default) a net has exactly the layers, and draws exactly
the initial weights, it had before contexts existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CouplingNetConfig", "CouplingMLP", "CouplingResNet", "make_activation"]

Activation = Literal["relu", "silu", "tanh"]


@dataclass(frozen=True)
class CouplingNetConfig:
    """The network inside each coupling layer.

    Attributes:
        hidden: width of the hidden layers (vectors) or number of hidden channels (images).
        depth: number of hidden layers (vectors, ≥ 1) or of residual blocks (images, ≥ 0).
        activation: ``relu`` (NICE, RealNVP, Glow), ``silu`` or ``tanh`` (smoother densities on 2-D toys).
    Raises:
        ValueError: for a width < 1, a negative depth or an unknown activation.
    """

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"hidden": (1, 2048), "depth": (0, 64)}

    hidden: int = 64
    depth: int = 2
    activation: Activation = "relu"

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.depth < 0:
            raise ValueError(f"CouplingNetConfig: need hidden ≥ 1 and depth ≥ 0, got hidden={self.hidden}, "
                             f"depth={self.depth}")
        if self.activation not in ("relu", "silu", "tanh"):
            raise ValueError(f"CouplingNetConfig: activation must be 'relu', 'silu' or 'tanh', got {self.activation!r}")


def make_activation(name: Activation) -> nn.Module:
    """The activation module called ``name``."""
    return {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}[name]()


def _zero(layer: nn.Module) -> nn.Module:
    for p in layer.parameters():
        nn.init.zeros_(p)
    return layer


def _context_weight(n_context: int, hidden: int) -> nn.Parameter | None:
    """The ``[hidden, n_context]`` zero projection of a context (None without one); made without drawing random
    numbers, so the other layers' initial weights are those of the net without a context."""
    return nn.Parameter(torch.zeros(hidden, n_context)) if n_context > 0 else None


def _check_context(x: Tensor, context: Tensor | None, n_context: int, who: str) -> None:
    """ValueError unless ``context`` is None for a net without one, or ``[B, n_context]``."""
    if context is None and n_context == 0:
        return
    if context is None or context.dim() != 2 or context.shape != (x.shape[0], n_context):
        got = None if context is None else tuple(context.shape)
        raise ValueError(f"{who} reads a context of shape [B, {n_context}] (B = {x.shape[0]}); got {got}")


class CouplingMLP(nn.Sequential):
    """``[B, n_in] (+ context [B, n_context]) -> [B, n_out]``: Linear → act, ``depth`` hidden layers of width
    ``hidden`` (at least one), then a zero-initialized Linear (NICE §5.1 used 5 ReLU layers of 1000 units on MNIST).
    A zero-initialized projection of the context (``context_weight``, ``[hidden, n_context]``) is added to the first
    Linear's output.

    Args:
        n_in, n_out: input and output features. config: :class:`CouplingNetConfig`. n_context: context features
            (0: none).
    """

    def __init__(self, n_in: int, n_out: int, config: CouplingNetConfig = CouplingNetConfig(), n_context: int = 0):
        layers: list[nn.Module] = []
        width = n_in
        for _ in range(max(1, config.depth)):
            layers += [nn.Linear(width, config.hidden), make_activation(config.activation)]
            width = config.hidden
        layers.append(_zero(nn.Linear(width, n_out)))
        super().__init__(*layers)
        self.n_context = n_context
        # a parameter, not a module: nn.Sequential runs its modules in turn
        self.context_weight = _context_weight(n_context, config.hidden)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """x ``[B, n_in]``, context ``[B, n_context]`` (None without one) -> ``[B, n_out]``.

        Raises:
            ValueError: a context missing, unexpected or of the wrong width.
        """
        _check_context(x, context, self.n_context, "this coupling MLP")
        if context is None:
            return super().forward(x)
        h = self[0](x) + F.linear(context.to(x.dtype), self.context_weight)  # [B, hidden]
        for layer in list(self)[1:]:
            h = layer(h)
        return h


class _ResBlock(nn.Module):
    """h + conv3×3(act(conv3×3(act(h)))), the second convolution zero-initialized. ``[B, C, H, W]`` → same."""

    def __init__(self, channels: int, activation: Activation):
        super().__init__()
        self.body = nn.Sequential(make_activation(activation), nn.Conv2d(channels, channels, 3, padding=1),
                                  make_activation(activation), _zero(nn.Conv2d(channels, channels, 3, padding=1)))

    def forward(self, h: Tensor) -> Tensor:
        """h ``[B, C, H, W]`` -> ``[B, C, H, W]``."""
        return h + self.body(h)


class CouplingResNet(nn.Module):
    """``[B, c_in, H, W] (+ context [B, n_context]) -> [B, c_out, H, W]``: conv3×3 (c_in → hidden), ``depth``
    residual blocks, act, then a zero-initialized conv3×3 (hidden → c_out) (RealNVP §4.1's ResNet; Glow §3.3's
    zero-initialized last conv). A zero-initialized projection of the context (``context_weight``,
    ``[hidden, n_context]``) is added to the first convolution's output, the same at every pixel.

    Args:
        c_in, c_out: input and output channels. config: :class:`CouplingNetConfig` (``hidden`` channels,
            ``depth`` residual blocks). n_context: context features (0: none).
    """

    def __init__(self, c_in: int, c_out: int, config: CouplingNetConfig = CouplingNetConfig(), n_context: int = 0):
        super().__init__()
        self.n_context = n_context
        self.inp = nn.Conv2d(c_in, config.hidden, 3, padding=1)
        self.context_weight = _context_weight(n_context, config.hidden)
        self.blocks = nn.Sequential(*(_ResBlock(config.hidden, config.activation) for _ in range(config.depth)))
        self.out = nn.Sequential(make_activation(config.activation),
                                 _zero(nn.Conv2d(config.hidden, c_out, 3, padding=1)))

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """x ``[B, c_in, H, W]``, context ``[B, n_context]`` (None without one) -> ``[B, c_out, H, W]``.

        Raises:
            ValueError: a context missing, unexpected or of the wrong width.
        """
        _check_context(x, context, self.n_context, "this coupling ResNet")
        h = self.inp(x)  # [B, hidden, H, W]
        if context is not None:  # + a per-example bias [B, hidden, 1, 1]
            h = h + F.linear(context.to(x.dtype), self.context_weight)[:, :, None, None]
        return self.out(self.blocks(h))
