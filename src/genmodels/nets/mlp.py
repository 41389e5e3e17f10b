"""A residual MLP backbone for vector data (2-D toys, flattened features). Knows nothing of diffusion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from .embeddings import NoiseEmbedding

__all__ = ["MLPConfig", "MLP"]


@dataclass(frozen=True)
class MLPConfig:
    """Residual MLP backbone.

    Attributes:
        hidden: width of every hidden layer.
        depth: number of residual blocks.
        emb_dim: size of the noise embedding.
    """

    # what a config.json or --set may ask (checkpoint.config_limits)
    LIMITS: ClassVar[dict[str, tuple[float, float]]] = {"hidden": (1, 4096), "depth": (0, 64), "emb_dim": (1, 4096)}

    hidden: int = 256
    depth: int = 4
    emb_dim: int = 128


class _ResBlock(nn.Module):
    def __init__(self, hidden: int, emb_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.emb = nn.Linear(emb_dim, hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.act = nn.SiLU()

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        """h ``[B, hidden]``, emb ``[B, emb_dim]`` -> ``[B, hidden]``."""
        z = self.fc1(self.act(self.norm(h))) + self.emb(emb)
        return h + self.fc2(self.act(z))


class MLP(nn.Module):
    """``forward(x [B, D], c_noise [B]) -> [B, D]``: input projection, ``depth`` residual blocks with the
    noise embedding added in each, output projection initialised to zero.

    Args:
        dim: D, the data dimension. config: :class:`MLPConfig`.
    """

    def __init__(self, dim: int, config: MLPConfig = MLPConfig()):
        super().__init__()
        self.embed = NoiseEmbedding(config.emb_dim, config.emb_dim)
        self.inp = nn.Linear(dim, config.hidden)
        self.blocks = nn.ModuleList(_ResBlock(config.hidden, config.emb_dim) for _ in range(config.depth))
        self.out = nn.Sequential(nn.LayerNorm(config.hidden), nn.SiLU(), nn.Linear(config.hidden, dim))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: Tensor, c_noise: Tensor) -> Tensor:
        """x ``[B, D]``, c_noise ``[B]`` -> ``[B, D]``."""
        emb = self.embed(c_noise)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)
