"""Shared by the flow tests (tests/flows): small NICE / RealNVP / Glow configs, tiny specs, seeded data, and a built
flow with actnorm initialized and its parameters perturbed away from the identity."""

from __future__ import annotations

import dataclasses

import torch

from genmodels.core import Conditioning, DataSpec
from genmodels.flows import NICE, Glow, GlowConfig, NICEConfig, RealNVP, RealNVPConfig
from genmodels.nets.coupling import CouplingNetConfig

DT = torch.float64
MLP = CouplingNetConfig(hidden=16, depth=2, activation="tanh")
CNN = CouplingNetConfig(hidden=4, depth=1)
VEC2 = DataSpec("toy2", (2,))
VEC4 = DataSpec("toy4", (4,))
IMG = DataSpec("tiny-images", (1, 4, 4), n_bins=17)

FAMILIES = {
    "nice": (NICE, lambda **kw: NICEConfig(n_couplings=4, net=MLP, **kw)),
    "realnvp": (RealNVP, lambda **kw: RealNVPConfig(n_scales=2, checkerboard_couplings=2, channel_couplings=2,
                                                    final_couplings=2, n_couplings=4, net=MLP, **kw)),
    "glow": (Glow, lambda **kw: GlowConfig(n_levels=2, steps_per_level=2, net=MLP, **kw)),
}
"""Family name -> (model class, config factory taking extra config fields such as ``cond``)."""
CASES = [(f, s) for f in FAMILIES for s in ("vector", "image")]


def _g(seed: int = 0) -> torch.Generator:
    """A CPU generator seeded ``seed``."""
    return torch.Generator().manual_seed(seed)


def _data(spec: DataSpec, n: int, seed: int = 0, dtype=DT) -> torch.Tensor:
    """Discrete data on [−1, 1] (its levels) or continuous vectors."""
    if spec.is_discrete:
        k = torch.randint(0, spec.n_bins, (n, *spec.event_shape), generator=_g(seed))
        return (2 * k / (spec.n_bins - 1) - 1).to(dtype)
    return torch.randn(n, *spec.event_shape, generator=_g(seed), dtype=dtype) * 0.8 + 0.3


def _spec(kind: str) -> DataSpec:
    """VEC4 for ``"vector"``, IMG otherwise."""
    return VEC4 if kind == "vector" else IMG


def build_flow(family: str, spec: DataSpec, dtype=DT, perturb: float = 0.2, cond: Conditioning | None = None):
    """A small flow of ``family`` for ``spec`` (conditional with ``cond``), actnorm initialized on a batch, every
    parameter perturbed by ``perturb``·N(0, 1) away from its zero initialization (the identity couplings; a
    conditional flow's label projection and per-class base)."""
    cls, make = FAMILIES[family]
    cfg = make() if cond is None else make(cond=cond)
    if spec.is_image:
        cfg = dataclasses.replace(cfg, net=CNN)
    torch.manual_seed(0)
    model = cls(cfg, spec).to(dtype)
    model.log_prob(model.dequantize(_data(spec, 16, seed=1, dtype=dtype), _g(1)))  # actnorm's init
    if perturb:
        with torch.no_grad():
            g = _g(2)
            for p in model.parameters():
                p.add_(perturb * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model
