"""Integration tests of the variational diffusion model (genmodels.diffusion.vdm) with the rest of the library:
every sampler, the probability-flow ODE likelihood, the bound's parts, the CLI (train → evaluate → sample →
pictures → resume), checkpoints of a learned schedule, and clear errors for bad configurations.

Models are tiny (a one-level 8-channel UNet on 8×8 ``digits``, a 16-wide MLP on 2-D points) and every network's
zero-initialised output layer is randomised, so the samplers and bounds see a network whose output is not 0.

For Gaussian data x ~ N(μ, s² I) the Bayes-optimal ε̂*(z, λ) = σ(z − αμ)/v, v = α²s² + σ², is known in closed form;
with it (VDM conditions the network on c = 1000 (γ − γ_0)/(γ_1 − γ_0), so γ and λ = −γ are read back exactly)
the expected parts of the VDM bound have closed forms, written here from the paper (VDM Eq. 11, 13, 17), and the
probability-flow ODE's density is (up to the finite λ range) the data density itself.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from _cli import last_json as _last_json
from _cli import ok as _ok
from genmodels.checkpoint import RunConfig, config_from_dict, config_to_dict, from_pretrained, save_pretrained
from genmodels.cli import app
from genmodels.core import DataSpec
from genmodels.data import load_dataset
from genmodels.diffusion.ode import ode_log_likelihood
from genmodels.diffusion.samplers import SAMPLERS
from genmodels.diffusion.schedules import (
    FixedLinearGamma,
    GammaConfig,
    LearnedLinearGamma,
    MonotoneNetGamma,
    build_gamma_schedule,
)
from genmodels.diffusion.vdm import VDM, VDMConfig
from genmodels.families import MODELS
from genmodels.metrics.likelihood import evaluate_nll, evaluate_ode_nll
from genmodels.nets.mlp import MLPConfig
from genmodels.nets.unet import UNetConfig
from genmodels.sampling import draw_in_batches

F64 = torch.float64
Z = 5.0  # Monte Carlo tolerance in standard errors
IMG = DataSpec(name="digits", event_shape=(1, 8, 8), n_bins=17)
VEC = DataSpec(name="moons", event_shape=(2,))
TINY_UNET = UNetConfig(channels=8, channel_mult=(1,), num_res_blocks=1, attn_levels=(), groups=4)
TINY_MLP = MLPConfig(hidden=16, depth=1, emb_dim=16)

runner = CliRunner()


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_vdm(spec: DataSpec, seed: int = 0, **config) -> VDM:
    """A tiny VDM in eval mode whose output layer is random (not the zero init), with a small learned schedule."""
    config.setdefault("schedule", GammaConfig(n_features=8))
    config.setdefault("sample_steps", 20)
    with torch.random.fork_rng(devices=[]):  # seeded weights without touching the global RNG
        torch.manual_seed(seed)
        model = VDM(VDMConfig(unet=TINY_UNET, mlp=TINY_MLP, **config), spec)
    g = gen(seed + 1)
    with torch.no_grad():
        for p in model.net.out[-1].parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def digits_batch(n: int) -> torch.Tensor:
    return load_dataset("digits").test[:n]


def moons_batch(n: int) -> torch.Tensor:
    return load_dataset("moons").test[:n]


# ================================================================================================ 1. samplers

SAMPLER_NAMES = SAMPLERS.names()
RETURN_X0 = {"dpm++", "heun", "euler_maruyama", "ode"}  # these end on x̂_0 itself (clipped for digits)


@pytest.fixture(scope="module")
def models():
    return {"image": tiny_vdm(IMG), "vector": tiny_vdm(VEC, clip_x0=False)}


def test_all_six_samplers_are_covered():
    assert {"ancestral", "ddim", "dpm++", "heun", "euler_maruyama", "ode"} <= set(SAMPLER_NAMES)


@pytest.mark.parametrize("kind", ["image", "vector"])
@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_every_sampler_runs_on_vdm_and_is_reproducible(models, kind, name):
    model = models[kind]
    steps = 4
    out = SAMPLERS.get(name)(model, 3, steps=steps, generator=gen(11))
    x = out.x0
    assert x.shape == (3, *model.spec.event_shape)
    assert torch.isfinite(x).all()
    expected_nfe = {"heun": 2 * steps - 1, "pc": 2 * steps, "ode": None}.get(name, steps)  # pc: 1 corrector step
    if expected_nfe is None:
        assert out.nfe >= 2
    else:
        assert out.nfe == expected_nfe
    if kind == "image" and name in RETURN_X0:  # clip_x0 is on for discrete data
        assert x.abs().max() <= 1 + 1e-5
    # the model's own entry point, same seed: bit-identical; another seed: different
    a = model.sample(3, gen(11), sampler=name, steps=steps)
    b = model.sample(3, gen(11), sampler=name, steps=steps)
    c = model.sample(3, gen(12), sampler=name, steps=steps)
    assert torch.equal(a, x) and torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_samplers_see_a_nonzero_network(models):
    """The randomised output layer matters: x̂_0 differs from the zero-network's z/α."""
    model = models["vector"]
    z = torch.randn(4, 2, generator=gen(0))
    lam = torch.full((4,), 0.0, dtype=F64)
    out = model.denoise(z, lam)
    assert out.pred.eps.abs().max() > 1e-3


def test_discrete_time_vdm_process_is_gamma_on_the_grid_and_samples():
    model = tiny_vdm(VEC, T=8, clip_x0=False)
    assert model.T == 8
    sched = model.schedule
    assert sched.num_steps == 8
    t = torch.arange(1, 9, dtype=F64) / 8
    with torch.no_grad():
        torch.testing.assert_close(sched.logsnr, -model.gamma(t), rtol=1e-9, atol=1e-9)
    assert model.logsnr_min == pytest.approx(-5.0, abs=1e-5) and model.logsnr_max == pytest.approx(13.3, abs=1e-5)
    for name in ("ancestral", "ddim"):
        full = model.sample(5, gen(3), sampler=name)  # steps default to T
        assert full.shape == (5, 2) and torch.isfinite(full).all()
        assert torch.equal(full, model.sample(5, gen(3), sampler=name, steps=8))
    res = draw_in_batches(model, 7, "ancestral", steps=8, generator=gen(4), batch_size=3)
    assert res.x0.shape == (7, 2) and res.nfe == 8


# ================================================================================================ Gaussian oracle

MU = torch.tensor([0.5, -0.25], dtype=F64)
S = 0.5
GAUSS = DataSpec(name="gauss2", event_shape=(2,))
G0, G1 = -10.0, 6.0


class OptimalEps(nn.Module):
    """ε̂*(z, λ) for x ~ N(μ, s² I), reading γ = γ_0 + c/1000 (γ_1 − γ_0) from VDM's conditioning."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))  # gives the network a dtype

    def forward(self, z: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        gamma = G0 + c_noise.double()[:, None] / 1000 * (G1 - G0)
        ab = torch.sigmoid(-gamma)  # α²
        return ((1 - ab).sqrt() * (z.double() - ab.sqrt() * MU) / (ab * S**2 + 1 - ab)).to(z.dtype)


def oracle_vdm(kind: str = "fixed", T: int = 0) -> VDM:
    model = VDM(VDMConfig(schedule=GammaConfig(kind=kind, gamma_0=G0, gamma_1=G1, n_features=8), T=T,
                          clip_x0=False, mlp=TINY_MLP), GAUSS)
    model.net = OptimalEps()
    if kind == "learned_net":  # a clearly non-linear shape: the continuous bound must not notice (VDM Eq. 18)
        with torch.no_grad():
            model.gamma.w2.mul_(4.0)
            model.gamma.w3.copy_(30.0 * torch.rand(model.gamma.w3.shape, generator=gen(5)))
    return model.eval()


def gaussian_points(n: int, seed: int = 0) -> torch.Tensor:
    return MU + S * torch.randn(n, 2, generator=gen(seed), dtype=F64)


def true_nll(x: torch.Tensor) -> torch.Tensor:
    return (0.5 * math.log(2 * math.pi * S**2) + (x - MU) ** 2 / (2 * S**2)).sum(1)


def expected_terms(gamma_grid: np.ndarray | None = None) -> dict[str, float]:
    """E over x and the noise of each part of the bound (nats) for ε̂*: continuous time, or for T steps on
    ``gamma_grid`` = [γ(0), γ(1/T), …, γ(1)]."""
    D, s2 = 2, S**2
    a1 = 1 / (1 + math.exp(G1))  # α_1² = sigmoid(−γ_1)
    prior = sum(0.5 * (a1 * (m**2 + s2) + (1 - a1) - 1 - math.log(1 - a1)) for m in MU.tolist())
    recon = 0.5 * D * (math.log(2 * math.pi) + G0 + 1)  # −log N(x; z_0/α_0, e^{γ_0}) averaged over ε_0
    if gamma_grid is None:  # ½ ∫ γ' E‖ε − ε̂*‖² dt = ½ D ∫ s² e^{−γ}/(s² e^{−γ} + 1) dγ
        diffusion = 0.5 * D * (math.log1p(s2 * math.exp(-G0)) - math.log1p(s2 * math.exp(-G1)))
    else:  # Σ_i ½ (SNR(s) − SNR(t)) E‖x − x̂*‖², E‖x − x̂*‖² = D s²/(SNR(t) s² + 1)
        snr = np.exp(-gamma_grid)
        diffusion = float(np.sum(0.5 * (snr[:-1] - snr[1:]) * D * s2 / (snr[1:] * s2 + 1)))
    return {"prior": prior, "reconstruction": recon, "diffusion": diffusion}


def _mean_se(v: torch.Tensor) -> tuple[float, float]:
    v = v.double()
    return v.mean().item(), v.std().item() / math.sqrt(len(v))


# ================================================================================================ 2. ODE likelihood


def test_ode_likelihood_of_a_tiny_vdm_on_a_2d_toy_is_finite():
    model = tiny_vdm(VEC, clip_x0=False)
    x = moons_batch(16)
    report = evaluate_ode_nll(model, x, generator=gen(0), rtol=1e-3, atol=1e-3)
    assert report.nll_kind == "estimate" and report.examples == 16
    assert math.isfinite(report.bpd) and math.isfinite(report.bpd_stderr)
    assert set(report.terms_bpd) == {"prior", "divergence"}
    assert report.bpd == pytest.approx(sum(report.terms_bpd.values()), rel=1e-9, abs=1e-9)
    assert report.estimator["trace"] == "exact" and report.estimator["nfe_mean"] >= 2
    assert torch.isfinite(report.per_example_nats).all()
    # the solve runs over the VDM's own λ range, −γ_1 … −γ_0
    out = ode_log_likelihood(model, x[:4], rtol=1e-3, atol=1e-3)
    assert out.logsnr_min == pytest.approx(model.logsnr_min) and out.logsnr_max == pytest.approx(model.logsnr_max)
    assert out.logsnr_min == pytest.approx(-5.0, abs=1e-5) and out.logsnr_max == pytest.approx(13.3, abs=1e-5)
    assert torch.isfinite(out.log_p).all()
    torch.testing.assert_close(out.log_p, out.log_p_prior + out.divergence)


@pytest.mark.parametrize("kind", ["fixed", "learned_net"])
def test_ode_likelihood_with_the_optimal_network_recovers_the_data_density(kind):
    """With ε̂* the probability-flow ODE maps N(0, I) at λ_min onto (nearly) the data law at λ_max."""
    model = oracle_vdm(kind)
    x = gaussian_points(200)
    report = evaluate_ode_nll(model, x, generator=gen(0), rtol=1e-5, atol=1e-5)
    assert report.nats == pytest.approx(true_nll(x).mean().item(), abs=0.02)  # 0.01 nats/dim


# ================================================================================================ 3. nll_terms


def test_nll_terms_parts_sum_to_nll_on_images():
    model = tiny_vdm(IMG)
    x = digits_batch(6)
    out = model.nll_terms(x, gen(0), t_samples=2)
    assert out.kind == "bound" and set(out.terms) == {"prior", "diffusion", "reconstruction"}
    for v in (out.nll, *out.terms.values()):
        assert v.shape == (6,) and torch.isfinite(v).all()
    torch.testing.assert_close(out.nll, sum(out.terms.values()))
    assert (out.terms["prior"] > 0).all() and (out.terms["diffusion"] > 0).all()
    assert (out.terms["reconstruction"] >= 0).all()  # −log of a probability of the discrete decoder
    again = model.nll_terms(x, gen(0), t_samples=2)
    assert torch.equal(again.nll, out.nll)  # reproducible with the same generator
    assert not torch.equal(model.nll_terms(x, gen(1), t_samples=2).nll, out.nll)


def test_nll_terms_exact_on_discrete_time_vdm():
    model = tiny_vdm(VEC, T=6, clip_x0=False)
    x = moons_batch(8)
    out = model.nll_terms(x, gen(0), exact=True)
    assert set(out.terms) == {"prior", "diffusion", "reconstruction"}
    torch.testing.assert_close(out.nll, sum(out.terms.values()))
    assert torch.isfinite(out.nll).all() and (out.terms["diffusion"] > 0).all()
    assert torch.equal(model.nll_terms(x, gen(0), exact=True).nll, out.nll)
    # the report of evaluate_nll (what `genmodels evaluate --exact` calls)
    rep = evaluate_nll(model, x, generator=gen(0), batch_size=3, exact=True)
    assert rep.estimator == {"exact": True} and rep.examples == 8
    assert rep.bpd == pytest.approx(sum(rep.terms_bpd.values()), rel=1e-6)


def test_nll_terms_exact_raises_in_continuous_time_and_t_samples_below_one_raises():
    cont = tiny_vdm(VEC, clip_x0=False)
    x = moons_batch(4)
    with pytest.raises(ValueError, match="exact"):
        cont.nll_terms(x, gen(0), exact=True)
    for bad in (0, -3):
        with pytest.raises(ValueError, match="t_samples"):
            cont.nll_terms(x, gen(0), t_samples=bad)
    with pytest.raises(ValueError, match="t_samples"):
        tiny_vdm(VEC, T=4, clip_x0=False).nll_terms(x, gen(0), t_samples=0)


def test_reconstruction_term_is_the_decoder_nll_at_z0():
    """L_recon at a given ε_0: −log N(x; z_0/α_0, e^{γ_0}) for continuous data, the softmax over the levels of the
    discretized decoder (VDM App. C) for discrete data; z_0/α_0 = x + e^{γ_0/2} ε_0."""
    eps0 = torch.randn(5, 2, generator=gen(0), dtype=F64)
    x = gaussian_points(5)
    model = oracle_vdm("fixed")
    want = -torch.distributions.Normal(x + math.exp(G0 / 2) * eps0, math.exp(G0 / 2)).log_prob(x).sum(1)
    torch.testing.assert_close(model.reconstruction_term(x, eps0), want)

    spec = DataSpec(name="d", event_shape=(3,), n_bins=5)
    disc = VDM(VDMConfig(schedule=GammaConfig(kind="fixed", gamma_0=-3.0), mlp=TINY_MLP), spec)
    levels = torch.linspace(-1, 1, 5, dtype=F64)
    x = levels[torch.tensor([[0, 2, 4], [1, 3, 3]])]
    eps0 = torch.randn(2, 3, generator=gen(1), dtype=F64)
    z = x + math.exp(-1.5) * eps0
    logits = -0.5 * (z[..., None] - levels) ** 2 * math.exp(3.0)
    k = torch.tensor([[0, 2, 4], [1, 3, 3]])
    want = -(logits.log_softmax(-1).gather(-1, k[..., None]).squeeze(-1)).sum(1)
    torch.testing.assert_close(disc.reconstruction_term(x, eps0), want)
    assert (want > 0.01).all()  # γ_0 = −3 leaves real decoder uncertainty: the check is not 0 = 0


@pytest.mark.parametrize("kind", ["fixed", "learned_net"])
def test_continuous_bound_parts_match_closed_form_for_gaussian_data(kind):
    """E[L_prior], E[L_recon], E[L_∞] against VDM Eq. 11/17 for ε̂*; L_∞ depends only on the end points."""
    model = oracle_vdm(kind)
    x = gaussian_points(8000, seed=1)
    out = model.nll_terms(x, gen(2), t_samples=16)
    ref = expected_terms()
    for name, value in ref.items():
        mean, se = _mean_se(out.terms[name])
        assert abs(mean - value) < Z * se + 1e-6, (name, mean, value, se)
    # the bound is above the true NLL (up to Monte Carlo error)
    mean, se = _mean_se(out.nll - true_nll(x))
    assert mean > -Z * se


@pytest.mark.parametrize("kind", ["fixed", "learned_net"])
def test_discrete_bound_exact_and_estimate_match_closed_form(kind):
    """L_T (VDM Eq. 13) for T = 10 from the exact sum and from the stratified estimate."""
    T = 10
    model = oracle_vdm(kind, T=T)
    with torch.no_grad():
        grid = model.gamma(torch.arange(T + 1, dtype=F64) / T).numpy()
    if kind == "fixed":
        np.testing.assert_allclose(grid, np.linspace(G0, G1, T + 1), rtol=1e-12)
    ref = expected_terms(grid)
    x = gaussian_points(8000, seed=3)
    for kwargs in ({"exact": True}, {"t_samples": 4}):
        d = model.nll_terms(x, gen(4), **kwargs).terms["diffusion"]
        mean, se = _mean_se(d)
        assert abs(mean - ref["diffusion"]) < Z * se, (kwargs, mean, ref["diffusion"], se)
    # fewer steps, looser bound (VDM §3.1): T = 10 is above the continuous-time L_∞
    assert ref["diffusion"] > expected_terms()["diffusion"]


def test_exact_bound_visits_every_step_once():
    T = 25
    model = oracle_vdm("fixed", T=T)
    seen: list[float] = []
    eps_hat = model.eps_hat

    def recording(z, logsnr, y=None):
        seen.extend(logsnr.tolist())
        return eps_hat(z, logsnr, y)

    model.eps_hat = recording
    model.nll_terms(gaussian_points(1), gen(0), exact=True)
    expected = (-(G0 + (G1 - G0) * np.arange(1, T + 1) / T)).tolist()
    np.testing.assert_allclose(sorted(seen), sorted(expected), rtol=0, atol=1e-9)


def test_variance_objective_routes_gradient_of_mean_squared_diffusion_loss_into_the_shape():
    """VDM App. I.2: the shape ĝ gets ∇ mean(L_diff²) (bits/dim), the end points and network ∇ mean(L)."""
    var = tiny_vdm(VEC, clip_x0=False).double()
    assert var.config.schedule_objective == "variance"  # the default
    elbo = tiny_vdm(VEC, seed=9, clip_x0=False, schedule_objective="elbo").double()
    elbo.load_state_dict(var.state_dict())
    x = moons_batch(16).double()
    shape = ["w1", "w2", "b2", "w3"]
    ends = ["gamma_0", "gamma_1"]

    loss_var = var.loss(x, gen(5)).mean()
    g_var = torch.autograd.grad(loss_var, [getattr(var.gamma, n) for n in shape + ends] + [var.net.inp.weight])
    loss_elbo = elbo.loss(x, gen(5)).mean()
    assert loss_var.item() == pytest.approx(loss_elbo.item(), rel=1e-12)  # same value, other gradient
    g_ends = torch.autograd.grad(loss_elbo, [getattr(elbo.gamma, n) for n in ends] + [elbo.net.inp.weight])
    g = gen(5)  # replay loss()'s draws: times, ε_0, ε
    t = elbo._times(16, g, None)
    torch.randn(x.shape, generator=g, dtype=x.dtype)
    eps = torch.randn(x.shape, generator=g, dtype=x.dtype)
    l_bpd = elbo.diffusion_term(x, t, eps) / (2 * math.log(2))
    g_shape = torch.autograd.grad(l_bpd.pow(2).mean(), [getattr(elbo.gamma, n) for n in shape])
    for got, want in zip(g_var, [*g_shape, *g_ends], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-9)
    assert any(not torch.allclose(a, b) for a, b in
               zip(g_shape, torch.autograd.grad(elbo.loss(x, gen(5)).mean(), [getattr(elbo.gamma, n) for n in shape]),
                   strict=True))


# ================================================================================================ 4. CLI

TINY_SET = ["--set", "unet.channels=8", "--set", "unet.channel_mult=1", "--set", "unet.num_res_blocks=1",
            "--set", "unet.attn_levels=[]", "--set", "unet.groups=4", "--set", "schedule.n_features=8",
            "--set", "sample_steps=25"]
TRAIN = ["--batch-size", "8", "--log-every", "1", "--checkpoint-every", "2", "--threads", "1", "--no-progress"]


@pytest.fixture(scope="module")
def vdm_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("vdm") / "run"
    res = _ok(runner.invoke(app, ["train", "vdm", "--data", "digits", "--out", str(run), "--steps", "3",
                                  *TINY_SET, *TRAIN]))
    assert _last_json(res)["steps"] == 3
    return run


@pytest.fixture(scope="module")
def discrete_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("vdm") / "discrete"
    _ok(runner.invoke(app, ["train", "vdm", "--data", "digits", "--out", str(run), "--steps", "2", *TINY_SET,
                            "--set", "schedule.kind=fixed", "--set", "T=10", *TRAIN]))
    return run


def test_vdm_is_a_diffusion_family_of_the_cli():
    assert MODELS.get("vdm").model_cls.has_ode_likelihood  # the diffusion capabilities: ODE likelihood, sweeps
    assert "vdm" in _ok(runner.invoke(app, ["models"])).output.split()


def test_cli_train_vdm_writes_a_run_folder(vdm_run):
    for name in ("config.json", "model.safetensors", "ema.safetensors", "train_state.pt", "metrics.jsonl"):
        assert (vdm_run / name).is_file(), name
    cfg = json.loads((vdm_run / "config.json").read_text())
    assert cfg["model"] == "vdm" and cfg["data"] == "digits"
    mc = cfg["model_config"]
    assert mc["schedule"]["kind"] == "learned_net" and mc["schedule"]["n_features"] == 8 and mc["T"] == 0
    assert mc["unet"]["channels"] == 8 and mc["unet"]["channel_mult"] == [1] and mc["unet"]["attn_levels"] == []
    assert mc["sample_steps"] == 25 and mc["fourier_features"] == [6, 7]  # the digits preset keeps them
    lines = [json.loads(l) for l in (vdm_run / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [1, 2, 3]
    for l in lines:  # VDM.train_metrics: the bound's parts and the learned end points
        assert {"prior_bpd", "diffusion_bpd", "reconstruction_bpd", "gamma_0", "gamma_1"} <= set(l)
        assert l["loss"] == pytest.approx(l["prior_bpd"] + l["diffusion_bpd"] + l["reconstruction_bpd"], rel=1e-4)
        assert l["gamma_0"] < l["gamma_1"]
    model, _run_config = from_pretrained(vdm_run)
    assert isinstance(model, VDM) and isinstance(model.gamma, MonotoneNetGamma) and model.T == 25


def test_cli_evaluate_vdm_reports_three_terms(vdm_run):
    res = _ok(runner.invoke(app, ["evaluate", str(vdm_run), "--limit", "10", "--t-samples", "2", "--no-progress"]))
    info = json.loads(res.stdout)
    assert info["model"] == "vdm" and info["nll_kind"] == "bound" and info["examples"] == 10
    assert set(info["terms_bpd"]) == {"prior", "diffusion", "reconstruction"}
    assert info["bpd"] == pytest.approx(sum(info["terms_bpd"].values()), rel=1e-6)
    assert info["bpd"] > 0 and info["estimator"] == {"t_samples": 2}
    saved = json.loads((vdm_run / "eval_test.json").read_text())
    assert saved["bpd"] == info["bpd"]
    assert np.load(vdm_run / "eval_test.npy").shape == (10,)
    # continuous time: --exact is a clear one-line error
    bad = runner.invoke(app, ["evaluate", str(vdm_run), "--limit", "2", "--exact", "--no-progress"])
    assert bad.exit_code == 2 and "exact" in bad.output and "Traceback" not in bad.output


def test_cli_evaluate_vdm_ode_likelihood(vdm_run, tmp_path):
    res = _ok(runner.invoke(app, ["evaluate", str(vdm_run), "--likelihood", "ode", "--limit", "2", "--rtol", "1e-2",
                                  "--atol", "1e-2", "--no-progress", "--out", str(tmp_path / "ode.json")]))
    info = json.loads(res.stdout)
    assert info["likelihood"] == "ode" and info["model"] == "vdm" and info["examples"] == 2
    assert info["nll_kind"] == "bound" and info["estimator"]["trace"] == "hutchinson"  # dequantized digits
    assert set(info["terms_bpd"]) == {"prior", "divergence", "dequantization"}
    assert math.isfinite(info["bpd"])
    assert info["bpd"] == pytest.approx(sum(info["terms_bpd"].values()), rel=1e-6)


@pytest.mark.parametrize("sampler", ["ancestral", "dpm++"])
def test_cli_sample_vdm(vdm_run, tmp_path, sampler):
    paths = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.png"
        info = json.loads(_ok(runner.invoke(app, ["sample", str(vdm_run), "--n", "4", "--sampler", sampler,
                                                  "--steps", "5", "--seed", "3", "--out", str(out),
                                                  "--no-progress"])).stdout)
        assert info["nfe"] == 5 and info["steps"] == 5 and out.is_file()
        paths.append(out.with_suffix(".npz"))
    a, b = (np.load(p)["x"] for p in paths)
    assert a.shape == (4, 1, 8, 8) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)  # the same --seed gives the same samples


def test_cli_sample_vdm_default_steps_are_sample_steps(vdm_run, tmp_path):
    info = json.loads(_ok(runner.invoke(app, ["sample", str(vdm_run), "--n", "2", "--sampler", "ddim",
                                              "--out", str(tmp_path / "d.png"), "--no-progress"])).stdout)
    assert info["steps"] == 25 and info["nfe"] == 25


def test_cli_pictures_vdm(vdm_run):
    files = json.loads(_ok(runner.invoke(app, ["pictures", str(vdm_run)])).stdout)
    names = {f.rsplit("/", 1)[-1] for f in files}
    assert {"forward.png", "reverse.png", "reverse.gif", "schedule.png", "loss.png"} <= names
    schedule = vdm_run / "figures" / "schedule.png"
    assert schedule.is_file() and schedule.stat().st_size > 1000


def test_cli_resume_continues_a_vdm_run(vdm_run, tmp_path):
    run = tmp_path / "resumed"
    shutil.copytree(vdm_run, run)
    before = json.loads((run / "config.json").read_text())
    res = _ok(runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "5", "--no-progress"]))
    assert _last_json(res)["steps"] == 5
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
    after = json.loads((run / "config.json").read_text())
    assert after["model"] == "vdm" and after["model_config"] == before["model_config"]
    assert after["train"]["steps"] == 5
    model, _ = from_pretrained(run, ema=False)
    assert isinstance(model.gamma, MonotoneNetGamma)
    refused = runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", "6", "--set", "T=10"])
    assert refused.exit_code == 2 and "--set" in refused.output


def test_cli_set_schedule_kind_and_T_are_honored(discrete_run):
    mc = json.loads((discrete_run / "config.json").read_text())["model_config"]
    assert mc["schedule"]["kind"] == "fixed" and mc["T"] == 10
    model, _ = from_pretrained(discrete_run)
    assert isinstance(model.gamma, FixedLinearGamma) and model.T == 10 and model.schedule.num_steps == 10
    lines = [json.loads(l) for l in (discrete_run / "metrics.jsonl").read_text().splitlines()]
    assert all(l["gamma_0"] == pytest.approx(-13.3) and l["gamma_1"] == pytest.approx(5.0) for l in lines)
    res = _ok(runner.invoke(app, ["evaluate", str(discrete_run), "--limit", "3", "--exact", "--no-progress",
                                  "--out", str(discrete_run / "exact.json")]))
    info = json.loads(res.stdout)
    assert info["estimator"] == {"exact": True} and info["examples"] == 3
    assert set(info["terms_bpd"]) == {"prior", "diffusion", "reconstruction"}
    assert info["bpd"] == pytest.approx(sum(info["terms_bpd"].values()), rel=1e-6)
    shown = json.loads(_ok(runner.invoke(app, ["config", "vdm", "--data", "digits", "--set", "schedule.kind=fixed",
                                               "--set", "T=10"])).stdout)
    assert shown["schedule"]["kind"] == "fixed" and shown["T"] == 10


def test_cli_vdm_on_a_2d_toy_bound_ode_and_pictures(tmp_path):
    run = tmp_path / "toy"
    _ok(runner.invoke(app, ["train", "vdm", "--data", "8gaussians", "--out", str(run), "--steps", "2",
                            "--set", "mlp.hidden=16", "--set", "mlp.depth=1", "--set", "mlp.emb_dim=16",
                            "--set", "schedule.n_features=8", "--set", "sample_steps=25", *TRAIN]))
    mc = json.loads((run / "config.json").read_text())["model_config"]
    assert mc["fourier_features"] == [] and mc["clip_x0"] is False  # the preset for continuous data
    bound = json.loads(_ok(runner.invoke(app, ["evaluate", str(run), "--limit", "50", "--no-progress"])).stdout)
    ode = json.loads(_ok(runner.invoke(app, ["evaluate", str(run), "--likelihood", "ode", "--limit", "50",
                                             "--rtol", "1e-3", "--atol", "1e-3", "--no-progress"])).stdout)
    assert bound["nll_kind"] == "bound" and set(bound["terms_bpd"]) == {"prior", "diffusion", "reconstruction"}
    assert ode["nll_kind"] == "estimate" and ode["estimator"]["trace"] == "exact"
    for info in (bound, ode):
        assert math.isfinite(info["bpd"]) and info["examples"] == 50
        assert 0.5 < info["true_data_bpd"] < 1.5  # the 8-Gaussian mixture's own density, beside the model's
    files = json.loads(_ok(runner.invoke(app, ["pictures", str(run)])).stdout)
    assert {"forward.png", "reverse.png", "schedule.png"} <= {f.rsplit("/", 1)[-1] for f in files}


def test_cli_pictures_of_a_vdm_with_few_steps(discrete_run):
    _ok(runner.invoke(app, ["pictures", str(discrete_run)]))


@pytest.mark.parametrize("args, needle", [
    (["--T", "10"], "--set"),  # DDPM's flags are refused for VDM
    (["--set", "schedule.kind=nope"], "'nope' is not one of"),
    (["--set", "T=-1"], "T=-1"),
    (["--set", "schedule.gamma_0=6"], "gamma_0 < gamma_1"),
    (["--set", "schedule.gamma_0_bounds=-10,-5"], "gamma_0_bounds"),
    (["--set", "schedule.nope=1"], "no field 'nope'"),
])
def test_cli_bad_vdm_settings_get_one_clear_line(args, needle, tmp_path):
    res = runner.invoke(app, ["train", "vdm", "--data", "digits", "--out", str(tmp_path / "r"), "--steps", "1",
                              "--no-progress", *args])
    assert res.exit_code == 2, res.output
    assert needle in res.output and "Traceback" not in res.output
    assert not (tmp_path / "r" / "model.safetensors").exists()


# ================================================================================================ 5. checkpoints


@pytest.mark.parametrize("kind", ["learned_linear", "learned_net"])
def test_checkpoint_round_trip_of_a_learned_schedule(kind, tmp_path):
    cfg = VDMConfig(schedule=GammaConfig(kind=kind, n_features=8, gamma_0_bounds=(-15.0, -9.0)), mlp=TINY_MLP,
                    clip_x0=False, sample_steps=10)
    model = tiny_vdm(VEC, schedule=cfg.schedule, clip_x0=False, sample_steps=10)
    with torch.no_grad():  # as if trained: end points and shape away from their initial values
        model.gamma.gamma_0.fill_(-11.0)
        model.gamma.gamma_1.fill_(4.0)
        if kind == "learned_net":
            model.gamma.w2.mul_(3.0)
            model.gamma.b2.normal_(0, 1, generator=gen(7))
    run_config = RunConfig(model="vdm", model_config=model.config, data="moons", spec=VEC)
    save_pretrained(tmp_path / "run", model, run_config)
    loaded, rc = from_pretrained(tmp_path / "run")
    assert rc.model_config == model.config and rc.model_config.schedule.gamma_0_bounds == (-15.0, -9.0)
    assert type(loaded.gamma) is type(model.gamma)

    x = moons_batch(8)
    t = torch.linspace(0, 1, 11, dtype=F64)
    with torch.no_grad():
        for a, b in zip(model.gamma.endpoints(), loaded.gamma.endpoints(), strict=True):
            assert torch.equal(a, b)
        assert loaded.gamma.endpoints()[0].item() == pytest.approx(-11.0)
        assert torch.equal(model.gamma(t), loaded.gamma(t))
        assert torch.equal(model.loss(x, gen(3)), loaded.loss(x, gen(3)))
        assert torch.equal(model.nll_terms(x, gen(3)).nll, loaded.nll_terms(x, gen(3)).nll)
    assert torch.equal(model.sample(4, gen(3), sampler="ddim"), loaded.sample(4, gen(3), sampler="ddim"))
    # the check has teeth: a freshly built model (initial schedule) differs
    fresh = tiny_vdm(VEC, schedule=cfg.schedule, clip_x0=False, sample_steps=10)
    with torch.no_grad():
        assert fresh.gamma.endpoints()[0].item() == pytest.approx(-13.3, abs=1e-5)
        assert not torch.equal(fresh.loss(x, gen(3)), loaded.loss(x, gen(3)))


def test_learned_endpoints_are_clamped_to_their_bounds():
    sched = build_gamma_schedule(GammaConfig(kind="learned_linear", gamma_0_bounds=(-14.0, -12.0),
                                             gamma_1_bounds=(4.0, 6.0)))
    assert isinstance(sched, LearnedLinearGamma)
    with torch.no_grad():
        sched.gamma_0.fill_(-20.0)
        sched.gamma_1.fill_(9.0)
    g0, g1 = sched.endpoints()
    assert g0.item() == -14.0 and g1.item() == 6.0
    g0.sum().backward()
    assert sched.gamma_0.grad is None or sched.gamma_0.grad.item() == 0.0  # a clamped end point stops learning


def test_vdm_config_json_round_trip():
    cfg = VDMConfig(schedule=GammaConfig(kind="learned_linear", gamma_0=-12.0, gamma_1=6.0,
                                         gamma_1_bounds=(5.0, 7.0)), T=7, fourier_features=(5,),
                    schedule_objective="elbo")
    d = json.loads(json.dumps(config_to_dict(cfg)))
    assert config_from_dict(VDMConfig, d) == cfg


# ================================================================================================ 6. bad input


@pytest.mark.parametrize("make, field", [
    (lambda: VDMConfig(T=-1), "T=-1"),
    (lambda: VDMConfig(sample_steps=0), "sample_steps=0"),
    (lambda: VDMConfig(schedule_objective="nope"), "schedule_objective"),
    (lambda: GammaConfig(gamma_0=5, gamma_1=-1), "gamma_0 < gamma_1"),
    (lambda: GammaConfig(gamma_0=2, gamma_1=2), "gamma_0 < gamma_1"),
    (lambda: GammaConfig(kind="nope"), "kind.*'nope'"),
    (lambda: GammaConfig(gamma_0_bounds=(-10.0, -5.0)), "gamma_0_bounds"),  # excludes γ_0 = −13.3
    (lambda: GammaConfig(gamma_1_bounds=(6.0, 7.0)), "gamma_1_bounds"),  # excludes γ_1 = 5
    (lambda: GammaConfig(gamma_1_bounds=(6.0, 4.0)), "gamma_1_bounds"),  # reversed
    (lambda: GammaConfig(n_features=0), "n_features"),
])
def test_bad_config_raises_value_error_naming_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_bad_vdm_use_raises_value_error():
    with pytest.raises(ValueError, match="event shape"):
        VDM(VDMConfig(mlp=TINY_MLP), DataSpec(name="x", event_shape=(2, 3)))
    with pytest.raises(ValueError, match="T must be"):
        build_gamma_schedule(GammaConfig(kind="fixed")).discrete(0)
    with pytest.raises(ValueError, match="T=-2"):
        config_from_dict(VDMConfig, {"T": -2})
