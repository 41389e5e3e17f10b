"""Shared by tests/diffusion/test_inpaint.py and benchmarks/inpaint_gaussian.py: Gaussian data x_0 ~ N(m, Σ) with a
full covariance, a DDPM whose network is the Bayes-optimal ε predictor, the exact Gaussian conditional, and the exact
law of an inpainting chain computed independently of genmodels.

With x_0 ~ N(m, Σ) and x_t = α x_0 + σ ε, x_t ~ N(α m, Σ_t) with Σ_t = α² Σ + σ² I, and the optimal predictor is
E[ε | x_t] = σ Σ_t⁻¹ (x_t − α m). Every step of RePaint (Lugmayr et al. 2022, Algorithm 1) is then affine in x plus
Gaussian noise, so the law of its output is Gaussian and its mean and covariance follow exactly by propagating them
through the steps (:func:`chain_law`, written from the paper's Algorithm 1 and DDPM Eq. 6–7 in numpy).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import nn

from _gaussian_data import ref_linear_alphas_cumprod
from genmodels.core import DataSpec
from genmodels.diffusion.ddpm import DDPM, DDPMConfig
from genmodels.diffusion.schedules import ScheduleConfig


def ar1_problem(D: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """m and a full covariance Σ_ij = s_i s_j ρ^|i−j| (an AR(1) correlation with scales s_i ∈ [0.6, 1])."""
    s = np.linspace(0.6, 1.0, D)
    idx = np.arange(D)
    cov = rho ** np.abs(idx[:, None] - idx[None, :]) * s[:, None] * s[None, :]
    m = np.linspace(-0.4, 0.4, D)
    return m, cov


def observed_values(m: np.ndarray, cov: np.ndarray, obs: np.ndarray, shift: float = 1.0) -> np.ndarray:
    """x_0 at the observed coordinates: m_o + shift · L_oo 1 (``shift`` standard deviations along each whitened
    direction of the observed marginal, so that the conditional differs from the marginal)."""
    return m[obs] + shift * np.linalg.cholesky(cov[np.ix_(obs, obs)]) @ np.ones(int(obs.sum()))


def exact_conditional(m: np.ndarray, cov: np.ndarray, obs: np.ndarray, x_o: np.ndarray):
    """N(m_u + Σ_uo Σ_oo⁻¹ (x_o − m_o), Σ_uu − Σ_uo Σ_oo⁻¹ Σ_ou), the law of the unobserved coordinates."""
    u = ~obs
    s_uo, s_oo = cov[np.ix_(u, obs)], cov[np.ix_(obs, obs)]
    mean = m[u] + s_uo @ np.linalg.solve(s_oo, x_o - m[obs])
    return mean, cov[np.ix_(u, u)] - s_uo @ np.linalg.solve(s_oo, s_uo.T)


def whitened_errors(mean: np.ndarray, cov: np.ndarray, ref_mean: np.ndarray,
                    ref_cov: np.ndarray) -> tuple[float, float]:
    """(‖L⁻¹(μ − μ*)‖, ‖L⁻¹ C L⁻ᵀ − I‖_F) with L L ᵀ = Σ* the reference covariance: the mean's error in standard
    deviations of the reference (Mahalanobis) and the covariance's relative error; both 0 for a perfect match and
    invariant to a change of coordinates."""
    li = np.linalg.inv(np.linalg.cholesky(ref_cov))
    return (float(np.linalg.norm(li @ (mean - ref_mean))),
            float(np.linalg.norm(li @ cov @ li.T - np.eye(len(ref_mean)))))


class OptimalEpsFullCov(nn.Module):
    """ε̂*(x_t) = σ_t Σ_t⁻¹ (x_t − α_t m) for x_0 ~ N(m, Σ); the step is read back from c_noise = i·1000/T.
    Counts its calls (``calls``) and the examples it saw (``seen``)."""

    def __init__(self, T: int, m: np.ndarray, cov: np.ndarray):
        super().__init__()
        self.T, self.calls, self.seen = T, 0, 0
        ac = torch.from_numpy(ref_linear_alphas_cumprod(T))
        c = torch.from_numpy(cov)
        cov_t = ac[:, None, None] * c + (1 - ac)[:, None, None] * torch.eye(len(m), dtype=torch.float64)
        self.register_buffer("w", (1 - ac).sqrt()[:, None, None] * torch.linalg.inv(cov_t))  # [T, D, D]
        self.register_buffer("am", ac.sqrt()[:, None] * torch.from_numpy(m)[None])  # [T, D] α_t m

    def forward(self, x_t: torch.Tensor, c_noise: torch.Tensor, *labels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.seen += len(x_t)
        i = torch.round(c_noise.double() * self.T / 1000).long()
        if bool((i == i[0]).all()):  # one step for the whole batch (every sampler): one matrix product
            return ((x_t.double() - self.am[i[0]]) @ self.w[i[0]].T).to(x_t.dtype)
        return torch.einsum("bij,bj->bi", self.w[i], x_t.double() - self.am[i]).to(x_t.dtype)


def gaussian_ddpm(T: int, m: np.ndarray, cov: np.ndarray, variance: str = "fixed_small") -> DDPM:
    """A DDPM (linear schedule, ε-prediction, no clipping) on vectors of size D whose network is
    :class:`OptimalEpsFullCov`."""
    spec = DataSpec(name="gauss-full", event_shape=(len(m),), n_bins=None)
    model = DDPM(DDPMConfig(schedule=ScheduleConfig(T=T), variance=variance, clip_x0=False), spec)
    model.net = OptimalEpsFullCov(T, m, cov)
    return model


def ref_timesteps(T: int, steps: int) -> list[int]:
    """Evenly spaced kept steps including 0 and T−1 (Nichol & Dhariwal 2021, §4)."""
    return [T - 1] if steps == 1 else sorted({round(k * (T - 1) / (steps - 1)) for k in range(steps)})


def chain_law(m: np.ndarray, cov: np.ndarray, obs: np.ndarray, x_o: np.ndarray, T: int, steps: int,
              levels: list[int], variance: str = "fixed_small") -> tuple[np.ndarray, np.ndarray]:
    """Exact mean ``[D]`` and covariance ``[D, D]`` of the inpainting chain's output, x at level S−1 ~ N(0, I),
    walking ``levels`` (RePaint's schedule: down = reverse step, up = forward step) on the respaced S-step process.

    Reverse step a → a−1 (RePaint Algorithm 1, lines 5–8): known part α_s x_o + σ_s ε; unknown part
    μ̃ = k_t x + k_0 x̂_0*(x) (DDPM Eq. 7) plus noise of variance β̃ (``fixed_small``, with β̃_1 := β̃_2) or β
    (``fixed_large``), none at a = 0. Forward step a → a+1 (line 9): √(1−β_{a+1}) x + √β_{a+1} n.
    """
    D = len(m)
    eye = np.eye(D)
    ac = ref_linear_alphas_cumprod(T)[ref_timesteps(T, steps)]
    acp = np.concatenate([[1.0], ac[:-1]])
    beta = 1 - ac / acp
    bt = beta * (1 - acp) / (1 - ac)
    var = np.concatenate([bt[1:2], (bt if variance == "fixed_small" else beta)[1:]])
    po = np.diag(obs.astype(float))
    pu = eye - po
    x0 = np.zeros(D)
    x0[obs] = x_o
    mu, c = np.zeros(D), eye.copy()
    for a, b in itertools.pairwise(levels):
        if b < a:
            a_t, a_s = math.sqrt(ac[a]), math.sqrt(acp[a])
            gain = a_t * cov @ np.linalg.inv(ac[a] * cov + (1 - ac[a]) * eye)  # x̂_0* = m + gain (x − α_t m)
            k0 = a_s * beta[a] / (1 - ac[a])
            kt = math.sqrt(1 - beta[a]) * (1 - acp[a]) / (1 - ac[a])
            A = kt * eye + k0 * gain
            shift = k0 * (m - a_t * gain @ m)
            noise = 0.0 if a == 0 else var[a]
            mu = po @ (a_s * x0) + pu @ (A @ mu + shift)
            c = po * (1 - acp[a]) + pu @ (A @ c @ A.T + noise * eye) @ pu
        else:
            k = math.sqrt(1 - beta[b])
            mu, c = k * mu, k * k * c + beta[b] * eye
    return mu, c
