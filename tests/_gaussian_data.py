"""Shared by the diffusion tests: Gaussian data x_0 ~ N(μ, s² I) and independent reference schedules."""

import numpy as np
import torch

from genmodels.core import DataSpec

F64 = torch.float64
Z = 5.0  # tolerance in Monte Carlo standard errors
MU = torch.tensor([1.0, -0.5, 0.25, 0.0], dtype=F64)
S = 0.8
D = len(MU)
SPEC = DataSpec(name="gauss", event_shape=(D,), n_bins=None)


def gen(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


def ref_linear_alphas_cumprod(T: int) -> np.ndarray:
    """ᾱ_t of the linear schedule (Ho et al. 2020, scaled by 1000/T), independently of genmodels."""
    return np.cumprod(1 - np.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T))
