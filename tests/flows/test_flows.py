"""The flow models (NICE, RealNVP, Glow) of :mod:`genmodels.flows.flow`, on vectors and images, scaled down: inverse
∘ forward = id, log_det against the autograd Jacobian, the density integrates to 1 in 2-D, the NLL's parts and the
dequantization convention, training decreases the loss, sampling, presets, save/reload and clear errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from _flow_cases import CASES, CNN, DT, FAMILIES, IMG, VEC2, VEC4, _data, _g, _spec, build_flow
from genmodels.checkpoint import RunConfig, config_from_dict, config_to_dict, from_pretrained, save_pretrained
from genmodels.core import DataSpec, log_bin_width
from genmodels.families import MODELS
from genmodels.flows import NICE, Glow, GlowConfig, NICEConfig, RealNVP, RealNVPConfig
from genmodels.flows.transforms import ActNorm


def _flow(family: str, spec: DataSpec, dtype=DT, perturb: float = 0.2):
    """A small flow of ``family`` for ``spec``, actnorm initialized, parameters perturbed away from the identity."""
    return build_flow(family, spec, dtype, perturb)


@pytest.mark.parametrize("family, kind", CASES)
def test_inverse_of_forward_is_identity(family, kind):
    spec = _spec(kind)
    for dtype, tol in ((DT, 1e-10), (torch.float32, 1e-5)):
        model = _flow(family, spec, dtype)
        x = model.dequantize(_data(spec, 8, dtype=dtype), _g(3))
        z, log_det = model(x)
        assert z.shape == (8, spec.dim) and log_det.shape == (8,)
        torch.testing.assert_close(model.inverse(z), x, atol=tol, rtol=0)


@pytest.mark.parametrize("family, kind", CASES)
def test_log_det_matches_autograd_jacobian(family, kind):
    spec = _spec(kind)
    model = _flow(family, spec)
    x = model.dequantize(_data(spec, 3), _g(3))
    _, log_det = model(x)
    for i in range(len(x)):
        J = jacobian(lambda xi: model(xi[None])[0][0], x[i]).reshape(spec.dim, spec.dim)
        sign, logabs = torch.linalg.slogdet(J)
        assert sign != 0
        assert logabs.item() == pytest.approx(log_det[i].item(), abs=1e-8)


@pytest.mark.parametrize("family", FAMILIES)
def test_density_integrates_to_one_in_2d(family):
    model = _flow(family, VEC2, perturb=0.3)
    n, half = 801, 20.0  # a box wide enough for the tails (glow: 0.4% of the mass lies outside ±12)
    xs = torch.linspace(-half, half, n, dtype=DT)
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), -1).reshape(-1, 2)
    with torch.no_grad():
        p = torch.cat([model.log_prob(b).exp() for b in grid.split(100_000)])
    mass = p.sum().item() * (xs[1] - xs[0]).item() ** 2
    assert mass == pytest.approx(1.0, abs=1e-2)
    # and the density is not the base's: the perturbed flow moved it
    assert (p - model.base_log_prob(grid).exp()).abs().max() > 1e-2


@pytest.mark.parametrize("family, kind", CASES)
def test_nll_terms_sum_and_follow_the_dequantization_convention(family, kind):
    spec = _spec(kind)
    model = _flow(family, spec)
    x = _data(spec, 6)
    out = model.nll_terms(x, _g(7))
    assert out.kind == "exact" and model.nll_kind == "exact"
    torch.testing.assert_close(sum(out.terms.values()), out.nll)
    continuous_nll = -model.log_prob(model.dequantize(x, _g(7)))  # the same noise u
    if spec.is_discrete:
        assert set(out.terms) == {"prior", "log_det", "logit", "dequantization"}
        # discrete NLL bound = continuous NLL of x + u − D log Δ (core.discrete_nll_from_density)
        torch.testing.assert_close(out.nll, continuous_nll.detach() - spec.dim * log_bin_width(spec))
        torch.testing.assert_close(out.terms["dequantization"],
                                   torch.full((6,), spec.dim * math.log((spec.n_bins - 1) / 2), dtype=DT))
    else:
        assert set(out.terms) == {"prior", "log_det"}
        torch.testing.assert_close(out.nll, -model.log_prob(x).detach())
    torch.testing.assert_close(model.loss(x, _g(7)).detach(), out.nll / (spec.dim * math.log(2)))  # bits/dim


@pytest.mark.parametrize("family, kind", CASES)
def test_loss_is_finite_decreases_and_reaches_every_parameter(family, kind):
    spec = _spec(kind)
    model = _flow(family, spec, torch.float32, perturb=0.0)
    x = _data(spec, 16, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(8):
        loss = model.loss(x, _g(step % 2)).mean()
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        after = model.loss(x, _g(0)).mean().item()
    assert after < losses[0] - 0.05
    # after a few steps (the zero-initialized last layers are no longer zero), gradients reach every parameter
    model.zero_grad()
    model.loss(x, _g(0)).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("family, kind", CASES)
def test_sample_inverts_scaled_base_draws(family, kind):
    spec = _spec(kind)
    model = _flow(family, spec, torch.float32)
    x = model.sample(10, _g(5), temperature=0.7)
    assert x.shape == (10, *spec.event_shape) and torch.isfinite(x).all()
    z = 0.7 * torch.randn(10, spec.dim, generator=_g(5))
    expected = model.inverse(z)
    if spec.is_discrete:
        expected = expected.clamp(-1, 1)
        assert x.min() >= -1 and x.max() <= 1
    torch.testing.assert_close(x, expected)
    torch.testing.assert_close(model.sample(10, _g(5), temperature=0.7), x)  # reproducible
    with pytest.raises(ValueError, match="temperature > 0"):
        model.sample(2, temperature=0.0)


# ------------------------------------------------------------------------------------------ save / reload


@pytest.mark.parametrize("family", FAMILIES)
def test_save_and_reload_keeps_weights_and_actnorm_init(family, tmp_path):
    model = _flow(family, IMG, torch.float32)
    run = RunConfig(model=family, model_config=model.config, data="tiny-images", spec=IMG)
    save_pretrained(tmp_path, model, run)
    loaded, cfg = from_pretrained(tmp_path)
    assert cfg.model_config == model.config
    x = model.dequantize(_data(IMG, 5, seed=9, dtype=torch.float32), _g(9))
    with torch.no_grad():
        torch.testing.assert_close(loaded.log_prob(x), model.log_prob(x))
    for m in loaded.modules():
        if isinstance(m, ActNorm):
            assert m.initialized


def test_glow_actnorm_is_not_reinitialized_after_reload():
    spec = VEC4
    a = _flow("glow", spec, perturb=0.0)
    a(_data(spec, 32, seed=11) * 4)  # already initialized: no effect
    b = Glow(a.config, spec).double()
    b.load_state_dict(a.state_dict())
    x = _data(spec, 8, seed=12) * 5 - 3  # different statistics: a re-init would change log_prob
    torch.testing.assert_close(b.log_prob(x), a.log_prob(x))


# ------------------------------------------------------------------------------------------ registry, presets


SPECS = {"toy": DataSpec("moons", (2,)), "digits": DataSpec("digits", (1, 8, 8), 17),
         "mnist": DataSpec("mnist5k", (1, 28, 28), 256)}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("data", SPECS)
def test_presets_build_and_round_trip_through_json(family, data):
    entry = MODELS.get(family)
    spec = SPECS[data]
    cfg = entry.preset(spec)
    assert config_from_dict(entry.config_cls, config_to_dict(cfg)) == cfg
    model = entry.build(cfg, spec)
    n_params = sum(p.numel() for p in model.parameters())
    assert 1e4 < n_params < 3.5e6
    x = _data(spec, 2, dtype=torch.float32)
    assert torch.isfinite(model.loss(x)).all()


def test_odd_squeeze_is_a_clear_error():
    spec = SPECS["mnist"]
    with pytest.raises(ValueError, match=r"7×7 input .*odd.* at most 2 squeeze"):
        RealNVP(RealNVPConfig(n_scales=4, net=CNN), spec)
    with pytest.raises(ValueError, match=r"7×7 input .*odd"):
        Glow(GlowConfig(n_levels=3, net=CNN), spec)
    with pytest.raises(ValueError, match="odd"):
        Glow(GlowConfig(n_levels=1, net=CNN), DataSpec("odd", (1, 5, 6), 256))


def test_bad_shapes_are_clear_errors():
    model = _flow("realnvp", IMG)
    with pytest.raises(ValueError, match=r"built for events of shape \(1, 4, 4\)"):
        model.loss(torch.zeros(2, 1, 8, 8, dtype=DT))
    with pytest.raises(ValueError, match=r"built for events of shape"):
        model.nll_terms(torch.zeros(2, 16, dtype=DT))
    with pytest.raises(ValueError, match=r"z of shape \[B, 16\]"):
        model.inverse(torch.zeros(2, 15, dtype=DT))
    with pytest.raises(ValueError, match="outside its domain"):
        model.log_prob(torch.full((2, 1, 4, 4), 3.0, dtype=DT))
    with pytest.raises(ValueError, match=r"vectors \(D,\) or images"):
        NICE(NICEConfig(), DataSpec("seq", (1, 16)))
    with pytest.raises(ValueError, match="logit_alpha"):
        RealNVPConfig(logit_alpha=0.7)
