"""Tests for genmodels.diffusion.samplers with the Bayes-optimal denoiser of Gaussian data x_0 ~ N(μ, s² I).

With x̂_0*(x_t) linear in x_t, every sampler is a linear-Gaussian chain, so (i) its output law can be computed
exactly by a scalar recursion written here from the papers' update rules (DDPM Algorithm 2; DDIM Eq. 12), and
(ii) its draws can be replayed step by step from the same generator. Monte Carlo tolerances are 5 standard
errors of the sample mean (σ/√n) and of the pooled sample variance (V·√(2/(D(n−1))), exact for Gaussian output).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from _gaussian_data import F64, MU, SPEC, D, S, Z, ref_linear_alphas_cumprod
from _gaussian_data import gen as _gen
from genmodels.diffusion import samplers
from genmodels.diffusion.ddpm import DDPM, DDPMConfig
from genmodels.diffusion.schedules import ScheduleConfig
from genmodels.sampling import draw_in_batches


def ref_timesteps(T: int, steps: int) -> list[int]:
    """Evenly spaced kept steps including 0 and T−1 (Nichol & Dhariwal 2021, §4)."""
    return [T - 1] if steps == 1 else sorted({round(k * (T - 1) / (steps - 1)) for k in range(steps)})


def opt_x0(x: torch.Tensor, ab: float) -> torch.Tensor:
    """E[x_0 | x_t] for x_0 ~ N(μ, s² I): μ + α s² (x_t − α μ) / (α² s² + σ²)."""
    a = math.sqrt(ab)
    return MU + a * S**2 * (x - a * MU) / (ab * S**2 + 1 - ab)


class OptimalEps(nn.Module):
    """ε̂*(x_t) = σ_t (x_t − α_t μ)/(α_t² s² + σ_t²); the step is read from c_noise = i·1000/T. Counts its calls."""

    def __init__(self, T: int):
        super().__init__()
        self.T, self.calls = T, 0
        self.register_buffer("ac", torch.from_numpy(ref_linear_alphas_cumprod(T)))
        self.register_buffer("mu", MU.clone())

    def forward(self, x_t: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        i = torch.round(c_noise.double() * self.T / 1000).long()
        ab = self.ac[i][:, None]
        return ((1 - ab).sqrt() * (x_t.double() - ab.sqrt() * self.mu) / (ab * S**2 + 1 - ab)).to(x_t.dtype)


def gaussian_model(T: int, variance: str = "fixed_small") -> DDPM:
    model = DDPM(DDPMConfig(schedule=ScheduleConfig(T=T), variance=variance, clip_x0=False), SPEC)
    model.net = OptimalEps(T)
    return model


def _respaced(T: int, steps: int) -> tuple[list[int], np.ndarray, np.ndarray]:
    ts = ref_timesteps(T, steps)
    ac = ref_linear_alphas_cumprod(T)[ts]
    return ts, ac, np.concatenate([[1.0], ac[:-1]])


def chain_law(T: int, steps: int, kind: str, eta: float = 0.0, variance: str = "fixed_small"):
    """Exact mean [D] and per-dimension variance of a sampler's output, x_T ~ N(0, I), by propagating
    x ↦ A x + b + noise through each step (x̂_0* = μ + c_0 (x − α_t μ), ε̂* = c_ε (x − α_t μ))."""
    _, ac, acp = _respaced(T, steps)
    m, V = np.zeros(D), 1.0
    mu = MU.numpy()
    for j in range(len(ac) - 1, -1, -1):
        a_t, s_t, a_s, s_s = math.sqrt(ac[j]), math.sqrt(1 - ac[j]), math.sqrt(acp[j]), math.sqrt(1 - acp[j])
        v = ac[j] * S**2 + 1 - ac[j]
        c0, ce = a_t * S**2 / v, s_t / v
        beta = 1 - ac[j] / acp[j]
        bt = beta * (1 - acp[j]) / (1 - ac[j])  # β̃ of the respaced step (0 at j = 0)
        if kind == "ancestral":
            # μ̃ = √ᾱ_s β/(1−ᾱ_t) x̂_0 + √(1−β)(1−ᾱ_s)/(1−ᾱ_t) x_t  (DDPM Eq. 7)
            k0, kt = a_s * beta / (1 - ac[j]), math.sqrt(1 - beta) * (1 - acp[j]) / (1 - ac[j])
            A, b = kt + k0 * c0, k0 * (mu - c0 * a_t * mu)
            noise = 0.0 if j == 0 else (bt if variance == "fixed_small" else beta)
        else:
            # x_s = α_s x̂_0 + √(σ_s² − η² β̃) ε̂ + η √β̃ z  (DDIM Eq. 12)
            dc = math.sqrt(max(s_s**2 - eta**2 * bt, 0.0))
            A = a_s * c0 + dc * ce
            b = a_s * (mu - c0 * a_t * mu) - dc * ce * a_t * mu
            noise = 0.0 if j == 0 else eta**2 * bt
        m, V = A * m + b, A**2 * V + noise
    return m, V


def replay(T: int, steps: int, n: int, seed: int, kind: str, eta: float = 0.0, variance: str = "fixed_small"):
    """The sampler re-implemented in float64 from the update rules, drawing the same float32 normals in the
    same order from the same generator (x_T first, then one draw per noisy step)."""
    _, ac, acp = _respaced(T, steps)
    g = _gen(seed)
    x = torch.randn(n, D, generator=g).double()
    for j in range(len(ac) - 1, -1, -1):
        x0 = opt_x0(x, ac[j])
        eps = (x - math.sqrt(ac[j]) * x0) / math.sqrt(1 - ac[j])
        beta = 1 - ac[j] / acp[j]
        bt = beta * (1 - acp[j]) / (1 - ac[j])
        if kind == "ancestral":
            mean = (math.sqrt(acp[j]) * beta * x0 + math.sqrt(1 - beta) * (1 - acp[j]) * x) / (1 - ac[j])
            if j == 0:
                x = mean
            else:
                std = math.sqrt(bt if variance == "fixed_small" else beta)
                x = mean + std * torch.randn(n, D, generator=g).double()
        else:
            x_s = math.sqrt(acp[j]) * x0 + math.sqrt(max(1 - acp[j] - eta**2 * bt, 0.0)) * eps
            if j > 0 and eta > 0:
                x_s = x_s + eta * math.sqrt(bt) * torch.randn(n, D, generator=g).double()
            x = x_s
    return x, g


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, float]:
    x = x.double()
    return x.mean(0), x.var(0).mean().item()


# ------------------------------------------------------------------------------------------ exact replays


@pytest.mark.parametrize("steps", [100, 20])
def test_ddim_eta_one_equals_ancestral(steps):
    """Requirement 10: DDIM with η = 1 is the ancestral sampler with fixed_small variance, draw for draw."""
    T, n = 100, 256
    model = gaussian_model(T)
    anc = samplers.ancestral(model, n, steps=steps, generator=_gen(1), keep_trajectory=True)
    ddim = samplers.ddim(model, n, steps=steps, eta=1.0, generator=_gen(1), keep_trajectory=True)
    assert anc.x0.dtype == torch.float32
    torch.testing.assert_close(ddim.x0, anc.x0)  # float32 tolerances (rtol 1.3e-6, atol 1e-5)
    torch.testing.assert_close(ddim.trajectory, anc.trajectory)
    # not vacuous: the fixed_large ancestral sampler (β_t instead of β̃_t) differs
    large = samplers.ancestral(gaussian_model(T, "fixed_large"), n, steps=steps, generator=_gen(1))
    assert (large.x0 - anc.x0).abs().max() > 1e-3


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("steps", [100, 13, 1])
def test_ancestral_matches_replay_of_algorithm_2(variance, steps):
    T, n = 100, 64
    out = samplers.ancestral(gaussian_model(T, variance), n, steps=steps, generator=_gen(2))
    ref, _ = replay(T, steps, n, 2, "ancestral", variance=variance)
    torch.testing.assert_close(out.x0.double(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("steps", [100, 13, 1])
def test_ddim_matches_replay_of_eq_12(eta, steps):
    T, n = 100, 64
    out = samplers.ddim(gaussian_model(T), n, steps=steps, eta=eta, generator=_gen(3))
    ref, _ = replay(T, steps, n, 3, "ddim", eta=eta)
    torch.testing.assert_close(out.x0.double(), ref, rtol=1e-4, atol=1e-4)


def test_ddim_eta_zero_is_deterministic_given_x_T():
    """η = 0: the same seed gives identical samples, the only draw is x_T (the generator advances by exactly
    one [n, D] normal draw), and a different seed gives different samples."""
    T, n = 100, 32
    model = gaussian_model(T)
    g1 = _gen(4)
    a = samplers.ddim(model, n, steps=25, eta=0.0, generator=g1)
    b = samplers.ddim(model, n, steps=25, eta=0.0, generator=_gen(4))
    assert torch.equal(a.x0, b.x0)
    g2 = _gen(4)
    torch.randn(n, D, generator=g2)
    assert torch.equal(g1.get_state(), g2.get_state())
    c = samplers.ddim(model, n, steps=25, eta=0.0, generator=_gen(5))
    assert (c.x0 - a.x0).abs().max() > 1e-2


# ------------------------------------------------------------------------------------------ the data distribution


def _check_law(x: torch.Tensor, mean: np.ndarray | torch.Tensor, var: float, what: str):
    n = x.shape[0]
    m, v = _moments(x)
    se_m = math.sqrt(var / n)
    se_v = var * math.sqrt(2 / (D * (n - 1)))
    mean = torch.as_tensor(mean, dtype=F64)
    assert ((m - mean).abs() < Z * se_m).all(), (what, m, mean, se_m)
    assert abs(v - var) < Z * se_v, (what, v, var, se_v)


def test_ancestral_full_T_reproduces_gaussian_data():
    """Requirement 10: T = 1000 ancestral sampling with the optimal predictor gives mean μ and variance s².
    (Its exact output law — variance 0.9895 s², mean μ to 1e-4 — is within 1 SE of (μ, s²) at n = 4000;
    at T = 100 it would be 0.91 s², ≈ 8 SE off: the fixed β̃_t is smaller than the true reverse variance.)"""
    T, n = 1000, 4000
    x = samplers.ancestral(gaussian_model(T), n, steps=T, generator=_gen(10)).x0
    assert x.shape == (n, D) and torch.isfinite(x).all()
    _check_law(x, MU, S**2, "ancestral vs data")
    m, V = chain_law(T, T, "ancestral")
    _check_law(x, m, V, "ancestral vs its exact law")


def test_ddim_full_T_reproduces_gaussian_data():
    """Deterministic DDIM on all T = 1000 steps: mean μ and variance s² within MC error (exact law: variance
    0.996 s², mean shifted by ≈ 0.5% of μ from starting at x_T ~ N(0, I) instead of N(α_T μ, ·))."""
    T, n = 1000, 4000
    x = samplers.ddim(gaussian_model(T), n, steps=T, eta=0.0, generator=_gen(11)).x0
    _check_law(x, MU, S**2, "ddim-1000 vs data")
    m, V = chain_law(T, T, "ddim")
    _check_law(x, m, V, "ddim-1000 vs its exact law")


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_50_steps_matches_its_exact_law(eta):
    """DDIM on 50 of T = 1000 steps. Its output law is computed exactly here; deterministic DDIM (η = 0) with an
    exact x̂_0 *contracts* Gaussian data at every step — the step factor (α_s α_t s² + σ_s σ_t)/v_t is below the
    ratio √(v_s/v_t) of the true marginal std's, by Cauchy–Schwarz — so at 50 steps its variance is ≈ 8% below s²
    (≈ 8 SE at n = 4000; ≈ 16% for η = 1): a discretization property of DDIM, not a bug. The mean is still μ
    within MC error."""
    T, n = 1000, 4000
    x = samplers.ddim(gaussian_model(T), n, steps=50, eta=eta, generator=_gen(12)).x0
    m, V = chain_law(T, 50, "ddim", eta=eta)
    _check_law(x, m, V, f"ddim-50 η={eta} vs its exact law")
    mean, _ = _moments(x)
    assert ((mean - MU).abs() < Z * S / math.sqrt(n)).all()
    if eta == 0.0:
        assert V < S**2 * 0.95  # the documented contraction, predicted by the exact law


# ------------------------------------------------------------------------------------------ bookkeeping


@pytest.mark.parametrize("name", ["ancestral", "ddim"])
@pytest.mark.parametrize("steps", [1, 7, 100])
def test_trajectory_nfe_and_timesteps(name, steps):
    T, n = 100, 5
    model = gaussian_model(T)
    fn = getattr(samplers, name)
    out = fn(model, n, steps=steps, generator=_gen(20), keep_trajectory=True)
    assert out.trajectory is not None and out.trajectory.shape == (steps + 1, n, D)
    assert torch.equal(out.trajectory[0], torch.randn(n, D, generator=_gen(20)))  # x_T first
    assert torch.equal(out.trajectory[-1], out.x0)
    assert out.nfe == steps == model.net.calls
    assert out.timesteps == ref_timesteps(T, steps)[::-1]
    plain = fn(model, n, steps=steps, generator=_gen(20))
    assert plain.trajectory is None and torch.equal(plain.x0, out.x0)


def test_ddim_rejects_negative_eta():
    with pytest.raises(ValueError):
        samplers.ddim(gaussian_model(100), 2, steps=5, eta=-0.1)


def test_model_sample_dispatches_to_samplers():
    model = gaussian_model(100)
    for name, eta in [("ancestral", 0.0), ("ddim", 0.0), ("ddim", 0.7)]:
        kw = {"eta": eta} if name == "ddim" else {}
        s = model.sample(16, _gen(30), sampler=name, steps=10, **kw)
        ref = getattr(samplers, name)(model, 16, steps=10, generator=_gen(30), **kw).x0
        assert s.shape == (16, D) and torch.equal(s, ref)
    full = model.sample(4, _gen(31))
    assert torch.equal(full, samplers.ancestral(model, 4, steps=100, generator=_gen(31)).x0)
    with pytest.raises(KeyError):
        model.sample(2, sampler="euler")
    # options of one sampler are not silently ignored by another
    with pytest.raises(ValueError, match="'ancestral' sampler of a DDPM takes guidance_scale; got eta"):
        model.sample(2, sampler="ancestral", eta=0.5)


def test_sample_in_batches_continues_one_generator():
    model = gaussian_model(100)
    whole = samplers.ddim(model, 10, steps=5, generator=_gen(40)).x0
    parts = draw_in_batches(model, 10, "ddim", steps=5, generator=_gen(40), batch_size=4)
    assert parts.x0.shape == (10, D) and parts.nfe == 5
    # batches draw x_T separately, so only the first batch equals the first rows of one big draw
    torch.testing.assert_close(parts.x0[:4], samplers.ddim(model, 4, steps=5, generator=_gen(40)).x0)
    assert not torch.equal(parts.x0, whole)
    again = draw_in_batches(model, 10, "ddim", steps=5, generator=_gen(40), batch_size=4)
    assert torch.equal(parts.x0, again.x0)
