"""The shared distribution math of :mod:`genmodels.distributions` against references computed without it: the
naive formula where it is stable, ``torch.distributions`` and scipy's CDFs, and the normalization of the
discretized likelihoods over all levels."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import logistic, norm

from genmodels import distributions as D

F64 = torch.float64


def _grid(n_bins: int) -> torch.Tensor:
    return torch.linspace(-1, 1, n_bins, dtype=F64)


# ------------------------------------------------------------------------------------------------ log_diff_exp


def test_log_diff_exp_matches_the_naive_formula_where_it_is_stable():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1000, generator=g, dtype=F64)
    b = a - torch.rand(1000, generator=g, dtype=F64) * 5 - 1e-3  # b < a, e^a and e^b of order 1
    torch.testing.assert_close(D.log_diff_exp(a, b), torch.log(torch.exp(a) - torch.exp(b)), rtol=1e-12, atol=1e-12)


def test_log_diff_exp_keeps_precision_where_the_naive_formula_underflows():
    a = torch.tensor([-800.0, -1000.0], dtype=F64)
    b = a - math.log(2)  # e^a − e^b = e^a / 2
    assert torch.isinf(torch.log(torch.exp(a) - torch.exp(b))).all()  # the naive formula gives −∞
    torch.testing.assert_close(D.log_diff_exp(a, b), a - math.log(2), rtol=1e-14, atol=0)


def test_log_diff_exp_is_finite_for_equal_arguments_and_broadcasts():
    a = torch.zeros(3, 1, dtype=F64)
    out = D.log_diff_exp(a, torch.zeros(4, dtype=F64))
    assert out.shape == (3, 4) and torch.isfinite(out).all() and (out < -27).all()


# ------------------------------------------------------------------------------------------------ Gaussian KL


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normal_kl_matches_torch_distributions(dtype):
    g = torch.Generator().manual_seed(1)
    m1, lv1, m2, lv2 = (torch.randn(200, generator=g, dtype=F64).to(dtype) * 2 for _ in range(4))
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(m1, torch.exp(0.5 * lv1)),
                                            torch.distributions.Normal(m2, torch.exp(0.5 * lv2)))
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(D.normal_kl(m1, lv1, m2, lv2), ref, rtol=tol, atol=tol)
    assert (D.normal_kl(m1, lv1, m2, lv2) >= 0).all()


def test_standard_normal_kl_is_normal_kl_against_the_standard_normal():
    g = torch.Generator().manual_seed(2)
    m, lv = torch.randn(2, 50, generator=g, dtype=F64) * 3
    zero = torch.zeros((), dtype=F64)
    torch.testing.assert_close(D.standard_normal_kl(m, lv), D.normal_kl(m, lv, zero, zero), rtol=1e-12, atol=1e-12)
    assert D.standard_normal_kl(zero, zero) == 0


def test_normal_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(3)
    x, m, lv = torch.randn(3, 100, generator=g, dtype=F64) * 2
    ref = torch.distributions.Normal(m, torch.exp(0.5 * lv)).log_prob(x)
    torch.testing.assert_close(D.normal_log_prob(x, m, lv), ref, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------ discretized likelihoods

DISCRETIZED = [(D.discretized_gaussian_log_likelihood, norm.cdf), (D.discretized_logistic_log_likelihood, logistic.cdf)]


@pytest.mark.parametrize("fn, _cdf", DISCRETIZED)
@pytest.mark.parametrize("n_bins", [2, 17, 256])
@pytest.mark.parametrize("loc, log_scale", [(0.0, 0.0), (0.3, -3.0), (-0.9, -6.0), (1.7, -1.0), (0.0, 2.0)])
def test_bins_sum_to_one_over_all_levels(fn, _cdf, n_bins, loc, log_scale):
    lp = fn(_grid(n_bins), torch.tensor(loc, dtype=F64), torch.tensor(log_scale, dtype=F64), n_bins)
    assert (lp <= 0).all()
    torch.testing.assert_close(torch.logsumexp(lp, 0), torch.zeros((), dtype=F64), rtol=0, atol=1e-10)


@pytest.mark.parametrize("fn, cdf", DISCRETIZED)
def test_bins_are_cdf_differences_with_edge_bins_to_infinity(fn, cdf):
    n_bins, loc, log_scale = 9, 0.2, -1.5
    x = _grid(n_bins)
    lp = fn(x, torch.tensor(loc, dtype=F64), torch.tensor(log_scale, dtype=F64), n_bins)
    s, d = math.exp(log_scale), 1 / (n_bins - 1)
    upper = cdf((x.numpy() + d - loc) / s)
    lower = cdf((x.numpy() - d - loc) / s)
    upper[-1], lower[0] = 1.0, 0.0  # the edge bins extend to ±∞
    torch.testing.assert_close(lp, torch.log(torch.as_tensor(upper - lower)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fn, _cdf", DISCRETIZED)
def test_far_tail_bins_are_finite_and_ordered(fn, _cdf):
    """A bin 30 scales from the location still has a finite log-probability (no 0 − 0 cancellation), and a bin
    further out is less likely."""
    n_bins = 256
    x = _grid(n_bins)[100:103]
    lp = fn(x, torch.tensor(-0.9, dtype=F64), torch.tensor(-5.0, dtype=F64), n_bins)
    assert torch.isfinite(lp).all() and (lp < -30).all()
    assert (lp[1:] < lp[:-1]).all()


@pytest.mark.parametrize("fn, _cdf", DISCRETIZED)
def test_discretized_refuses_fewer_than_two_levels(fn, _cdf):
    with pytest.raises(ValueError, match="n_bins"):
        fn(torch.zeros(1), torch.zeros(1), torch.zeros(1), 1)
