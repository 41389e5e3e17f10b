"""Tests for genmodels.diffusion.gaussian against closed forms derived here and Monte Carlo estimates.

Every reference is computed without the code under test: ᾱ from the schedule formulas (numpy), the posterior
q(x_{t−1}|x_t,x_0) by completing the square in the product of two Gaussians, KLs and likelihoods by Monte
Carlo or with scipy's normal CDF. Monte Carlo tolerances are 5 standard errors of the estimate, with the
standard error itself estimated from the same draws (or known exactly for Gaussian moments).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from _gaussian_data import F64, Z
from _gaussian_data import gen as _gen
from genmodels import distributions as D
from genmodels.diffusion import gaussian as G
from genmodels.diffusion.schedules import DiscreteSchedule, ScheduleConfig


def ref_alphas_cumprod(kind: str, T: int) -> np.ndarray:
    """ᾱ_1..ᾱ_T from the schedule definitions, independently of genmodels."""
    if kind == "linear":
        betas = np.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T)
    else:
        t = np.arange(T + 1) / T
        f = np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2
        betas = np.minimum(1 - f[1:] / f[:-1], 0.999)
    return np.cumprod(1 - betas)


def _sched(kind: str, T: int) -> DiscreteSchedule:
    return DiscreteSchedule.from_config(ScheduleConfig(kind=kind, T=T))


# ------------------------------------------------------------------------------------------ α, σ


def test_alpha_sigma_variance_preserving():
    lam = torch.linspace(-12, 12, 25, dtype=F64)
    a, s = G.alpha_sigma(lam)
    torch.testing.assert_close(a**2 + s**2, torch.ones_like(lam), rtol=0, atol=1e-15)
    torch.testing.assert_close(torch.log(a**2 / s**2), lam, rtol=0, atol=1e-12)
    assert (a > 0).all() and (s > 0).all()


# ------------------------------------------------------------------------------------------ q(x_t | x_0)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_q_sample_moments_match_forward_marginal(kind):
    """Requirement 1: over N draws, mean → √ᾱ_t x_0 and variance → 1 − ᾱ_t (DDPM Eq. 4)."""
    T, N = 1000, 20000
    sched = _sched(kind, T)
    ac = ref_alphas_cumprod(kind, T)
    x0 = torch.tensor([0.9, -0.4, 0.0, 1.7], dtype=F64)
    g = _gen(1)
    for i in [0, 9, 249, 499, 749, 999]:
        eps = torch.randn(N, 4, generator=g, dtype=F64)
        xt = G.q_sample(x0.expand(N, 4), sched.logsnr[i].expand(N), eps)
        assert xt.shape == (N, 4) and xt.dtype == F64
        mean, var = math.sqrt(ac[i]) * x0, 1 - ac[i]
        se_mean = math.sqrt(var / N)
        se_var = var * math.sqrt(2 / (N - 1))
        assert ((xt.mean(0) - mean).abs() < Z * se_mean).all(), (i, xt.mean(0), mean)
        assert ((xt.var(0) - var).abs() < Z * se_var).all(), (i, xt.var(0), var)
        # and the map itself is x_t = √ᾱ x_0 + √(1−ᾱ) ε draw by draw
        torch.testing.assert_close(xt, math.sqrt(ac[i]) * x0 + math.sqrt(1 - ac[i]) * eps, rtol=1e-10, atol=1e-12)


def test_q_sample_matches_simulated_markov_chain():
    """The marginal q(x_t|x_0) agrees with running x_t = √(1−β_t) x_{t−1} + √β_t n (DDPM Eq. 2) step by step."""
    T, N = 100, 20000
    sched = _sched("linear", T)
    betas = np.linspace(1e-3, 0.2, T)
    x0 = torch.tensor([1.0, -0.5], dtype=F64)
    g = _gen(2)
    x = x0.expand(N, 2).clone()
    checks = {0, 4, 19, 59, 99}
    for i in range(T):
        x = math.sqrt(1 - betas[i]) * x + math.sqrt(betas[i]) * torch.randn(N, 2, generator=g, dtype=F64)
        if i in checks:
            a, s = G.alpha_sigma(sched.logsnr[i])
            mean, var = a * x0, s**2
            assert ((x.mean(0) - mean).abs() < Z * torch.sqrt(var / N)).all(), i
            assert ((x.var(0) - var).abs() < Z * var * math.sqrt(2 / (N - 1))).all(), i


# ------------------------------------------------------------------------------------------ q(x_{t−1} | x_t, x_0)


def product_of_gaussians_posterior(x0, xt, ac_prev: float, ac: float, ac_ratio_beta: float):
    """Mean and variance of N(y; √ᾱ_s x_0, 1−ᾱ_s) · N(x_t; √a y, b) as a density in y, by completing the square.

    −2 log(...) = (y − m1)²/v1 + (x_t − √a y)²/b + const; precision P = 1/v1 + a/b, mean = (m1/v1 + √a x_t/b)/P.
    ``ac_ratio_beta`` is b = 1 − a with a = ᾱ_t/ᾱ_s.
    """
    m1, v1 = math.sqrt(ac_prev) * x0, 1 - ac_prev
    b = ac_ratio_beta
    a = 1 - b
    P = 1 / v1 + a / b
    return (m1 / v1 + math.sqrt(a) * xt / b) / P, 1 / P


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_q_posterior_matches_product_of_gaussians_and_ddpm_eq7(kind):
    """Requirement 2, for t = 1 (i = 0, point mass at x_0) and several t ≥ 2."""
    T, B = 1000, 6
    sched = _sched(kind, T)
    ac = ref_alphas_cumprod(kind, T)
    g = _gen(3)
    x0 = torch.randn(B, 3, generator=g, dtype=F64)
    xt = torch.randn(B, 3, generator=g, dtype=F64) * 1.5
    for i in [0, 1, 2, 10, 100, 500, 998, 999]:
        mean, var = G.q_posterior(x0, xt, sched.logsnr_prev[i].expand(B), sched.logsnr[i].expand(B))
        assert mean.shape == (B, 3) and var.shape == (B,) and var.dtype == F64
        if i == 0:  # ᾱ_0 = 1: q(x_0 | x_1, x_0) is a point mass at x_0
            torch.testing.assert_close(mean, x0, rtol=0, atol=1e-12)
            assert (var == 0).all()
            continue
        ac_t, ac_s = ac[i], ac[i - 1]
        beta = 1 - ac_t / ac_s
        ref_mean, ref_var = product_of_gaussians_posterior(x0, xt, ac_s, ac_t, beta)
        torch.testing.assert_close(mean, ref_mean, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(var, torch.full((B,), ref_var, dtype=F64), rtol=1e-9, atol=0)
        # DDPM Eq. 6–7: μ̃ = √ᾱ_{t−1} β_t/(1−ᾱ_t) x_0 + √α_t (1−ᾱ_{t−1})/(1−ᾱ_t) x_t,  β̃_t = β_t (1−ᾱ_{t−1})/(1−ᾱ_t)
        eq7 = math.sqrt(ac_s) * beta / (1 - ac_t) * x0 + math.sqrt(1 - beta) * (1 - ac_s) / (1 - ac_t) * xt
        beta_tilde = beta * (1 - ac_s) / (1 - ac_t)
        torch.testing.assert_close(mean, eq7, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(var, torch.full((B,), beta_tilde, dtype=F64), rtol=1e-9, atol=0)


def test_q_posterior_between_non_adjacent_steps():
    """For s < t − 1 (a respaced/DDIM step) the posterior is the same product with
    q(x_t|x_s) = N(√(ᾱ_t/ᾱ_s) x_s, 1−ᾱ_t/ᾱ_s)."""
    T = 1000
    sched = _sched("linear", T)
    ac = ref_alphas_cumprod("linear", T)
    g = _gen(4)
    x0 = torch.randn(3, 2, generator=g, dtype=F64)
    xt = torch.randn(3, 2, generator=g, dtype=F64)
    for s, t in [(0, 20), (100, 300), (500, 999), (3, 4)]:
        mean, var = G.q_posterior(x0, xt, sched.logsnr[s].expand(3), sched.logsnr[t].expand(3))
        ref_mean, ref_var = product_of_gaussians_posterior(x0, xt, ac[s], ac[t], 1 - ac[t] / ac[s])
        torch.testing.assert_close(mean, ref_mean, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(var, torch.full((3,), ref_var, dtype=F64), rtol=1e-9, atol=0)


def test_q_posterior_at_zero_terminal_snr():
    """With ᾱ_t = 0, x_t carries no information about x_0 and q(x_s | x_t, x_0) = q(x_s | x_0) = N(α_s x_0, σ_s²)."""
    x0 = torch.tensor([[0.5, -1.0]], dtype=F64)
    xt = torch.tensor([[0.3, 2.0]], dtype=F64)
    ac_s = 0.2
    lam_s = torch.tensor([math.log(ac_s / (1 - ac_s))], dtype=F64)
    mean, var = G.q_posterior(x0, xt, lam_s, torch.tensor([-math.inf], dtype=F64))
    torch.testing.assert_close(mean, math.sqrt(ac_s) * x0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(var, torch.tensor([1 - ac_s], dtype=F64), rtol=1e-12, atol=0)


def test_q_posterior_monte_carlo():
    """Sampling x_{t−1} ~ q(·|x_0), x_t ~ q(·|x_{t−1}) and keeping draws with x_t in a thin slab gives μ̃, β̃."""
    ac_s, ac_t = 0.6, 0.5
    sched_lam = lambda a: torch.tensor([math.log(a / (1 - a))], dtype=F64)  # noqa: E731
    x0 = torch.tensor([[0.7]], dtype=F64)
    N = 400_000
    g = _gen(5)
    y = math.sqrt(ac_s) * 0.7 + math.sqrt(1 - ac_s) * torch.randn(N, generator=g, dtype=F64)
    a = ac_t / ac_s
    xt = math.sqrt(a) * y + math.sqrt(1 - a) * torch.randn(N, generator=g, dtype=F64)
    target_xt, h = 0.3, 0.01
    sel = y[(xt - target_xt).abs() < h]
    mean, var = G.q_posterior(x0, torch.tensor([[target_xt]], dtype=F64), sched_lam(ac_s), sched_lam(ac_t))
    n = len(sel)
    assert n > 1000
    # the slab of half-width h adds a bias of order h² (far below the MC error here)
    assert abs(sel.mean().item() - mean.item()) < Z * math.sqrt(var.item() / n)
    assert abs(sel.var().item() - var.item()) < Z * var.item() * math.sqrt(2 / (n - 1))


# ------------------------------------------------------------------------------------------ KL


@pytest.mark.parametrize("m1,v1,m2,v2", [
    (0.0, 1.0, 0.0, 2.0),
    (0.5, 0.3, -0.2, 1.0),
    (1.0, 2.0, 0.0, 0.5),
    (-3.0, 0.01, -2.9, 0.02),
])
def test_normal_kl_against_monte_carlo(m1, v1, m2, v2):
    """Requirement 3: KL(q‖p) = E_q[log q − log p], estimated from N draws of q."""
    N = 200_000
    x = m1 + math.sqrt(v1) * torch.randn(N, generator=_gen(6), dtype=F64)
    logq = -0.5 * (math.log(2 * math.pi * v1) + (x - m1) ** 2 / v1)
    logp = -0.5 * (math.log(2 * math.pi * v2) + (x - m2) ** 2 / v2)
    d = logq - logp
    mc, se = d.mean().item(), d.std().item() / math.sqrt(N)
    kl = D.normal_kl(torch.tensor(m1, dtype=F64), torch.tensor(math.log(v1), dtype=F64),
                     torch.tensor(m2, dtype=F64), torch.tensor(math.log(v2), dtype=F64)).item()
    assert kl >= 0
    assert abs(kl - mc) < Z * se + 1e-12, (kl, mc, se)


def test_normal_kl_zero_for_equal_and_broadcasts():
    m = torch.randn(4, 3, generator=_gen(7), dtype=F64)
    lv = torch.randn(4, 3, generator=_gen(8), dtype=F64)
    torch.testing.assert_close(D.normal_kl(m, lv, m, lv), torch.zeros(4, 3, dtype=F64), rtol=0, atol=1e-15)
    # broadcasting a [B, 1] log-variance against [B, D] means, and positivity away from equality
    kl = D.normal_kl(m, lv[:, :1], torch.zeros(1, 3, dtype=F64), torch.zeros(4, 1, dtype=F64))
    assert kl.shape == (4, 3) and (kl > 0).all()
    ref = 0.5 * (-lv[:, :1] + torch.exp(lv[:, :1]) + m**2 - 1)
    torch.testing.assert_close(kl, ref, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------------------------ discretized likelihood


def _grid(n_bins: int) -> torch.Tensor:
    return 2 * torch.arange(n_bins, dtype=F64) / (n_bins - 1) - 1


@pytest.mark.parametrize("n_bins", [256, 17])
@pytest.mark.parametrize("mean", [0.0, 0.37, -0.99, 1.0, 1.7, -3.0])
@pytest.mark.parametrize("scale", [1.0, 0.3, 0.02, 1e-4, 5.0])
def test_discretized_gaussian_sums_to_one(n_bins, mean, scale):
    """Requirement 4: the bins (edge bins to ±∞) partition the line, so the probabilities sum to 1."""
    x = _grid(n_bins)
    logp = D.discretized_gaussian_log_likelihood(x, torch.tensor(mean, dtype=F64),
                                                 torch.tensor(math.log(scale), dtype=F64), n_bins)
    assert logp.shape == (n_bins,)
    assert torch.isfinite(logp).all() or scale < 1e-3  # a tiny scale may underflow far bins to −inf
    assert (logp <= 1e-12).all()
    assert torch.exp(logp).sum().item() == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("n_bins", [256, 17])
def test_discretized_gaussian_matches_phi_difference(n_bins):
    """A middle bin is Φ((x+δ−μ)/s) − Φ((x−δ−μ)/s); edge bins are Φ(upper) and 1 − Φ(lower) (DDPM Eq. 13)."""
    delta = 1 / (n_bins - 1)
    x = _grid(n_bins)
    k_mid = n_bins // 2 + 1
    for mean, scale in [(0.0, 0.5), (0.1, 0.05), (-0.8, 2.0), (1.3, 0.3)]:
        lp = D.discretized_gaussian_log_likelihood(x, torch.tensor(mean, dtype=F64),
                                                   torch.tensor(math.log(scale), dtype=F64), n_bins)
        xm = x[k_mid].item()
        ref_mid = math.log(norm.cdf((xm + delta - mean) / scale) - norm.cdf((xm - delta - mean) / scale))
        assert lp[k_mid].item() == pytest.approx(ref_mid, rel=1e-9, abs=1e-12)
        # and with torch.special.ndtr in float64 (a second, independent CDF)
        ref2 = torch.log(torch.special.ndtr(torch.tensor((xm + delta - mean) / scale, dtype=F64))
                         - torch.special.ndtr(torch.tensor((xm - delta - mean) / scale, dtype=F64))).item()
        assert lp[k_mid].item() == pytest.approx(ref2, rel=1e-9, abs=1e-12)
        ref_left = norm.logcdf((-1 + delta - mean) / scale)
        ref_right = norm.logsf((1 - delta - mean) / scale)
        assert lp[0].item() == pytest.approx(ref_left, rel=1e-9, abs=1e-12)
        assert lp[-1].item() == pytest.approx(ref_right, rel=1e-9, abs=1e-12)


def test_discretized_gaussian_far_tail_keeps_precision():
    """10 standard deviations out, Φ(upper) − Φ(lower) is 1 − 1 = 0 in float64; the survival-function
    difference (scipy) is still accurate, and the library must agree with it rather than return −inf."""
    n_bins = 256
    delta = 1 / (n_bins - 1)
    x = _grid(n_bins)
    for k, mean, scale in [(200, -0.55, 0.1), (40, 0.5, 0.08)]:
        xk = x[k].item()
        lo, hi = (xk - delta - mean) / scale, (xk + delta - mean) / scale
        if lo > 0:
            ref = math.log(norm.sf(lo) - norm.sf(hi))
        else:
            ref = math.log(norm.cdf(hi) - norm.cdf(lo))
        assert abs(lo) > 8 and abs(hi) > 8 and ref < -30
        lp = D.discretized_gaussian_log_likelihood(x[k], torch.tensor(mean, dtype=F64),
                                                   torch.tensor(math.log(scale), dtype=F64), n_bins)
        assert lp.item() == pytest.approx(ref, rel=1e-8)


def test_discretized_gaussian_elementwise_broadcast():
    n_bins = 17
    x = _grid(n_bins)[[0, 5, 16]].reshape(1, 3).expand(2, 3)
    mean = torch.tensor([[0.0], [0.5]], dtype=F64)
    log_scale = torch.tensor([[math.log(0.2)], [math.log(0.4)]], dtype=F64)
    lp = D.discretized_gaussian_log_likelihood(x, mean, log_scale, n_bins)
    assert lp.shape == (2, 3)
    for b in range(2):
        for j in range(3):
            one = D.discretized_gaussian_log_likelihood(x[b, j], mean[b, 0], log_scale[b, 0], n_bins)
            assert lp[b, j].item() == pytest.approx(one.item(), rel=1e-14)


# ------------------------------------------------------------------------------------------ prior KL, reverse variance


def test_prior_kl_closed_form():
    x0 = torch.randn(5, 3, generator=_gen(9), dtype=F64)
    for ac_T in [4e-5, 0.3]:
        lam = torch.full((5,), math.log(ac_T / (1 - ac_T)), dtype=F64)
        out = G.prior_kl(x0, lam)
        # KL(N(√ᾱ x, 1−ᾱ) ‖ N(0, 1)) = ½ (ᾱ x² + (1−ᾱ) − log(1−ᾱ) − 1) per dimension
        ref = (0.5 * (ac_T * x0**2 + (1 - ac_T) - math.log(1 - ac_T) - 1)).sum(1)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-14)


def test_reverse_log_variance():
    T = 50
    sched = _sched("linear", T)
    ac = ref_alphas_cumprod("linear", T)
    acp = np.concatenate([[1.0], ac[:-1]])
    betas = np.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T)
    bt = betas * (1 - acp) / (1 - ac)
    small = G.reverse_log_variance(sched.betas, sched.alphas_cumprod_prev, sched.alphas_cumprod, "fixed_small")
    large = G.reverse_log_variance(sched.betas, sched.alphas_cumprod_prev, sched.alphas_cumprod, "fixed_large")
    np.testing.assert_allclose(small.numpy(), np.log(np.concatenate([[bt[1]], bt[1:]])), rtol=1e-10)
    np.testing.assert_allclose(large.numpy(), np.log(np.concatenate([[bt[1]], betas[1:]])), rtol=1e-10)
    assert (small <= large + 1e-15).all()  # β̃_t ≤ β_t
    with pytest.raises(ValueError):
        G.reverse_log_variance(sched.betas, sched.alphas_cumprod_prev, sched.alphas_cumprod, "learned")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        G.reverse_log_variance(sched.betas[:1], sched.alphas_cumprod_prev[:1], sched.alphas_cumprod[:1], "fixed_small")


# ------------------------------------------------------------------------------------------ parameterizations


@pytest.mark.parametrize("param", ["eps", "x0", "v"])
def test_predict_round_trips_target(param):
    """Requirement 7: the perfect output target(x_0, ε, λ, p) read back by predict gives x_0, ε and v exactly."""
    B = 9
    g = _gen(10)
    x0 = torch.randn(B, 2, 3, generator=g, dtype=F64)
    eps = torch.randn(B, 2, 3, generator=g, dtype=F64)
    lam = torch.linspace(-8, 8, B, dtype=F64)
    alpha = torch.sigmoid(lam).sqrt()[:, None, None]
    sigma = torch.sigmoid(-lam).sqrt()[:, None, None]
    xt = alpha * x0 + sigma * eps
    v = alpha * eps - sigma * x0
    out = G.target(x0, eps, lam, param)
    torch.testing.assert_close(out, {"eps": eps, "x0": x0, "v": v}[param], rtol=1e-12, atol=1e-13)
    pred = G.predict(out, xt, lam, param)
    # dividing by α = 0.018 (λ = −8) or σ amplifies rounding by ≤ 60×
    torch.testing.assert_close(pred.x0, x0, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(pred.eps, eps, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(pred.v, v, rtol=1e-10, atol=1e-12)


def test_predict_clip_x0_keeps_consistency_and_bad_name_raises():
    g = _gen(11)
    xt = 3 * torch.randn(16, 4, generator=g, dtype=F64)
    lam = torch.linspace(-3, 3, 16, dtype=F64)
    out = torch.randn(16, 4, generator=g, dtype=F64)
    pred = G.predict(out, xt, lam, "eps", clip_x0=True)
    assert pred.x0.abs().max() <= 1.0
    a, s = torch.sigmoid(lam).sqrt()[:, None], torch.sigmoid(-lam).sqrt()[:, None]
    torch.testing.assert_close(a * pred.x0 + s * pred.eps, xt, rtol=1e-12, atol=1e-12)
    unclipped = G.predict(out, xt, lam, "eps")
    inside = unclipped.x0.abs() <= 1
    assert inside.any() and (~inside).any()
    torch.testing.assert_close(pred.eps[inside], out[inside], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        G.predict(out, xt, lam, "score")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ training losses


@pytest.mark.parametrize("loss", ["simple", "x0", "v", "min_snr"])
@pytest.mark.parametrize("param", ["eps", "x0", "v"])
def test_training_loss_zero_for_perfect_predictor(loss, param):
    """Requirement 8: with the perfect output every weighted MSE is 0."""
    B = 8
    g = _gen(12)
    x0 = torch.randn(B, 3, generator=g, dtype=F64)
    eps = torch.randn(B, 3, generator=g, dtype=F64)
    lam = torch.linspace(-6, 6, B, dtype=F64)
    xt = torch.sigmoid(lam).sqrt()[:, None] * x0 + torch.sigmoid(-lam).sqrt()[:, None] * eps
    out = G.target(x0, eps, lam, param)
    val = G.training_loss(loss, param, out, x0, eps, xt, lam)
    assert val.shape == (B,)
    assert val.abs().max().item() < 1e-20
    # and a wrong output is penalised
    bad = G.training_loss(loss, param, out + 0.1, x0, eps, xt, lam)
    assert (bad > 1e-6).all()


def test_training_loss_values_for_known_error():
    """An ε-network off by d: simple = mean d², x0 = mean (σ/α d)², v = mean (d/α)² (since α²+σ² = 1),
    min_snr = mean d² · min(SNR, 5)/SNR."""
    B = 10
    g = _gen(13)
    x0 = torch.randn(B, 4, generator=g, dtype=F64)
    eps = torch.randn(B, 4, generator=g, dtype=F64)
    d = 0.3 * torch.randn(B, 4, generator=g, dtype=F64)
    lam = torch.linspace(-5, 7, B, dtype=F64)
    a2, s2 = torch.sigmoid(lam), torch.sigmoid(-lam)
    xt = a2.sqrt()[:, None] * x0 + s2.sqrt()[:, None] * eps
    md2 = (d**2).mean(1)
    snr = a2 / s2
    refs = {"simple": md2, "x0": md2 * s2 / a2, "v": md2 / a2, "min_snr": md2 * torch.clamp(snr, max=5) / snr}
    for loss, ref in refs.items():
        val = G.training_loss(loss, "eps", eps + d, x0, eps, xt, lam)
        torch.testing.assert_close(val, ref, rtol=1e-9, atol=1e-14)
    with pytest.raises(ValueError):
        G.training_loss("elbo", "eps", eps, x0, eps, xt, lam)
    with pytest.raises(ValueError):
        G.training_loss("l1", "eps", eps, x0, eps, xt, lam)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ ELBO terms


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_vb_terms_equal_snr_form(kind):
    """Requirement 6: with p_θ's variance β̃_t, KL(q(x_{t−1}|x_t,x_0) ‖ p_θ) = ½ (SNR(t−1) − SNR(t)) ‖x̂_0 − x_0‖²
    for an arbitrary x̂_0 (seed 003). SNR and β̃ are computed here from ᾱ."""
    T, B = 1000, 5
    sched = _sched(kind, T)
    ac = ref_alphas_cumprod(kind, T)
    g = _gen(14)
    x0 = torch.randn(B, 3, generator=g, dtype=F64)
    xt = torch.randn(B, 3, generator=g, dtype=F64)
    x0_hat = x0 + 0.5 * torch.randn(B, 3, generator=g, dtype=F64)
    for i in [1, 2, 5, 50, 400, 900, 999]:
        lam = sched.logsnr[i].expand(B)
        pred = G.predict(x0_hat, xt, lam, "x0")
        beta = 1 - ac[i] / ac[i - 1]
        bt = beta * (1 - ac[i - 1]) / (1 - ac[i])
        lv = torch.full((B,), math.log(bt), dtype=F64)
        out = G.vb_terms(x0, xt, pred, sched.logsnr_prev[i].expand(B), lam, lv, torch.zeros(B, dtype=torch.bool), None)
        snr_prev, snr = ac[i - 1] / (1 - ac[i - 1]), ac[i] / (1 - ac[i])
        ref = 0.5 * (snr_prev - snr) * ((x0_hat - x0) ** 2).sum(1)
        torch.testing.assert_close(out, ref, rtol=1e-8, atol=1e-10)


def test_vb_terms_decoder_continuous_and_discrete():
    """L_0 = −log p_θ(x_0|x_1) with mean μ̃(x_1, x̂_0) = x̂_0 (ᾱ_0 = 1) and the given variance: a Gaussian density
    for continuous data, bins integrated with scipy's Φ for discrete data (DDPM Eq. 13)."""
    T, B, n_bins = 1000, 4, 17
    sched = _sched("linear", T)
    g = _gen(15)
    k = torch.randint(0, n_bins, (B, 3), generator=g)
    x0 = 2 * k.double() / (n_bins - 1) - 1
    xt = torch.randn(B, 3, generator=g, dtype=F64)
    x0_hat = x0 + 0.05 * torch.randn(B, 3, generator=g, dtype=F64)
    lam = sched.logsnr[0].expand(B)
    pred = G.predict(x0_hat, xt, lam, "x0")
    var = 0.01
    lv = torch.full((B,), math.log(var), dtype=F64)
    first = torch.ones(B, dtype=torch.bool)
    cont = G.vb_terms(x0, xt, pred, sched.logsnr_prev[0].expand(B), lam, lv, first, None)
    ref_cont = (0.5 * math.log(2 * math.pi * var) + (x0 - x0_hat) ** 2 / (2 * var)).sum(1)
    torch.testing.assert_close(cont, ref_cont, rtol=1e-9, atol=1e-10)
    disc = G.vb_terms(x0, xt, pred, sched.logsnr_prev[0].expand(B), lam, lv, first, n_bins)
    delta, sd = 1 / (n_bins - 1), math.sqrt(var)
    xn, mn = x0.numpy(), x0_hat.numpy()
    up = np.where(k.numpy() == n_bins - 1, np.inf, (xn + delta - mn) / sd)
    lo = np.where(k.numpy() == 0, -np.inf, (xn - delta - mn) / sd)
    ref_disc = -np.log(norm.cdf(up) - norm.cdf(lo)).sum(1)
    np.testing.assert_allclose(disc.numpy(), ref_disc, rtol=1e-8)
    assert (disc >= 0).all()
