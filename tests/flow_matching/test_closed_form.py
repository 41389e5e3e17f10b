"""Flow matching against closed forms (issue 19).

Reference. For Gaussian data x_1 ~ N(μ, Σ) and independent noise x_0 ~ N(0, I), the path x_t = α_t x_1 + σ_t x_0 is
Gaussian, N(α_t μ, C_t) with C_t = α_t² Σ + σ_t² I, and the optimal (marginal) velocity is the conditional
expectation of α̇ x_1 + σ̇ x_0 given x_t = x (Lipman et al. 2023, Eq. 8), by Gaussian conditioning:

    u*(x, t) = α̇ μ + (α̇ α Σ + σ̇ σ I) C_t⁻¹ (x − α μ).

With it the flow carries N(0, I) at t = 0 to N(α_1 μ, C_1) at t = 1 (= N(μ, Σ) on the linear path), so every
sampler's samples have the data's mean and covariance and the ODE log-likelihood is log N(x; α_1 μ, C_1). The
velocity here is written from this formula alone (numpy-free torch float64, nothing from genmodels' paths but the
α, σ it is checked against in ``test_path_coefficients``).
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from genmodels.core import DataSpec
from genmodels.flow_matching.coupling import ot_pair
from genmodels.flow_matching.model import FlowMatching, FlowMatchingConfig
from genmodels.flow_matching.paths import LinearPath, VPPath
from genmodels.nets.mlp import MLPConfig

F64 = torch.float64
MU = torch.tensor([1.0, -0.5, 0.3], dtype=F64)
L = torch.tensor([[0.9, 0.0, 0.0], [0.4, 0.6, 0.0], [-0.3, 0.2, 0.5]], dtype=F64)
SIGMA = L @ L.T  # a full covariance
D = 3
SPEC = DataSpec("gauss3", (D,), None, (float("-inf"), float("inf")))
ACCEPT = 0.01  # nats per dimension (the bar)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def coefficients(kind: str, t: torch.Tensor):
    """α, σ, α̇, σ̇ written here from the formulas (linear: α = t, σ = 1 − t; vp: truncated cosine logSNR)."""
    t = t.double()
    if kind == "linear":
        return t, 1 - t, torch.ones_like(t), -torch.ones_like(t)
    lo, hi = -15.0, 15.0
    a, b = math.atan(math.exp(-hi / 2)), math.atan(math.exp(-lo / 2))
    u = b - t * (b - a)
    lam = -2 * torch.log(torch.tan(u))
    d_lam = 4 * (b - a) / torch.sin(2 * u)  # dλ/dt: d(−2 log tan u)/du = −4/sin 2u, du/dt = −(b − a)
    alpha, sigma = torch.sigmoid(lam).sqrt(), torch.sigmoid(-lam).sqrt()
    return alpha, sigma, 0.5 * alpha * sigma**2 * d_lam, -0.5 * sigma * alpha**2 * d_lam


def optimal_velocity(kind: str, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """u*(x, t) of the module docstring, ``x`` ``[B, D]``, ``t`` ``[B]``, float64."""
    alpha, sigma, d_alpha, d_sigma = (c[:, None, None] for c in coefficients(kind, t))
    eye = torch.eye(D, dtype=F64)
    C = alpha**2 * SIGMA + sigma**2 * eye
    M = (d_alpha * alpha * SIGMA + d_sigma * sigma * eye) @ torch.linalg.inv(C)
    r = x.double() - alpha[..., 0] * MU
    return d_alpha[..., 0] * MU + (M @ r[..., None])[..., 0]


class OptimalFlow(FlowMatching):
    """A flow-matching model whose velocity is u* (its network is never called)."""

    def __init__(self, path: str):
        super().__init__(FlowMatchingConfig(path=path, mlp=MLPConfig(hidden=8, depth=1)), SPEC)

    def velocity(self, x, t, y=None):
        return optimal_velocity(self.config.path, x, t).to(x.dtype)


def data_log_density(x: torch.Tensor, kind: str) -> torch.Tensor:
    """log N(x; α_1 μ, C_1), the flow's exact density at t = 1."""
    alpha, sigma, _, _ = coefficients(kind, torch.ones(1))
    C = alpha**2 * SIGMA + sigma**2 * torch.eye(D, dtype=F64)
    return torch.distributions.MultivariateNormal(alpha * MU, C).log_prob(x.double())


def test_path_coefficients_match_the_formulas():
    t = torch.linspace(0, 1, 11, dtype=F64)
    for path, kind in ((LinearPath(0.0), "linear"), (VPPath(-15.0, 15.0), "vp")):
        c = path.coefficients(t)
        for got, want in zip((c.alpha, c.sigma, c.d_alpha, c.d_sigma), coefficients(kind, t), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    vp = VPPath(-15.0, 15.0)
    c = vp.coefficients(t)
    torch.testing.assert_close(c.alpha**2 + c.sigma**2, torch.ones_like(t))  # variance preserving
    # α̇ by finite differences of α (the derivative formulas are the path's own)
    h = 1e-6
    t_in = torch.linspace(0.1, 0.9, 9, dtype=F64)
    fd = (vp.coefficients(t_in + h).alpha - vp.coefficients(t_in - h).alpha) / (2 * h)
    torch.testing.assert_close(vp.coefficients(t_in).d_alpha, fd, rtol=1e-5, atol=1e-8)


def test_the_loss_regresses_the_conditional_velocity():
    """At the optimal field the CFM loss is E‖u* − (α̇x_1 + σ̇x_0)‖², the conditional variance; a field off by a
    constant c adds ‖c‖² (averaged over dimensions): Lipman et al. 2023, Theorem 2 (same gradients)."""
    model = OptimalFlow("linear")
    x1 = MU + torch.randn(20000, D, generator=gen(0), dtype=F64) @ L.T
    base = model.loss(x1, gen(1)).mean()

    class Shifted(OptimalFlow):
        def velocity(self, x, t, y=None):
            return super().velocity(x, t) + 0.3

    shifted = Shifted("linear").loss(x1, gen(1)).mean()
    assert abs((shifted - base).item() - 0.09) < 0.01


@pytest.mark.parametrize("sampler,steps", [("euler", 400), ("midpoint", 40), ("heun", 40), ("ode", None)])
def test_every_sampler_reproduces_the_data_mean_and_covariance(sampler, steps):
    model = OptimalFlow("linear")
    n = 20000
    out = model.draw(n, gen(2), sampler=sampler, steps=steps, **({"rtol": 1e-7, "atol": 1e-7} if sampler == "ode"
                                                                   else {}))
    x = out.x0.double()
    se_mean = (SIGMA.diagonal() / n).sqrt()
    assert ((x.mean(0) - MU).abs() < 5 * se_mean + 0.005).all(), (sampler, x.mean(0))
    cov = torch.cov(x.T)
    se_cov = ((SIGMA.diagonal()[:, None] * SIGMA.diagonal()[None] + SIGMA**2) / n).sqrt()
    assert ((cov - SIGMA).abs() < 5 * se_cov + 0.01).all(), (sampler, cov)
    if steps is not None:
        assert out.nfe == model.nfe(sampler, steps)
    else:
        assert out.nfe > 0


def test_samplers_converge_at_their_order():
    """The fixed-step solvers' error against the adaptive solution of the same noise: Euler first order, midpoint
    and Heun second order (halving h divides the error by about 2 and 4)."""
    model = OptimalFlow("vp")
    ref = model.draw(200, gen(3), sampler="ode", rtol=1e-9, atol=1e-9).x0.double()
    for name, order in (("euler", 1), ("midpoint", 2), ("heun", 2)):
        errs = [(model.draw(200, gen(3), sampler=name, steps=s).x0.double() - ref).abs().max().item()
                for s in (40, 80)]
        ratio = errs[0] / errs[1]
        assert 2 ** order * 0.7 < ratio < 2 ** order * 1.4, (name, errs)


@pytest.mark.parametrize("kind", ["linear", "vp"])
def test_ode_likelihood_matches_the_exact_density(kind):
    model = OptimalFlow(kind)
    x = MU + torch.randn(300, D, generator=gen(4), dtype=F64) @ L.T
    out = model.ode_log_likelihood(x, gen(5), trace="exact", rtol=1e-7, atol=1e-7)
    err = (out.log_p - data_log_density(x, kind)).abs().max().item() / D
    assert err < ACCEPT, err
    assert out.trace == "exact"


def test_hutchinson_likelihood_is_unbiased_for_the_exact_density():
    model = OptimalFlow("linear")
    x = MU + torch.randn(2000, D, generator=gen(6), dtype=F64) @ L.T
    out = model.ode_log_likelihood(x, gen(7), trace="hutchinson", rtol=1e-6, atol=1e-6)
    diff = (out.log_p - data_log_density(x, "linear")) / D
    assert abs(diff.mean().item()) < 5 * diff.std().item() / math.sqrt(len(diff)) + 1e-3
    assert out.trace == "hutchinson"


def test_nll_terms_sum_and_evaluate_agree_with_the_density():
    from genmodels.metrics.likelihood import evaluate_nll, evaluate_ode_nll

    model = OptimalFlow("linear")
    x = MU + torch.randn(200, D, generator=gen(8), dtype=F64) @ L.T
    out = model.nll_terms(x, gen(9), trace="exact", rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(out.nll, sum(out.terms.values()))
    truth = -data_log_density(x, "linear").mean().item()
    rep = evaluate_nll(model, x, trace="exact", rtol=1e-7, atol=1e-7)
    ode = evaluate_ode_nll(model, x, trace="exact", rtol=1e-7, atol=1e-7)
    for r in (rep, ode):
        assert abs(r.nats - truth) / D < ACCEPT
    assert ode.estimator["nfe_mean"] > 0


def test_vp_path_with_the_optimal_field_is_the_diffusion_probability_flow_ode():
    """u*(x, t) on the VP path equals λ̇(t) times the diffusion models' probability-flow drift dx/dλ = ½σ²x − ½σε̂*
    (genmodels.diffusion.ode.probability_flow_drift) with the Bayes-optimal ε̂*(x, λ) = E[ε | x_λ = x]."""
    from genmodels.diffusion import gaussian as G
    from genmodels.diffusion.base import ModelOutput
    from genmodels.diffusion.ode import probability_flow_drift

    class OptimalDenoiser:
        net = nn.Linear(1, 1).double()

        def denoise(self, x_t, logsnr, clip_x0=False):
            ab = torch.sigmoid(logsnr.double())[:, None, None]
            alpha, sigma = ab.sqrt(), (1 - ab).sqrt()
            C = ab * SIGMA + (1 - ab) * torch.eye(D, dtype=F64)
            eps = (sigma * torch.linalg.inv(C) @ (x_t.double() - alpha[..., 0] * MU)[..., None])[..., 0]
            return ModelOutput(G.predict(eps, x_t, logsnr, "eps"), logsnr)

    path = VPPath(-15.0, 15.0)
    t = torch.linspace(0.02, 0.98, 25, dtype=F64)
    x = torch.randn(25, D, generator=gen(10), dtype=F64) * 2
    drift = probability_flow_drift(OptimalDenoiser(), x, path.logsnr(t))
    torch.testing.assert_close(optimal_velocity("vp", x, t), path.d_logsnr(t)[:, None] * drift, rtol=1e-8,
                               atol=1e-10)
    # and the flow-matching model's own field on the VP path is that drift too
    torch.testing.assert_close(OptimalFlow("vp").field(None)(x, t[3]), path.d_logsnr(t[3]) *
                               probability_flow_drift(OptimalDenoiser(), x, path.logsnr(t[3]).expand(25)))


def test_minibatch_ot_is_the_optimal_assignment():
    x0 = torch.randn(24, 5, generator=gen(11))
    x1 = torch.randn(24, 5, generator=gen(12)) + 2
    paired = ot_pair(x0, x1)
    cost = torch.cdist(x0.double(), x1.double()).pow(2).numpy()
    rows, cols = linear_sum_assignment(cost)
    best = cost[rows, cols].sum()
    got = (paired.double() - x1.double()).pow(2).sum().item()
    assert got == pytest.approx(best, rel=1e-9)
    assert sorted(map(tuple, paired.tolist())) == sorted(map(tuple, x0.tolist()))  # a permutation of the noise


def test_guidance_combines_the_conditional_and_null_velocities():
    """ṽ = (1 + w) v(x, t, y) − w v(x, t, ∅), from one call on the doubled batch; w = 0 is the conditional field."""
    from genmodels.core import Conditioning

    torch.manual_seed(0)
    model = FlowMatching(FlowMatchingConfig(mlp=MLPConfig(hidden=16, depth=1), cond=Conditioning(3)), SPEC).double()
    for p in model.parameters():
        nn.init.normal_(p, std=0.3)
    x = torch.randn(6, D, dtype=F64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    t = torch.tensor(0.4, dtype=F64)
    cond = model.velocity(x, t.expand(6), y)
    null = model.velocity(x, t.expand(6), torch.full_like(y, 3))
    torch.testing.assert_close(model.field(y, 2.0)(x, t), 3 * cond - 2 * null)
    torch.testing.assert_close(model.field(y, 0.0)(x, t), cond)
    out = model.draw(6, gen(0), sampler="euler", steps=3, y=y, guidance_scale=1.5)
    assert out.nfe == 6 == model.nfe("euler", 3, guidance_scale=1.5)
