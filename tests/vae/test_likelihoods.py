"""Decoder distributions of :mod:`genmodels.vae.likelihoods` and the Gaussian helpers of
:mod:`genmodels.distributions` they use: analytic KLs against Monte Carlo, the pathwise (reparameterized)
gradient, normalization of the discretized decoders, Bernoulli's closed form, sampling on the data grid and the
choice of likelihood for a dataset."""

from __future__ import annotations

import math

import pytest
import torch

from genmodels import distributions as D
from genmodels.core import DataSpec
from genmodels.vae import likelihoods as L

DT = torch.float64


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mean_se(v: torch.Tensor) -> tuple[float, float]:
    return v.mean().item(), (v.std() / math.sqrt(len(v))).item()


# ---------------------------------------------------------------------------------------------- KL against MC


def test_kl_normal_matches_monte_carlo_log_ratio():
    """KL(q‖p) = E_q[log q(z) − log p(z)], per dimension and summed, within 4 standard errors."""
    mu_q = torch.tensor([0.3, -1.2, 2.0, 0.0], dtype=DT)
    lv_q = torch.tensor([-0.5, 0.7, -2.0, 1.5], dtype=DT)
    mu_p = torch.tensor([-0.4, 0.5, 1.0, 0.2], dtype=DT)
    lv_p = torch.tensor([0.2, -0.3, 0.5, 1.0], dtype=DT)
    n = 200_000
    z = L.reparameterize(mu_q.expand(n, 4), lv_q.expand(n, 4), _g(1))
    ratio = D.normal_log_prob(z, mu_q, lv_q) - D.normal_log_prob(z, mu_p, lv_p)  # [n, 4]
    kl = D.normal_kl(mu_q, lv_q, mu_p, lv_p)
    assert kl.shape == (4,) and (kl > 0).all()
    for j in range(4):
        m, se = _mean_se(ratio[:, j])
        assert abs(m - kl[j].item()) < 4 * se, (j, m, kl[j].item(), se)
    m, se = _mean_se(ratio.sum(1))
    assert abs(m - kl.sum().item()) < 4 * se
    assert se < 0.02  # the check has teeth: KL of these pairs is O(1)


def test_kl_standard_normal_matches_monte_carlo_and_kl_normal():
    mu = torch.tensor([1.5, -0.2, 0.0], dtype=DT)
    lv = torch.tensor([-1.0, 0.4, -3.0], dtype=DT)
    n = 200_000
    z = L.reparameterize(mu.expand(n, 3), lv.expand(n, 3), _g(2))
    ratio = (D.normal_log_prob(z, mu, lv) - D.normal_log_prob(z, torch.zeros(()), torch.zeros(()))).sum(1)
    kl = D.standard_normal_kl(mu, lv)
    m, se = _mean_se(ratio)
    assert abs(m - kl.sum().item()) < 4 * se, (m, kl.sum().item(), se)
    zero = torch.zeros(3, dtype=DT)
    torch.testing.assert_close(kl, D.normal_kl(mu, lv, zero, zero), rtol=1e-12, atol=1e-12)
    assert D.standard_normal_kl(zero, zero).abs().max() == 0  # q = p


def test_kl_normal_is_zero_iff_equal_and_handles_broadcasting():
    mu, lv = torch.randn(5, 3, generator=_g(3), dtype=DT), torch.randn(5, 3, generator=_g(4), dtype=DT)
    torch.testing.assert_close(D.normal_kl(mu, lv, mu, lv), torch.zeros(5, 3, dtype=DT), atol=1e-14, rtol=0)
    assert (D.normal_kl(mu, lv, torch.zeros(3, dtype=DT), torch.zeros(3, dtype=DT)) > 0).all()


# ---------------------------------------------------------------------------------------------- reparameterize


def test_reparameterize_draws_the_right_gaussian():
    mu, lv = torch.tensor([0.5, -2.0], dtype=DT), torch.tensor([0.0, -1.0], dtype=DT)
    z = L.reparameterize(mu.expand(100_000, 2), lv.expand(100_000, 2), _g(5))
    assert z.dtype == DT
    torch.testing.assert_close(z.mean(0), mu, atol=0.015, rtol=0)
    torch.testing.assert_close(z.var(0), lv.exp(), atol=0.02, rtol=0.02)
    # the same generator state gives the same draw
    assert torch.equal(L.reparameterize(mu, lv, _g(9)), L.reparameterize(mu, lv, _g(9)))


def test_pathwise_gradient_of_z_squared_is_unbiased():
    """d/dμ E[z²] = 2μ and d/dlog σ² E[z²] = σ² (E[z²] = μ² + σ²): the per-sample pathwise gradients average to
    them within 4 standard errors."""
    n = 100_000
    mu0, lv0 = 0.7, -0.6
    mu = torch.full((n,), mu0, dtype=DT, requires_grad=True)  # one leaf per sample: per-sample gradients
    lv = torch.full((n,), lv0, dtype=DT, requires_grad=True)
    z = L.reparameterize(mu, lv, _g(6))
    (z ** 2).sum().backward()
    m, se = _mean_se(mu.grad)
    assert abs(m - 2 * mu0) < 4 * se and se < 0.01, (m, se)
    m, se = _mean_se(lv.grad)
    assert abs(m - math.exp(lv0)) < 4 * se and se < 0.01, (m, se)


# ---------------------------------------------------------------------------------------------- discretized


def _grid(n_bins: int) -> torch.Tensor:
    return 2 * torch.arange(n_bins, dtype=DT) / (n_bins - 1) - 1


EXTREMES = [(0.0, 0.0), (0.3, -2.0), (-0.97, -5.0), (0.0, -20.0), (1.0, -20.0), (-1.0, -20.0), (5.0, 0.0),
            (-40.0, 1.0), (3.0, -7.0), (0.13, 3.0), (1e4, -3.0)]


@pytest.mark.parametrize("n_bins", [2, 17, 256])
@pytest.mark.parametrize("loc, log_scale", EXTREMES)
def test_discretized_logistic_sums_to_one_over_all_bins(n_bins, loc, log_scale):
    x = _grid(n_bins)
    lp = D.discretized_logistic_log_likelihood(x, torch.tensor(loc, dtype=DT), torch.tensor(log_scale, dtype=DT),
                                         n_bins)
    assert torch.isfinite(lp).all() and (lp <= 1e-12).all()
    # at scale e^-20 the density near loc is ~1e8 per unit, so the float64 rounding of the bin edges x ± δ
    # (~1e-17) moves ~1e-9 of mass; at decoder scales (log-scale ≥ LOG_SCALE_MIN = −7) the sum is exact to 1e-12
    tol = 1e-7 if log_scale < L.LOG_SCALE_MIN else 1e-12
    assert torch.logsumexp(lp, 0).exp().item() == pytest.approx(1.0, abs=tol)


@pytest.mark.parametrize("n_bins", [17, 256])
@pytest.mark.parametrize("loc, log_scale", [(0.0, 0.0), (0.3, -2.0), (-0.97, -5.0), (0.0, -7.0), (5.0, 0.0),
                                             (-40.0, 1.0), (0.5, -6.9)])
def test_discretized_gaussian_decoder_sums_to_one(n_bins, loc, log_scale):
    """Through the public ``log_prob``: one pixel with every value on the grid, the decoder's
    (location, log-scale) params concatenated along dim 1."""
    spec = DataSpec("px", (1,), n_bins)
    x = _grid(n_bins)[:, None]  # [n_bins, 1]: every value of one pixel
    params = torch.tensor([[loc, log_scale]], dtype=DT).expand(n_bins, 2)
    for lik in ("discretized_gaussian", "discretized_logistic"):
        lp = L.log_prob(params, x, lik, spec)
        assert lp.shape == (n_bins,) and torch.isfinite(lp).all()
        assert torch.logsumexp(lp, 0).exp().item() == pytest.approx(1.0, abs=1e-9), lik


def test_discretized_logistic_matches_cdf_differences_in_the_bulk():
    """Away from the tails the bin probability is σ((x−μ+δ)/s) − σ((x−μ−δ)/s) (edge bins to ±∞)."""
    n_bins, loc, ls = 9, 0.2, -1.3
    x = _grid(n_bins)
    s, d = math.exp(ls), 1 / (n_bins - 1)
    cdf = lambda v: torch.sigmoid((v - loc) / s)  # noqa: E731
    expect = cdf(x + d) - cdf(x - d)
    expect[0], expect[-1] = cdf(x[0] + d), 1 - cdf(x[-1] - d)
    lp = D.discretized_logistic_log_likelihood(x, torch.tensor(loc, dtype=DT), torch.tensor(ls, dtype=DT), n_bins)
    torch.testing.assert_close(lp.exp(), expect, rtol=1e-10, atol=1e-14)


def test_log_scale_is_clamped_so_a_sharp_decoder_stays_finite():
    spec = DataSpec("px", (3,), 256)
    x = torch.tensor([[-1.0, 0.0, 1.0]], dtype=DT)
    params = torch.cat([x, torch.full_like(x, -50.0)], 1)
    lp = L.log_prob(params, x, "discretized_logistic", spec)
    assert torch.isfinite(lp).all() and lp.item() <= 0
    # a log-scale below LOG_SCALE_MIN acts as LOG_SCALE_MIN
    at_min = L.log_prob(torch.cat([x, torch.full_like(x, L.LOG_SCALE_MIN)], 1), x, "discretized_logistic", spec)
    torch.testing.assert_close(lp, at_min)


# ---------------------------------------------------------------------------------------------- bernoulli, gaussian


def test_bernoulli_log_prob_closed_form():
    spec = DataSpec("bin", (2, 3), 2)
    logits = torch.randn(4, 2, 3, generator=_g(7), dtype=DT) * 3
    x = torch.where(torch.rand(4, 2, 3, generator=_g(8), dtype=DT) < 0.5, 1.0, -1.0).to(DT)
    k = (x + 1) / 2
    p = torch.sigmoid(logits)
    expect = (k * torch.log(p) + (1 - k) * torch.log1p(-p)).flatten(1).sum(1)
    got = L.log_prob(logits, x, "bernoulli", spec)
    assert got.shape == (4,)
    torch.testing.assert_close(got, expect, rtol=1e-10, atol=1e-10)


def test_gaussian_log_prob_matches_torch_distributions():
    spec = DataSpec("v", (3,), None)
    x = torch.randn(5, 3, generator=_g(10), dtype=DT)
    loc, ls = torch.randn(5, 3, generator=_g(11), dtype=DT), 0.5 * torch.randn(5, 3, generator=_g(12), dtype=DT)
    expect = torch.distributions.Normal(loc, ls.exp()).log_prob(x).sum(1)
    torch.testing.assert_close(L.log_prob(torch.cat([loc, ls], 1), x, "gaussian", spec), expect)
    torch.testing.assert_close(D.normal_log_prob(x, loc, 2 * ls),
                               torch.distributions.Normal(loc, ls.exp()).log_prob(x))


def test_params_per_dim():
    assert L.params_per_dim("bernoulli") == 1
    for lik in ("discretized_logistic", "discretized_gaussian", "gaussian"):
        assert L.params_per_dim(lik) == 2


# ---------------------------------------------------------------------------------------------- sampling, means


@pytest.mark.parametrize("lik, n_bins", [("bernoulli", 2), ("discretized_logistic", 17),
                                         ("discretized_gaussian", 256), ("discretized_logistic", 256)])
def test_decoder_sample_lies_on_the_data_grid(lik, n_bins):
    spec = DataSpec("img", (1, 4, 4), n_bins)
    ppd = L.params_per_dim(lik)
    params = torch.randn(64, ppd, 4, 4, generator=_g(13), dtype=DT) * 2
    x = L.decoder_sample(params, lik, spec, _g(14))
    assert x.shape == (64, 1, 4, 4) and x.dtype == DT
    levels = (x + 1) * (n_bins - 1) / 2
    torch.testing.assert_close(levels, levels.round(), atol=1e-9, rtol=0)
    assert x.min() >= -1 and x.max() <= 1
    assert len(x.unique()) > 1
    # deterministic for a fixed generator
    assert torch.equal(x, L.decoder_sample(params, lik, spec, _g(14)))


def test_decoder_sample_frequencies_match_the_probabilities():
    """Bernoulli draws hit 1 with probability sigmoid(logit); discretized-logistic draws land in each bin with
    the probability the log_prob gives."""
    n = 40_000
    spec2 = DataSpec("b", (1,), 2)
    logit = torch.full((n, 1), 0.8, dtype=DT)
    x = L.decoder_sample(logit, "bernoulli", spec2, _g(15))
    p = torch.sigmoid(torch.tensor(0.8, dtype=DT)).item()
    assert abs((x > 0).double().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / n)

    n_bins = 5
    spec = DataSpec("d", (1,), n_bins)
    params = torch.tensor([[0.1, -1.0]], dtype=DT).expand(n, 2)
    x = L.decoder_sample(params, "discretized_logistic", spec, _g(16))
    grid = _grid(n_bins)
    probs = L.log_prob(params[:n_bins], grid[:, None], "discretized_logistic", spec).exp()
    for k in range(n_bins):
        freq = (x[:, 0] - grid[k]).abs().lt(1e-9).double().mean().item()
        assert abs(freq - probs[k].item()) < 4 * math.sqrt(probs[k].item() * (1 - probs[k].item()) / n) + 1e-3


def test_decoder_mean():
    logits = torch.tensor([[0.0, 100.0, -100.0]], dtype=DT)
    torch.testing.assert_close(L.decoder_mean(logits, "bernoulli"), torch.tensor([[0.0, 1.0, -1.0]], dtype=DT))
    params = torch.tensor([[-3.0, 0.25, 2.0, 0.0, 0.0, 0.0]], dtype=DT)
    torch.testing.assert_close(L.decoder_mean(params, "discretized_logistic"),
                               torch.tensor([[-1.0, 0.25, 1.0]], dtype=DT))
    torch.testing.assert_close(L.decoder_mean(params, "gaussian"), torch.tensor([[-3.0, 0.25, 2.0]], dtype=DT))


# ---------------------------------------------------------------------------------------------- resolve


def test_resolve_likelihood_auto_picks_by_data():
    assert L.resolve_likelihood("auto", DataSpec("b", (1, 8, 8), 2)) == "bernoulli"
    assert L.resolve_likelihood("auto", DataSpec("d", (1, 8, 8), 17)) == "discretized_logistic"
    assert L.resolve_likelihood("auto", DataSpec("m", (1, 28, 28), 256)) == "discretized_logistic"
    assert L.resolve_likelihood("auto", DataSpec("t", (2,), None)) == "gaussian"
    assert L.resolve_likelihood("discretized_gaussian", DataSpec("m", (1, 28, 28), 256)) == "discretized_gaussian"
    assert L.resolve_likelihood("bernoulli", DataSpec("b", (4,), 2)) == "bernoulli"


@pytest.mark.parametrize("lik, spec, needle", [
    ("bernoulli", DataSpec("mnist", (1, 28, 28), 256), "binary:mnist"),
    ("gaussian", DataSpec("digits", (1, 8, 8), 17), "discretized_logistic"),
    ("discretized_logistic", DataSpec("moons", (2,), None), "gaussian"),
    ("poisson", DataSpec("digits", (1, 8, 8), 17), "poisson"),
])
def test_resolve_likelihood_rejects_misfits(lik, spec, needle):
    with pytest.raises(ValueError, match=needle):
        L.resolve_likelihood(lik, spec)
