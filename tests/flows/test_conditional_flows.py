"""Class-conditional flows (NICE, RealNVP, Glow with ``cond``): a per-class base N(μ_y, diag σ_y²) (Glow's
class-conditional prior) and the label embedding as context of every coupling network. Checked: log p(x | y) stays
exact (inverse ∘ forward = id and log_det against the autograd Jacobian for each y; the density integrates to 1 for
each y on a 2-D grid; the base against torch.distributions), the interface (loss, nll, sample and draw take y; None
is the null label; label dropout), and that an unconditional flow gets no label parameters."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.autograd.functional import jacobian

from _flow_cases import CASES, CNN, DT, FAMILIES, IMG, VEC2, VEC4, _data, _g, _spec, build_flow
from genmodels.checkpoint import RunConfig, from_pretrained, save_pretrained
from genmodels.core import Conditioning, DataSpec
from genmodels.flows.flow import LABEL_DIM

K = 3


def _labels(n: int, seed: int = 5) -> torch.Tensor:
    return torch.randint(0, K, (n,), generator=_g(seed))


def _flow(family: str, spec: DataSpec, perturb: float = 0.2, p_uncond: float = 0.1, num_classes: int = K):
    """A small conditional flow, actnorm initialized, every parameter (couplings, label embedding, per-class base)
    perturbed away from its zero initialization so that y matters everywhere."""
    return build_flow(family, spec, DT, perturb, Conditioning(num_classes, p_uncond))


@pytest.mark.parametrize("family, kind", CASES)
def test_conditional_flow_builds_with_label_parameters(family, kind):
    model = _flow(family, _spec(kind), perturb=0)
    assert model.num_classes == K and model.null_label == K
    assert model.label_embedding.weight.shape == (K + 1, LABEL_DIM)
    assert model.base_params.weight.shape == (K + 1, 2 * model.spec.dim)
    assert torch.count_nonzero(model.base_params.weight) == 0  # every class starts at N(0, I)


@pytest.mark.parametrize("family, kind", CASES)
def test_unconditional_flow_has_no_label_parameters(family, kind):
    cls, cfg = FAMILIES[family]
    spec = _spec(kind)
    cfg = cfg() if kind == "vector" else dataclasses.replace(cfg(), net=CNN)
    assert cfg.cond == Conditioning() and not cfg.cond.enabled
    torch.manual_seed(0)
    plain = cls(cfg, spec)
    torch.manual_seed(0)
    cond = cls(dataclasses.replace(cfg, cond=Conditioning(K)), spec)
    keys = set(plain.state_dict())
    assert not any("label" in k or "base_params" in k for k in keys)
    assert {k for k in cond.state_dict() if "label" in k or "base_params" in k} == {
        "label_embedding.weight", "base_params.weight"}
    assert plain.n_context == 0 and plain.num_classes is None
    x = _data(spec, 2)
    with pytest.raises(ValueError, match="unconditional"):
        plain.nll(x, y=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="unconditional"):
        plain.sample(2, y=torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("family, kind", CASES)
def test_fresh_conditional_flow_is_the_unconditional_one_at_the_same_seed(family, kind):
    """At initialization a conditional flow computes exactly the unconditional flow built at the same seed, for
    every label and the null one: its couplings draw the same initial weights and read the label only through a
    zero-initialized projection, and every class's base starts at N(0, I). (With the label embedding concatenated as
    extra input channels the first layer's fan-in grew, its initial weights on x_a shrank and the N(0, 1) embedding
    swamped them: a conditional RealNVP on MNIST trained ≈ 0.5 bit/dim worse than the unconditional one.)"""
    cls, cfg = FAMILIES[family]
    spec = _spec(kind)
    cfg = cfg() if kind == "vector" else dataclasses.replace(cfg(), net=CNN)
    torch.manual_seed(0)
    plain = cls(cfg, spec).to(DT)
    torch.manual_seed(0)
    cond = cls(dataclasses.replace(cfg, cond=Conditioning(K)), spec).to(DT)
    shared = plain.state_dict()
    for name, value in cond.state_dict().items():
        if name in shared:
            assert torch.equal(value, shared[name]), name
        else:
            assert name in ("label_embedding.weight", "base_params.weight") or name.endswith("context_weight"), name
            if name.endswith("context_weight"):
                assert torch.count_nonzero(value) == 0, name
    x = plain.dequantize(_data(spec, 8, seed=1), _g(1))
    want = plain.log_prob(x)  # also initializes Glow's actnorm, from the same batch as the conditional flow's
    assert torch.equal(cond.log_prob(x), want)
    for c in range(K + 1):
        assert torch.equal(cond.log_prob(x, torch.full((8,), c)), want), c
    assert torch.equal(cond.log_prob(x, _labels(8)), want)


@pytest.mark.parametrize("family, kind", CASES)
def test_loss_is_finite_and_differentiable_in_every_label_parameter(family, kind):
    spec = _spec(kind)
    model = _flow(family, spec)
    x, y = _data(spec, 6), _labels(6)
    loss = model.loss(x, _g(3), y)
    assert loss.shape == (6,) and torch.isfinite(loss).all()
    loss.mean().backward()
    for name in ("label_embedding.weight", "base_params.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    # the classes present in the batch get a gradient on their base row, the others none (p_uncond's ∅ may too)
    rows = model.base_params.weight.grad.abs().sum(1)
    assert all(rows[c] == 0 for c in range(K) if c not in y.tolist())


@pytest.mark.parametrize("family, kind", CASES)
def test_nll_takes_labels_none_is_the_null_label_and_labels_matter(family, kind):
    spec = _spec(kind)
    model = _flow(family, spec)
    x = _data(spec, 5)
    out = model.nll_terms(x, _g(4), y=_labels(5))
    assert out.nll.shape == (5,) and out.kind == "exact" and torch.isfinite(out.nll).all()
    torch.testing.assert_close(sum(out.terms.values()), out.nll)
    null = torch.full((5,), K, dtype=torch.long)
    assert torch.equal(model.nll(x, _g(4)), model.nll(x, _g(4), y=null))
    per_class = torch.stack([model.nll(x, _g(4), y=torch.full((5,), c)) for c in range(K + 1)])  # [K+1, 5]
    assert (per_class[1:] - per_class[:1]).abs().min() > 1e-4  # every label gives another density
    # the label of one example does not change another's
    y = torch.zeros(5, dtype=torch.long)
    y2 = y.clone()
    y2[0] = 1
    a, b = model.nll(x, _g(4), y=y), model.nll(x, _g(4), y=y2)
    assert (a[0] - b[0]).abs() > 1e-4
    torch.testing.assert_close(a[1:], b[1:], atol=1e-10, rtol=0)


@pytest.mark.parametrize("family, kind", CASES)
def test_inverse_of_forward_is_identity_for_every_label(family, kind):
    spec = _spec(kind)
    model = _flow(family, spec)
    x = model.dequantize(_data(spec, 8), _g(3))
    for c in range(K + 1):
        y = torch.full((8,), c)
        z, log_det = model(x, y)
        assert z.shape == (8, spec.dim) and log_det.shape == (8,)
        torch.testing.assert_close(model.inverse(z, y), x, atol=1e-10, rtol=0)
    y = _labels(8)
    torch.testing.assert_close(model.inverse(model(x, y)[0], y), x, atol=1e-10, rtol=0)
    assert (model(x, y)[0] - model(x, (y + 1) % K)[0]).abs().max() > 1e-4  # the couplings read the label


@pytest.mark.parametrize("family, kind", CASES)
def test_log_det_matches_the_autograd_jacobian_given_a_label(family, kind):
    spec = _spec(kind)
    model = _flow(family, spec)
    x = model.dequantize(_data(spec, 3), _g(3))
    for c in (0, K):
        y1 = torch.tensor([c])
        for i in range(len(x)):
            xi = x[i:i + 1]
            J = jacobian(lambda v, y1=y1, xi=xi: model(v.view_as(xi), y1)[0].flatten(), xi.flatten())  # [D, D]
            _, log_det = model(xi, y1)
            torch.testing.assert_close(log_det[0], torch.linalg.slogdet(J)[1], atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("family", FAMILIES)
def test_conditional_density_integrates_to_one_for_every_label_in_2d(family):
    model = _flow(family, VEC2, perturb=0.3)
    lim, n = 20.0, 401  # a box wide enough for the tails (as in test_flows.py), cells of 0.1
    axis = torch.linspace(-lim, lim, n, dtype=DT)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)
    cell = (axis[1] - axis[0]) ** 2
    masses, means = [], []
    with torch.no_grad():
        for c in range(K + 1):
            p = model.log_prob(grid, torch.full((len(grid),), c)).exp()
            masses.append(float(p.sum() * cell))
            means.append((p[:, None] * grid).sum(0) * cell)
    assert all(abs(m - 1) < 2e-3 for m in masses), masses
    assert min((means[a] - means[b]).norm() for a in range(K + 1) for b in range(a)) > 1e-2  # distinct p(x | y)


@pytest.mark.parametrize("family", FAMILIES)
def test_base_is_the_per_class_gaussian(family):
    """Without perturbation the couplings are the identity (zero-initialized), so on continuous vectors log p(x | y)
    is the base: log N(x; μ_y, diag σ_y²) from torch.distributions, plus NICE's scaling/Glow's layers' log_det."""
    model = _flow(family, VEC4, perturb=0)
    with torch.no_grad():
        model.base_params.weight.copy_(torch.randn(K + 1, 8, generator=_g(7), dtype=DT) * 0.5)
    x, y = _data(VEC4, 6), _labels(6)
    z, log_det = model(x, y)
    mean, log_scale = model.base_params.weight[y].chunk(2, 1)
    ref = torch.distributions.Normal(mean, log_scale.exp()).log_prob(z).sum(1)
    torch.testing.assert_close(model.base_log_prob(z, y), ref)
    torch.testing.assert_close(model.log_prob(x, y), ref + log_det)


@pytest.mark.parametrize("family, kind", CASES)
def test_sample_and_draw_take_labels(family, kind):
    spec = _spec(kind)
    model = _flow(family, spec)
    y = _labels(7)
    x = model.sample(7, _g(8), y=y)
    assert x.shape == (7, *spec.event_shape) and torch.isfinite(x).all()
    out = model.draw(7, _g(8), y=y, temperature=1.0)
    assert torch.equal(out.x0, x) and out.nfe == 1
    null = torch.full((7,), K, dtype=torch.long)
    assert torch.equal(model.sample(7, _g(8)), model.sample(7, _g(8), y=null))
    assert not torch.equal(model.sample(7, _g(8), y=(y + 1) % K), x)
    with pytest.raises(ValueError, match="out of range"):
        model.sample(2, y=torch.tensor([0, K + 1]))
    with pytest.raises(ValueError, match="2 class labels for 3"):
        model.draw(3, y=torch.tensor([0, 1]))


@pytest.mark.parametrize("family", FAMILIES)
def test_samples_follow_the_class_base_at_temperature(family):
    """z = f(x; y) of samples x ~ p(x | y) at temperature T is N(μ_y, T² σ_y²): standardized, mean 0 and std T."""
    model = _flow(family, VEC2, perturb=0.3)
    n, T = 4000, 0.7
    for c in (0, 2):
        y = torch.full((n,), c)
        z = model(model.sample(n, _g(c), temperature=T, y=y), y)[0]
        mean, log_scale = model.base_params.weight[c].chunk(2)
        u = (z - mean) / log_scale.exp()
        assert u.mean(0).abs().max() < 4 * T / math.sqrt(n)
        assert (u.std(0) / T - 1).abs().max() < 0.06


def test_label_dropout_with_p_uncond_one_trains_the_null_label():
    model = _flow("realnvp", VEC4, p_uncond=1.0)
    x, y = _data(VEC4, 6), _labels(6)
    torch.testing.assert_close(model.loss(x, _g(3), y), model.loss(x, _g(3), None), atol=0, rtol=0)
    model0 = _flow("realnvp", VEC4, p_uncond=0.0)
    assert not torch.equal(model0.loss(x, _g(3), y), model0.loss(x, _g(3), None))


def test_conditional_flow_saves_and_reloads(tmp_path):
    model = _flow("glow", IMG).float()
    run = RunConfig(model="glow", model_config=model.config, data="tiny-images", spec=IMG)
    save_pretrained(tmp_path, model, run)
    loaded, cfg = from_pretrained(tmp_path)
    assert cfg.model_config.cond == Conditioning(K, 0.1) and loaded.num_classes == K
    x = model.dequantize(_data(IMG, 5).float(), _g(9))
    y = _labels(5)
    with torch.no_grad():
        torch.testing.assert_close(loaded.log_prob(x, y), model.log_prob(x, y))
