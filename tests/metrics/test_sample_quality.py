"""Sample-quality metrics against closed forms, invariances and POT; the entry point on digits and a toy."""

import importlib.util
import itertools
import json
import math

import ot
import pytest
import torch

from genmodels.data import load_dataset
from genmodels.metrics import (
    frechet_distance,
    kernel_distance,
    maximum_mean_discrepancy,
    precision_recall,
    sample_quality,
    sliced_wasserstein,
    wasserstein_distance,
)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _points(n=1000, d=8, seed=0):
    return torch.randn(n, d, generator=_gen(seed))


# ----------------------------------------------------------------------------- Fréchet distance


def test_fd_of_a_set_to_itself_is_zero():
    x = _points(2000, 16) * 3 + 5
    assert abs(frechet_distance(x, x)) < 1e-9


def test_fd_grows_monotonically_with_noise():
    x = _points(2000, 16)
    noise = torch.randn(x.shape, generator=_gen(1))
    fds = [frechet_distance(x, x + s * noise) for s in (0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)]
    assert abs(fds[0]) < 1e-9
    assert all(a < b for a, b in itertools.pairwise(fds)), fds


def test_fd_matches_the_closed_form_between_gaussians():
    """Diagonal covariances: d² = ‖μ1 − μ2‖² + Σ_i (σ1_i − σ2_i)² (the square root is elementwise)."""
    mu1, mu2 = torch.tensor([0.0, 1.0, -1.0, 0.5]), torch.tensor([1.0, 1.0, 0.0, 0.0])
    s1, s2 = torch.tensor([1.0, 2.0, 0.5, 1.0]), torch.tensor([2.0, 1.0, 0.5, 3.0])
    exact = float(((mu1 - mu2) ** 2).sum() + ((s1 - s2) ** 2).sum())  # = 2.25 + 6 = 8.25
    n = 40_000
    a = mu1 + s1 * torch.randn(n, 4, generator=_gen(1), dtype=torch.float64)
    b = mu2 + s2 * torch.randn(n, 4, generator=_gen(2), dtype=torch.float64)
    assert frechet_distance(a, b) == pytest.approx(exact, rel=0.02)
    assert frechet_distance(b, a) == pytest.approx(frechet_distance(a, b), rel=1e-9)


def test_fd_is_computed_in_float64():
    x = (_points(500, 4) * 1e-3 + 1e3).float()  # float32 covariances of this would be noise
    y = x + 1e-3
    assert frechet_distance(x, y) == pytest.approx(4 * 1e-6, rel=0.05)


# ----------------------------------------------------------------------------- KID


def test_kid_of_a_set_to_itself_is_about_zero():
    x = _points(1000)
    mean, std = kernel_distance(x, x, subsets=10, subset_size=500)
    shifted, _ = kernel_distance(x, x + 1.0, subsets=10, subset_size=500)
    assert abs(mean) < 0.02 * shifted and std >= 0
    indep, _indep_std = kernel_distance(x, _points(1000, seed=5), subsets=10, subset_size=500)
    assert abs(indep) < 0.02 * shifted


def test_kid_grows_with_a_shift_and_is_deterministic():
    x = _points(600)
    kids = [kernel_distance(x, x + s, subsets=5, subset_size=300, generator=_gen(3))[0] for s in (0.2, 0.5, 1.0)]
    assert kids[0] < kids[1] < kids[2]
    state = torch.get_rng_state()
    a = kernel_distance(x, x + 0.5, subsets=5, subset_size=300, generator=_gen(3))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    assert a == kernel_distance(x, x + 0.5, subsets=5, subset_size=300, generator=_gen(3))


# ----------------------------------------------------------------------------- precision / recall


def test_precision_recall_of_a_set_against_itself_are_one():
    x = _points(800)
    assert precision_recall(x, x) == (1.0, 1.0)
    assert precision_recall(x, x, k=1, batch_size=77) == (1.0, 1.0)


def test_precision_recall_disjoint_and_collapsed():
    x = _points(500)
    assert precision_recall(x, x + 100.0) == (0.0, 0.0)
    collapsed = x[:5].repeat(100, 1)  # 5 real points, 100 times each: precise, no coverage
    precision, recall = precision_recall(x, collapsed)
    assert precision == 1.0 and recall < 0.05


def test_precision_recall_of_a_narrower_distribution():
    real = _points(2000, 2)
    narrow = 0.3 * _points(2000, 2, seed=1)  # inside the real support, covers its core only
    precision, recall = precision_recall(real, narrow)
    assert precision > 0.95 and recall < 0.6


# ----------------------------------------------------------------------------- vector data


def test_sliced_wasserstein_zero_for_identical_sets_and_translation_value():
    x = _points(1000, 2)
    assert sliced_wasserstein(x, x) == 0.0
    delta = torch.tensor([0.6, -0.8])  # |δ| = 1; each direction θ gives W2² = (θ·δ)², E = |δ|²/D
    sw = sliced_wasserstein(x, x + delta, n_projections=4000, generator=_gen(1))
    assert sw == pytest.approx(1 / math.sqrt(2), rel=0.02)
    shifts = [sliced_wasserstein(x, x + s, n_projections=200) for s in (0.1, 0.3, 1.0)]
    assert shifts[0] < shifts[1] < shifts[2]


def test_sliced_wasserstein_matches_pot_for_different_sizes():
    x, y = _points(300, 3), _points(170, 3, seed=1) * 1.5 + 0.2
    theta = torch.randn(40, 3, generator=_gen(2), dtype=torch.float64)
    ours = sliced_wasserstein(x, y, projections=theta)
    unit = (theta / theta.norm(dim=1, keepdim=True)).numpy().T  # POT takes [D, L]
    theirs = ot.sliced_wasserstein_distance(x.double().numpy(), y.double().numpy(), projections=unit, p=2)
    assert ours == pytest.approx(float(theirs), rel=1e-9)
    ours1 = sliced_wasserstein(x, y, projections=theta, p=1)
    theirs1 = ot.sliced_wasserstein_distance(x.double().numpy(), y.double().numpy(), projections=unit, p=1)
    assert ours1 == pytest.approx(float(theirs1), rel=1e-9)


def test_wasserstein_of_a_translation_is_its_length():
    x = _points(400, 2).double()
    assert wasserstein_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    for delta in (torch.tensor([0.3, 0.4], dtype=torch.float64), torch.tensor([-2.0, 1.0], dtype=torch.float64)):
        w2 = wasserstein_distance(x, x + delta)
        assert w2**2 == pytest.approx(float(delta.pow(2).sum()), rel=1e-9)  # W2² = |δ|²
    w1 = wasserstein_distance(x, x + torch.tensor([0.3, 0.4], dtype=torch.float64), p=1)
    assert w1 == pytest.approx(0.5, rel=1e-9)


def test_wasserstein_against_a_direct_assignment():
    """Equal sizes: the optimum is a permutation; check against an independent solver (SciPy)."""
    from scipy.optimize import linear_sum_assignment

    x, y = _points(120, 2), _points(120, 2, seed=1) + 0.5
    cost = torch.cdist(x.double(), y.double()).pow(2).numpy()
    rows, cols = linear_sum_assignment(cost)
    assert wasserstein_distance(x, y) ** 2 == pytest.approx(cost[rows, cols].mean(), rel=1e-9)


def test_wasserstein_subsamples_deterministically():
    x, y = _points(900, 2), _points(700, 2, seed=1) + 0.3
    a = wasserstein_distance(x, y, max_samples=200, generator=_gen(4))
    assert a == wasserstein_distance(x, y, max_samples=200, generator=_gen(4))
    assert a != wasserstein_distance(x, y, max_samples=200, generator=_gen(5))


def test_mmd_zero_for_identical_sets_and_grows_with_a_shift():
    x = _points(800, 2)
    assert abs(maximum_mean_discrepancy(x, x)) < 0.01
    mmds = [maximum_mean_discrepancy(x, x + s) for s in (0.1, 0.3, 1.0, 3.0)]
    assert abs(mmds[0]) < mmds[1] < mmds[2] < mmds[3]
    assert maximum_mean_discrepancy(x, x + 1.0, bandwidths="median") > 0.05
    assert abs(maximum_mean_discrepancy(x, x, bandwidths="median")) < 0.01


def test_mmd_matches_a_direct_computation():
    x, y = _points(60, 2), _points(50, 2, seed=1) + 0.4
    sigmas = (0.5, 1.0)

    def k(a, b):
        d2 = torch.cdist(a.double(), b.double()) ** 2
        return sum(torch.exp(-d2 / (2 * s**2)) for s in sigmas) / len(sigmas)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    expected = ((kxx.sum() - kxx.trace()) / (n * (n - 1)) + (kyy.sum() - kyy.trace()) / (m * (m - 1))
                - 2 * kxy.mean())
    assert maximum_mean_discrepancy(x, y, bandwidths=sigmas) == pytest.approx(float(expected), rel=1e-9)


def test_vector_metrics_reject_bad_input():
    x = _points(10, 2)
    with pytest.raises(ValueError, match="different dimensions"):
        sliced_wasserstein(x, _points(10, 3))
    with pytest.raises(ValueError, match="NaN"):
        maximum_mean_discrepancy(x, torch.full((10, 2), float("nan")))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        wasserstein_distance(x, x[0])
    with pytest.raises(ValueError, match="bandwidths"):
        maximum_mean_discrepancy(x, x, bandwidths=(0.0,))


# ----------------------------------------------------------------------------- the entry point


def test_sample_quality_on_a_toy():
    ds = load_dataset("moons")
    good = ds.train[-500:]
    bad = good + torch.tensor([0.5, 0.0])
    kw = dict(n_real=800, n_projections=100, ot_samples=300)
    q_good = sample_quality(good, ds, generator=_gen(1), **kw)
    q_bad = sample_quality(bad, "moons", generator=_gen(1), **kw)
    for name in ("sliced_w2", "w2", "mmd2"):
        assert q_bad[name] > max(q_bad[f"{name}_floor"], q_good[name])
        assert q_bad[f"{name}_floor"] == q_good[f"{name}_floor"]  # the floor uses the same draws
    assert q_good["feature"] == "data" and q_good["classifier_version"] is None
    assert (q_good["n_samples"], q_good["n_real"], q_good["floor_n"]) == (500, 800, 500)
    json.dumps(q_good)
    assert q_good == {**sample_quality(good, ds, generator=_gen(1), **kw), "seconds": q_good["seconds"]}


def test_sample_quality_on_digits(digits_env):
    ds = load_dataset("digits")
    g = _gen(2)
    real = ds.train[torch.randperm(ds.n_train, generator=g)[:300]]
    noisy = real + 0.5 * torch.randn(real.shape, generator=g)
    kw = dict(kid_subsets=10)
    q = sample_quality(noisy, ds, generator=_gen(3), **kw)
    for name in ("fd", "kid", "precision", "recall"):
        assert f"{name}_floor" in q
    assert q["fd"] > 2 * q["fd_floor"] > 0
    assert q["kid"][0] > q["kid_floor"][0]
    assert 0 <= q["precision"] <= 1 and 0 <= q["recall"] <= 1 and q["precision_floor"] > 0.5
    assert q["feature"] == "classifier-v1" and q["classifier_version"] == "1"
    assert q["classifier_test_accuracy"] > 0.9
    assert (q["n_samples"], q["n_real"], q["floor_n"]) == (300, ds.n_test, 300)
    json.dumps(q)
    # samples are rounded to the 17 levels first: off-grid values within half a level score the same
    jitter = (torch.rand(real.shape, generator=g) - 0.5) * (1.9 / 16)
    assert sample_quality(real + jitter, ds, generator=_gen(3), **kw)["fd"] == pytest.approx(
        sample_quality(real, ds, generator=_gen(3), **kw)["fd"], rel=1e-12)


def test_sample_quality_rejects_bad_samples(digits_env):
    ds = load_dataset("digits")
    with pytest.raises(ValueError, match=r"\[M, 1, 8, 8\]"):
        sample_quality(torch.zeros(10, 1, 28, 28), ds)
    bad = ds.train[:10].clone()
    bad[3, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="1 of 10 samples"):
        sample_quality(bad, ds)
    with pytest.raises(ValueError, match="n_real"):
        sample_quality(ds.train[:10], ds, n_real=ds.n_test + 1)


def test_sample_quality_without_a_classifier_points_to_inception():
    ds = load_dataset("digits")
    spec = type(ds.spec)(name="my-images", event_shape=(1, 8, 8), n_bins=17)
    custom = type(ds)(spec, ds.train, ds.test, ds.train_labels, ds.test_labels)
    with pytest.raises(ValueError, match="inception_weights"):
        sample_quality(ds.train[:10], custom)


@pytest.mark.skipif(importlib.util.find_spec("torch_fidelity") is not None, reason="torch-fidelity is installed")
def test_inception_without_torch_fidelity_says_how_to_install(tmp_path):
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"")
    ds = load_dataset("digits")
    with pytest.raises(ImportError, match=r"pip install genmodels\[inception\]"):
        sample_quality(ds.train[:10], ds, inception_weights=weights)


@pytest.mark.skipif(importlib.util.find_spec("torch_fidelity") is None, reason="needs torch-fidelity")
def test_inception_weights_file_must_exist(tmp_path):
    ds = load_dataset("digits")
    with pytest.raises(FileNotFoundError, match="pt_inception"):
        sample_quality(ds.train[:10], ds, inception_weights=tmp_path / "missing.pth")


