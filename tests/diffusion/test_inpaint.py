"""Tests for genmodels.diffusion.inpaint: RePaint (Lugmayr et al. 2022) and the replacement method.

The Gaussian check (issue 16's Done-when): x_0 ~ N(m, Σ) with a full, strongly correlated Σ and the Bayes-optimal ε
predictor (tests/_gaussian_inpaint.py). Two questions, kept apart:

1. Is the code the algorithm? Every step is affine-Gaussian, so the exact law of the output of the chain follows by
   propagating mean and covariance through RePaint's Algorithm 1 (numpy, :func:`chain_law`); the samples must match
   it within 5 Monte Carlo standard errors, for replacement and for RePaint.
2. How close is the algorithm to p(x_u | x_o)? RePaint is not exact: its resampling only pulls the unknown part
   towards the known one (its error shrinks with r, but slowly, and a finite grid leaves a covariance error), so the
   tolerance is stated — mean within 0.3 standard deviations of the conditional (Mahalanobis), covariance within 0.3
   (‖L⁻¹ Ĉ L⁻ᵀ − I‖_F) — and the replacement baseline, known to be biased (its known part is drawn independently of
   what the model generated), is printed beside it and must be clearly worse.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from _gaussian_data import Z
from _gaussian_data import gen as _gen
from _gaussian_inpaint import ar1_problem, chain_law, exact_conditional, gaussian_ddpm, observed_values, whitened_errors
from genmodels.core import Conditioning, DataSpec
from genmodels.diffusion.ddpm import DDPM, DDPMConfig
from genmodels.diffusion.inpaint import INPAINTERS, jump_schedule, repaint, repaint_nfe, replace, run_inpainter
from genmodels.diffusion.schedules import ScheduleConfig
from genmodels.masks import make_mask

# ------------------------------------------------------------------------------------------ the schedule


def test_jump_schedule_small_cases_by_hand():
    """S = 5, j = 2, r = 2: jump points 0 and 2 (below S − j = 3); each is left upwards once (2 levels)."""
    assert jump_schedule(5, 2, 2) == [4, 3, 2, 3, 4, 3, 2, 1, 0, 1, 2, 1, 0, -1]
    # j = 1, r = 3: every level below S − 1 is left upwards twice
    assert jump_schedule(4, 1, 3) == [3, 2, 3, 2, 3, 2, 1, 2, 1, 2, 1, 0, 1, 0, 1, 0, -1]
    assert jump_schedule(3, 1, 1) == [2, 1, 0, -1]  # r = 1: plain descent (replacement)
    assert jump_schedule(4, 10, 5) == [3, 2, 1, 0, -1]  # j ≥ S: no jump point
    assert jump_schedule(1, 1, 5) == [0, -1]


@pytest.mark.parametrize("S,j,r", [(250, 10, 10), (100, 3, 4), (17, 5, 2), (10, 1, 6), (9, 9, 3), (1, 1, 1)])
def test_jump_schedule_structure(S, j, r):
    """RePaint's schedule: from S−1 to −1 in unit moves; upward runs of exactly j levels start only at the jump points
    t ∈ {0, j, 2j, …} below S − j, each r − 1 times; the reverse steps (network evaluations) are repaint_nfe."""
    ts = jump_schedule(S, j, r)
    assert ts[0] == S - 1 and ts[-1] == -1 and min(ts) == -1 and max(ts) == S - 1
    assert all(abs(a - b) == 1 for a, b in itertools.pairwise(ts))
    starts = [ts[k] for k in range(1, len(ts) - 1) if ts[k + 1] > ts[k] and ts[k - 1] > ts[k]]
    points = set(range(0, S - j, j))
    if r == 1:
        assert not starts
    else:
        assert set(starts) == points and all(starts.count(t) == r - 1 for t in points)
    ups = [k for k in range(len(ts) - 1) if ts[k + 1] > ts[k]]
    assert len(ups) == (r - 1) * j * len(points)
    downs = sum(b < a for a, b in itertools.pairwise(ts))
    assert downs == repaint_nfe(S, j, r) == S + (r - 1) * j * len(points)


def test_schedule_refuses_bad_values():
    for bad in (dict(steps=0), dict(jump_length=0), dict(jump_n_sample=0), dict(jump_length=2.5),
                dict(jump_n_sample=True)):
        kw = dict(steps=10, jump_length=2, jump_n_sample=2) | bad
        with pytest.raises(ValueError, match=next(iter(bad))):
            jump_schedule(**kw)


# ------------------------------------------------------------------------------------------ the sampler itself

T_FAST = 100


def _problem(D: int = 4, rho: float = 0.9):
    m, cov = ar1_problem(D, rho)
    obs = np.zeros(D, bool)
    obs[: D // 2] = True
    return m, cov, obs, observed_values(m, cov, obs)


def _inputs(n: int, obs: np.ndarray, x_o: np.ndarray, fill: float = 0.0):
    x = torch.full((n, len(obs)), fill)
    x[:, torch.from_numpy(obs)] = torch.tensor(x_o, dtype=torch.float32)
    return x, torch.from_numpy(obs)[None]


def test_nfe_is_the_network_calls_and_known_entries_come_back_exactly():
    m, cov, obs, x_o = _problem()
    model = gaussian_ddpm(T_FAST, m, cov)
    x, known = _inputs(16, obs, x_o, fill=float("nan"))  # the unknown entries are never read
    for method, kw in (("repaint", dict(steps=20, jump_length=3, jump_n_sample=4)), ("replace", dict(steps=20))):
        model.net.calls = 0
        out = run_inpainter(model, x, known, _gen(0), method=method, **kw)
        expected = repaint_nfe(20, kw.get("jump_length", 1), kw.get("jump_n_sample", 1))
        assert out.nfe == model.net.calls == expected == len(out.timesteps)
        assert torch.isfinite(out.x0).all()
        assert torch.equal(out.x0[:, known[0]], x[:, known[0]])  # bitwise
        assert out.timesteps[0] == T_FAST - 1 and out.timesteps[-1] == 0
    assert repaint_nfe(20, 3, 4) > 20  # resampling costs more evaluations than the steps


def test_replace_is_repaint_without_resampling_and_runs_are_seeded():
    m, cov, obs, x_o = _problem()
    model = gaussian_ddpm(T_FAST, m, cov)
    x, known = _inputs(64, obs, x_o)
    a = replace(model, x, known, steps=30, generator=_gen(3)).x0
    b = repaint(model, x, known, steps=30, jump_length=7, jump_n_sample=1, generator=_gen(3)).x0
    c = repaint(model, x, known, steps=30, jump_length=7, jump_n_sample=3, generator=_gen(3)).x0
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert torch.equal(a, replace(model, x, known, steps=30, generator=_gen(3)).x0)
    assert (a - c).abs().max() > 1e-2  # resampling changes the result
    assert (a - replace(model, x, known, steps=30, generator=_gen(4)).x0).abs().max() > 1e-2


@pytest.mark.parametrize("method,S,j,r", [("replace", 25, 1, 1), ("repaint", 25, 5, 5)])
def test_samples_follow_the_exact_law_of_the_chain(method, S, j, r):
    """Question 1: the sample mean and variance of each unknown coordinate agree with the chain's exact law
    (computed in numpy from Algorithm 1) within Z = 5 standard errors; the covariance of the two unknowns too."""
    n = 4000
    m, cov, obs, x_o = _problem()
    model = gaussian_ddpm(T_FAST, m, cov)
    x, known = _inputs(n, obs, x_o)
    out = INPAINTERS.get(method)(model, x, known, steps=S, **({} if method == "replace" else
                                                                 dict(jump_length=j, jump_n_sample=r)),
                                 generator=_gen(11))
    mu, c = chain_law(m, cov, obs, x_o, T_FAST, S, jump_schedule(S, j, r))
    u = ~obs
    xs = out.x0.double().numpy()[:, u]
    var = np.diag(c)[u]
    assert np.all(np.abs(xs.mean(0) - mu[u]) < Z * np.sqrt(var / n)), (xs.mean(0), mu[u])
    assert np.all(np.abs(xs.var(0, ddof=1) - var) < Z * var * math.sqrt(2 / (n - 1))), (xs.var(0), var)
    c_uu = c[np.ix_(u, u)]
    se_cross = math.sqrt((c_uu[0, 0] * c_uu[1, 1] + c_uu[0, 1] ** 2) / n)
    assert abs(np.cov(xs.T)[0, 1] - c_uu[0, 1]) < Z * se_cross


# ------------------------------------------------------------------------------------------ the Gaussian check


def _gaussian_check(D: int, rho: float, T: int, S: int, j: int, r: int, n: int, seed: int = 0):
    """Sample errors (mean, covariance; :func:`whitened_errors`) against the exact conditional of RePaint and of
    replacement, and the exact errors of RePaint's chain law, printed as a table."""
    m, cov, obs, x_o = _problem(D, rho)
    ref_mean, ref_cov = exact_conditional(m, cov, obs, x_o)
    model = gaussian_ddpm(T, m, cov)
    x, known = _inputs(n, obs, x_o)
    u = ~obs
    rows = {}
    for name, kw in (("replace", {}), ("repaint", dict(jump_length=j, jump_n_sample=r))):
        out = INPAINTERS.get(name)(model, x, known, steps=S, generator=_gen(seed), **kw)
        assert torch.equal(out.x0[:, known[0]], x[:, known[0]])
        xs = out.x0.double().numpy()[:, u]
        sample = whitened_errors(xs.mean(0), np.cov(xs.T), ref_mean, ref_cov)
        mu, c = chain_law(m, cov, obs, x_o, T, S, jump_schedule(S, kw.get("jump_length", 1),
                                                               kw.get("jump_n_sample", 1)))
        exact = whitened_errors(mu[u], c[np.ix_(u, u)], ref_mean, ref_cov)
        rows[name] = (out.nfe, *sample, *exact)
    print(f"\nGaussian check D={D} rho={rho} T={T} S={S} j={j} r={r} n={n}: method, NFE, mean err, cov err "
          f"(samples), mean err, cov err (exact law)")
    for name, row in rows.items():
        print(f"  {name:8s} {row[0]:6d}  {row[1]:.3f} {row[2]:.3f}   {row[3]:.3f} {row[4]:.3f}")
    return rows


def test_gaussian_check_repaint_matches_the_conditional_and_replacement_does_not():
    """Issue 16's Done-when, D = 4 (2 known, 2 unknown), Σ_ij = s_i s_j 0.9^|i−j|, x_o 1 s.d. off the mean along
    each whitened direction of its marginal, 4000 samples, RePaint's jump length j = 10 with r = 20 resamplings on
    250 levels of T = 1000 (4810 NFE).

    Tolerance (stated): mean within 0.3 conditional s.d. (Mahalanobis), covariance within 0.3 (whitened Frobenius);
    RePaint's exact law is at ≈ 0.15 and ≈ 0.15, and the Monte Carlo error of these statistics at n = 4000 is
    ≈ 0.02 (mean) and ≈ 0.04 (covariance). The replacement baseline (exactly ≈ 1.2 and ≈ 0.9) must be worse on
    both, by at least 3× on the mean."""
    rows = _gaussian_check(D=4, rho=0.9, T=1000, S=250, j=10, r=20, n=4000)
    _, rp_mean, rp_cov, *_ = rows["repaint"]
    _, rb_mean, rb_cov, *_ = rows["replace"]
    assert rows["repaint"][0] == repaint_nfe(250, 10, 20) and rows["replace"][0] == 250
    assert rp_mean < 0.3 and rp_cov < 0.3, rows["repaint"]
    assert rb_mean > 3 * rp_mean and rb_cov > rp_cov, rows
    assert rb_mean > 1.0  # replacement is visibly biased here


@pytest.mark.slow
def test_gaussian_check_slow_finer_grid_and_more_resampling():
    """The longer variant: D = 6 (3 unknown), ρ = 0.8, all T = 1000 levels, r = 20: RePaint within 0.2 on the mean
    and 0.15 on the covariance (the grid's error shrinks with S), replacement worse on both."""
    rows = _gaussian_check(D=6, rho=0.8, T=1000, S=1000, j=10, r=20, n=4000)
    _, rp_mean, rp_cov, *_ = rows["repaint"]
    _, rb_mean, rb_cov, *_ = rows["replace"]
    assert rp_mean < 0.2 and rp_cov < 0.15, rows["repaint"]
    assert rb_mean > 3 * rp_mean and rb_cov > rp_cov, rows


# ------------------------------------------------------------------------------------------ images, labels, errors


class _Zero(nn.Module):
    """ε̂ = 0 (x̂_0 = x_t/α): a network that costs nothing; records the labels it is given."""

    def __init__(self):
        super().__init__()
        self.labels: list[torch.Tensor | None] = []

    def forward(self, x, c_noise, *labels):
        self.labels.append(labels[0].clone() if labels else None)
        return torch.zeros_like(x)


def _image_model(cond: Conditioning | None = None) -> DDPM:
    spec = DataSpec(name="tiny", event_shape=(2, 6, 6), n_bins=256)
    cfg = DDPMConfig(schedule=ScheduleConfig(T=50)) if cond is None else \
        DDPMConfig(schedule=ScheduleConfig(T=50), cond=cond)
    model = DDPM(cfg, spec)
    model.net = _Zero()
    return model


@pytest.mark.parametrize("kind", ["top", "left", "center", "random:0.3"])
def test_images_with_masks_per_batch_or_broadcast(kind):
    model = _image_model()
    x = torch.rand(3, 2, 6, 6, generator=_gen(1)) * 2 - 1
    known = make_mask(model.spec, kind, _gen(2))
    out = model_inpaint = run_inpainter(model, x, known, _gen(0), steps=5, jump_length=2, jump_n_sample=2,
                                        keep_trajectory=True)
    assert out.x0.shape == x.shape and torch.equal(out.x0[known.expand_as(x)], x[known.expand_as(x)])
    assert not torch.equal(out.x0, x)  # the unknown part was filled in
    assert model_inpaint.trajectory.shape == (len(jump_schedule(5, 2, 2)), *x.shape)
    per_example = run_inpainter(model, x, known.expand_as(x).clone(), _gen(0), steps=5, jump_length=2,
                                jump_n_sample=2)
    assert torch.equal(per_example.x0, out.x0)
    assert model.net.labels and all(y is None for y in model.net.labels)  # an unconditional model gets no label


def test_labels_reach_the_network_and_guidance_counts_both_passes():
    model = _image_model(Conditioning(num_classes=3))
    x = torch.zeros(2, 2, 6, 6)
    known = make_mask(model.spec, "top")
    y = torch.tensor([0, 2])
    out = run_inpainter(model, x, known, _gen(0), method="replace", y=y, steps=4)
    assert out.nfe == 4 and all(torch.equal(lab, y) for lab in model.net.labels)
    model.net.labels.clear()
    run_inpainter(model, x, known, _gen(0), method="replace", steps=4)  # no y: the null label (p(x_u | x_o))
    assert all(torch.equal(lab, torch.full((2,), 3)) for lab in model.net.labels)
    model.net.labels.clear()
    guided = run_inpainter(model, x, known, _gen(0), y=y, guidance_scale=2.0, steps=4, jump_length=1,
                           jump_n_sample=2)
    assert guided.nfe == 2 * repaint_nfe(4, 1, 2) and len(model.net.labels) == repaint_nfe(4, 1, 2)
    assert torch.equal(model.net.labels[0], torch.tensor([0, 2, 3, 3]))  # [y, ∅] in one batched call
    with pytest.raises(ValueError, match="class"):
        run_inpainter(model, x, known, _gen(0), y=torch.tensor([0, 5]), steps=4)
    with pytest.raises(ValueError, match="guidance steers towards a class"):
        run_inpainter(model, x, known, _gen(0), guidance_scale=1.0, steps=4)


def test_errors_are_one_clear_line():
    model = _image_model()
    x = torch.zeros(2, 2, 6, 6)
    known = make_mask(model.spec, "top")
    cases = [
        (dict(method="raster"), "fills in with repaint | replace"),
        (dict(jump_lenght=3), "takes no option 'jump_lenght'"),
        (dict(method="replace", jump_length=3), "takes no option 'jump_length'"),
        (dict(steps=51), "steps must be between 1 and T=50"),
        (dict(steps=0), "steps must be an integer"),
        (dict(jump_n_sample=0), "jump_n_sample must be an integer"),
        (dict(y=torch.tensor([0, 1])), "unconditional"),
        (dict(guidance_scale=1.0), "guidance needs a class-conditional model"),
    ]
    for kw, message in cases:
        with pytest.raises(ValueError, match=message) as e:
            run_inpainter(model, x, known, **kw)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="the mask has shape"):
        run_inpainter(model, x, make_mask((2, 5, 6), "top"))
    with pytest.raises(ValueError, match="bool"):
        run_inpainter(model, x, known.float())


def test_diffusion_models_offer_repaint_and_replace():
    """The interface: DDPM and VDM list both methods (RePaint first, the default) and ``inpaint`` runs them."""
    from genmodels.diffusion.vdm import VDM, VDMConfig
    from genmodels.nets.mlp import MLPConfig

    model = _image_model()
    assert model.inpainters == ("repaint", "replace")
    x = torch.rand(2, 2, 6, 6, generator=_gen(5)) * 2 - 1
    known = make_mask(model.spec, "left")
    a = model.inpaint(x, known, _gen(0), steps=5, jump_length=2, jump_n_sample=2)
    assert torch.equal(a.x0, run_inpainter(model, x, known, _gen(0), steps=5, jump_length=2, jump_n_sample=2).x0)
    assert a.nfe == repaint_nfe(5, 2, 2) and model.inpaint(x, known, _gen(0), method="replace", steps=5).nfe == 5
    vdm = VDM(VDMConfig(sample_steps=30, mlp=MLPConfig(hidden=16, depth=2, emb_dim=16)),
              DataSpec(name="v", event_shape=(3,), n_bins=None))
    assert vdm.inpainters == ("repaint", "replace")
    xv = torch.tensor([[0.5, -0.2, 0.1]] * 4)
    kv = make_mask(vdm.spec, "left")
    out = vdm.inpaint(xv, kv, _gen(0), steps=10, jump_length=3, jump_n_sample=2)
    assert out.nfe == repaint_nfe(10, 3, 2) and torch.isfinite(out.x0).all()
    assert torch.equal(out.x0[:, 0], xv[:, 0]) and not torch.equal(out.x0[:, 1:], xv[:, 1:])
