"""A residual MLP backbone for vector data (2-D toys, flattened features). Knows nothing of diffusion; built with
``num_labels`` it also reads a class label, whose learned embedding is added to the noise embedding (as the UNet's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn

from .embeddings import LabelEmbedding, NoiseEmbedding, add_label_embedding

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
    """``forward(x [B, D], c_noise [B], y [B] | None) -> [B, D]``: input projection, ``depth`` residual blocks with
    the noise embedding (plus the label's, for a conditional MLP) added in each, output projection initialised to
    zero.

    Args:
        dim: D, the data dimension. config: :class:`MLPConfig`.
        num_labels: the number of label values ``y`` may take (a conditional model's K classes plus its null
            label), embedded in ``emb_dim`` and added to the noise embedding (improved-diffusion's ``label_emb``);
            None (the default) builds no label embedding.
    """

    def __init__(self, dim: int, config: MLPConfig = MLPConfig(), num_labels: int | None = None):
        super().__init__()
        self.embed = NoiseEmbedding(config.emb_dim, config.emb_dim)
        self.inp = nn.Linear(dim, config.hidden)
        self.blocks = nn.ModuleList(_ResBlock(config.hidden, config.emb_dim) for _ in range(config.depth))
        self.out = nn.Sequential(nn.LayerNorm(config.hidden), nn.SiLU(), nn.Linear(config.hidden, dim))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)
        # built last, so that the other layers draw the same initial weights as the unconditional MLP's
        self.label_emb = LabelEmbedding(num_labels, config.emb_dim) if num_labels is not None else None

    def forward(self, x: Tensor, c_noise: Tensor, y: Tensor | None = None) -> Tensor:
        """x ``[B, D]``, c_noise ``[B]``, y ``[B]`` int64 (a conditional MLP only) -> ``[B, D]``.

        Raises:
            ValueError: a label for an unconditional MLP, or none for a conditional one.
        """
        emb = add_label_embedding(self.embed(c_noise), self.label_emb, y, "MLP")
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(h)
