"""Tests for the probability-flow ODE likelihood (genmodels.diffusion.ode, metrics.likelihood.evaluate_ode_nll).

Reference. For Gaussian data x_0 ~ N(μ, s² I) the Bayes-optimal ε̂*(x, λ) = σ(x − αμ)/v, v = α²s² + σ², makes the
probability-flow ODE dx/dλ = ½σ²x − ½σε̂* linear, and z = (x − αμ)/√v is constant along it (d√v/dλ =
α²σ²(s² − 1)/(2√v) matches the drift). So the flow from λ_hi to λ_lo is the affine map
y = α_lo μ + r (x − α_hi μ), r = √(v_lo/v_hi), and with y ~ N(0, I) at λ_lo the model's density at λ_hi is

    log p(x) = log N(y; 0, I) + D log r          (change of variables; ∫∇·f dλ = D log r),

i.e. N(α_hi μ − α_lo μ/r, I/r²). The network reads the fractional step from c_noise and maps it to λ with
np.interp on a logSNR table written here from the DDPM paper, independently of genmodels.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

from _gaussian_data import F64, MU, SPEC, D, S, Z, gen, ref_linear_alphas_cumprod
from genmodels.core import DataSpec, nats_to_bpd
from genmodels.diffusion.ddpm import DDPM, DDPMConfig
from genmodels.diffusion.ode import (
    ADAPTIVE_METHODS,
    draw_probes,
    exact_divergence,
    hutchinson_divergence,
    ode_log_likelihood,
)
from genmodels.diffusion.schedules import ScheduleConfig
from genmodels.metrics.likelihood import evaluate_ode_nll
from genmodels.nets.mlp import MLPConfig

T = 1000
ACCEPT = 0.01  # nats per dimension (acceptance criterion of issue 3)


def ref_logsnr(T: int) -> np.ndarray:
    ac = ref_linear_alphas_cumprod(T)
    return np.log(ac / (1 - ac))


class OptimalEps(nn.Module):
    """ε̂*(x, λ) = σ(x − αμ)/(α²s² + σ²) at fractional steps: c_noise → i = c·T/1000 → λ by np.interp."""

    def __init__(self, T: int, mu: torch.Tensor, s: float):
        super().__init__()
        self.T, self.lam, self.mu, self.s = T, ref_logsnr(T), mu, s

    def forward(self, x_t: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        i = c_noise.detach().double().cpu().numpy() * self.T / 1000
        lam = torch.from_numpy(np.interp(i, np.arange(self.T), self.lam)).reshape(-1, *[1] * (x_t.ndim - 1))
        ab = torch.sigmoid(lam)
        x = x_t.double()
        return ((1 - ab).sqrt() * (x - ab.sqrt() * self.mu) / (ab * self.s**2 + 1 - ab)).to(x_t.dtype)


def gaussian_model(spec: DataSpec = SPEC, mu: torch.Tensor = MU, s: float = S) -> DDPM:
    model = DDPM(DDPMConfig(schedule=ScheduleConfig(T=T), clip_x0=False, mlp=MLPConfig(hidden=8, depth=1)), spec)
    model.net = OptimalEps(T, mu, s)
    return model.eval()


def _alpha_v(lam: float, s: float) -> tuple[float, float]:
    ab = 1 / (1 + math.exp(-lam))
    return math.sqrt(ab), ab * s**2 + 1 - ab


def analytic(x: torch.Tensor, lam_hi: float, lam_lo: float, mu: torch.Tensor = MU, s: float = S):
    """(log p(x) [B], y = x(λ_lo) [B, ...], ∫∇·f = D log r) of the linear flow (module docstring)."""
    a_hi, v_hi = _alpha_v(lam_hi, s)
    a_lo, v_lo = _alpha_v(lam_lo, s)
    r = math.sqrt(v_lo / v_hi)
    x = x.double()
    y = a_lo * mu + r * (x - a_hi * mu)
    d = x[0].numel()
    log_prior = -0.5 * (y**2).flatten(1).sum(1) - 0.5 * d * math.log(2 * math.pi)
    return log_prior + d * math.log(r), y, d * math.log(r)


def data_points(n: int, seed: int) -> torch.Tensor:
    """n draws of the data plus two far points (4 s away)."""
    x = MU + S * torch.randn(n, D, generator=gen(seed), dtype=F64)
    return torch.cat([x, MU + 4 * S * torch.ones(1, D, dtype=F64), MU - 4 * S * torch.ones(1, D, dtype=F64)])


# ------------------------------------------------------------------------------------------ exact density


@pytest.mark.parametrize("lam_range", [None, (4.0, -6.0)])
def test_exact_trace_reproduces_gaussian_log_density(lam_range):
    model = gaussian_model()
    lam = ref_logsnr(T)
    hi, lo = (lam[0], lam[-1]) if lam_range is None else lam_range
    kw = {} if lam_range is None else {"logsnr_max": hi, "logsnr_min": lo}
    x = data_points(30, 0)
    res = ode_log_likelihood(model, x, trace="exact", **kw)
    log_p, y, div = analytic(x, hi, lo)
    assert res.trace == "exact" and res.nfe > 0
    assert res.log_p.shape == (32,) and res.log_p.dtype == F64 and res.x_prior.dtype == F64
    err = (res.log_p - log_p).abs().max().item() / D
    assert err < ACCEPT, err
    assert err < 1e-3, err  # far inside the criterion at the default tolerances (1e-5)...
    tight = ode_log_likelihood(model, x, trace="exact", rtol=1e-7, atol=1e-7, **kw)
    assert (tight.log_p - log_p).abs().max().item() / D < 2e-5  # ...and converging with the solver's
    # the parts, with their signs: the prior term at x(λ_lo) and ∫_{λ_hi}^{λ_lo} ∇·f dλ = D log r > 0
    torch.testing.assert_close(res.x_prior, y, atol=1e-4, rtol=0)
    torch.testing.assert_close(res.divergence, torch.full_like(res.divergence, div), atol=1e-4 * D, rtol=0)
    torch.testing.assert_close(res.log_p, res.log_p_prior + res.divergence)


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_averages_to_gaussian_log_density(noise):
    """Many probe draws for the same points: the mean matches the exact log-density within Monte Carlo error.
    (Here ∂f/∂x = c(λ) I, so a Rademacher probe is exact; a Gaussian one scales ∫∇·f by ‖v‖²/D.)"""
    model = gaussian_model()
    lam = ref_logsnr(T)
    x0 = data_points(2, 1)  # 4 points
    n = 2048
    x = x0.repeat(n, 1)  # [n·4, D]: replica k of point j at row 4k + j
    res = ode_log_likelihood(model, x, trace="hutchinson", noise=noise, generator=gen(2))
    assert res.trace == "hutchinson"
    est = res.log_p.reshape(n, len(x0))
    mean, se = est.mean(0), est.std(0) / math.sqrt(n)
    exact = analytic(x0, lam[0], lam[-1])[0]
    assert ((mean - exact).abs() <= Z * se + 1e-3 * D).all(), (mean - exact, se)
    assert (mean - exact).mean().abs() / D < ACCEPT  # Gaussian probes: SE of this ≈ 0.0017 nats/dim
    if noise == "gaussian":
        assert (est.std(0) > 0.1).all()  # the probes did vary
    # K probes per solve average them: a lower spread than one probe
    res_k = ode_log_likelihood(model, x0.repeat(32, 1), trace="hutchinson", noise=noise, hutchinson_samples=8,
                               generator=gen(3))
    est_k = res_k.log_p.reshape(32, len(x0))
    assert ((est_k.mean(0) - exact).abs() <= Z * est_k.std(0) / math.sqrt(32) + 1e-3 * D).all()
    if noise == "gaussian":
        assert (est_k.std(0) < est.std(0)).all()


def test_image_shaped_data_in_float32():
    """(C, H, W) events: float32 state, Hutchinson by default under "auto" for D > 16."""
    spec = DataSpec(name="gauss-img", event_shape=(1, 5, 5), n_bins=None)
    mu, s = torch.tensor(0.3, dtype=F64), 0.5
    model = gaussian_model(spec, mu, s)
    x = mu + s * torch.randn(6, 1, 5, 5, generator=gen(4), dtype=F64)
    res = ode_log_likelihood(model, x, generator=gen(5))  # rademacher: exact for an isotropic Jacobian
    assert res.trace == "hutchinson" and res.x_prior.dtype == torch.float32 and res.x_prior.shape == x.shape
    lam = ref_logsnr(T)
    exact = analytic(x, lam[0], lam[-1], mu, s)[0]
    err = (res.log_p - exact).abs().max().item() / 25
    assert err < ACCEPT, err


# ------------------------------------------------------------------------------------------ trace estimators


def _random_function(d: int, seed: int):
    g = gen(seed)
    W1, b, W2, A = (torch.randn(16, d, generator=g, dtype=F64), torch.randn(16, generator=g, dtype=F64),
                    torch.randn(d, 16, generator=g, dtype=F64) / 4, torch.randn(d, d, generator=g, dtype=F64))
    return lambda x: torch.tanh(x @ W1.T + b) @ W2.T + x @ A.T + x**3 / 3


def test_exact_divergence_is_the_jacobian_trace():
    f = _random_function(5, 10)
    x = torch.randn(3, 5, generator=gen(11), dtype=F64, requires_grad=True)
    div = exact_divergence(f(x), x)
    ref = torch.stack([torch.autograd.functional.jacobian(f, x[b:b + 1].detach())[0, :, 0, :].trace()
                       for b in range(3)])
    torch.testing.assert_close(div, ref)


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_for_the_trace(noise):
    """Fixed nonlinear f in D = 5: the mean of vᵀ(∂f/∂x)v over many probes is within 5 standard errors of tr."""
    f = _random_function(5, 12)
    x = torch.randn(3, 5, generator=gen(13), dtype=F64, requires_grad=True)
    exact = exact_divergence(f(x), x)
    n = 20000
    xr = x.detach().repeat(n, 1).requires_grad_(True)  # one probe per replica: a single VJP
    probes = draw_probes(xr, 1, noise, gen(14))
    if noise == "rademacher":
        assert set(probes.unique().tolist()) == {-1.0, 1.0}
    est = hutchinson_divergence(f(xr), xr, probes).reshape(n, 3)
    mean, se = est.mean(0), est.std(0) / math.sqrt(n)
    assert ((mean - exact).abs() < Z * se).all(), (mean, exact, se)
    # K probes in one call is their average
    pk = draw_probes(x, 4, noise, gen(15))
    fx = f(x)
    each = torch.stack([hutchinson_divergence(fx, x, pk[k:k + 1], retain_graph=True) for k in range(4)])
    torch.testing.assert_close(hutchinson_divergence(fx, x, pk), each.mean(0))


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_log_p_unbiased_through_a_nonlinear_network(noise):
    """A random MLP (untrained, output layer perturbed) in D = 2: the ODE's log p with Hutchinson traces,
    averaged over probe draws, matches the exact-trace log p (about 550 drift evaluations per solve)."""
    spec = DataSpec(name="toy", event_shape=(2,), n_bins=None)
    model = DDPM(DDPMConfig(schedule=ScheduleConfig(T=T), clip_x0=False,
                            mlp=MLPConfig(hidden=32, depth=1, emb_dim=16)), spec)
    torch.manual_seed(0)
    with torch.no_grad():
        model.net.out[-1].weight.normal_(0, 0.1)
        model.net.out[-1].bias.normal_(0, 0.1)
    model.eval()
    x0 = torch.randn(3, 2, generator=gen(20), dtype=F64)
    exact = ode_log_likelihood(model, x0, trace="exact")
    n = 200
    res = ode_log_likelihood(model, x0.repeat(n, 1), trace="hutchinson", noise=noise, generator=gen(21))
    est = res.log_p.reshape(n, 3)
    se = est.std(0) / math.sqrt(n)
    assert ((est.mean(0) - exact.log_p).abs() < Z * se + 2e-3).all(), (est.mean(0), exact.log_p, se)
    assert (est.std(0) > 0.01).all()  # a nonlinear network: the probes matter


# ------------------------------------------------------------------------------------------ reports


def test_report_on_discrete_data_dequantizes_with_core_convention():
    """Bits/dim = mean(−log p(x + Δ(u − ½)) − D log Δ)/(D ln 2), with u replayed from the same generator; the
    dequantization part is log2((n_bins − 1)/2) bits/dim; and the result bounds the discrete NLL."""
    n_bins = 17
    spec = DataSpec(name="gauss-binned", event_shape=(D,), n_bins=n_bins)
    delta = 2 / (n_bins - 1)
    model = gaussian_model(spec)
    k = torch.round((MU + S * torch.randn(600, D, generator=gen(30), dtype=F64) + 1) / delta).clamp(0, n_bins - 1)
    x = (k * delta - 1).float()  # bin centres, float32 as datasets store them
    rep = evaluate_ode_nll(model, x, batch_size=250, generator=gen(31))
    # replay: one U[0,1) draw per batch, in order (the exact trace draws no probes)
    g, expected = gen(31), []
    lam = ref_logsnr(T)
    for xb in x.split(250):
        u = torch.rand(xb.shape, generator=g, dtype=F64)
        xt = xb.double() + delta * (u - 0.5)
        expected.append(-analytic(xt, lam[0], lam[-1])[0] - D * math.log(delta))
    expected = torch.cat(expected)
    assert rep.nll_kind == "bound" and rep.examples == 600
    assert rep.bpd == pytest.approx(nats_to_bpd(expected.mean().item(), D), abs=1e-4)
    assert rep.terms_bpd["dequantization"] == pytest.approx(math.log2((n_bins - 1) / 2))
    assert sum(rep.terms_bpd.values()) == pytest.approx(rep.bpd, abs=1e-9)
    assert rep.bpd_stderr == pytest.approx(nats_to_bpd(expected.std().item() / math.sqrt(600), D), rel=1e-3)
    assert rep.estimator["dequantization"] == "uniform" and rep.estimator["nfe_mean"] > 0
    assert rep.estimator["trace"] == "exact" and rep.estimator["rtol"] == 1e-5
    # the model's discrete NLL: its density N(m, I/r²) integrated over each bin
    a_hi, v_hi = _alpha_v(lam[0], S)
    a_lo, v_lo = _alpha_v(lam[-1], S)
    r = math.sqrt(v_lo / v_hi)
    m, sd = (a_hi * MU - a_lo * MU / r).numpy(), 1 / r
    xd = x.double().numpy()
    P = norm.cdf((xd + delta / 2 - m) / sd) - norm.cdf((xd - delta / 2 - m) / sd)
    discrete_bpd = nats_to_bpd(-np.log(P).sum(1).mean(), D)
    # Jensen gap ≈ Δ²/(24 s²) ≈ 0.0015 bits/dim here; the u-noise of the mean ≈ 0.0013 bits/dim
    assert rep.bpd >= discrete_bpd - 0.005
    assert rep.bpd - discrete_bpd < 0.01


def test_report_on_continuous_data_is_an_estimate_in_nats():
    model = gaussian_model()
    x = data_points(40, 40).float()
    rep = evaluate_ode_nll(model, x, batch_size=20)
    lam = ref_logsnr(T)
    exact = -analytic(x, lam[0], lam[-1])[0]
    assert rep.nll_kind == "estimate" and "dequantization" not in rep.terms_bpd
    assert rep.bpd == pytest.approx(nats_to_bpd(exact.mean().item(), D), abs=1e-4)
    assert rep.terms_bpd["prior"] + rep.terms_bpd["divergence"] == pytest.approx(rep.bpd)
    assert rep.terms_bpd["divergence"] < 0  # −∫∇·f = −D log r, r > 1
    assert rep.estimator["nfe_mean"] > 0 and rep.estimator["batch_size"] == 20
    assert rep.to_json()["estimator"]["likelihood"] == "probability-flow ODE"


def test_nfe_grows_with_tighter_tolerance():
    model = gaussian_model()
    x = data_points(6, 50)
    loose = ode_log_likelihood(model, x, rtol=1e-3, atol=1e-3)
    tight = ode_log_likelihood(model, x, rtol=1e-7, atol=1e-7)
    assert 0 < loose.nfe < tight.nfe


@pytest.mark.parametrize("kw, match", [
    ({"trace": "stochastic"}, "trace must be"),
    ({"noise": "uniform"}, "noise must be"),
    ({"hutchinson_samples": 0}, "hutchinson_samples"),
    ({"rtol": 0.0}, "rtol and atol"),
    ({"method": "euler"}, "adaptive"),
    ({"logsnr_max": 20.0}, "inside the model's range"),
    ({"logsnr_min": 1.0, "logsnr_max": 0.0}, "logsnr_min < logsnr_max"),
])
def test_bad_options_raise(kw, match):
    model = gaussian_model()
    with pytest.raises(ValueError, match=match):
        ode_log_likelihood(model, torch.zeros(2, D), **kw)
    with pytest.raises(ValueError, match=match):
        evaluate_ode_nll(model, torch.zeros(2, D), **kw)


def test_bad_inputs_raise():
    model = gaussian_model()
    with pytest.raises(ValueError, match="shape"):
        ode_log_likelihood(model, torch.zeros(2, D + 1))
    with pytest.raises(ValueError, match="empty"):
        evaluate_ode_nll(model, torch.zeros(0, D))
    with pytest.raises(ValueError, match="unknown ODE option"):
        evaluate_ode_nll(model, torch.zeros(2, D), t_samples=4)
    with pytest.raises(ValueError, match="noise must be"):
        draw_probes(torch.zeros(2, D), 1, "sphere")
    assert "dopri5" in ADAPTIVE_METHODS
