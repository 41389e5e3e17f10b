"""Tests for the continuous-time schedules and the VDM bound (Kingma et al. 2021) against closed forms.

References are computed without the code under test where possible: the KL form of L_t from the Gaussian core of
issue 2, autograd for dγ/dt, the closed-form diffusion loss of Gaussian data under its exact denoiser, and Monte
Carlo with tolerances of ``Z`` standard errors estimated from the same draws.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from _gaussian_data import F64, Z, gen
from genmodels.core import DataSpec
from genmodels.diffusion import gaussian as G
from genmodels.diffusion.schedules import (
    DiscreteSchedule,
    FixedLinearGamma,
    GammaConfig,
    LearnedLinearGamma,
    MonotoneNetGamma,
    build_gamma_schedule,
)
from genmodels.diffusion.vdm import (
    VDM,
    VDMConfig,
    antithetic_times,
    continuous_diffusion_loss,
    discrete_diffusion_loss,
    discretized_decoder_log_prob,
    snr_form_term,
)
from genmodels.nets.embeddings import base2_fourier_features
from genmodels.nets.mlp import MLPConfig

KINDS = ["fixed", "learned_linear", "learned_net"]
VEC = DataSpec(name="vec", event_shape=(2,), n_bins=None)


def _wiggly_net_schedule(gamma_0: float = -5.0, gamma_1: float = 5.0, seed: int = 0) -> MonotoneNetGamma:
    """A strongly non-linear monotone schedule with the given end points."""
    torch.manual_seed(seed)
    s = MonotoneNetGamma(GammaConfig(kind="learned_net", gamma_0=gamma_0, gamma_1=gamma_1, n_features=64))
    with torch.no_grad():  # most of the rise in steps around t ≈ 0.2 (h_j = w₂(2t − 1) + b₂ = 0 at t = c_j)
        c = torch.empty(64).uniform_(0.1, 0.3)
        s.w2.fill_(8.0)
        s.b2.copy_(-8.0 * (2 * c - 1))
        s.w3.abs_().mul_(50.0)
        s.w1.fill_(0.5)
    return s


# ------------------------------------------------------------------------------------------ schedules


@pytest.mark.parametrize("kind", KINDS)
def test_schedule_end_points_derivative_and_monotone(kind):
    torch.manual_seed(0)
    s = build_gamma_schedule(GammaConfig(kind=kind, gamma_0=-7.0, gamma_1=4.0, n_features=32))
    if kind == "learned_net":
        s = _wiggly_net_schedule(-7.0, 4.0)
    t = torch.linspace(0, 1, 2001, dtype=F64, requires_grad=True)
    gamma, dgamma = s.gamma_and_derivative(t)
    assert gamma[0].item() == pytest.approx(-7.0, abs=1e-9) and gamma[-1].item() == pytest.approx(4.0, abs=1e-9)
    (autograd,) = torch.autograd.grad(gamma.sum(), t)
    torch.testing.assert_close(dgamma, autograd, rtol=1e-9, atol=1e-9)
    assert (dgamma > 0).all() and (gamma[1:] > gamma[:-1]).all()
    torch.testing.assert_close(s.logsnr(t), -gamma)


def test_the_net_schedule_is_not_linear_but_has_the_set_end_points():
    s = _wiggly_net_schedule()
    t = torch.linspace(0, 1, 101, dtype=F64)
    gamma = s(t)
    assert (gamma - (-5.0 + 10.0 * t)).abs().max() > 1.0  # far from linear: the invariance test below means something
    assert gamma[0].item() == pytest.approx(-5.0) and gamma[-1].item() == pytest.approx(5.0)


def test_learned_end_point_bounds_clamp():
    s = LearnedLinearGamma(GammaConfig(kind="learned_linear", gamma_0=-10.0, gamma_1=5.0,
                                       gamma_0_bounds=(-12.0, -8.0), gamma_1_bounds=(4.0, 6.0)))
    with torch.no_grad():
        s.gamma_0.fill_(-20.0)
        s.gamma_1.fill_(9.0)
    g0, g1 = s.endpoints()
    assert g0.item() == -12.0 and g1.item() == 6.0


def test_discrete_view_matches_gamma_on_the_grid():
    s = _wiggly_net_schedule(-13.3, 5.0)
    T = 1000
    d = s.discrete(T)
    t = torch.arange(1, T + 1, dtype=F64) / T
    torch.testing.assert_close(d.logsnr, -s(t).detach(), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(d.alphas_cumprod, torch.sigmoid(-s(t)).detach(), rtol=1e-10, atol=0)
    assert (d.betas > 0).all() and (d.betas <= 1).all()


def test_from_gamma_rejects_non_increasing():
    with pytest.raises(ValueError, match="increasing"):
        DiscreteSchedule.from_gamma(torch.tensor([0.0, 1.0, 1.0]))


# ------------------------------------------------------------------------------------------ the diffusion term


def test_snr_form_equals_kl_form_of_the_gaussian_core():
    """½(SNR(s) − SNR(t))‖x̂_0 − x_0‖² equals KL(q(x_s|x_t,x_0) ‖ p_θ(x_s|x_t)) with the posterior's variance."""
    g = gen(0)
    B, D = 16, 5
    x0 = torch.randn(B, D, generator=g, dtype=F64)
    eps = torch.randn(B, D, generator=g, dtype=F64)
    lt = torch.empty(B, dtype=F64).uniform_(-6, 4, generator=g)
    ls = lt + torch.empty(B, dtype=F64).uniform_(0.01, 3, generator=g)
    xt = G.q_sample(x0, lt, eps)
    out = torch.randn(B, D, generator=g, dtype=F64)  # any network output, read as ε̂
    pred = G.predict(out, xt, lt, "eps")
    _, post_var = G.q_posterior(x0, xt, ls, lt)
    kl = G.vb_terms(x0, xt, pred, ls, lt, post_var.log(), torch.zeros(B, dtype=torch.bool), None)
    torch.testing.assert_close(snr_form_term(ls, lt, x0, pred.x0), kl, rtol=1e-9, atol=1e-9)
    # and in ε form, as the discrete VDM loss computes it (T = 1: one term)
    torch.testing.assert_close(discrete_diffusion_loss(1, -ls, -lt, eps, out), kl, rtol=1e-9, atol=1e-9)


def test_continuous_loss_is_the_snr_derivative_form():
    """½ γ' ‖ε − ε̂‖² = −½ SNR'(t) ‖x − x̂‖² (VDM Eq. 15 = Eq. 17), SNR' from autograd."""
    s = _wiggly_net_schedule()
    g = gen(1)
    B, D = 8, 3
    t = torch.rand(B, generator=g, dtype=F64).requires_grad_(True)
    gamma, dgamma = s.gamma_and_derivative(t)
    (dsnr,) = torch.autograd.grad(torch.exp(-gamma).sum(), t)
    x = torch.randn(B, D, generator=g, dtype=F64)
    eps = torch.randn(B, D, generator=g, dtype=F64)
    out = torch.randn(B, D, generator=g, dtype=F64)
    lam = -gamma.detach()
    x_hat = G.predict(out, G.q_sample(x, lam, eps), lam, "eps").x0
    snr_form = -0.5 * dsnr * (x - x_hat).pow(2).sum(1)
    torch.testing.assert_close(continuous_diffusion_loss(dgamma.detach(), eps, out), snr_form, rtol=1e-7, atol=1e-9)


def _vector_vdm(T: int, kind: str = "fixed", seed: int = 0, **schedule) -> VDM:
    torch.manual_seed(seed)
    cfg = VDMConfig(schedule=GammaConfig(kind=kind, **schedule), T=T, mlp=MLPConfig(hidden=32, depth=2))
    return VDM(cfg, VEC).double()


def test_discrete_loss_approaches_the_continuous_loss_as_T_grows():
    """Σ_i L_i of the T-step bound → ∫ −½ SNR'(t)‖x − x̂‖² dt as T → ∞ for one fixed network, x and ε."""
    base = _vector_vdm(0, gamma_0=-6.0, gamma_1=4.0)
    with torch.no_grad():  # a network that does not predict ε well, so the loss is not trivially small
        for p in base.net.parameters():
            p.normal_(0, 0.3, generator=gen(5))
    g = gen(2)
    x = torch.randn(4, 2, generator=g, dtype=F64)
    eps = torch.randn(4, 2, generator=g, dtype=F64)

    def total(model: VDM, times: torch.Tensor, weight: float) -> torch.Tensor:
        """Σ over ``times`` of the term for each of the 4 examples, times ``weight``: ``[4]``."""
        n = len(times)
        with torch.no_grad():
            terms = model.diffusion_term(x.repeat(n, 1), times.repeat_interleave(4), eps.repeat(n, 1))
        return terms.reshape(n, 4).sum(0) * weight

    n = 20000  # midpoint rule for the continuous integral
    continuous = total(base, (torch.arange(n, dtype=F64) + 0.5) / n, 1.0 / n)
    gaps = []
    for T in (10, 100, 1000):
        model = _vector_vdm(T, gamma_0=-6.0, gamma_1=4.0)
        model.load_state_dict(base.state_dict())
        discrete = total(model, torch.arange(1, T + 1, dtype=F64) / T, 1.0 / T)  # diffusion_term is T·L_i
        gaps.append(((discrete - continuous).abs() / continuous).max().item())
    assert gaps[0] > gaps[1] > gaps[2], gaps
    assert gaps[2] < 0.01, gaps


class _OracleDenoiser(nn.Module):
    """ε̂ of the exact denoiser for x ~ N(0, s² I): E[x|z] = α s² z / (α² s² + σ²), read from VDM's λ conditioning."""

    def __init__(self, s: float, gamma_lo: float, gamma_hi: float):
        super().__init__()
        self.s, self.lo, self.hi = s, gamma_lo, gamma_hi

    def forward(self, z: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        gamma = c_noise.double() / 1000.0 * (self.hi - self.lo) + self.lo
        a2, s2 = torch.sigmoid(-gamma)[:, None], torch.sigmoid(gamma)[:, None]
        x_hat = a2.sqrt() * self.s**2 * z / (a2 * self.s**2 + s2)
        return (z - a2.sqrt() * x_hat) / s2.sqrt()


def _oracle_vdm(schedule: nn.Module, s: float, D: int) -> VDM:
    spec = DataSpec(name="gauss", event_shape=(D,), n_bins=None)
    model = VDM(VDMConfig(schedule=GammaConfig(kind="fixed", gamma_0=-5.0, gamma_1=5.0),
                          mlp=MLPConfig(hidden=8, depth=1)), spec)
    model.gamma = schedule
    model.net = _OracleDenoiser(s, -5.0, 5.0)
    return model


def _diffusion_draws(model: VDM, n: int, s: float, D: int, seed: int, antithetic: bool = False) -> torch.Tensor:
    g = gen(seed)
    x = s * torch.randn(n, D, generator=g, dtype=F64)
    t = antithetic_times(n, g) if antithetic else torch.rand(n, generator=g, dtype=F64)
    eps = torch.randn(n, D, generator=g, dtype=F64)
    with torch.no_grad():
        return model.diffusion_term(x, t, eps)


def test_continuous_loss_is_invariant_to_the_schedule_between_its_end_points():
    """VDM Eq. 18: with the optimal denoiser of Gaussian data, E[L_∞] depends only on SNR_min, SNR_max; both equal
    the closed form ½ D log((1 + SNR_max s²)/(1 + SNR_min s²))."""
    s, D, n = 0.7, 3, 40000
    linear = _diffusion_draws(_oracle_vdm(FixedLinearGamma(-5.0, 5.0), s, D), n, s, D, seed=3)
    wiggly = _diffusion_draws(_oracle_vdm(_wiggly_net_schedule(-5.0, 5.0), s, D), n, s, D, seed=4)
    closed = 0.5 * D * math.log((1 + math.exp(5.0) * s**2) / (1 + math.exp(-5.0) * s**2))
    for draws in (linear, wiggly):
        se = draws.std().item() / math.sqrt(n)
        assert abs(draws.mean().item() - closed) < Z * se, (draws.mean().item(), closed, se)
    se_diff = math.hypot(linear.std().item(), wiggly.std().item()) / math.sqrt(n)
    assert abs(linear.mean().item() - wiggly.mean().item()) < Z * se_diff
    # the schedules differ in what matters for training: the variance of the estimate
    assert wiggly.var().item() > 1.5 * linear.var().item()


def test_antithetic_time_sampling_lowers_the_variance_of_the_batch_loss():
    s, D, B, reps = 0.7, 32, 64, 400  # many dimensions: the spread over t dominates that over x and ε
    model = _oracle_vdm(FixedLinearGamma(-5.0, 5.0), s, D)
    iid = torch.stack([_diffusion_draws(model, B, s, D, seed=100 + r).mean() for r in range(reps)])
    anti = torch.stack([_diffusion_draws(model, B, s, D, seed=100 + r, antithetic=True).mean() for r in range(reps)])
    assert anti.var().item() < 0.5 * iid.var().item(), (anti.var().item(), iid.var().item())
    assert abs(anti.mean().item() - iid.mean().item()) < Z * math.sqrt((anti.var() + iid.var()).item() / reps)


def test_antithetic_times_cover_the_unit_interval():
    t = antithetic_times(8, gen(0))
    assert ((t >= 0) & (t < 1)).all()
    gaps = torch.sort(t).values.diff()
    torch.testing.assert_close(gaps, torch.full_like(gaps, 1 / 8))


# ------------------------------------------------------------------------------------------ training the schedule


def _learned_image_free_vdm(objective: str, seed: int = 0) -> VDM:
    torch.manual_seed(seed)
    cfg = VDMConfig(schedule=GammaConfig(kind="learned_net", gamma_0=-6.0, gamma_1=5.0, n_features=16),
                    schedule_objective=objective, mlp=MLPConfig(hidden=16, depth=1))
    return VDM(cfg, VEC)


def test_variance_objective_gradients():
    """Shape parameters get ∇ mean(ℓ_diff²); the network and the end points get ∇ mean(ℓ) as with ``elbo``."""
    x = torch.randn(32, 2, generator=gen(0))
    var_model, elbo_model = _learned_image_free_vdm("variance"), _learned_image_free_vdm("elbo")
    elbo_model.load_state_dict(var_model.state_dict())
    var_model.loss(x, gen(7)).mean().backward()
    elbo_model.loss(x, gen(7)).mean().backward()
    shape = {"gamma.w1", "gamma.w2", "gamma.b2", "gamma.w3"}
    for (name, p), (_, q) in zip(var_model.named_parameters(), elbo_model.named_parameters(), strict=True):
        if name not in shape:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7)
    # the reference: the same draws as loss() (t, ε₀, ε), then autograd of mean(ℓ_diff²)
    ref = _learned_image_free_vdm("elbo")
    ref.load_state_dict(var_model.state_dict())
    g = gen(7)
    t = antithetic_times(32, g)
    torch.randn(x.shape, generator=g)  # ε₀ of the reconstruction term
    eps = torch.randn(x.shape, generator=g)
    ell = ref.diffusion_term(x, t, eps) / (2 * math.log(2))
    ell.pow(2).mean().backward()
    params = dict(ref.named_parameters())
    moved = False
    for name, p in var_model.named_parameters():
        if name in shape:
            torch.testing.assert_close(p.grad, params[name].grad, rtol=1e-4, atol=1e-8)
            moved |= not torch.allclose(p.grad, dict(elbo_model.named_parameters())[name].grad)
    assert moved


@pytest.mark.parametrize("objective", ["variance", "elbo"])
def test_learned_schedule_stays_monotone_under_training(objective):
    model = _learned_image_free_vdm(objective)
    before = model.gamma(torch.linspace(0, 1, 11, dtype=F64)).detach()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    g = gen(0)
    x = torch.randn(256, 2, generator=g) * torch.tensor([1.0, 0.3])
    for _ in range(60):
        opt.zero_grad()
        model.loss(x[torch.randint(0, 256, (64,), generator=g)], g).mean().backward()
        opt.step()
    t = torch.linspace(0, 1, 5001, dtype=F64)
    gamma, dgamma = model.gamma.gamma_and_derivative(t)
    assert (dgamma > 0).all() and (gamma.diff() > 0).all()
    assert (gamma[::500].detach() - before).abs().max() > 0.05  # it did train


# ------------------------------------------------------------------------------------------ decoder, prior, features


def test_decoder_probabilities_sum_to_one_over_the_levels():
    n_bins = 16
    levels = torch.linspace(-1, 1, n_bins)
    z = torch.tensor([[0.13]]).expand(n_bins, 1)  # one pixel's z_0/α_0, every level as the data
    for gamma_0 in (-8.0, -3.0, 0.5):
        lp = discretized_decoder_log_prob(levels[:, None], z, torch.tensor(gamma_0), n_bins)
        assert torch.logsumexp(lp, 0).item() == pytest.approx(0.0, abs=1e-5)


def test_reconstruction_vanishes_at_high_snr_and_prior_is_analytic():
    spec = DataSpec(name="img", event_shape=(1, 4, 4), n_bins=256)
    from genmodels.nets.unet import UNetConfig
    model = VDM(VDMConfig(schedule=GammaConfig(kind="fixed", gamma_0=-13.3, gamma_1=5.0),
                          unet=UNetConfig(channels=8, channel_mult=(1,), num_res_blocks=1, attn_levels=(), groups=4)),
                spec)
    g = gen(0)
    x = torch.randint(0, 256, (256, 1, 4, 4), generator=g).float() / 255 * 2 - 1
    recon = model.reconstruction_term(x, torch.randn(x.shape, generator=g))
    # σ_0/α_0 = e^{−6.65} ≈ 0.0013 is a third of the bin half-width 1/255: a pixel leaves its bin with P ≈ 2Φ(−3)
    assert (recon >= 0).all() and recon.mean().item() / 16 < 0.02
    x = x[:3]
    a2, s2 = torch.sigmoid(torch.tensor(-5.0, dtype=F64)), torch.sigmoid(torch.tensor(5.0, dtype=F64))
    closed = 0.5 * (a2 * x.double().pow(2) + s2 - s2.log() - 1).flatten(1).sum(1)
    torch.testing.assert_close(model.prior_term(x).double(), closed, rtol=1e-5, atol=1e-6)


def test_base2_fourier_features():
    x = torch.tensor([[[[0.25, -0.5]]]])  # [1, 1, 1, 2]
    f = base2_fourier_features(x, (0, 1))
    assert f.shape == (1, 4, 1, 2)
    expected_sin = torch.stack([torch.sin(2 * math.pi * x[0, 0]), torch.sin(4 * math.pi * x[0, 0])])
    torch.testing.assert_close(f[0, :2], expected_sin)
    torch.testing.assert_close(f[0, 2:], torch.cos(torch.stack([2 * math.pi * x[0, 0], 4 * math.pi * x[0, 0]])))


def test_nll_terms_are_an_unbiased_bound_estimate_with_t_samples():
    """K stratified times per example estimate the same bound as K = 1 (their means agree)."""
    model = _vector_vdm(0, gamma_0=-6.0, gamma_1=4.0)
    x = torch.randn(2000, 2, generator=gen(9), dtype=F64)
    one = model.nll_terms(x, gen(10), t_samples=1).nll
    eight = model.nll_terms(x, gen(11), t_samples=8).nll
    se = math.sqrt((one.var() + eight.var()).item() / len(x))
    assert abs(one.mean().item() - eight.mean().item()) < Z * se
    assert eight.var().item() < one.var().item()


def test_fourier_features_are_constant_on_the_data_levels():
    """With VDM's scale (n_bins − 1)/256, exponent 7 has a period of one level: the features read the offset of z
    from the nearest level, the same at every level (no phase drift across [−1, 1])."""
    for n_bins in (256, 17):
        levels = torch.linspace(-1, 1, n_bins, dtype=F64).reshape(1, 1, 1, n_bins)
        f = base2_fourier_features(levels, (7,), (n_bins - 1) / 256)
        torch.testing.assert_close(f, f[..., :1].expand_as(f), atol=1e-9, rtol=0)
        shifted = base2_fourier_features(levels + 0.25 * 2 / (n_bins - 1), (7,), (n_bins - 1) / 256)
        assert (shifted - f).abs().min() > 0.5  # a quarter level away reads differently


@pytest.mark.parametrize("gamma_0", [-13.3, -10.0, -6.0, -2.0, 1.0])
def test_windowed_decoder_equals_the_full_softmax(gamma_0):
    """The decoder's normalizer over a window of levels equals the sum over all 256 levels, values and gradients."""
    n_bins, g = 256, gen(3)
    x = torch.randint(0, n_bins, (4, 1, 6, 6), generator=g).to(F64) / (n_bins - 1) * 2 - 1
    noise = torch.randn(x.shape, generator=g, dtype=F64)
    noise[0, 0, 0, :3] = torch.tensor([8.0, -9.0, 40.0])  # far from its own level, and beyond the edges
    gamma = torch.tensor(gamma_0, dtype=F64, requires_grad=True)
    z = (x + torch.exp(0.5 * gamma.detach()) * noise).requires_grad_(True)
    fast = discretized_decoder_log_prob(x, z, gamma, n_bins)
    levels = torch.linspace(-1, 1, n_bins, dtype=F64)
    logits = -0.5 * (z.unsqueeze(-1) - levels).pow(2) * torch.exp(-gamma)
    k = torch.round((x + 1) / 2 * (n_bins - 1)).long()
    ref = (logits.gather(-1, k.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)).flatten(1).sum(1)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-9)
    grads = torch.autograd.grad(fast.sum(), (z, gamma))
    ref_grads = torch.autograd.grad(ref.sum(), (z, gamma))
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)
