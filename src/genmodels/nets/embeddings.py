"""Noise-level and class-label embeddings shared by the backbones."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["sinusoidal_embedding", "NoiseEmbedding", "LabelEmbedding", "add_label_embedding", "base2_fourier_features"]


def sinusoidal_embedding(c_noise: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer-style sinusoidal features of a scalar per example (Vaswani et al. 2017, §3.5; DDPM App. B).

    Args:
        c_noise: ``[B]`` float, the noise conditioning (e.g. the DDPM timestep in [0, 1000)).
        dim: even embedding size.
    Returns:
        ``[B, dim]`` = [cos(c·f_k), sin(c·f_k)] with f_k = max_period^(−k/(dim/2)).
    Raises:
        ValueError: if ``dim`` is odd.
    """
    if dim % 2:
        raise ValueError(f"embedding dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=c_noise.device, dtype=torch.float32) / half)
    args = c_noise.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class NoiseEmbedding(nn.Module):
    """Sinusoidal features of ``c_noise`` followed by a 2-layer SiLU MLP: ``[B] -> [B, out_dim]``."""

    def __init__(self, base_dim: int, out_dim: int):
        super().__init__()
        self.base_dim = base_dim
        self.mlp = nn.Sequential(nn.Linear(base_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, c_noise: Tensor) -> Tensor:
        """``[B]`` -> ``[B, out_dim]``."""
        # features in float32 (c_noise up to ~1000), then the MLP's own dtype (float64 models work too)
        return self.mlp(sinusoidal_embedding(c_noise, self.base_dim).to(self.mlp[0].weight.dtype))


class LabelEmbedding(nn.Module):
    """A learned vector per class label, added to the noise embedding of a class-conditional backbone:
    ``emb = NoiseEmbedding(c_noise) + LabelEmbedding(y)`` (improved-diffusion's ``label_emb``, Nichol & Dhariwal
    2021; EDM's ``map_label``, Karras et al. 2022). ``[B]`` int64 -> ``[B, out_dim]``.

    Args:
        num_labels: the number of label values (a conditional model passes its K classes plus its null label).
        out_dim: the size of the noise embedding it is added to.
    Raises:
        ValueError: for ``num_labels`` < 1.
    """

    def __init__(self, num_labels: int, out_dim: int):
        super().__init__()
        if num_labels < 1:
            raise ValueError(f"a label embedding needs num_labels ≥ 1, got {num_labels}")
        self.num_labels = num_labels
        self.table = nn.Embedding(num_labels, out_dim)

    def forward(self, y: Tensor) -> Tensor:
        """``[B]`` int64 labels in ``0..num_labels−1`` -> ``[B, out_dim]``."""
        return self.table(y)


def add_label_embedding(emb: Tensor, label_emb: LabelEmbedding | None, y: Tensor | None, net: str) -> Tensor:
    """``emb + label_emb(y)`` for a class-conditional backbone, ``emb`` unchanged for an unconditional one.

    Args:
        emb: ``[B, E]`` the noise embedding. label_emb: the backbone's :class:`LabelEmbedding`, or None.
        y: ``[B]`` int64 labels, or None. net: the backbone's name, for the error message.
    Raises:
        ValueError: a label for an unconditional backbone, none for a conditional one, or a label count that is
            not the batch's. (Values are not checked here, to keep sampling free of host syncs: the models check them
            with :meth:`~genmodels.core.GenerativeModel.check_label` and resolve the null label before the call.)
    """
    if label_emb is None:
        if y is not None:
            raise ValueError(f"this {net} was built without a label embedding (num_labels=None): it takes no y")
        return emb
    if y is None:
        raise ValueError(f"this {net} is class-conditional ({label_emb.num_labels} labels): give y, [B] int64")
    if y.shape != emb.shape[:1]:
        raise ValueError(f"{net}: {tuple(y.shape)} labels for a batch of {emb.shape[0]}; give one label per example")
    return emb + label_emb(y).to(emb.dtype)


def base2_fourier_features(x: Tensor, exponents: tuple[int, ...], scale: float = 1.0) -> Tensor:
    """sin and cos of 2ⁿ·2π·scale·x for each exponent n, stacked on the channel axis (VDM Appendix C,
    ``Base2FourierFeatures``): they let a network see the fine, bin-level detail of z that decides the likelihood.

    Args:
        x: ``[B, C, ...]``. exponents: the n's (VDM: 6, 7 for 8-bit data on [−1, 1]).
        scale: multiplies every frequency. VDM's 256 levels sit 2/256 apart, so n = 7 has a period of exactly one
            level; for levels 2/(n_bins − 1) apart, ``scale = (n_bins − 1)/256`` keeps that (a 0.4% mismatch for
            n_bins = 256 would otherwise drift the phase by a whole period across [−1, 1]).
    Returns:
        ``[B, 2·len(exponents)·C, ...]``: all the sines, then all the cosines.
    """
    freqs = torch.tensor([2.0**n * 2 * math.pi * scale for n in exponents], dtype=x.dtype, device=x.device)
    h = x.unsqueeze(2) * freqs.reshape(1, 1, -1, *([1] * (x.ndim - 2)))  # [B, C, F, ...]
    h = h.flatten(1, 2)
    return torch.cat([torch.sin(h), torch.cos(h)], 1)
