"""Tests for the score-matching losses: trace helpers, explicit, sliced and denoising score matching.

Monte Carlo checks compare a mean with its expectation within Z standard errors estimated from the draws. The
Gaussian facts used: for data x ~ N(μ, s²I) and x̃ = x + σz the noised law is N(μ, wI), w = s² + σ², with score
s*(x̃) = −(x̃ − μ)/w; for a linear model s_{m,v}(x̃) = −(x̃ − m)/v,
E½‖s_{m,v} − s*‖² = ½[D w (1/w − 1/v)² + ‖μ − m‖²/v²] and the DSM loss of s* is E½‖s* + z/σ‖² = ½ D s²/(σ² w).
"""

from __future__ import annotations

import math

import pytest
import torch

from _gaussian_data import F64, MU, D, S, Z, gen
from genmodels.score import losses as L

SIGMA = 0.6
W = S**2 + SIGMA**2  # variance of the noised data, per dimension


def exact_noised_score(x: torch.Tensor, sigma: float = SIGMA) -> torch.Tensor:
    """∇ log N(x; μ, (s² + σ²) I)."""
    return -(x - MU) / (S**2 + sigma**2)


def gaussian_data(n: int, seed: int) -> torch.Tensor:
    return MU + S * torch.randn(n, D, generator=gen(seed), dtype=F64)


class TanhScore(torch.nn.Module):
    """A fixed nonlinear, non-symmetric-Jacobian score s(x) = W2 tanh(W1 x + b) − A x, for trace tests."""

    def __init__(self, d: int = 3, seed: int = 0):
        super().__init__()
        g = gen(seed)
        self.W1 = torch.nn.Parameter(torch.randn(8, d, generator=g, dtype=F64))
        self.b = torch.nn.Parameter(torch.randn(8, generator=g, dtype=F64))
        self.W2 = torch.nn.Parameter(torch.randn(d, 8, generator=g, dtype=F64) / 3)
        self.A = torch.nn.Parameter(torch.randn(d, d, generator=g, dtype=F64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ self.W1.T + self.b) @ self.W2.T - x @ self.A.T


def reference_jacobians(f, x: torch.Tensor) -> torch.Tensor:
    """[B, D, D] per-example Jacobians with torch.func (independent of the helpers under test)."""
    return torch.func.vmap(torch.func.jacrev(lambda xi: f(xi[None])[0]))(x)


def _mean_se(v: torch.Tensor, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    n = v.shape[dim]
    return v.mean(dim), v.std(dim) / math.sqrt(n)


# ------------------------------------------------------------------------------------------ trace helpers


def test_jacobian_trace_matches_torch_func():
    f = TanhScore()
    x = torch.randn(6, 3, generator=gen(1), dtype=F64, requires_grad=True)
    tr = L.jacobian_trace(f(x), x)
    ref = reference_jacobians(f, x.detach()).diagonal(dim1=1, dim2=2).sum(1)
    torch.testing.assert_close(tr, ref)


def test_jacobian_trace_supports_image_shaped_inputs():
    """Event shapes beyond vectors: the trace runs over every dimension of an example."""
    x = torch.randn(2, 1, 2, 2, generator=gen(2), dtype=F64, requires_grad=True)
    fx = -x * x.flatten(1).sum(1).reshape(2, 1, 1, 1)  # ∂f_d/∂x_d = −(Σx + x_d)
    want = -(x.flatten(1).sum(1) * 4 + x.flatten(1).sum(1))
    torch.testing.assert_close(L.jacobian_trace(fx, x), want.detach())


@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
def test_hutchinson_trace_is_unbiased_with_the_stated_variance(probe):
    """The mean of K single-probe estimates equals the exact trace within Z·SE for every example, and their
    variance is 2‖J_sym‖_F² (Gaussian) or 2‖J_sym‖_F² − 2Σ J_dd² (Rademacher)."""
    f, B, K = TanhScore(), 5, 4000
    x0 = torch.randn(B, 3, generator=gen(3), dtype=F64)
    J = reference_jacobians(f, x0)  # [B, 3, 3]
    exact = J.diagonal(dim1=1, dim2=2).sum(1)
    x = x0.repeat(K, 1).requires_grad_(True)  # [K·B, 3]: one probe per row
    probes = L.draw_probes(x, 1, probe, gen(4))
    est = L.hutchinson_trace(f(x), x, probes, create_graph=False).detach().reshape(K, B)
    mean, se = _mean_se(est)
    assert ((mean - exact).abs() < Z * se).all(), (mean, exact, se)
    Js = 0.5 * (J + J.transpose(1, 2))
    var_want = 2 * Js.pow(2).sum((1, 2))
    if probe == "rademacher":
        var_want = var_want - 2 * J.diagonal(dim1=1, dim2=2).pow(2).sum(1)
    dev2 = (est - mean) ** 2
    var, var_se = _mean_se(dev2)
    assert ((var - var_want).abs() < Z * var_se).all(), (var, var_want, var_se)


def test_hutchinson_trace_averages_its_probes():
    f = TanhScore()
    x = torch.randn(4, 3, generator=gen(5), dtype=F64, requires_grad=True)
    probes = L.draw_probes(x, 3, "gaussian", gen(6))
    fx = f(x)
    each = [L.hutchinson_trace(fx, x, probes[k:k + 1]) for k in range(3)]
    torch.testing.assert_close(L.hutchinson_trace(fx, x, probes), sum(each) / 3)
    with pytest.raises(ValueError, match="probes"):
        L.hutchinson_trace(fx, x, probes[:, :2])


# ------------------------------------------------------------------------------------------ explicit score matching


def test_explicit_score_matching_gradient_includes_the_trace_term():
    """For s(x) = A x + b, J_ESM = ½‖Ax + b‖² + tr A, so ∂J/∂A = E[(Ax + b) xᵀ] + I and ∂J/∂b = E[Ax + b]. The
    identity comes only from differentiating the trace (create_graph=True)."""
    g = gen(7)
    A = torch.randn(3, 3, generator=g, dtype=F64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=F64, requires_grad=True)
    x = torch.randn(50, 3, generator=g, dtype=F64)
    loss = L.explicit_score_matching(lambda y: y @ A.T + b, x, trace="exact")
    gA, gb = torch.autograd.grad(loss.mean(), (A, b))
    with torch.no_grad():
        s = x @ A.T + b
        torch.testing.assert_close(loss, 0.5 * s.pow(2).sum(1) + A.trace())
        torch.testing.assert_close(gA, s.T @ x / len(x) + torch.eye(3, dtype=F64))
        torch.testing.assert_close(gb, s.mean(0))
    # Hutchinson: the trace term's gradient is the mean of v vᵀ over the probes actually drawn
    lh = L.explicit_score_matching(lambda y: y @ A.T + b, x, trace="hutchinson", n_probes=2, generator=gen(8))
    gA_h, = torch.autograd.grad(lh.mean(), A)
    v = L.draw_probes(x, 2, "rademacher", gen(8))  # the same draws
    vvT = torch.einsum("kbi,kbj->ij", v, v) / (2 * len(x))
    torch.testing.assert_close(gA_h, s.T @ x / len(x) + vvT)


def test_explicit_score_matching_under_no_grad_gives_the_same_values_without_a_graph():
    f, x = TanhScore(), torch.randn(7, 3, generator=gen(9), dtype=F64)
    with_grad = L.explicit_score_matching(f, x)
    assert with_grad.requires_grad
    with torch.no_grad():
        without = L.explicit_score_matching(f, x)
    assert not without.requires_grad
    torch.testing.assert_close(without, with_grad.detach())


def test_explicit_score_matching_is_minimized_by_the_true_score():
    """On Gaussian data, J_ESM of s_{m,v} minus J_ESM of the true score is the Fisher divergence
    ½[D s²(1/s² − 1/v)² + ‖μ − m‖²/v²] (paired draws, within Z·SE)."""
    x = gaussian_data(4000, 10)
    true = L.explicit_score_matching(lambda y: -(y - MU) / S**2, x)
    for m_shift, v in [(0.0, 1.5 * S**2), (0.3, S**2), (-0.2, 0.7 * S**2)]:
        m = MU + m_shift
        other = L.explicit_score_matching(lambda y: -(y - m) / v, x)  # noqa: B023  called at once, in this iteration
        mean, se = _mean_se(other - true)
        want = 0.5 * (D * S**2 * (1 / S**2 - 1 / v) ** 2 + D * m_shift**2 / v**2)
        assert abs(mean.item() - want) < Z * se.item() + 1e-12, (m_shift, v, mean, want, se)
        assert mean > 0


# ------------------------------------------------------------------------------------------ sliced score matching


@pytest.mark.parametrize("probe", ["gaussian", "rademacher"])
@pytest.mark.parametrize("variance_reduction", [False, True])
def test_sliced_score_matching_agrees_with_explicit_in_expectation(probe, variance_reduction):
    """Paired over the same x: E[SSM − ESM] = 0 within Z·SE, for both probe kinds and both forms."""
    f = TanhScore(seed=1)
    x = torch.randn(3000, 3, generator=gen(11), dtype=F64)
    with torch.no_grad():
        esm = L.explicit_score_matching(f, x)
        ssm = L.sliced_score_matching(f, x, probe=probe, variance_reduction=variance_reduction, generator=gen(12))
    mean, se = _mean_se(ssm - esm)
    assert abs(mean.item()) < Z * se.item(), (mean, se)
    assert se > 0  # the estimate is random: the check above is not vacuous


def test_sliced_vr_is_the_hutchinson_estimate_of_explicit_score_matching():
    f, x = TanhScore(seed=2), torch.randn(9, 3, generator=gen(13), dtype=F64)
    vr = L.sliced_score_matching(f, x, n_probes=3, probe="gaussian", variance_reduction=True, generator=gen(14))
    esm = L.explicit_score_matching(f, x, trace="hutchinson", n_probes=3, probe="gaussian", generator=gen(14))
    torch.testing.assert_close(vr, esm)
    vr.mean().backward()  # trainable
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in f.parameters())


# ------------------------------------------------------------------------------------------ denoising score matching


def test_dsm_optimum_is_the_noised_score():
    """J_DSM(s*) = ½ D s²/(σ² w); every perturbed linear model has a larger loss by exactly its Fisher divergence
    to the noised law (paired draws), so the closed-form noised score is the minimizer."""
    n = 4000
    x, z = gaussian_data(n, 15), torch.randn(n, D, generator=gen(16), dtype=F64)
    best = L.denoising_score_matching(exact_noised_score, x, SIGMA, eps=z)
    mean, se = _mean_se(best)
    assert abs(mean.item() - 0.5 * D * S**2 / (SIGMA**2 * W)) < Z * se.item()
    for m_shift, v in [(0.0, 1.5 * W), (0.0, 0.6 * W), (0.4, W), (-0.3, 1.3 * W), (0.0, S**2)]:  # excess ≥ 15 SE
        m = MU + m_shift
        other = L.denoising_score_matching(lambda y: -(y - m) / v, x, SIGMA, eps=z)  # noqa: B023  called at once
        excess, se = _mean_se(other - best)
        want = 0.5 * (D * W * (1 / W - 1 / v) ** 2 + D * m_shift**2 / v**2)
        assert abs(excess.item() - want) < Z * se.item(), (m_shift, v, excess, want, se)
        assert excess > Z * se  # strictly worse, significantly
    # v = s² is the *clean* data's score: DSM does not pick it (the optimum is the noised score)


def test_dsm_gradient_vanishes_at_the_noised_score():
    """For s(x̃) = A x̃ + b, the per-example gradients of J_DSM at A = −I/w, b = μ/w average to 0 within Z·SE in
    every entry; at A = −I/(2w) (same b) the diagonal gradient, ≈ ½(1 + μ_i²/w), is significantly non-zero."""
    n = 4000
    x = gaussian_data(n, 17)

    def per_example_grads(A0: torch.Tensor, b0: torch.Tensor):
        A = A0.expand(n, D, D).clone().requires_grad_(True)  # one copy per example: per-example gradients
        b = b0.expand(n, D).clone().requires_grad_(True)
        loss = L.denoising_score_matching(lambda y: torch.einsum("bij,bj->bi", A, y) + b, x, SIGMA,
                                          generator=gen(18))
        gA, gb = torch.autograd.grad(loss.sum(), (A, b))
        return torch.cat([gA.flatten(1), gb], 1)  # [n, D² + D]

    g = per_example_grads(-torch.eye(D, dtype=F64) / W, MU / W)
    mean, se = _mean_se(g)
    assert ((mean.abs() < Z * se) | (se == 0)).all(), (mean, se)
    g = per_example_grads(-torch.eye(D, dtype=F64) / (2 * W), MU / W)
    mean, se = _mean_se(g)
    diag = [i * D + i for i in range(D)]
    torch.testing.assert_close(mean[diag], 0.5 * (1 + MU**2 / W), atol=Z * se[diag].max().item(), rtol=0)
    assert (mean[diag].abs() > 2 * Z * se[diag]).all()


@pytest.mark.parametrize("model", ["linear", "tanh"])
def test_explicit_and_denoising_score_matching_differ_by_a_constant(model):
    """Vincent's theorem: with x̃ = x + σz, DSM(θ; x, z) − ESM(θ; x̃) has mean D/(2σ²) for every θ. Checked for
    several θ on the same (x, z), each within Z·SE, and pairwise (differences of the differences ≈ 0), while
    J_ESM itself changes with θ by more than Z standard errors."""
    n = 3000
    x, z = gaussian_data(n, 19), torch.randn(n, D, generator=gen(20), dtype=F64)
    x_tilde = x + SIGMA * z
    if model == "linear":
        thetas = [(MU, W), (MU + 0.5, W), (MU, 2.0 * W), (MU - 0.3, 0.6 * W)]
        fns = [lambda y, m=m, v=v: -(y - m) / v for m, v in thetas]
    else:
        fns = []
        for seed, a in enumerate([0.3, 0.7, 1.2, 2.0]):  # different contractions: J_ESM differs a lot between them
            g = gen(30 + seed)
            Wm = torch.randn(D, D, generator=g, dtype=F64)
            c = torch.randn(D, generator=g, dtype=F64)
            fns.append(lambda y, Wm=Wm, c=c, a=a: torch.tanh(y @ Wm.T + c) - a * (y - MU))
    diffs, esms = [], []
    for fn in fns:
        with torch.no_grad():
            esm = L.explicit_score_matching(fn, x_tilde)
        dsm = L.denoising_score_matching(fn, x, SIGMA, eps=z)
        diff = dsm - esm
        mean, se = _mean_se(diff)
        assert abs(mean.item() - D / (2 * SIGMA**2)) < Z * se.item(), (mean, se)
        diffs.append(diff)
        esms.append(esm)
    esm_shift = []
    for k in range(1, len(fns)):
        mean, se = _mean_se(diffs[k] - diffs[0])
        assert abs(mean.item()) < Z * se.item()
        mean, se = _mean_se(esms[k] - esms[0])
        esm_shift.append(abs(mean.item()) / se.item())
    # θ matters to each loss (not to their difference): for the linear family every θ ≠ θ* is worse than the
    # optimum θ* = thetas[0]; J_ESM of the tanh family is not monotone in θ, so one clear change is asked there
    assert (min if model == "linear" else max)(esm_shift) > Z, esm_shift


def noise_conditional_score(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """∇ log N(x; μ, (s² + σ²) I) with σ ``[B]``."""
    return -(x - MU) / (S**2 + sigma[:, None] ** 2)


def test_multiscale_dsm_expectation_with_the_exact_noised_scores():
    """One σ per example, uniform on the ladder: with the exact noise-conditional score the mean loss is
    (1/L) Σ_i λ(σ_i) · ½ D s²/(σ_i² (s² + σ_i²)), for λ = σ² and λ = 1."""
    sigmas = L.geometric_sigmas(2.0, 0.1, 6)
    n = 6000
    x = gaussian_data(n, 21)
    for weighting, lam in [("sigma2", sigmas**2), ("none", torch.ones_like(sigmas))]:
        loss = L.multiscale_denoising_score_matching(noise_conditional_score, x, sigmas, weighting=weighting,
                                                     generator=gen(22))
        want = (lam * 0.5 * D * S**2 / (sigmas**2 * (S**2 + sigmas**2))).mean().item()
        mean, se = _mean_se(loss)
        assert abs(mean.item() - want) < Z * se.item(), (weighting, mean, want, se)


def test_multiscale_dsm_at_one_level_is_single_sigma_dsm():
    sigmas = L.geometric_sigmas(1.0, 0.1, 4)
    x = gaussian_data(16, 23)
    z = torch.randn(16, D, generator=gen(24), dtype=F64)
    for i in range(4):
        idx = torch.full((16,), i)
        multi = L.multiscale_denoising_score_matching(noise_conditional_score, x, sigmas, weighting="none", eps=z,
                                                      index=idx)
        sig = sigmas[i].item()
        single = L.denoising_score_matching(lambda y: exact_noised_score(y, sig), x, sig,  # noqa: B023  called at once
                                            eps=z)
        torch.testing.assert_close(multi, single)
        weighted = L.multiscale_denoising_score_matching(noise_conditional_score, x, sigmas, eps=z, index=idx)
        torch.testing.assert_close(weighted, sig**2 * single)


def test_geometric_sigmas():
    s = L.geometric_sigmas(10.0, 0.01, 7)
    assert s.dtype == F64 and s.shape == (7,)
    assert s[0].item() == pytest.approx(10.0) and s[-1].item() == pytest.approx(0.01)
    ratios = s[1:] / s[:-1]
    torch.testing.assert_close(ratios, torch.full((6,), 0.001 ** (1 / 6), dtype=F64))
    assert L.geometric_sigmas(3.0, 1.0, 1).tolist() == [3.0]
    for bad in [(1.0, 2.0, 3), (1.0, 0.0, 3), (1.0, 0.5, 0)]:
        with pytest.raises(ValueError, match="sigma_max"):
            L.geometric_sigmas(*bad)


def test_bad_arguments_raise_clear_errors():
    x = torch.randn(4, 3, dtype=F64)
    with pytest.raises(ValueError, match="shape"):
        L.explicit_score_matching(lambda y: y[:, :2], x)
    with pytest.raises(ValueError, match="trace"):
        L.explicit_score_matching(lambda y: -y, x, trace="auto")
    with pytest.raises(ValueError, match="Hutchinson samples"):
        L.explicit_score_matching(lambda y: -y, x, trace="hutchinson", n_probes=0)
    with pytest.raises(ValueError, match="noise"):
        L.sliced_score_matching(lambda y: -y, x, probe="uniform")
    with pytest.raises(ValueError, match="sigma"):
        L.denoising_score_matching(lambda y: -y, x, 0.0)
    with pytest.raises(ValueError, match="eps"):
        L.denoising_score_matching(lambda y: -y, x, 1.0, eps=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="sigmas"):
        L.multiscale_denoising_score_matching(lambda y, s: -y, x, torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="weighting"):
        L.multiscale_denoising_score_matching(lambda y, s: -y, x, torch.tensor([1.0]), weighting="sigma")
