"""A tiny test-only GenerativeModel: a 2-layer MLP noise predictor over 2-D data.

Loss (denoising score matching in ε-form, Vincent 2011 / Ho et al. 2020): draw
``σ = exp(U(log σ_min, log σ_max))`` and ``ε ~ N(0, I)`` from the generator, ``x_σ = x + σ·ε``,
loss ``= mean_d (ε̂(x_σ, log σ) − ε)²`` per example ``[B]``. Registered in ``MODELS`` as
``TOY_NAME`` so that ``from_pretrained`` can rebuild it from ``config.json``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from genmodels.core import DataSpec, GenerativeModel
from genmodels.families import MODELS
from genmodels.registry import ModelEntry

TOY_NAME = "_test_toy"
TOY_SPEC = DataSpec(name="toy-blobs", event_shape=(2,))


@dataclass(frozen=True)
class ToyConfig:
    hidden: int = 16  # MLP width
    sigma_min: float = 0.1  # smallest noise level
    sigma_max: float = 1.0  # largest noise level
    activation: Literal["silu", "tanh"] = "silu"  # hidden nonlinearity
    share_embedding: bool = False  # register the σ-embedding twice (tests tied tensors)
    dropout: float = 0.0  # hidden dropout: draws from torch's global RNG (tests its save/restore)


class ToyDenoiser(GenerativeModel):
    """ε-prediction MLP ``[B, 2] -> [B, 2]`` conditioned on ``log σ``."""

    description = "test-only toy denoiser"

    def __init__(self, config: ToyConfig, spec: DataSpec):
        super().__init__()
        self.config, self.spec = config, spec
        d = spec.dim
        act = nn.SiLU() if config.activation == "silu" else nn.Tanh()
        self.embed = nn.Linear(1, config.hidden)
        if config.share_embedding:
            self.embed_alias = self.embed
        self.inp = nn.Linear(d, config.hidden)
        h = config.hidden
        self.net = nn.Sequential(act, nn.Dropout(config.dropout), nn.Linear(h, h), act, nn.Linear(h, d))
        log_range = [math.log(config.sigma_min), math.log(config.sigma_max)]
        self.register_buffer("log_sigma_range", torch.tensor(log_range))  # [2]

    def eps(self, x_t: Tensor, log_sigma: Tensor) -> Tensor:  # [B, D], [B] -> [B, D]
        return self.net(self.inp(x_t) + self.embed(log_sigma[:, None]))

    def loss(self, x: Tensor, generator: torch.Generator | None = None, y: Tensor | None = None) -> Tensor:
        lo, hi = self.log_sigma_range
        u = torch.rand(x.shape[0], generator=generator, device=x.device)  # [B]
        log_sigma = lo + (hi - lo) * u
        eps = torch.randn(x.shape, generator=generator, device=x.device)  # [B, D]
        x_t = x + log_sigma.exp()[:, None] * eps
        return (self.eps(x_t, log_sigma) - eps).pow(2).mean(dim=1)  # [B]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, steps: int = 10, **kw) -> Tensor:
        lo, hi = self.log_sigma_range.tolist()
        sigmas = [*torch.linspace(hi, lo, steps, device=self.device).exp().tolist(), 0.0]
        x = sigmas[0] * torch.randn((n, self.spec.dim), generator=generator, device=self.device)
        for s, s_next in itertools.pairwise(sigmas):  # deterministic DDIM-style steps in σ
            eps = self.eps(x, torch.full((n,), math.log(s), device=self.device))
            x = x + (s_next - s) * eps
        return x


def build_toy(config: ToyConfig, spec: DataSpec) -> ToyDenoiser:
    return ToyDenoiser(config, spec)


if TOY_NAME not in MODELS:
    MODELS.register(TOY_NAME, ModelEntry(config_cls=ToyConfig, build=ToyDenoiser))


def toy_data(n: int = 512, seed: int = 0) -> Tensor:
    """``[n, 2]`` points from two tight blobs at (±1, 0)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
    which = torch.randint(0, 2, (n,), generator=g)
    return centers[which] + 0.05 * torch.randn((n, 2), generator=g)
