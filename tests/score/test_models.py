"""Tests for the score-based model families (EBM, NCSN), the ``pc`` sampler and their command line.

Closed forms used: for data x ~ N(μ, diag(s²)) the σ-noised law is N(μ, diag(s² + σ²)), with score
−(x − μ)/(s² + σ²); its σ = 0 case is the score of the data itself. For data that is a single point, one NCSN-form
Langevin step at level σ_i with step α = ε σ_i²/σ_L² maps the variance v to κ² v + α, κ = 1 − ε/(2σ_L²)
(:func:`genmodels.score.ncsn.annealing_variance_ratio`).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from _cli import cli_error
from _cli import ok as _ok
from _gaussian_data import gen
from genmodels.cli import app
from genmodels.core import DataSpec, NoLikelihoodError
from genmodels.diffusion import samplers
from genmodels.diffusion.ddpm import DDPM, DDPMConfig
from genmodels.diffusion.schedules import ScheduleConfig
from genmodels.families import MODELS
from genmodels.nets.energy import EnergyConvConfig, EnergyConvNet, EnergyMLP, EnergyMLPConfig
from genmodels.nets.mlp import MLP, MLPConfig
from genmodels.nets.unet import UNet, UNetConfig
from genmodels.sampling import draw_in_batches
from genmodels.score import losses as L
from genmodels.score.ebm import EBM, EBMConfig
from genmodels.score.langevin import annealed_langevin_dynamics
from genmodels.score.ncsn import (
    NCSN,
    NCSNConfig,
    annealing_step_size,
    annealing_variance_ratio,
    default_config,
    ncsnv2_n_sigmas,
)

VEC = DataSpec(name="gauss2", event_shape=(2,))
IMG = DataSpec(name="tiny-images", event_shape=(1, 5, 5), n_bins=17)  # D = 25 > 16: the Hutchinson path
TINY_MLP = EnergyMLPConfig(hidden=16, depth=2)
TINY_CONV = EnergyConvConfig(channels=4, hidden=8)
TINY_NET = MLPConfig(hidden=16, depth=1, emb_dim=8)
TINY_UNET = UNetConfig(channels=8, channel_mult=(1,), num_res_blocks=1, attn_levels=(), num_heads=1, groups=4)


def ebm(loss_type: str = "dsm", spec: DataSpec = VEC, **kw) -> EBM:
    torch.manual_seed(0)
    return EBM(EBMConfig(loss_type=loss_type, mlp=TINY_MLP, conv=TINY_CONV, **kw), spec)


def ncsn(spec: DataSpec = VEC, **kw) -> NCSN:
    torch.manual_seed(0)
    kw = {"sigma_max": 2.0, "sigma_min": 0.1, "n_sigmas": 4, "mlp": TINY_NET, "unet": TINY_UNET, **kw}
    model = NCSN(NCSNConfig(**kw), spec)
    for p in model.parameters():  # the backbones start with a zero output layer: make the score non-trivial
        torch.nn.init.normal_(p, std=0.1) if p.ndim > 1 else None
    return model


# ------------------------------------------------------------------------------------------ registry and presets


def test_families_are_registered_with_presets_for_vectors_and_images():
    assert {"ebm", "ncsn"} <= set(MODELS.names())
    for name, vec_net, img_net in (("ebm", EnergyMLP, EnergyConvNet), ("ncsn", MLP, UNet)):
        entry = MODELS.get(name)
        assert type(entry.build(entry.preset(VEC), VEC).net) is vec_net
        digits = DataSpec(name="digits", event_shape=(1, 8, 8), n_bins=17)
        assert type(entry.build(entry.preset(digits), digits).net) is img_net
    with pytest.raises(ValueError, match=r"images .* or vectors"):
        EBM(EBMConfig(), DataSpec(name="seq", event_shape=(3, 4)))


def test_ncsn_presets_follow_the_ncsnv2_rules():
    toy = DataSpec(name="toy", event_shape=(2,), value_range=(-2.5, 2.5))
    cfg = default_config(toy)
    assert cfg.sigma_max == pytest.approx(5.0 * math.sqrt(2))  # the bounding box's diameter (technique 1)
    assert (cfg.sigma_min, cfg.n_sigmas, cfg.sample_steps_each) == (0.01, 10, 100)  # NCSN's L = 10, T = 100 in 2-D
    fmnist = default_config(DataSpec(name="f", event_shape=(1, 28, 28), n_bins=256))
    assert fmnist.sigma_max == pytest.approx(56.0)
    assert 100 <= fmnist.n_sigmas <= 120 and fmnist.sample_steps_each == math.ceil(1000 / fmnist.n_sigmas)
    assert ncsnv2_n_sigmas(50.0, 0.01, 2) is None  # every ratio overlaps in 2-D
    assert 200 <= ncsnv2_n_sigmas(50.0, 0.01, 3 * 32 * 32) <= 240  # NCSNv2's CIFAR-10 ladder has 232 levels


# ------------------------------------------------------------------------------------------ EBM


def test_ebm_score_is_minus_the_energy_gradient_and_a_gradient_field():
    model = ebm()
    x = torch.randn(6, 2, generator=gen(0))
    xg = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(model.energy(xg).sum(), xg)
    torch.testing.assert_close(model.score(x), -ref)
    with torch.no_grad():  # sampling mode: same values, no graph
        s = model.score(x)
    torch.testing.assert_close(s, -ref)
    assert s.grad_fn is None
    # with create_graph the score is differentiable in x: its Jacobian is −∇²f, symmetric
    jac = torch.func.vmap(torch.func.jacrev(lambda xi: model.score(xi[None], create_graph=True)[0]))(x)
    torch.testing.assert_close(jac, jac.transpose(1, 2))
    img = ebm(spec=IMG)
    xi = torch.randn(3, *IMG.event_shape, generator=gen(1))
    assert img.energy(xi).shape == (3,) and img.score(xi).shape == xi.shape


@pytest.mark.parametrize("loss_type", ["dsm", "ssm", "esm"])
@pytest.mark.parametrize("spec", [VEC, IMG], ids=["vector", "image"])
def test_ebm_losses_are_finite_per_example_and_reach_every_parameter(loss_type, spec):
    model = ebm(loss_type, spec)
    x = torch.randn(5, *spec.event_shape, generator=gen(2)).clamp(-1, 1)
    loss = model.loss(x, gen(3))
    assert loss.shape == (5,) and torch.isfinite(loss).all()
    loss.mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_ebm_loss_dispatches_to_the_score_matching_losses():
    x = torch.randn(4, 2, generator=gen(4))
    m = ebm("esm")  # D = 2 ≤ 16: exact trace
    torch.testing.assert_close(m.loss(x, gen(5)), L.explicit_score_matching(m.score, x, trace="exact"))
    m = ebm("esm", IMG)  # D = 25: Hutchinson with Rademacher probes
    xi = torch.randn(4, *IMG.event_shape, generator=gen(4))
    torch.testing.assert_close(m.loss(xi, gen(5)), L.explicit_score_matching(
        m.score, xi, trace="hutchinson", probe="rademacher", generator=gen(5)))
    m = ebm("ssm", n_probes=2, variance_reduction=True)
    torch.testing.assert_close(m.loss(x, gen(6)), L.sliced_score_matching(
        m.score, x, n_probes=2, probe="gaussian", variance_reduction=True, generator=gen(6)))
    m = ebm("dsm", sigma=0.3)
    torch.testing.assert_close(m.loss(x, gen(7)), L.denoising_score_matching(m.score, x, 0.3, generator=gen(7)))


# ------------------------------------------------------------------------------------------ NCSN


def test_ncsn_score_is_the_backbone_output_over_sigma_conditioned_on_log_sigma():
    model = ncsn()
    x = torch.randn(3, 2, generator=gen(8))
    sigma = torch.tensor([2.0, 0.5, 0.1])
    c = model.c_noise(sigma)
    torch.testing.assert_close(c[[0, 2]], torch.tensor([1000.0, 0.0]))  # σ_max → 1000, σ_min → 0
    assert c[1].item() == pytest.approx(1000 * math.log(0.5 / 0.1) / math.log(2.0 / 0.1), rel=1e-5)
    torch.testing.assert_close(model.score(x, sigma), model.net(x, c) / sigma[:, None])  # NCSNv2 technique 3
    torch.testing.assert_close(model.score(x, 0.5), model.score(x, torch.full((3,), 0.5)))
    uncond = ncsn(noise_conditioning=False)
    assert (uncond.c_noise(sigma) == 0).all()


def test_ncsn_loss_is_sigma2_weighted_multiscale_dsm():
    model = ncsn()
    x = torch.randn(6, 2, generator=gen(9))
    loss = model.loss(x, gen(10))
    g = gen(10)  # the same draws: level index first, then z
    idx = torch.randint(0, 4, (6,), generator=g)
    z = torch.randn(6, 2, generator=g)
    sig = model.sigmas[idx].float()
    ref = 0.5 * (model.net(x + sig[:, None] * z, model.c_noise(sig)) + z).pow(2).sum(1)  # ½‖net + z‖²
    torch.testing.assert_close(loss, ref)
    loss.mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    img = ncsn(IMG)
    assert img.loss(torch.zeros(2, *IMG.event_shape), gen(0)).shape == (2,)


# ------------------------------------------------------------------------------------------ no likelihood


@pytest.mark.parametrize("make, needle", [(ebm, "normalizing constant Z_θ"), (ncsn, "not a normalized density")])
def test_nll_raises_a_clear_error_instead_of_a_number(make, needle):
    model = make()
    for call in (model.nll, model.nll_terms):
        with pytest.raises(NoLikelihoodError, match=needle) as info:
            call(torch.zeros(2, 2))
        assert isinstance(info.value, NotImplementedError) and isinstance(info.value, ValueError)
        assert "--sampler" in str(info.value)


# ------------------------------------------------------------------------------------------ sampling


def test_ebm_langevin_sampling_shapes_seeding_and_nfe():
    model = ebm("dsm")
    out = model.draw(5, gen(0), steps=7, step_size=1e-2)
    assert out.x0.shape == (5, 2) and out.nfe == 8  # 7 steps + the Tweedie step of a DSM model
    torch.testing.assert_close(model.sample(5, gen(0), steps=7, step_size=1e-2), out.x0)
    assert not torch.equal(model.sample(5, gen(1), steps=7, step_size=1e-2), out.x0)
    traj = model.draw(5, gen(0), steps=7, step_size=1e-2, keep_trajectory=True, trajectory_stride=2).trajectory
    assert traj.shape == (1 + 3 + 1 + 1, 5, 2)  # start, steps 2/4/6, step 7, denoised
    torch.testing.assert_close(traj[-1], out.x0)
    assert model.draw(3, gen(0), steps=7, final_denoise=False).nfe == 7
    ssm = ebm("ssm")
    assert ssm.draw(3, gen(0), steps=4).nfe == 4
    with pytest.raises(ValueError, match="final_denoise needs a DSM"):
        ssm.draw(3, gen(0), steps=4, final_denoise=True)
    with pytest.raises(KeyError, match="langevin"):
        model.draw(3, gen(0), sampler="annealed")
    for budget in (1, 2, 10):  # the steps for a budget spend at most the budget
        assert model.draw(2, gen(0), steps=model.steps_for_nfe("langevin", budget)).nfe <= budget
    x = ebm(spec=IMG).sample(4, gen(0), steps=3)
    assert x.shape == (4, *IMG.event_shape) and x.min() >= -1 and x.max() <= 1  # discrete data: clamped at the end
    starts = {init: model.draw(4000, gen(0), steps=0, init=init, final_denoise=False, keep_trajectory=True)
              .trajectory[0] for init in ("uniform", "gaussian")}
    assert starts["uniform"].abs().max() <= 1 and starts["uniform"].std().item() == pytest.approx(3**-0.5, rel=0.05)
    assert starts["gaussian"].std().item() == pytest.approx(1.0, rel=0.05)  # N(0, I)
    with pytest.raises(ValueError, match="init"):
        model.draw(2, gen(0), init="zeros")
    assert model.preview() == {"steps": 200}


def test_ncsn_annealed_sampling_shapes_seeding_and_nfe():
    model = ncsn()
    out = model.draw(6, gen(0), steps=3)
    assert out.x0.shape == (6, 2) and out.nfe == 4 * 3 + 1  # L·T + the final denoising
    torch.testing.assert_close(model.sample(6, gen(0), steps=3), out.x0)
    assert not torch.equal(model.sample(6, gen(1), steps=3), out.x0)
    assert model.draw(6, gen(0), steps=3, final_denoise=False).nfe == 12
    traj = model.draw(6, gen(0), steps=3, keep_trajectory=True, trajectory_stride=4).trajectory
    assert traj.shape == (1 + 3 + 1, 6, 2)  # start, updates 4/8/12, denoised
    assert model.default_steps() == 100 and model.steps_for_nfe("annealed", 13) == 3
    assert model.steps_for_nfe("annealed", 4) == 0  # fewer evaluations than levels: no run fits
    # the same chain by hand: uniform start on the value range, then NCSN Algorithm 1 with the rule's ε
    g = gen(0)
    x0 = -1 + 2 * torch.rand(6, 2, generator=g)
    ref = annealed_langevin_dynamics(model.score, x0, model.sigmas, eps=model.step_size(3), n_steps_each=3,
                                     final_denoise=True, generator=g)
    torch.testing.assert_close(out.x0, ref.x)
    start = model.draw(4000, gen(0), steps=1, init="gaussian", keep_trajectory=True).trajectory[0]
    assert start.std().item() == pytest.approx(2.0, rel=0.05)  # N(0, σ_1² I), the variance-exploding prior
    assert model.preview() == {"steps": 12}  # ⌊50/L⌋ updates per level
    img = ncsn(IMG).sample(3, gen(0), steps=1)
    assert img.shape == (3, *IMG.event_shape) and img.min() >= -1 and img.max() <= 1
    with pytest.raises(ValueError, match="≥ 1"):
        model.draw(2, gen(0), steps=0)


def test_step_size_rule_predicts_the_variance_after_each_level():
    # one level σ_i, data a single point: the chain starts with variance γ²σ_i² and takes T NCSN-form steps
    sigma, gamma, T = 0.3, 1.6, 20
    r = annealing_step_size(gamma, T)
    x = gamma * sigma * torch.randn(200_000, 1, generator=gen(11), dtype=torch.float64)
    out = annealed_langevin_dynamics(lambda x, s: -x / s[:, None] ** 2, x, torch.tensor([sigma], dtype=torch.float64),
                                     eps=r * sigma**2, n_steps_each=T, generator=gen(12))
    ratio = out.x.var().item() / sigma**2
    assert ratio == pytest.approx(annealing_variance_ratio(r, gamma, T), rel=5 * math.sqrt(2 / 200_000))
    grid = torch.tensor([0.5 * r, r, 2 * r], dtype=torch.float64)
    vals = annealing_variance_ratio(grid, gamma, T)
    assert vals[1] <= vals[0] and vals[1] <= vals[2]  # the rule's ε is the minimum
    # NCSNv2 on CIFAR-10: L = 232 from 50 to 0.01 and T = 5 give ε = 6.2e-6 in its update (half of NCSN's ε)
    r_cifar = annealing_step_size(5000 ** (1 / 231), 5)
    assert r_cifar * 0.01**2 / 2 == pytest.approx(6.2e-6, rel=0.01)


# ------------------------------------------------------------------------------------------ learning the score

MU, S = torch.tensor([0.5, -0.3]), torch.tensor([0.6, 0.9])
PTS = MU + S * torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])  # within 1.5 std


def _fit(model, steps: int, lr: float = 1e-2, batch: int = 256) -> None:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = gen(0)
    for _ in range(steps):
        x = MU + S * torch.randn(batch, 2, generator=g)
        loss = model.loss(x, g).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def _score_error(got: torch.Tensor, noise_sigma: float) -> float:
    """Largest error at PTS relative to the typical size of the exact score, ‖1/√(s² + σ²)‖."""
    var = S**2 + noise_sigma**2
    return ((got - (-(PTS - MU) / var)).norm(dim=1).max() / var.rsqrt().norm()).item()


@pytest.mark.parametrize("loss_type, sigma", [("dsm", 0.3), ("esm", 0.0), ("ssm", 0.0)])
def test_a_small_ebm_learns_the_score_of_gaussian_data(loss_type, sigma):
    model = EBM(EBMConfig(loss_type=loss_type, sigma=sigma or 0.1, mlp=EnergyMLPConfig(hidden=32, depth=2)), VEC)
    _fit(model, 300)
    assert _score_error(model.score(PTS), sigma) < 0.15  # DSM: the noised data's score, not the data's


def test_a_small_ncsn_learns_the_noised_scores_at_every_level():
    model = NCSN(NCSNConfig(sigma_max=2.0, sigma_min=0.1, n_sigmas=3, mlp=MLPConfig(hidden=32, depth=2, emb_dim=16)),
                 VEC)
    _fit(model, 400)
    for s in model.sigmas.tolist():
        with torch.no_grad():
            assert _score_error(model.score(PTS, s), s) < 0.2, s


# ------------------------------------------------------------------------------------------ the pc sampler


def test_pc_sampler_is_registered_and_runs_on_a_ddpm():
    torch.manual_seed(0)
    model = DDPM(DDPMConfig(schedule=ScheduleConfig(T=50), mlp=MLPConfig(hidden=16, depth=1, emb_dim=8),
                            clip_x0=False), VEC)
    out = samplers.SAMPLERS.get("pc")(model, 6, steps=5, generator=gen(0))
    assert out.x0.shape == (6, 2) and out.nfe == 10  # one corrector step and one predictor step per level
    assert draw_in_batches(model, 7, "pc", steps=5, generator=gen(0), batch_size=4,
                                      corrector_steps=2).nfe == 15
    torch.testing.assert_close(model.sample(6, gen(0), sampler="pc", steps=5), out.x0)
    assert samplers.steps_for_nfe("pc", 10) == 5 and samplers.steps_for_nfe("pc", 1) == 0


# ------------------------------------------------------------------------------------------ command line

runner = CliRunner()
TRAIN = ["--steps", "6", "--batch-size", "32", "--log-every", "2", "--checkpoint-every", "0", "--threads", "1",
         "--no-progress", "--sample-every", "3", "--set", "mlp.hidden=16", "--set", "mlp.depth=1"]


_error = cli_error


@pytest.fixture(scope="module")
def score_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    _ok(runner.invoke(app, ["train", "ebm", "--data", "8gaussians", "--out", str(root / "ebm"), *TRAIN,
                            "--set", "sample_steps=20"]))
    _ok(runner.invoke(app, ["train", "ncsn", "--data", "moons", "--out", str(root / "ncsn"), *TRAIN,
                            "--set", "mlp.emb_dim=8", "--set", "n_sigmas=4", "--set", "sample_steps_each=3"]))
    return root


def test_cli_trains_score_models_with_sample_grids(score_runs):
    for name in ("ebm", "ncsn"):
        run = score_runs / name
        assert json.loads((run / "config.json").read_text())["model"] == name
        assert (run / "samples" / "step_0000006.png").is_file()  # the training-time grid, with the family's sampler


def test_cli_samples_with_langevin_and_annealed(score_runs, tmp_path):
    for name, sampler, steps, nfe in (("ebm", "langevin", 5, 6), ("ncsn", "annealed", 2, 4 * 2 + 1)):
        out = tmp_path / f"{name}.png"
        res = _ok(runner.invoke(app, ["sample", str(score_runs / name), "--n", "10", "--sampler", sampler, "--steps",
                                      str(steps), "--out", str(out), "--no-progress"]))
        info = json.loads(res.output)
        assert (info["sampler"], info["steps"], info["nfe"]) == (sampler, steps, nfe) and out.is_file()
        x = np.load(out.with_suffix(".npz"))["x"]
        assert x.shape == (10, 2) and np.isfinite(x).all()
    info = json.loads(_ok(runner.invoke(app, ["sample", str(score_runs / "ncsn"), "--n", "3", "--out",
                                              str(tmp_path / "d.png"), "--no-progress"])).output)
    assert (info["sampler"], info["steps"], info["nfe"]) == ("annealed", 3, 13)  # the family's default and config
    _error(["sample", str(score_runs / "ebm"), "--sampler", "ddim", "--no-progress"], "langevin", "ddim")


def test_cli_evaluate_says_there_is_no_likelihood(score_runs):
    for name, sampler in (("ebm", "langevin"), ("ncsn", "annealed")):
        out = _error(["evaluate", str(score_runs / name), "--no-progress"], "no likelihood", f"--sampler {sampler}")
        assert len(out.strip().splitlines()) == 1
    _error(["evaluate", str(score_runs / "ebm"), "--likelihood", "ode", "--no-progress"], "Z_θ")


def test_cli_evaluate_sweeps_sample_quality_of_a_score_model(score_runs):
    res = _ok(runner.invoke(app, ["evaluate", str(score_runs / "ncsn"), "--sampler", "annealed", "--nfe", "3,9",
                                  "--n", "50", "--no-progress"]))
    rows = json.loads(res.output[res.output.index("{"):])["rows"]
    assert [(r["steps"], r["nfe"]) for r in rows] == [(2, 9)]  # a budget of 3 is below L + 1 = 5: skipped
    assert rows[0]["quality"]["sliced_w2"] > 0
    _error(["evaluate", str(score_runs / "ncsn"), "--sampler", "annealed", "--nfe", "3", "--n", "50",
            "--no-progress"], "no NFE budget")


def test_cli_pictures_of_score_models(score_runs):
    for name in ("ebm", "ncsn"):
        res = _ok(runner.invoke(app, ["pictures", str(score_runs / name)]))
        names = {p.rsplit("/", 1)[-1] for p in json.loads(res.output)}
        assert {"score_field.png", "trajectories.png", "langevin.png", "samples.png", "loss.png"} <= names
        assert (score_runs / name / "figures" / "score_field.png").stat().st_size > 10_000
