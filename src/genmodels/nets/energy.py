"""Scalar energy networks f(x) for energy-based models: an MLP for vectors, a small conv net for images.

Both use only smooth activations (SiLU), because score matching differentiates the energy twice: the score is
−∇_x f and the explicit and sliced losses take its Jacobian, −∇²_x f. A ReLU energy has a Hessian that is zero
almost everywhere, which would leave those losses nothing to fit. The read-out has no bias: a constant added to f
changes only the normalizing constant, so no score-matching loss could train it. The networks know nothing of score
matching.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

__all__ = ["EnergyMLPConfig", "EnergyMLP", "EnergyConvConfig", "EnergyConvNet"]


@dataclass(frozen=True)
class EnergyMLPConfig:
    """Energy MLP for vectors.

    Attributes:
        hidden: width of every hidden layer.
        depth: number of hidden layers (each Linear → SiLU).
    """

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"hidden": (1, 4096), "depth": (1, 64)}

    hidden: int = 128
    depth: int = 3

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.depth < 1:
            raise ValueError(f"EnergyMLPConfig: hidden and depth must be ≥ 1, got hidden={self.hidden}, "
                             f"depth={self.depth}")


class EnergyMLP(nn.Module):
    """``forward(x [B, D]) -> [B]``: ``depth`` Linear–SiLU layers, then a linear read-out to one number.

    Args:
        dim: D, the data dimension. config: :class:`EnergyMLPConfig`.
    """

    def __init__(self, dim: int, config: EnergyMLPConfig = EnergyMLPConfig()):
        super().__init__()
        layers: list[nn.Module] = []
        width = dim
        for _ in range(config.depth):
            layers += [nn.Linear(width, config.hidden), nn.SiLU()]
            width = config.hidden
        layers.append(nn.Linear(width, 1, bias=False))  # a constant in f is absorbed by Z_θ: no bias
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """x ``[B, D]`` -> ``[B]``."""
        return self.net(x).squeeze(-1)


@dataclass(frozen=True)
class EnergyConvConfig:
    """Small conv energy for images: two stages of (3×3 conv, 3×3 stride-2 conv), then an MLP read-out.

    Attributes:
        channels: width of the first stage (the second has twice as many).
        hidden: width of the read-out's hidden layer.
    """

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"channels": (1, 512), "hidden": (1, 4096)}

    channels: int = 32
    hidden: int = 128

    def __post_init__(self) -> None:
        if self.channels < 1 or self.hidden < 1:
            raise ValueError(f"EnergyConvConfig: channels and hidden must be ≥ 1, got channels={self.channels}, "
                             f"hidden={self.hidden}")


class EnergyConvNet(nn.Module):
    """``forward(x [B, C, H, W]) -> [B]``.

    conv(C→c) SiLU, conv(c→c, stride 2) SiLU, conv(c→2c) SiLU, conv(2c→2c, stride 2) SiLU, flatten
    (2c·⌈H/4⌉·⌈W/4⌉), Linear→``hidden``, SiLU, Linear→1. The flatten keeps where things are in the image (a global
    pool would not).

    Args:
        event_shape: ``(C, H, W)``. config: :class:`EnergyConvConfig`.
    """

    def __init__(self, event_shape: tuple[int, int, int], config: EnergyConvConfig = EnergyConvConfig()):
        super().__init__()
        C, H, W = event_shape
        c = config.channels
        self.features = nn.Sequential(
            nn.Conv2d(C, c, 3, padding=1), nn.SiLU(),
            nn.Conv2d(c, c, 3, stride=2, padding=1), nn.SiLU(),  # (B, c, ⌈H/2⌉, ⌈W/2⌉)
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.SiLU(),
            nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1), nn.SiLU(),  # (B, 2c, ⌈H/4⌉, ⌈W/4⌉)
        )
        h4, w4 = (H + 3) // 4, (W + 3) // 4
        self.readout = nn.Sequential(nn.Flatten(), nn.Linear(2 * c * h4 * w4, config.hidden), nn.SiLU(),
                                     nn.Linear(config.hidden, 1, bias=False))  # no bias: absorbed by Z_θ

    def forward(self, x: Tensor) -> Tensor:
        """x ``[B, C, H, W]`` -> ``[B]``."""
        return self.readout(self.features(x)).squeeze(-1)
