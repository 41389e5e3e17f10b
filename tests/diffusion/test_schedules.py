"""Tests for genmodels.diffusion.schedules, against the defining formulas written out here in numpy.

Reference values are computed independently of the library: the linear schedule of Ho et al. (2020, §4)
scaled by 1000/T, the cosine schedule ᾱ(t) = f(t)/f(0) of Nichol & Dhariwal (2021, Eq. 17), ᾱ_t = Π(1 − β_s),
λ_t = log(ᾱ_t / (1 − ᾱ_t)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genmodels.diffusion.schedules import (
    DiscreteSchedule,
    ScheduleConfig,
    cosine_betas,
    linear_betas,
    logsnr_from_alphas_cumprod,
    respaced_timesteps,
)


def ref_linear_betas(T: int, b0: float = 1e-4, b1: float = 0.02) -> np.ndarray:
    return np.linspace(b0 * 1000 / T, b1 * 1000 / T, T)


def ref_cosine_alphas_cumprod(T: int, s: float = 0.008) -> np.ndarray:
    """ᾱ_t = f(t)/f(0) for t = 1..T (no clipping)."""
    t = np.arange(T + 1) / T
    f = np.cos((t + s) / (1 + s) * np.pi / 2) ** 2
    return f[1:] / f[0]


def ref_alphas_cumprod(betas: np.ndarray) -> np.ndarray:
    out, prod = [], 1.0
    for b in betas:
        prod *= 1.0 - b
        out.append(prod)
    return np.array(out)


# ------------------------------------------------------------------------------------------ linear


@pytest.mark.parametrize("T", [1000, 100, 7])
def test_linear_betas_endpoints_spacing_and_scaling(T):
    b = linear_betas(T)
    assert b.dtype == torch.float64 and b.shape == (T,)
    scale = 1000.0 / T
    assert b[0].item() == pytest.approx(1e-4 * scale, rel=1e-14)
    assert b[-1].item() == pytest.approx(0.02 * scale, rel=1e-14)
    d = torch.diff(b)
    torch.testing.assert_close(d, torch.full_like(d, (0.02 - 1e-4) * scale / (T - 1)), rtol=1e-9, atol=0)
    np.testing.assert_allclose(b.numpy(), ref_linear_betas(T), rtol=1e-13)


def test_linear_betas_custom_endpoints():
    b = linear_betas(1000, 1e-3, 0.05)
    assert b[0].item() == pytest.approx(1e-3) and b[-1].item() == pytest.approx(0.05)


# ------------------------------------------------------------------------------------------ cosine


@pytest.mark.parametrize("T", [1000, 100])
def test_cosine_alphas_cumprod_matches_formula_decreasing_in_unit_interval(T):
    sched = DiscreteSchedule.from_config(ScheduleConfig(kind="cosine", T=T))
    ac = sched.alphas_cumprod.numpy()
    ref = ref_cosine_alphas_cumprod(T)
    # β is clipped at 0.999 only where 1 − ᾱ_t/ᾱ_{t−1} exceeds it (the last step); elsewhere ᾱ is f(t)/f(0).
    ref_betas = 1 - ref[1:] / ref[:-1]
    unclipped = int(np.argmax(ref_betas > 0.999)) if (ref_betas > 0.999).any() else T - 1
    np.testing.assert_allclose(ac[:unclipped], ref[:unclipped], rtol=1e-12)
    assert np.all(np.diff(ac) < 0), "ᾱ must be strictly decreasing"
    assert np.all((ac > 0) & (ac < 1))
    assert sched.betas.max().item() <= 0.999
    # the raw ᾱ_T is 0 (f(T) = cos²(π/2)); the clipped schedule keeps it positive
    assert ref[-1] < 1e-30 < ac[-1]


def test_cosine_betas_clip_value():
    b = cosine_betas(50)
    assert b[-1].item() == pytest.approx(0.999)
    assert (b[:-1] < 0.999).all()


# ------------------------------------------------------------------------------------------ buffers


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedule_buffers_match_definitions(kind):
    T = 200
    sched = DiscreteSchedule.from_config(ScheduleConfig(kind=kind, T=T))
    for name in ("betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev", "logsnr", "logsnr_prev"):
        buf = getattr(sched, name)
        assert buf.dtype == torch.float64 and buf.shape == (T,), name
    betas = sched.betas.numpy()
    if kind == "linear":
        np.testing.assert_allclose(betas, ref_linear_betas(T), rtol=1e-13)
    ac = ref_alphas_cumprod(betas)
    np.testing.assert_allclose(sched.alphas.numpy(), 1 - betas, rtol=1e-15)
    np.testing.assert_allclose(sched.alphas_cumprod.numpy(), ac, rtol=1e-12)
    np.testing.assert_allclose(sched.alphas_cumprod_prev.numpy(), np.concatenate([[1.0], ac[:-1]]), rtol=1e-12)
    ref_logsnr = np.array([math.log(a / (1 - a)) for a in ac])
    np.testing.assert_allclose(sched.logsnr.numpy(), ref_logsnr, rtol=1e-9, atol=1e-12)
    assert torch.all(torch.diff(sched.logsnr) < 0), "logSNR must be strictly decreasing"
    assert sched.logsnr_prev[0].item() == math.inf
    torch.testing.assert_close(sched.logsnr_prev[1:], sched.logsnr[:-1], rtol=0, atol=0)
    assert torch.equal(sched.timesteps, torch.arange(T))
    assert sched.num_steps == T


def test_logsnr_from_alphas_cumprod_values():
    ac = torch.tensor([1.0, 0.5, 0.9, 1e-6], dtype=torch.float64)
    out = logsnr_from_alphas_cumprod(ac)
    assert out[0].item() == math.inf
    assert out[1].item() == pytest.approx(0.0, abs=1e-15)
    assert out[2].item() == pytest.approx(math.log(9.0), rel=1e-13)
    assert out[3].item() == pytest.approx(math.log(1e-6 / (1 - 1e-6)), rel=1e-13)


def test_schedule_rejects_bad_betas_and_kind():
    with pytest.raises(ValueError):
        DiscreteSchedule(torch.tensor([0.1, 0.0]))
    with pytest.raises(ValueError):
        DiscreteSchedule(torch.tensor([0.1, 1.5]))
    with pytest.raises(ValueError):
        DiscreteSchedule(torch.ones(2, 2) * 0.1)
    with pytest.raises(ValueError):
        DiscreteSchedule.from_config(ScheduleConfig(kind="sigmoid"))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ respacing


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("S", [2, 3, 10, 37, 50, 999, 1000])
def test_respace_keeps_alphas_cumprod_at_kept_timesteps(kind, S):
    T = 1000
    full = DiscreteSchedule.from_config(ScheduleConfig(kind=kind, T=T))
    sub = full.respace(S)
    ts = sub.timesteps
    assert sub.num_steps == S and ts.shape == (S,) and ts.dtype == torch.int64
    assert torch.all(torch.diff(ts) > 0)
    assert ts[0].item() == 0 and ts[-1].item() == T - 1
    # ᾱ at kept steps: the respaced β's telescope back to the original ᾱ. Exact up to float64 rounding: the
    # process stores β = 1 − ᾱ_{t_i}/ᾱ_{t_{i−1}} and rebuilds ᾱ from 1 − β, which is exact to ~1 ulp of 1
    # *absolutely* (so a tiny ᾱ, e.g. the cosine ᾱ_T ≈ 1e-9 reached in one jump, is only ~1e-8 exact
    # relatively). Hence a few-ulp absolute tolerance, and the matching one for λ = logit(ᾱ).
    ulp_abs = 4 * 2.0**-52
    ac_full = full.alphas_cumprod[ts]
    torch.testing.assert_close(sub.alphas_cumprod, ac_full, rtol=1e-12, atol=ulp_abs)
    lam_tol = ulp_abs / (ac_full * (1 - ac_full)) + 1e-12
    assert torch.all((sub.logsnr - full.logsnr[ts]).abs() <= lam_tol)
    # the derived β_i = 1 − ᾱ_{t_i}/ᾱ_{t_{i−1}} (Nichol & Dhariwal 2021, §4), written from the original ᾱ
    ac = full.alphas_cumprod[ts].numpy()
    ref_b = 1 - ac / np.concatenate([[1.0], ac[:-1]])
    np.testing.assert_allclose(sub.betas.numpy(), ref_b, rtol=1e-12)
    # evenly spaced: consecutive gaps differ from (T−1)/(S−1) by less than one step
    gaps = torch.diff(ts).double()
    assert torch.all((gaps - (T - 1) / (S - 1)).abs() < 1.0)


def test_respace_full_is_identity_and_explicit_indices_compose():
    T = 100
    full = DiscreteSchedule.from_config(ScheduleConfig(T=T))
    same = full.respace(T)
    assert torch.equal(same.timesteps, full.timesteps)
    torch.testing.assert_close(same.betas, full.betas, rtol=1e-12, atol=0)
    torch.testing.assert_close(same.alphas_cumprod, full.alphas_cumprod, rtol=1e-12, atol=0)
    sub = full.respace([0, 10, 40, 99])
    assert sub.timesteps.tolist() == [0, 10, 40, 99]
    # respacing a respaced process indexes into it, and its timesteps refer to the original process
    subsub = sub.respace([1, 3])
    assert subsub.timesteps.tolist() == [10, 99]
    torch.testing.assert_close(subsub.alphas_cumprod, full.alphas_cumprod[[10, 99]], rtol=1e-12, atol=4 * 2.0**-52)
    assert subsub.alphas_cumprod_prev[0].item() == 1.0


def test_respace_single_step():
    full = DiscreteSchedule.from_config(ScheduleConfig(T=100))
    one = full.respace(1)
    assert one.timesteps.tolist() == [99]
    torch.testing.assert_close(one.alphas_cumprod, full.alphas_cumprod[[99]], rtol=1e-12, atol=4 * 2.0**-52)


@pytest.mark.parametrize("bad", [0, -1, 101, [], [3, 3], [5, 2], [-1, 4], [0, 100], [0, 50, 49]])
def test_respace_bad_steps_raise(bad):
    full = DiscreteSchedule.from_config(ScheduleConfig(T=100))
    with pytest.raises(ValueError):
        full.respace(bad)


@pytest.mark.parametrize("T,S", [(1000, 50), (1000, 7), (100, 100), (10, 4), (5, 1)])
def test_respaced_timesteps(T, S):
    ts = respaced_timesteps(T, S)
    assert len(ts) == S and ts == sorted(set(ts))
    assert ts[-1] == T - 1 and (S == 1 or ts[0] == 0)


def test_respaced_timesteps_bad():
    for T, S in [(10, 0), (10, 11)]:
        with pytest.raises(ValueError):
            respaced_timesteps(T, S)
