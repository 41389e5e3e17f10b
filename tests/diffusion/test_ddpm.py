"""Tests for genmodels.diffusion.ddpm on data whose optimal denoiser is known in closed form.

For Gaussian data x_0 ~ N(μ, s² I), q(x_t) = N(α_t μ, v_t I) with v_t = α_t² s² + σ_t², and the Bayes-optimal
predictions are linear in x_t:

    ε̂*(x_t) = E[ε | x_t] = σ_t (x_t − α_t μ) / v_t,     x̂_0*(x_t) = E[x_0 | x_t] = μ + α_t s² (x_t − α_t μ) / v_t,
    Var(x_0 | x_t) = s² σ_t² / v_t,                       Var(ε | x_t) = 1 − σ_t² / v_t.

So the expected value of every term of the bound with ``fixed_small`` variance has a closed form (computed
below with numpy, from the schedule's definition), and the true NLL is −log N(x; μ, s² I). Monte Carlo
tolerances are 5 standard errors (Z), the standard error estimated from the same draws.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from _gaussian_data import F64, MU, SPEC, D, S, Z, ref_linear_alphas_cumprod
from _gaussian_data import gen as _gen
from genmodels.core import DataSpec, NLLOutput
from genmodels.diffusion.ddpm import DDPM, DDPMConfig
from genmodels.diffusion.schedules import ScheduleConfig
from genmodels.nets.mlp import MLPConfig
from genmodels.nets.unet import UNetConfig

T_SHORT = 100


class OptimalPredictor(nn.Module):
    """The Bayes-optimal network for x_0 ~ N(μ, s² I), in any parameterization, optionally perturbed
    (ε̂ = scale · ε̂* + offset, eps parameterization only). Reads the step from c_noise = i·1000/T."""

    def __init__(self, T: int, mu: torch.Tensor = MU, s: float = S, param: str = "eps",
                 offset: float = 0.0, scale: float = 1.0):
        super().__init__()
        self.T, self.s, self.param, self.offset, self.scale = T, s, param, offset, scale
        self.register_buffer("mu", mu.clone())
        self.register_buffer("ac", torch.from_numpy(ref_linear_alphas_cumprod(T)))

    def forward(self, x_t: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        i = torch.round(c_noise.double() * self.T / 1000).long()
        ab = self.ac[i][:, None]
        a, sig = ab.sqrt(), (1 - ab).sqrt()
        v = ab * self.s**2 + (1 - ab)
        x = x_t.double()
        eps = sig * (x - a * self.mu) / v
        if self.param == "eps":
            out = self.scale * eps + self.offset
        else:
            assert self.offset == 0 and self.scale == 1
            x0 = self.mu + a * self.s**2 * (x - a * self.mu) / v
            out = x0 if self.param == "x0" else a * eps - sig * x0
        return out.to(x_t.dtype)


def gaussian_model(T: int = T_SHORT, param: str = "eps", **net_kw) -> DDPM:
    model = DDPM(DDPMConfig(schedule=ScheduleConfig(T=T), parameterization=param, clip_x0=False), SPEC)
    model.net = OptimalPredictor(T, param=param, **net_kw)
    return model


def gaussian_data(n: int, seed: int) -> torch.Tensor:
    return MU + S * torch.randn(n, D, generator=_gen(seed), dtype=F64)


def true_nll(x: torch.Tensor) -> torch.Tensor:
    return (0.5 * math.log(2 * math.pi * S**2) + (x - MU) ** 2 / (2 * S**2)).sum(1)


def expected_bound_terms(T: int) -> dict[str, float]:
    """E_x E_ε of each part of the bound (per example, nats) for the optimal ε̂ with ``fixed_small`` variance.

    L_T = KL(N(α_T x_0, σ_T²) ‖ N(0,1)) averaged over x_0; L_{t≥2} = ½ (SNR(t−1) − SNR(t)) E‖x̂_0* − x_0‖²
    = ½ ΔSNR · D s² σ_t²/v_t; L_0 = E[−log N(x_0; x̂_0*, β̃_2)] (the decoder variance is β̃_2, as documented in
    ``reverse_log_variance``) = D (½ log 2π β̃_2 + Var(x_0|x_1) / (2 β̃_2)).
    """
    ac = ref_linear_alphas_cumprod(T)
    acp = np.concatenate([[1.0], ac[:-1]])
    betas = 1 - ac / acp
    snr, snr_prev = ac / (1 - ac), np.concatenate([[np.inf], acp[1:] / (1 - acp[1:])])
    v = ac * S**2 + (1 - ac)
    post_var = S**2 * (1 - ac) / v
    mu2 = float((MU**2).sum())
    prior = 0.5 * (-D * math.log(1 - ac[-1]) + D * (1 - ac[-1]) + ac[-1] * (mu2 + D * S**2) - D)
    diffusion = D * float(np.sum(0.5 * (snr_prev[1:] - snr[1:]) * post_var[1:]))
    bt2 = betas[1] * (1 - acp[1]) / (1 - ac[1])
    recon = D * (0.5 * math.log(2 * math.pi * bt2) + post_var[0] / (2 * bt2))
    return {"prior": prior, "diffusion": diffusion, "reconstruction": recon, "nll": prior + diffusion + recon}


def _mean_se(x: torch.Tensor) -> tuple[float, float]:
    x = x.double()
    return x.mean().item(), x.std().item() / math.sqrt(len(x))


# ------------------------------------------------------------------------------------------ plumbing


@pytest.mark.parametrize("T", [100, 1000])
def test_c_noise_is_ddpm_timestep_and_invertible(T):
    model = DDPM(DDPMConfig(schedule=ScheduleConfig(T=T)), SPEC)
    i = torch.arange(T)
    c = model.c_noise(i)
    torch.testing.assert_close(c.double(), i.double() * 1000 / T, rtol=1e-6, atol=1e-4)
    assert torch.equal(torch.round(c.double() * T / 1000).long(), i)
    # the helper's independent ᾱ is the model's
    np.testing.assert_allclose(model.schedule.alphas_cumprod.numpy(), ref_linear_alphas_cumprod(T), rtol=1e-12)


def test_ddpm_rejects_unsupported_event_shape():
    with pytest.raises(ValueError):
        DDPM(DDPMConfig(), DataSpec(name="x", event_shape=(2, 3)))


# ------------------------------------------------------------------------------------------ losses


@pytest.mark.parametrize("loss", ["simple", "x0", "v", "elbo", "min_snr"])
@pytest.mark.parametrize("param", ["eps", "x0", "v"])
def test_loss_shape_finite_and_differentiable(loss, param):
    """Requirement 8: DDPM.loss returns [B] finite values for every loss × parameterization (MLP backbone)."""
    torch.manual_seed(0)
    cfg = DDPMConfig(parameterization=param, loss=loss, mlp=MLPConfig(hidden=16, depth=1, emb_dim=8))
    model = DDPM(cfg, DataSpec(name="toy", event_shape=(2,)))
    x = torch.randn(6, 2, generator=_gen(20))
    out = model.loss(x, _gen(21))
    assert out.shape == (6,) and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    if loss != "elbo":  # a Gaussian decoder's −log density (part of the elbo estimate) may be negative
        assert (out >= 0).all()
    out.mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    # reproducible given the generator
    torch.testing.assert_close(model.loss(x, _gen(21)), out.detach())


def test_elbo_loss_on_discrete_data_is_finite_and_nonnegative():
    cfg = DDPMConfig(loss="elbo", mlp=MLPConfig(hidden=16, depth=1, emb_dim=8), schedule=ScheduleConfig(T=50))
    model = DDPM(cfg, DataSpec(name="d", event_shape=(3,), n_bins=17))
    k = torch.randint(0, 17, (64, 3), generator=_gen(22))
    x = 2 * k.float() / 16 - 1
    out = model.loss(x, _gen(23))
    assert out.shape == (64,) and torch.isfinite(out).all()
    assert (out >= 0).all()  # with n_bins, L_0 = −log P(bin) ≥ 0 and the KL terms are ≥ 0


@pytest.mark.parametrize("param", ["x0", "v"])
def test_bound_and_samples_finite_when_terminal_snr_is_zero(param):
    """linear_betas(20) ends at β_T = 0.02·1000/20 = 1, so ᾱ_T = 0: x_T is pure noise, L_T = 0, and with an x_0-
    or v-network every term is well defined (q(x_{T−1}|x_T, x_0) = q(x_{T−1}|x_0)). The bound and samples must be
    finite."""
    cfg = DDPMConfig(schedule=ScheduleConfig(T=20), parameterization=param, mlp=MLPConfig(hidden=8, depth=1, emb_dim=8))
    model = DDPM(cfg, DataSpec(name="d", event_shape=(2,)))
    assert model.schedule.alphas_cumprod[-1].item() == 0.0
    out = model.nll_terms(torch.randn(8, 2, generator=_gen(24)), _gen(25), exact=True)
    assert torch.isfinite(out.nll).all()
    assert torch.isfinite(model.sample(4, _gen(26), steps=5)).all()


def test_simple_loss_of_optimal_predictor_is_posterior_noise_variance():
    """E[L_simple] for ε̂* is the mean over t of Var(ε|x_t) = 1 − σ_t²/v_t."""
    model = gaussian_model()
    x = gaussian_data(20000, 30)
    val = model.loss(x, _gen(31))
    assert val.shape == (20000,) and val.dtype == F64
    ac = ref_linear_alphas_cumprod(T_SHORT)
    ref = float(np.mean(1 - (1 - ac) / (ac * S**2 + 1 - ac)))
    m, se = _mean_se(val)
    assert abs(m - ref) < Z * se, (m, ref, se)


@pytest.mark.parametrize("loss", ["simple", "x0", "v", "min_snr", "elbo"])
def test_loss_same_predictor_in_every_parameterization(loss):
    """The optimal predictor written as ε̂, x̂_0 or v̂ is one predictor: every loss is the same per example
    (same generator → same t and ε)."""
    x = gaussian_data(256, 32)
    vals = []
    for param in ["eps", "x0", "v"]:
        model = gaussian_model(param=param)
        model.config = DDPMConfig(schedule=model.config.schedule, parameterization=param, loss=loss, clip_x0=False)
        vals.append(model.loss(x, _gen(33)))
    torch.testing.assert_close(vals[1], vals[0], rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(vals[2], vals[0], rtol=1e-7, atol=1e-9)


def test_elbo_loss_is_unbiased_for_diffusion_plus_reconstruction():
    """E_i[T · L_i] = L_0 + Σ_{t≥2} L_t (DDPM.loss with loss="elbo")."""
    model = gaussian_model()
    model.config = DDPMConfig(schedule=model.config.schedule, loss="elbo", clip_x0=False)
    x = gaussian_data(20000, 34)
    m, se = _mean_se(model.loss(x, _gen(35)))
    ref = expected_bound_terms(T_SHORT)
    target = ref["diffusion"] + ref["reconstruction"]
    assert abs(m - target) < Z * se, (m, target, se)


# ------------------------------------------------------------------------------------------ the bound


def test_exact_bound_is_above_true_nll_and_matches_closed_form():
    """Requirement 5a. On the same x: mean(−ELBO) ≥ mean(−log N(x; μ, s²I)), by more than 5 SE, and each part of
    the bound matches its closed-form expectation. The gap is the price of the fixed reverse variance β̃_t
    (the true reverse conditional has variance β̃_t + (coef · Var(x_0|x_t))) and of the decoder's β̃_2; for
    T = 100, s = 0.8 it is ≈ 1.35 nats/dim (≈ 0.57 at T = 1000)."""
    model = gaussian_model()
    x = gaussian_data(4000, 40)
    out = model.nll_terms(x, _gen(41), exact=True)
    assert isinstance(out, NLLOutput) and out.kind == "bound"
    assert out.nll.shape == (4000,) and set(out.terms) == {"prior", "diffusion", "reconstruction"}
    torch.testing.assert_close(out.terms["prior"] + out.terms["diffusion"] + out.terms["reconstruction"], out.nll)
    ref = expected_bound_terms(T_SHORT)
    for name in ("prior", "diffusion", "reconstruction"):
        m, se = _mean_se(out.terms[name])
        assert abs(m - ref[name]) < Z * se + 1e-9, (name, m, ref[name], se)
    gap = out.nll - true_nll(x)
    g_mean, g_se = _mean_se(gap)
    assert g_mean > Z * g_se, "the bound must lie above the true NLL"
    exact_gap = ref["nll"] - D * (0.5 * math.log(2 * math.pi * S**2) + 0.5)
    assert abs(g_mean - exact_gap) < Z * g_se
    assert 0 < exact_gap / D < 1.5, f"gap {exact_gap / D:.3f} nats/dim"


def test_bound_is_the_same_in_every_parameterization():
    x = gaussian_data(64, 42)
    outs = [gaussian_model(param=p).nll_terms(x, _gen(43), exact=True).nll for p in ("eps", "x0", "v")]
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(outs[2], outs[0], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind,value", [("offset", 0.2), ("scale", 1.25)])
def test_perturbed_predictor_raises_simple_loss_and_bound(kind, value):
    """Requirement 5b. ε̂ = ε̂* + δ (or (1+γ) ε̂*) raises L_simple by δ² (or γ² E[σ_t²/v_t]) and every bound
    term by ½ ΔSNR · E‖Δx̂_0‖² with Δx̂_0 = −(σ_t/α_t) Δε̂ (cross terms vanish because ε̂* = E[ε|x_t]).
    Compared on the same x and the same generator (common random numbers), with 5-SE tolerances."""
    kw = {"offset": value} if kind == "offset" else {"scale": value}
    opt, bad = gaussian_model(), gaussian_model(**kw)
    ac = ref_linear_alphas_cumprod(T_SHORT)
    acp = np.concatenate([[1.0], ac[:-1]])
    v = ac * S**2 + (1 - ac)
    # E‖Δε̂‖²/D at each step
    d_eps2 = np.full(T_SHORT, value**2) if kind == "offset" else (value - 1) ** 2 * (1 - ac) / v
    # L_simple
    x = gaussian_data(20000, 50)
    diff = bad.loss(x, _gen(51)) - opt.loss(x, _gen(51))
    m, se = _mean_se(diff)
    assert m > Z * se
    assert abs(m - float(np.mean(d_eps2))) < Z * se, (m, float(np.mean(d_eps2)), se)
    # the bound (exact sum over t)
    x = gaussian_data(2000, 52)
    nb, no = bad.nll_terms(x, _gen(53), exact=True), opt.nll_terms(x, _gen(53), exact=True)
    diff = nb.nll - no.nll
    m, se = _mean_se(diff)
    assert m > Z * se
    dx0 = D * (1 - ac) / ac * d_eps2  # E‖Δx̂_0‖²
    snr, snr_prev = ac / (1 - ac), np.concatenate([[np.inf], acp[1:] / (1 - acp[1:])])
    bt2 = (1 - ac[1] / ac[0]) * (1 - ac[0]) / (1 - ac[1])
    ref = float(np.sum(0.5 * (snr_prev[1:] - snr[1:]) * dx0[1:])) + dx0[0] / (2 * bt2)
    assert abs(m - ref) < Z * se, (m, ref, se)
    torch.testing.assert_close(nb.terms["prior"], no.terms["prior"])  # L_T does not involve the network


def test_proposals_are_distributions():
    model = gaussian_model()
    p = model.default_proposal()
    assert p.shape == (T_SHORT - 1,) and (p > 0).all()
    assert p.sum().item() == pytest.approx(1.0, abs=1e-12)
    q = model.calibrate_proposal(gaussian_data(256, 60), _gen(61))
    assert q.shape == (T_SHORT - 1,) and (q >= 0.1 * p - 1e-15).all()
    assert q.sum().item() == pytest.approx(1.0, abs=1e-12)


def test_calibrated_proposal_follows_expected_terms():
    """calibrate_proposal measures E_x[L_i] on a pilot set; for the optimal predictor E[L_i] = ½ ΔSNR · D s² σ_t²/v_t
    is known, so the proposal must be 0.9 · E[L_i]/Σ E[L_j] + 0.1 · default. With 512 pilot examples each L_i is
    ∝ χ²_D, so each measured mean has relative SE √(2/D)/√512 ≈ 3.1%: tolerance 5 × 3.1% ≈ 16%."""
    model = gaussian_model()
    q = model.calibrate_proposal(gaussian_data(512, 62), _gen(63)).numpy()
    ac = ref_linear_alphas_cumprod(T_SHORT)
    snr = ac / (1 - ac)
    post_var = S**2 * (1 - ac) / (ac * S**2 + 1 - ac)
    expected = 0.5 * (snr[:-1] - snr[1:]) * post_var[1:]  # i = 1..T−1, SNR(t−1) = snr[i−1]
    ideal = 0.9 * expected / expected.sum() + 0.1 * model.default_proposal().numpy()
    ratio = q / ideal
    tol = Z * math.sqrt(2 / D) / math.sqrt(512)
    assert np.all(np.abs(ratio - 1) < tol), (ratio.min(), ratio.max())


@pytest.mark.parametrize("proposal", ["default", "calibrated"])
def test_importance_sampled_bound_is_unbiased(proposal):
    """Requirement 5c. The stratified importance-sampled estimate (t_samples = 8) has the exact sum's
    expectation: compared with the closed form and, paired on the same x, with exact=True."""
    model = gaussian_model()
    prop = None if proposal == "default" else model.calibrate_proposal(gaussian_data(512, 70), _gen(71))
    x = gaussian_data(4000, 72)
    est = model.nll_terms(x, _gen(73), t_samples=8, proposal=prop)
    exact = model.nll_terms(x, _gen(74), exact=True)
    torch.testing.assert_close(est.terms["prior"], exact.terms["prior"])
    ref = expected_bound_terms(T_SHORT)
    m, se = _mean_se(est.terms["diffusion"])
    assert abs(m - ref["diffusion"]) < Z * se, (m, ref["diffusion"], se)
    m, se = _mean_se(est.nll - exact.nll)
    assert abs(m) < Z * se, (m, se)


def test_nll_terms_discrete_reconstruction_is_a_probability():
    """With n_bins, L_0 = −log P(bin) ≥ 0, and L_T ≥ 0, L_t ≥ 0 (KLs)."""
    cfg = DDPMConfig(schedule=ScheduleConfig(T=50), mlp=MLPConfig(hidden=16, depth=1, emb_dim=8))
    model = DDPM(cfg, DataSpec(name="d", event_shape=(3,), n_bins=17))
    k = torch.randint(0, 17, (32, 3), generator=_gen(80))
    x = (2 * k.double() / 16 - 1).float()
    out = model.nll_terms(x, _gen(81), exact=True)
    for name, t in out.terms.items():
        assert t.shape == (32,) and torch.isfinite(t).all() and (t >= -1e-6).all(), name
    torch.testing.assert_close(out.nll, sum(out.terms.values()))


# ------------------------------------------------------------------------------------------ images


def test_unet_image_smoke():
    torch.manual_seed(0)
    unet = UNetConfig(channels=8, channel_mult=(1, 2), attn_levels=(1,), num_heads=1, groups=4)
    model = DDPM(DDPMConfig(schedule=ScheduleConfig(T=50), unet=unet), DataSpec(name="tiny", event_shape=(1, 8, 8),
                                                                                 n_bins=256))
    x = (2 * torch.randint(0, 256, (3, 1, 8, 8), generator=_gen(90)).float() / 255 - 1)
    loss = model.loss(x, _gen(91))
    assert loss.shape == (3,) and torch.isfinite(loss).all()
    loss.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    with torch.no_grad():
        out = model.nll_terms(x, _gen(92), t_samples=2)
    assert out.nll.shape == (3,) and torch.isfinite(out.nll).all() and (out.terms["reconstruction"] >= 0).all()
    s = model.sample(2, _gen(93), steps=3)
    assert s.shape == (2, 1, 8, 8) and torch.isfinite(s).all()
    assert s.abs().max() <= 1.0  # clip_x0: the last step returns the clipped x̂_0


def test_eps_prediction_at_zero_terminal_snr_is_refused():
    """ᾱ_T = 0 leaves x̂_0 = (x_T − σ ε̂)/α undefined for an ε-network: a clear error, not NaN samples."""
    with pytest.raises(ValueError, match="zero terminal SNR"):
        DDPM(DDPMConfig(schedule=ScheduleConfig(T=20)), DataSpec(name="d", event_shape=(2,)))
