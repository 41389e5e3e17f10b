"""Class-conditional sampling and classifier-free guidance of the diffusion models (Ho & Salimans 2022, Eq. 6).

References, all written here without the code under test:

- closed form: for class-conditional Gaussian data x | y ~ N(m_y, Σ) (full Σ; ``tests/_gaussian_classes.py``) the
  network is the exact optimal ε-predictor of each class and, at the null label, of the mixture p(x); the guided
  prediction must be the linear combination (1 + w)·ε*(x, y) − w·ε*(x, ∅) with x̂_0 and v̂ re-read from it (and
  clipped after combining), and with w = 0 the samples must follow N(m_y, Σ) (mean and covariance within Z = 5
  standard errors; the step counts are those at which each sampler's discretization error is below one);
- the conditional sampler itself: the same sampler run on the network with the labels fixed inside it (a model
  that never hears of labels or guidance), which CFG with w = 0 must equal bitwise, for every sampler;
- the NFE report: a guided step is one network call on the doubled batch [x, x] with labels [y, ∅], counted twice.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from _gaussian_classes import (
    MEANS,
    NULL,
    PRIOR,
    SIGMA,
    SPEC,
    D,
    K,
    check_gaussian,
    optimal_eps,
    ref_logsnr,
    vp_alpha_sigma,
)
from _gaussian_data import F64, Z, gen
from genmodels.core import Conditioning
from genmodels.diffusion.ddpm import DDPM, DDPMConfig
from genmodels.diffusion.guidance import Guided, combine, guided
from genmodels.diffusion.schedules import GammaConfig, ScheduleConfig
from genmodels.diffusion.vdm import VDM, VDMConfig
from genmodels.nets.mlp import MLPConfig
from genmodels.sampling import draw_in_batches

T = 1000
G0, G1 = -10.0, 10.0  # the oracle VDM's fixed γ end points (α_1² = sigmoid(−10): N(0, I) is q(z_1) within 0.5%)
TINY = MLPConfig(hidden=16, depth=2, emb_dim=16)


class ClassOracle(nn.Module):
    """The optimal ε* of each class (the mixture's at the null label), reading λ from the model's c_noise: DDPM's
    fractional step i = c·T/1000 → λ by np.interp on the paper's table; VDM's γ = γ_0 + c/1000 (γ_1 − γ_0).
    Records the batch size and labels of every call."""

    def __init__(self, kind: str = "ddpm", T: int = T):
        super().__init__()
        self.kind, self.T, self.lam, self.calls = kind, T, ref_logsnr(T), []
        self.dummy = nn.Parameter(torch.zeros(()))  # gives the network a dtype

    def logsnr(self, c_noise: torch.Tensor) -> torch.Tensor:
        c = c_noise.detach().double()
        if self.kind == "vdm":
            return -(G0 + c / 1000 * (G1 - G0))
        return torch.from_numpy(np.interp(c.numpy() * self.T / 1000, np.arange(self.T), self.lam))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.shape[0], y.clone()))
        return optimal_eps(x, self.logsnr(c_noise), y).to(x.dtype)


def oracle_ddpm(T: int = T, clip_x0: bool = False) -> DDPM:
    model = DDPM(DDPMConfig(schedule=ScheduleConfig(T=T), clip_x0=clip_x0, mlp=TINY, cond=Conditioning(K)), SPEC)
    model.net = ClassOracle("ddpm", T)
    return model.eval()


def oracle_vdm(sample_steps: int = 1000) -> VDM:
    model = VDM(VDMConfig(schedule=GammaConfig(kind="fixed", gamma_0=G0, gamma_1=G1), sample_steps=sample_steps,
                          clip_x0=False, mlp=TINY, cond=Conditioning(K)), SPEC)
    model.net = ClassOracle("vdm")
    return model.eval()


def labels(k: int, n: int) -> torch.Tensor:
    return torch.full((n,), k, dtype=torch.long)


def expected_guided(x: torch.Tensor, lam: torch.Tensor, y: torch.Tensor, w: float, clip: bool):
    """(ε̃, x̃_0, ṽ) of the closed form: ε̃ = (1 + w) ε*(x, y) − w ε*(x, ∅), x̃_0 = (x − σ ε̃)/α, clipped then ε̃ re-read
    from it, ṽ = α ε̃ − σ x̃_0."""
    eps = (1 + w) * optimal_eps(x, lam, y) - w * optimal_eps(x, lam, torch.full_like(y, NULL))
    a, s = (t[:, None] for t in vp_alpha_sigma(lam))
    x0 = (x - s * eps) / a
    if clip:
        x0 = x0.clamp(-1, 1)
        eps = (x - a * x0) / s
    return eps, x0, a * eps - s * x0


# ------------------------------------------------------------------------------------------ the guided predictor


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("w", [0.0, 0.5, 3.0])
def test_guided_prediction_is_the_linear_combination(w, clip):
    """At the training steps (model_output) and at any λ (denoise): ε̃ = (1 + w) ε*(y) − w ε*(∅) with x̂_0, v̂
    consistent with it and clipped after combining; w ≠ 0 is one call on 2B examples labelled [y, ∅], w = 0 one call
    on the B examples labelled y."""
    model = oracle_ddpm(clip_x0=clip)
    g = gen(0)
    x = 1.5 * torch.randn(6, D, generator=g, dtype=F64)
    y = torch.tensor([0, 1, 2, 0, NULL, 2])
    i = torch.tensor([0, 10, 100, 500, 900, 999])
    reader = Guided(model, y, w)
    lam = torch.from_numpy(ref_logsnr(T))[i]
    lam_any = torch.linspace(model.logsnr_min + 0.1, model.logsnr_max - 0.1, 6, dtype=F64)  # between the steps
    for out, lam_used in ((reader.model_output(x, i, clip_x0=clip), lam),
                          (reader.denoise(x, lam_any, clip_x0=clip), lam_any)):
        eps, x0, v = expected_guided(x, lam_used, y, w, clip)
        # float64, but the oracle reads λ back from DDPM's float32 c_noise (≈ 1e-7), and x̂_0 = (x − σ ε)/α
        # amplifies that by 1/α (≈ 150 at the noisiest level)
        torch.testing.assert_close(out.pred.eps, eps, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(out.pred.x0, x0, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.pred.v, v, rtol=1e-5, atol=1e-5)
        assert out.logsnr.shape == (6,)
        if clip:
            assert out.pred.x0.abs().max() <= 1
        n, seen = model.net.calls[-1]
        want = y if w == 0 else torch.cat([y, torch.full_like(y, NULL)])
        assert n == len(want) and torch.equal(seen, want)
    assert len(model.net.calls) == 2  # one network call per reading, guided or not
    assert reader.evaluations == (1 if w == 0 else 2)


def test_combine_is_affine_in_every_parameterization():
    """The weights sum to one, so combining ε̂, x̂_0 and v̂ separately gives one consistent prediction: x̃_0 and ṽ
    read from ε̃ equal the combined x̃_0 and ṽ (no division by α is needed)."""
    from genmodels.diffusion import gaussian as G

    g = gen(1)
    x = torch.randn(5, D, generator=g, dtype=F64)
    lam = torch.linspace(-8, 8, 5, dtype=F64)
    c = G.predict(torch.randn(5, D, generator=g, dtype=F64), x, lam, "v")
    u = G.predict(torch.randn(5, D, generator=g, dtype=F64), x, lam, "v")
    out = combine(c, u, 2.5, x, lam, clip_x0=False)
    reread = G.predict(out.eps, x, lam, "eps")
    torch.testing.assert_close(out.x0, reread.x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out.v, reread.v, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out.eps, 3.5 * c.eps - 2.5 * u.eps)


def test_guided_stands_in_for_the_model():
    model = oracle_ddpm()
    y = labels(1, 3)
    reader = guided(model, y, 2.0)
    assert isinstance(reader, Guided)
    assert reader.schedule is model.schedule and reader.T == model.T and reader.spec is model.spec
    assert reader.config is model.config and reader.device == model.device
    with pytest.raises(AttributeError):
        reader.no_such_attribute  # noqa: B018
    unconditional = DDPM(DDPMConfig(schedule=ScheduleConfig(T=100), mlp=TINY), SPEC)
    assert guided(unconditional, None) is unconditional  # the unconditional path is untouched
    with pytest.raises(ValueError, match="class labels"):
        guided(unconditional, None, 1.0)


# ------------------------------------------------------------------------------------------ closed-form sample law

N_LAW = 4000
_SLOW = pytest.mark.slow  # all T = 1000 steps (5-8 s each): their fast checks are the bitwise ones below
LAW_RUNS = [pytest.param("ancestral", {}, marks=_SLOW, id="ancestral"), ("ddim", {"steps": 200}),
            ("dpm++", {"steps": 25}), ("heun", {"steps": 25}),
            pytest.param("euler_maruyama", {}, marks=_SLOW, id="euler_maruyama"),
            ("ode", {"rtol": 1e-5, "atol": 1e-5}), pytest.param("pc", {"steps": 500}, marks=_SLOW, id="pc")]


@pytest.mark.parametrize("name,kw", LAW_RUNS)
def test_conditional_samples_follow_the_class_gaussian(name, kw):
    """w = 0: the samples of class y follow N(m_y, Σ) (full covariance), within Z = 5 standard errors, in every
    sampler; and for the null label the mixture's mean Σ π_y m_y and covariance Σ + Σ_y π_y (m_y − m̄)(m_y − m̄)ᵀ."""
    model = oracle_ddpm()
    y = torch.arange(N_LAW) % (K + 1)  # every class and the null label in one batch
    out = model.draw(N_LAW, gen(2), sampler=name, y=y, guidance_scale=0.0, **kw)
    x = out.x0.double()
    for k in range(K):
        check_gaussian(x[y == k], MEANS[k], SIGMA, Z, f"{name} class {k}")
    m_bar = PRIOR @ MEANS
    cov_mix = SIGMA + ((MEANS - m_bar).T * PRIOR) @ (MEANS - m_bar)
    check_gaussian(x[y == NULL], m_bar, cov_mix, Z, f"{name} null label", gaussian=False)


def test_vdm_conditional_samples_follow_the_class_gaussian():
    model = oracle_vdm()
    y = torch.arange(3000) % K
    x = model.draw(3000, gen(3), sampler="dpm++", steps=25, y=y).x0.double()
    for k in range(K):
        check_gaussian(x[y == k], MEANS[k], SIGMA, Z, f"vdm class {k}")


@pytest.mark.parametrize("model_fn", [oracle_ddpm, oracle_vdm], ids=["ddpm", "vdm"])
def test_guidance_moves_samples_away_from_the_other_classes(model_fn):
    """With the same initial noise, the mean projection of class-y samples on m_y − m_k (k ≠ y) grows with w, from
    the class's own value at w = 0 (within Z standard errors), and so does the share of samples that the Bayes
    classifier of the data assigns to y."""
    model = model_fn()
    y, n = 0, 2000
    ws = [0.0, 0.5, 1.0, 2.0, 4.0]
    xs = [model.draw(n, gen(4), sampler="dpm++", steps=25, y=labels(y, n), guidance_scale=w).x0.double() for w in ws]
    prec = torch.linalg.inv(SIGMA)
    for k in range(K):
        if k == y:
            continue
        u = MEANS[y] - MEANS[k]
        proj = [((x - MEANS[y]) @ u).mean().item() for x in xs]
        se = ((u @ SIGMA @ u) / n).sqrt().item()
        assert abs(proj[0]) < Z * se, (k, proj[0], se)
        assert all(b > a + se for a, b in itertools.pairwise(proj)), (k, proj)
    shares = []
    for x in xs:  # Bayes classifier of the data: argmax_k log π_k − ½ (x − m_k)ᵀ Σ⁻¹ (x − m_k)
        d = x[:, None, :] - MEANS[None]
        score = PRIOR.log()[None] - 0.5 * torch.einsum("nkd,de,nke->nk", d, prec, d)
        shares.append((score.argmax(1) == y).double().mean().item())
    assert all(b >= a for a, b in itertools.pairwise(shares)) and shares[-1] > shares[0], shares


# ------------------------------------------------------------------------------------------ w = 0 is the conditional
#                                                                                             sampler, bitwise

SAMPLER_KW = {"ancestral": {"steps": 10}, "ddim": {"steps": 10, "eta": 1.0}, "dpm++": {"steps": 8},
              "heun": {"steps": 5, "s_churn": 2.0}, "euler_maruyama": {"steps": 8},
              "ode": {"rtol": 1e-2, "atol": 1e-2}, "pc": {"steps": 5, "corrector_steps": 2}}


class Recorder(nn.Module):
    """Calls a conditional backbone, recording the batch size and labels of every call."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.inner, self.calls = net, []

    def forward(self, x, c_noise, y):
        self.calls.append((x.shape[0], y.clone()))
        return self.inner(x, c_noise, y)


class FixedLabels(nn.Module):
    """The conditional backbone with the labels fixed inside: ``forward(x, c_noise)``, a network that never hears of
    labels (the reference conditional sampler runs on it)."""

    def __init__(self, net: nn.Module, y: torch.Tensor):
        super().__init__()
        self.inner, self.y = net, y

    def forward(self, x, c_noise):
        return self.inner(x, c_noise, self.y)


def trained_like(family: str, image: bool = False) -> DDPM | VDM:
    """A small conditional model with random weights whose output and label embedding are far from zero (a freshly
    built backbone outputs zeros), clipping on (so the clipped path is compared too)."""
    from genmodels.core import DataSpec
    from genmodels.nets.unet import UNetConfig

    torch.manual_seed(0)
    cond = Conditioning(K)
    if image:
        spec = DataSpec("tiny", (1, 8, 8), 17, num_classes=K)
        unet = UNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_levels=(1,), num_heads=2, groups=4)
        model = DDPM(DDPMConfig(schedule=ScheduleConfig(T=50), unet=unet, cond=cond), spec)
    elif family == "ddpm":
        model = DDPM(DDPMConfig(schedule=ScheduleConfig(T=50), parameterization="v", mlp=TINY, cond=cond), SPEC)
    else:
        model = VDM(VDMConfig(schedule=GammaConfig(kind="learned_linear"), sample_steps=50, mlp=TINY, cond=cond),
                    SPEC)
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen(7)))
    return model.eval()


@pytest.mark.parametrize("family", ["ddpm", "vdm"])
@pytest.mark.parametrize("name", list(SAMPLER_KW))
def test_cfg_with_w0_is_the_conditional_sampler_bitwise(family, name):
    """CFG with w = 0 equals, bit for bit (samples, trajectory, NFE), the sampler run on the network with the labels
    fixed inside it; it calls the network once per evaluation, on the n examples and their labels (no doubling)."""
    model = trained_like(family)
    assert set(model.guidance_samplers) == set(model.samplers)
    n = 6
    y = torch.tensor([0, 1, 2, NULL, 1, 0])
    ref = copy.deepcopy(model)
    ref.num_classes = None  # the reference model knows nothing of labels
    ref.net = FixedLabels(ref.net, y)
    want = ref.draw(n, gen(5), sampler=name, keep_trajectory=True, **SAMPLER_KW[name])
    model.net = Recorder(model.net)
    got = model.draw(n, gen(5), sampler=name, y=y, guidance_scale=0.0, keep_trajectory=True, **SAMPLER_KW[name])
    assert torch.equal(got.x0, want.x0), (family, name)
    assert torch.equal(got.trajectory, want.trajectory) and got.nfe == want.nfe == len(model.net.calls)
    assert all(b == n and torch.equal(seen, y) for b, seen in model.net.calls)


def test_cfg_with_w0_is_the_conditional_sampler_bitwise_on_a_unet():
    model = trained_like("ddpm", image=True)
    y = torch.tensor([2, 0, NULL])
    ref = copy.deepcopy(model)
    ref.num_classes = None
    ref.net = FixedLabels(ref.net, y)
    for name in ("ddim", "dpm++"):
        want = ref.draw(3, gen(6), sampler=name, steps=4)
        got = model.draw(3, gen(6), sampler=name, steps=4, y=y, guidance_scale=0.0)
        assert torch.equal(got.x0, want.x0), name
        assert not torch.equal(got.x0, model.draw(3, gen(6), sampler=name, steps=4, y=y, guidance_scale=1.0).x0)


@pytest.mark.parametrize("family", ["ddpm", "vdm"])
@pytest.mark.parametrize("name", list(SAMPLER_KW))
def test_guided_nfe_counts_both_passes(family, name):
    """w ≠ 0: every network call is one doubled batch labelled [y, ∅], the reported NFE is twice the calls, and
    ``model.nfe(sampler, steps, w)`` says the same (twice the unguided count; None for the adaptive ``ode``)."""
    model = trained_like(family)
    n, w = 4, 1.5
    y = torch.tensor([0, 1, 2, 1])
    model.net = Recorder(model.net)
    out = model.draw(n, gen(8), sampler=name, y=y, guidance_scale=w, **SAMPLER_KW[name])
    pair = torch.cat([y, torch.full_like(y, NULL)])
    assert all(b == 2 * n and torch.equal(seen, pair) for b, seen in model.net.calls)
    assert out.nfe == 2 * len(model.net.calls)
    steps = SAMPLER_KW[name].get("steps")
    if name == "pc":  # the model's count is for the default corrector; check the default run as well
        steps = None
    expected = model.nfe(name, steps, guidance_scale=w)
    if name == "ode":
        assert expected is None
    elif name != "pc":
        assert expected == out.nfe == 2 * model.nfe(name, steps)
    else:
        assert expected == 2 * model.nfe(name, steps)
    assert torch.isfinite(out.x0).all()


# ------------------------------------------------------------------------------------------ labels and errors


def test_unconditional_samples_of_a_conditional_model_read_the_null_label():
    model = trained_like("ddpm")
    a = model.draw(5, gen(9), sampler="ddim", steps=5)
    b = model.draw(5, gen(9), sampler="ddim", steps=5, y=labels(NULL, 5))
    c = model.draw(5, gen(9), sampler="ddim", steps=5, y=labels(0, 5))
    assert torch.equal(a.x0, b.x0) and not torch.equal(a.x0, c.x0)


def test_guidance_errors_are_clear():
    cond = trained_like("ddpm")
    with pytest.raises(ValueError, match="give the classes"):
        cond.draw(2, gen(0), sampler="ddim", steps=2, guidance_scale=1.0)
    with pytest.raises(ValueError, match="out of range"):
        cond.draw(2, gen(0), sampler="ddim", steps=2, y=torch.tensor([0, K + 1]), guidance_scale=1.0)
    with pytest.raises(ValueError, match="one label per example"):
        cond.draw(2, gen(0), sampler="ddim", steps=2, y=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="finite"):
        cond.draw(2, gen(0), sampler="ddim", steps=2, y=labels(0, 2), guidance_scale=float("nan"))
    uncond = DDPM(DDPMConfig(schedule=ScheduleConfig(T=100), mlp=TINY), SPEC)
    with pytest.raises(ValueError, match="class-conditional model"):
        uncond.draw(2, gen(0), sampler="ddim", steps=2, guidance_scale=1.0)
    with pytest.raises(ValueError, match="unconditional"):
        uncond.draw(2, gen(0), sampler="ddim", steps=2, y=labels(0, 2))
    for name in uncond.samplers:
        assert "guidance_scale" in uncond.sampler_options[name]


def test_draw_in_batches_passes_guidance_through():
    """The batched sampler (what the CLI and the guidance sweep call) takes ``guidance_scale`` as a sampler option
    and reports the doubled NFE."""
    model = trained_like("ddpm")
    y = torch.arange(7) % K
    out = draw_in_batches(model, 7, "ddim", steps=4, generator=gen(10), batch_size=3, y=y, guidance_scale=2.0)
    assert out.x0.shape == (7, D) and out.nfe == 8 == model.nfe("ddim", 4, guidance_scale=2.0)
    single = model.draw(3, gen(10), sampler="ddim", steps=4, y=y[:3], guidance_scale=2.0)
    assert torch.equal(out.x0[:3], single.x0)
