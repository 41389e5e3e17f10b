"""Tests for the Langevin samplers: Langevin dynamics, annealed Langevin dynamics, predictor–corrector.

The targets have closed-form scores: a 2-D Gaussian mixture (written out below), a 1-D mixture noised at every σ
(Σ_k w_k N(μ_k, s_k² + σ²)), and Gaussian data N(μ, s²I) for the diffusion model, whose Bayes-optimal ε̂ at any
noise level is exact (the network reads its λ back from c_noise through a reference logSNR table written here).
Tolerances are Z standard errors estimated from the draws; each chain's final state is one independent draw.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from _gaussian_data import F64, MU, SPEC, D, S, Z, gen, ref_linear_alphas_cumprod
from genmodels.diffusion import pc as PC
from genmodels.diffusion import samplers
from genmodels.diffusion.ddpm import DDPM, DDPMConfig
from genmodels.diffusion.schedules import ScheduleConfig
from genmodels.score import langevin as LG
from genmodels.score.losses import geometric_sigmas

# ------------------------------------------------------------------------------------------ a 2-D Gaussian mixture


class Mixture2D:
    """p(x) = Σ_k w_k N(x; μ_k, Σ_k) in 2-D: log-density, score and exact draws in closed form."""

    w = torch.tensor([0.5, 0.3, 0.2], dtype=F64)
    mu = torch.tensor([[-1.5, 0.0], [1.5, 0.0], [0.0, 2.0]], dtype=F64)
    cov = torch.tensor([[[0.5, 0.0], [0.0, 0.3]], [[0.3, 0.1], [0.1, 0.4]], [[0.4, -0.1], [-0.1, 0.25]]], dtype=F64)

    def __init__(self):
        self.prec = torch.linalg.inv(self.cov)  # Σ_k⁻¹
        self.logdet = torch.logdet(self.cov)
        self.chol = torch.linalg.cholesky(self.cov)

    def _parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = x[:, None, :] - self.mu  # [n, K, 2]
        pd = (self.prec[None] * d[:, :, None, :]).sum(-1)  # Σ_k⁻¹ (x − μ_k)
        log_joint = torch.log(self.w) - 0.5 * (d * pd).sum(-1) - 0.5 * self.logdet - math.log(2 * math.pi)
        return log_joint, pd  # log w_k N_k(x) [n, K]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(self._parts(x)[0], 1)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self._parts(x)[0], 1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """∇ log p = Σ_k r_k(x) (−Σ_k⁻¹ (x − μ_k))."""
        log_joint, pd = self._parts(x)
        return -(torch.softmax(log_joint, 1)[:, :, None] * pd).sum(1)

    def sample(self, n: int, g: torch.Generator) -> torch.Tensor:
        k = torch.multinomial(self.w, n, replacement=True, generator=g)
        return self.mu[k] + (self.chol[k] @ torch.randn(n, 2, 1, generator=g, dtype=F64))[..., 0]

    def mean(self) -> torch.Tensor:
        return (self.w[:, None] * self.mu).sum(0)

    def covariance(self) -> torch.Tensor:
        m = self.mean()
        second = (self.w[:, None, None] * (self.cov + self.mu[:, :, None] * self.mu[:, None, :])).sum(0)
        return second - m[:, None] * m[None, :]

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        return ((x[:, None, :] - self.mu) ** 2).sum(-1).argmin(1)


def test_mixture_score_is_the_gradient_of_its_log_density():
    mix = Mixture2D()
    x = torch.randn(10, 2, generator=gen(0), dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(mix.log_prob(x).sum(), x)
    torch.testing.assert_close(mix.score(x.detach()), g)


def test_langevin_reproduces_a_gaussian_mixture():
    """4000 chains started at the lightest component's mean (a bad start), 1000 steps of τ = 0.02 (20 time units,
    several mixing times): mean, covariance, mixture weights (mean responsibilities, exactly w_k under p) and the
    fractions nearest to each component (against exact draws) all within Z·SE. The O(τ) bias is ≤ 1.5 SE here."""
    mix, n = Mixture2D(), 4000
    x0 = mix.mu[2].expand(n, 2).clone()
    out = LG.langevin_dynamics(mix.score, x0, step_size=0.02, n_steps=1000, generator=gen(1))
    x = out.x
    assert out.nfe == 1000 and out.trajectory is None
    m = x.mean(0)
    assert ((m - mix.mean()).abs() < Z * x.std(0) / math.sqrt(n)).all(), m
    c = x - m
    prod = c[:, :, None] * c[:, None, :]  # [n, 2, 2]
    assert ((prod.mean(0) - mix.covariance()).abs() < Z * prod.std(0) / math.sqrt(n)).all(), prod.mean(0)
    r = mix.responsibilities(x)
    assert ((r.mean(0) - mix.w).abs() < Z * r.std(0) / math.sqrt(n)).all(), r.mean(0)
    ref = mix.nearest(mix.sample(200_000, gen(2)))
    p_ref = torch.bincount(ref, minlength=3).double() / len(ref)
    p = torch.bincount(mix.nearest(x), minlength=3).double() / n
    se = (p_ref * (1 - p_ref) * (1 / n + 1 / len(ref))).sqrt()
    assert ((p - p_ref).abs() < Z * se).all(), (p, p_ref)
    assert ((p_ref - mix.w).abs() < 0.03).all()  # nearest-component fractions are close to the weights


def test_langevin_update_constants_give_the_exact_discrete_stationary_variance():
    """For p = N(0, s²) the chain x ← x(1 − τ/s²) + √(2τ) z has stationary variance s²/(1 − τ/(2s²)); at τ = s²/2
    that is 4s²/3, which a wrong drift or noise scale would miss by far more than Z·SE."""
    s2, n = 0.7, 20000
    x0 = torch.zeros(n, 1, dtype=F64)
    x = LG.langevin_dynamics(lambda y: -y / s2, x0, step_size=s2 / 2, n_steps=60, generator=gen(3)).x
    want = s2 / (1 - 0.25)
    v = x.pow(2)
    assert abs(v.mean().item() - want) < Z * v.std().item() / math.sqrt(n)
    assert abs(x.mean().item()) < Z * math.sqrt(want / n)


def test_langevin_trajectory_progress_and_seeding():
    calls = []

    def progress(it):
        calls.append(1)
        return it

    x0 = torch.zeros(5, 2, dtype=F64)
    a = LG.langevin_dynamics(lambda y: -y, x0, step_size=0.1, n_steps=7, generator=gen(4), progress=progress,
                             keep_trajectory=True, trajectory_stride=3)
    assert calls == [1]
    assert a.trajectory.shape == (4, 5, 2)  # x_0, x_3, x_6, x_7
    torch.testing.assert_close(a.trajectory[-1], a.x)
    torch.testing.assert_close(a.trajectory[0], x0)
    b = LG.langevin_dynamics(lambda y: -y, x0, step_size=0.1, n_steps=7, generator=gen(4))
    assert torch.equal(a.x, b.x)
    with pytest.raises(ValueError, match="step_size"):
        LG.langevin_dynamics(lambda y: -y, x0, step_size=0.0, n_steps=1)


# ------------------------------------------------------------------------------------------ annealed Langevin

W1D = torch.tensor([0.7, 0.3], dtype=F64)
MU1D = torch.tensor([-4.0, 4.0], dtype=F64)
S1D = 0.5


def noised_mixture_score(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """∇ log Σ_k w_k N(x; μ_k, s² + σ²) for x ``[n, 1]``, σ ``[n]``."""
    var = S1D**2 + sigma[:, None] ** 2  # [n, 1]
    d = x - MU1D  # [n, 2]
    log_joint = torch.log(W1D) - 0.5 * d**2 / var - 0.5 * torch.log(var)
    return (torch.softmax(log_joint, 1) * (-d / var)).sum(1, keepdim=True)


def test_annealed_langevin_reaches_the_mixture_weights_where_plain_langevin_is_stuck():
    """Modes at ±4 (std 0.5, weights 0.7/0.3), chains started uniform on [−8, 8]: annealed Langevin over 30 levels
    σ = 10 … 0.1 (100 steps each) puts 0.7 of the mass on the left mode within Z·SE, with the noised law's per-mode
    mean and variance; plain Langevin at σ_L with as many steps keeps the start's split (≈ ½), > 20 SE off.

    Annealing is exact only in the limit: chains stop crossing between the modes at the level σ* where the barrier
    appears, and q_σ*'s tails across it are assigned to the wrong mode, a deficit ≈ (w_1 − w_2) Φ(−4/√(s² + σ*²))
    of the heavier mode. With 15 levels × 100 steps it was ≈ 1.5% (≈ 2 SE here); with 30 × 100, ≈ 0.1% (measured
    over 8 seeds), well inside the tolerance."""
    n, sigmas, eps = 4000, geometric_sigmas(10.0, 0.1, 30), 5e-3
    x0 = 16 * torch.rand(n, 1, generator=gen(5), dtype=F64) - 8
    out = LG.annealed_langevin_dynamics(noised_mixture_score, x0, sigmas, eps=eps, n_steps_each=100,
                                        generator=gen(6))
    assert out.nfe == 3000
    x = out.x[:, 0]
    left = x < 0
    w = W1D[0].item()
    p, se = left.double().mean().item(), math.sqrt(w * (1 - w) / n)
    assert abs(p - w) < Z * se, p
    var_L = S1D**2 + 0.1**2
    for mask, mu in [(left, -4.0), (~left, 4.0)]:
        xm = x[mask]
        k = len(xm)
        assert abs(xm.mean().item() - mu) < Z * math.sqrt(var_L / k)
        v = (xm - mu) ** 2
        assert abs(v.mean().item() - var_L) < Z * v.std().item() / math.sqrt(k)
    # plain Langevin at the smallest σ, same number of steps and the last level's step τ = ε/2, same start
    sig_L = torch.full((n,), 0.1, dtype=F64)
    plain = LG.langevin_dynamics(lambda y: noised_mixture_score(y, sig_L), x0, step_size=eps / 2, n_steps=3000,
                                 generator=gen(6)).x[:, 0]
    p_plain = (plain < 0).double().mean().item()
    assert abs(p_plain - 0.5) < 0.05 and abs(p_plain - w) > 20 * se


def test_annealed_langevin_step_sizes_follow_ncsn_algorithm_1():
    """With a constant score c, x_final = x_0 + Σ_i T (α_i/2) c + Σ √α_i z, α_i = ε σ_i²/σ_L²: replaying the
    generator gives the exact result; the final denoising step adds σ_L² s(x, σ_L)."""
    sigmas, eps, T, n = torch.tensor([4.0, 2.0, 1.0, 0.5], dtype=F64), 0.01, 3, 6
    seen = []

    def score(x, sigma):
        seen.append(sigma[0].item())
        return torch.full_like(x, 0.5) + sigma[:, None]

    x0 = torch.randn(n, 2, generator=gen(7), dtype=F64)
    out = LG.annealed_langevin_dynamics(score, x0, sigmas, eps=eps, n_steps_each=T, generator=gen(8))
    g = gen(8)
    want = x0.clone()
    for sig in sigmas.tolist():
        alpha = eps * sig**2 / 0.5**2
        for _ in range(T):
            want = want + 0.5 * alpha * (0.5 + sig) + math.sqrt(alpha) * torch.randn(n, 2, generator=g, dtype=F64)
    torch.testing.assert_close(out.x, want)
    assert seen == [s for s in sigmas.tolist() for _ in range(T)] and out.nfe == 12
    den = LG.annealed_langevin_dynamics(score, x0, sigmas, eps=eps, n_steps_each=T, generator=gen(8),
                                        final_denoise=True, keep_trajectory=True)
    torch.testing.assert_close(den.x, want + 0.5**2 * (0.5 + 0.5))
    assert den.nfe == 13 and den.trajectory.shape == (14, n, 2)
    with pytest.raises(ValueError, match="non-increasing"):
        LG.annealed_langevin_dynamics(score, x0, sigmas.flip(0), eps=eps, n_steps_each=T)


# ------------------------------------------------------------------------------------------ predictor–corrector

T_DDPM = 100


def ref_logsnr(T: int) -> np.ndarray:
    ac = ref_linear_alphas_cumprod(T)
    return np.log(ac / (1 - ac))


class OracleEps(nn.Module):
    """The Bayes-optimal ε̂ for data N(μ, s²I) at the fractional step DDPM encodes in c_noise."""

    def __init__(self, T: int):
        super().__init__()
        self.T, self.lam, self.calls = T, ref_logsnr(T), 0

    def forward(self, x_t: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        i = c_noise.double().numpy() * self.T / 1000
        lam = torch.from_numpy(np.interp(i, np.arange(self.T), self.lam))[:, None]
        abar = torch.sigmoid(lam)
        a, sig = abar.sqrt(), (1 - abar).sqrt()
        x = x_t.double()
        x0 = MU + a * S**2 * (x - a * MU) / (abar * S**2 + 1 - abar)  # E[x_0 | x_t]
        return ((x - a * x0) / sig).to(x_t.dtype)


def oracle_ddpm(T: int = T_DDPM) -> DDPM:
    model = DDPM(DDPMConfig(schedule=ScheduleConfig(T=T), clip_x0=False), SPEC)
    model.net = OracleEps(T)
    return model


def _check_law(x: torch.Tensor, mean: torch.Tensor, var: float, what: str) -> None:
    """Per-dimension means and the pooled variance of ``x`` [n, D] against N(mean, var I), within Z·SE."""
    n = x.shape[0]
    x = x.double()
    m = x.mean(0)
    assert ((m - mean).abs() < Z * math.sqrt(var / n)).all(), (what, m, mean)
    v = x.var(0).mean().item()
    assert abs(v - var) < Z * var * math.sqrt(2 / (D * (n - 1))), (what, v, var)


def test_diffusion_score_is_minus_eps_over_sigma():
    model = oracle_ddpm()
    lam = torch.full((5,), 0.3, dtype=F64)
    x = torch.randn(5, D, generator=gen(9))
    a2 = torch.sigmoid(lam[:, None])
    want = -(x.double() - a2.sqrt() * MU) / (a2 * S**2 + 1 - a2)  # ∇ log N(x; αμ, (α²s² + σ²) I)
    torch.testing.assert_close(PC.diffusion_score(model, x, lam).double(), want, rtol=1e-4, atol=1e-4)


def test_snr_step_size_rule():
    g = gen(10)
    s, z = torch.randn(6, 3, generator=g, dtype=F64) * 3, torch.randn(6, 3, generator=g, dtype=F64)
    ex = PC.snr_step_size(s, z, 0.2, alpha=0.9, norm="example")
    torch.testing.assert_close(ex, 2 * 0.9 * (0.2 * z.norm(dim=1) / s.norm(dim=1)) ** 2)
    ba = PC.snr_step_size(s, z, 0.2, alpha=0.9)
    torch.testing.assert_close(ba, torch.full((6,), 2 * 0.9 * (0.2 * z.norm(dim=1).mean() / s.norm(dim=1).mean()) ** 2,
                                              dtype=F64))
    step = ba[:, None]
    ratio = (step * s).norm(dim=1).mean() / ((2 * step).sqrt() * z).norm(dim=1).mean()
    assert ratio.item() == pytest.approx(math.sqrt(0.9) * 0.2)  # drift : noise = √α r
    with pytest.raises(ValueError, match="norm"):
        PC.snr_step_size(s, z, 0.2, norm="global")


def test_corrector_alone_converges_to_the_noised_law():
    """600 corrector steps (r = 0.1, stationary variance inflation 1/(1 − r²) ≈ 1%) at a fixed λ from a wrong start
    (mean off by 1, twice the std) reach q_λ = N(αμ, (α²s² + σ²) I)."""
    model, n, lam = oracle_ddpm(), 4000, 0.5
    a2 = 1 / (1 + math.exp(-lam))
    mean, var = math.sqrt(a2) * MU, a2 * S**2 + 1 - a2
    x0 = (mean + 1.0 + 2 * math.sqrt(var) * torch.randn(n, D, generator=gen(11), dtype=F64)).float()
    x = PC.langevin_corrector(model, x0, lam, n_steps=600, snr=0.1, generator=gen(12))
    _check_law(x, mean, var, "corrector")
    assert model.net.calls == 600


def test_predictor_corrector_reproduces_gaussian_data():
    """PC (ancestral predictor on all 100 training levels, M = 2 corrector steps, r = 0.16) with the oracle network
    samples the data law within Z·SE and counts N(M + 1) network evaluations. The predictor alone (M = 0) falls
    short of the variance by ≈ 10% (> Z·SE): the ancestral step uses x̂_0 = E[x_0|x_t] and so leaves out
    Var[x_0|x_t] (Bao et al. 2022); the corrector restores it."""
    model = oracle_ddpm()
    out = PC.predictor_corrector(model, 4000, steps=T_DDPM, corrector_steps=2, generator=gen(13))
    assert out.nfe == 300 == model.net.calls
    _check_law(out.x0, MU, S**2, "pc")
    pred_only = PC.predictor_corrector(oracle_ddpm(), 4000, steps=T_DDPM, corrector_steps=0, generator=gen(13)).x0
    v = pred_only.double().var(0).mean().item()
    assert S**2 - v > Z * S**2 * math.sqrt(2 / (D * 3999)), v


def test_predictor_alone_is_the_ancestral_sampler():
    """M = 0 on every training step ('time' spacing, N = T) is DDPM's ancestral sampler with β̃ (same draws)."""
    pc = PC.predictor_corrector(oracle_ddpm(), 32, steps=T_DDPM, corrector_steps=0, generator=gen(15))
    anc = samplers.ancestral(oracle_ddpm(), 32, steps=T_DDPM, generator=gen(15))
    assert pc.nfe == anc.nfe == T_DDPM
    torch.testing.assert_close(pc.x0, anc.x0, rtol=1e-4, atol=1e-4)


def test_corrector_uses_the_vp_alpha(monkeypatch):
    """The corrector's α_i is 1 − β_i = ᾱ(λ_i)/ᾱ(λ_{i+1}) on the sampler's grid, and 1 at the last level."""
    seen = []
    rule = PC.snr_step_size

    def recording(score, z, snr, alpha=1.0, norm="batch"):
        seen.append(float(alpha))
        return rule(score, z, snr, alpha, norm)

    monkeypatch.setattr(PC, "snr_step_size", recording)
    model = oracle_ddpm()
    PC.predictor_corrector(model, 8, steps=5, corrector_steps=1, generator=gen(19))
    abar = torch.sigmoid(samplers.logsnr_grid(model, 5, "time"))
    want = [*(abar[:-1] / abar[1:]).tolist(), 1.0]
    assert seen == pytest.approx(want) and all(a < 1 for a in want[:-1])


def test_corrector_only_sampling_and_trajectory():
    calls = []

    def progress(it):
        calls.append(1)
        return it

    model = oracle_ddpm()
    out = PC.predictor_corrector(model, 8, steps=6, corrector_steps=2, predictor="none", generator=gen(16),
                                 keep_trajectory=True, progress=progress, norm="example")
    assert out.nfe == 6 * 2 + 1 == model.net.calls
    assert out.trajectory.shape == (7, 8, D) and torch.isfinite(out.x0).all() and calls == [1]
    torch.testing.assert_close(out.trajectory[-1], out.x0)
    with pytest.raises(ValueError, match="predictor"):
        PC.predictor_corrector(model, 8, steps=6, predictor="euler")
    with pytest.raises(ValueError, match="corrector_steps"):
        PC.predictor_corrector(model, 8, steps=6, corrector_steps=-1)


def test_predictor_corrector_runs_on_a_vdm():
    """The sampler needs only the diffusion interface: a tiny VDM gives finite samples and the NFE, also untrained
    with its zero-initialized output (score 0: the step-size rule must give no step, not ε = ∞)."""
    from genmodels.diffusion.schedules import GammaConfig
    from genmodels.diffusion.vdm import VDM, VDMConfig
    from genmodels.nets.mlp import MLPConfig

    torch.manual_seed(0)
    vdm = VDM(VDMConfig(schedule=GammaConfig(kind="fixed"), sample_steps=20,
                        mlp=MLPConfig(hidden=16, depth=1, emb_dim=8)), SPEC)
    out = PC.predictor_corrector(vdm, 16, steps=5, corrector_steps=1, generator=gen(17))
    assert out.x0.shape == (16, D) and torch.isfinite(out.x0).all() and out.nfe == 10
    with torch.no_grad():
        for p in vdm.net.parameters():
            p.normal_(0.0, 0.3, generator=gen(18))
    out = PC.predictor_corrector(vdm, 16, steps=5, corrector_steps=1, generator=gen(17))
    assert torch.isfinite(out.x0).all() and out.x0.abs().max() > 0
    assert (PC.snr_step_size(torch.zeros(3, D), torch.ones(3, D), 0.16) == 0).all()
