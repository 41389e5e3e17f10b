"""The hierarchical VAE (:mod:`genmodels.vae.hvae`), both inference variants: the parts of the bound sum to it,
the KL terms are consistent with the sampled log-ratio of the importance weight, the IWAE bound is tighter,
shapes and orders of latents, and a one-layer HVAE is a VAE."""

from __future__ import annotations

import math

import pytest
import torch

from genmodels import distributions as D
from genmodels.core import DataSpec
from genmodels.nets.coders import CoderConfig
from genmodels.vae import HVAE, VAE, HVAEConfig, VAEConfig
from genmodels.vae import hvae as H
from genmodels.vae import likelihoods as L

DT = torch.float64
SMALL = CoderConfig(hidden=16, depth=1, activation="silu")
VEC = DataSpec("vec", (6,), None)
INFERENCE = ["top_down", "bottom_up"]
DIMS = [(3, 2), (4, 3, 2)]


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mean_se(v: torch.Tensor) -> tuple[float, float]:
    v = v.double()
    return v.mean().item(), (v.std() / math.sqrt(len(v))).item()


def _hvae(dims, inference, spec=VEC, coder=SMALL, **cfg) -> HVAE:
    torch.manual_seed(0)
    model = HVAE(HVAEConfig(latent_dims=tuple(dims), inference=inference, latent_hidden=16, coder=coder, **cfg),
                 spec).double().eval()
    if inference == "top_down":  # q starts equal to p below the top (zero residual): make every KL non-trivial
        with torch.no_grad():
            for m in model.q_residual:
                m.weight.normal_(0.0, 0.3, generator=_g(1))
                m.bias.normal_(0.0, 0.3, generator=_g(2))
    return model


def _x(n: int, seed: int = 3) -> torch.Tensor:
    return torch.randn(n, *VEC.event_shape, generator=_g(seed), dtype=DT)


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("inference", INFERENCE)
def test_terms_are_reconstruction_and_one_kl_per_layer_and_sum_to_nll(inference, dims):
    model = _hvae(dims, inference)
    x = _x(8)
    out = model.nll_terms(x, _g(4), k=1)
    names = ["reconstruction"] + [f"kl_z{i + 1}" for i in range(len(dims))]
    assert list(out.terms) == names
    torch.testing.assert_close(sum(out.terms.values()), out.nll, rtol=1e-12, atol=1e-10)
    assert all(out.terms[n].abs().max() > 1e-6 for n in names)
    iw = model.nll_terms(x, _g(4), k=6)
    assert list(iw.terms) == [*names, "iwae_gap"]
    torch.testing.assert_close(sum(iw.terms.values()), iw.nll, rtol=1e-12, atol=1e-10)
    # without warm-up and free bits, the training loss is the same −ELBO estimate
    torch.testing.assert_close(model.loss(x, _g(5)), model.nll_terms(x, _g(5), k=1).nll)


@pytest.mark.parametrize("dims", DIMS)
def test_bottom_up_kl_terms_are_the_sampled_log_ratio(dims):
    """bottom_up: every layer below the top reports the single-sample log q − log p at the drawn z's, and the top
    one the analytic KL. So, replaying the same generator, −(log_px + log_ratio) = reconstruction + Σ kl exactly,
    once the top layer's analytic KL is swapped for its sampled log q(z_L) − log p(z_L)."""
    model = _hvae(dims, "bottom_up")
    x, S = _x(5), 3
    p = model.latent_pass(x, S, _g(6))
    g = _g(6)  # replay q's draws in latent_pass's order: z_1, then z_2 | z_1, …
    rep = lambda t: t.expand(S, *t.shape).flatten(0, 1)  # noqa: E731
    q = [H._gauss(rep(model.q_first(model.encoder(x))))]
    zs = [L.reparameterize(*q[0], g)]
    for lay in range(len(dims) - 1):
        q.append(H._gauss(model.q_up[lay](zs[-1])))
        zs.append(L.reparameterize(*q[-1], g))
    torch.testing.assert_close(p.kl[-1], D.standard_normal_kl(*q[-1]).view(S, 5, -1))  # analytic at the top
    zero = torch.zeros_like(zs[-1])
    top_sampled = (D.normal_log_prob(zs[-1], *q[-1]) - D.normal_log_prob(zs[-1], zero, zero)).sum(-1).view(S, 5)
    lhs = -(p.log_px + p.log_ratio)
    rhs = -p.log_px + sum(k.sum(-1) for k in p.kl[:-1]) + top_sampled
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-10)
    # and the decoder saw z_1
    torch.testing.assert_close(p.log_px.flatten(), L.log_prob(model.decode(zs[0]), rep(x), "gaussian", VEC))


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("inference", INFERENCE)
def test_kl_terms_agree_with_the_sampled_log_ratio_in_expectation(inference, dims):
    """E_q[−log_ratio] = Σ_l E_q[KL terms]: analytic KLs (given the layers above) and the sampled log-ratio of the
    importance weight estimate the same thing. Per example, over 4000 draws, within 4 standard errors."""
    model = _hvae(dims, inference)
    x, S = _x(4, seed=7), 4000
    p = model.latent_pass(x, S, _g(8))
    kl_sum = sum(k.sum(-1) for k in p.kl)  # [S, B]
    diff = -p.log_ratio - kl_sum
    assert diff.abs().max() > 1e-3  # a per-sample identity would make this test vacuous
    for b in range(4):
        m, se = _mean_se(diff[:, b])
        assert abs(m) < 4 * se, (b, m, se)
        assert se < 0.1 * kl_sum[:, b].mean().abs().item() + 0.05  # with enough precision to mean something


@pytest.mark.parametrize("inference", INFERENCE)
def test_iwae_is_tighter_than_the_elbo_on_average(inference):
    model = _hvae((3, 2), inference)
    x = _x(300, seed=9)
    elbo = model.nll_terms(x, _g(10), k=1).nll
    iwae = model.nll_terms(x, _g(11), k=20)
    m, se = _mean_se(elbo - iwae.nll)
    assert m > 3 * se, (m, se)
    m, se = _mean_se(iwae.terms["iwae_gap"])
    assert m < -3 * se, (m, se)


@pytest.mark.parametrize("inference", INFERENCE)
def test_shapes_of_samples_priors_and_latent_means(inference):
    dims = (5, 3, 2)
    model = _hvae(dims, inference)
    x = _x(7)
    means = model.latent_means(x)
    assert [tuple(m.shape) for m in means] == [(7, 5), (7, 3), (7, 2)]  # bottom first
    assert model.kl_names() == ["kl_z1", "kl_z2", "kl_z3"] and model.latent_dims == dims
    p = model.latent_pass(x, 2, _g(2))
    assert [tuple(k.shape) for k in p.kl] == [(2, 7, 5), (2, 7, 3), (2, 7, 2)]
    assert p.log_px.shape == p.log_ratio.shape == (2, 7) and p.params.shape == (14, 12)
    torch.testing.assert_close(model.reconstruct(x), L.decoder_mean(model.decode(means[0]), "gaussian"))
    assert len(model.active_units(x)) == 3
    model.float()  # sampling in float32 (see test_sample_from_a_float64_hvae)
    assert model.prior_sample(9, _g(0)).shape == (9, 5)
    for mean in (False, True):
        s = model.sample(9, _g(1), mean=mean)
        assert s.shape == (9, 6) and torch.isfinite(s).all()
    assert torch.equal(model.sample(4, _g(3)), model.sample(4, _g(3)))


def test_latent_means_condition_each_layer_on_the_means_above():
    """top_down with the residual q at its zero initialisation: q(z_l | z_{l+1}, x) = p(z_l | z_{l+1}), so each
    lower mean is the prior mean at the layer above's mean; bottom_up: each upper mean is q's at the mean below."""
    torch.manual_seed(0)
    td = HVAE(HVAEConfig(latent_dims=(4, 3, 2), inference="top_down", latent_hidden=16, coder=SMALL), VEC).double()
    x = _x(6)
    m = td.latent_means(x)
    torch.testing.assert_close(m[-1], H._gauss(td.q_top(td._features(x)[-1]))[0])
    for lay in (0, 1):
        torch.testing.assert_close(m[lay], td.prior(m[lay + 1], lay)[0])
    bu = _hvae((4, 3, 2), "bottom_up")
    m = bu.latent_means(x)
    torch.testing.assert_close(m[0], H._gauss(bu.q_first(bu.encoder(x)))[0])
    for lay in (0, 1):
        torch.testing.assert_close(m[lay + 1], H._gauss(bu.q_up[lay](m[lay]))[0])


def test_prior_sample_follows_the_generative_path():
    """z_L ~ N(0, I), then z_l ~ p(z_l | z_{l+1}): with a prior net that ignores z_{l+1} and has fixed (μ, log σ²),
    z_1's moments are those numbers."""
    model = _hvae((2, 3), "top_down")
    with torch.no_grad():
        model.prior_head[0].weight.zero_()
        model.prior_head[0].bias.copy_(torch.tensor([1.5, -2.0, math.log(0.25), 0.0], dtype=DT))
    model.float()
    z = model.prior_sample(40_000, _g(12)).double()
    torch.testing.assert_close(z.mean(0), torch.tensor([1.5, -2.0], dtype=DT), atol=0.02, rtol=0)
    sd = torch.exp(0.5 * H._soft_clamp(torch.tensor([math.log(0.25), 0.0], dtype=DT)))  # log σ² soft-clamped
    torch.testing.assert_close(z.std(0), sd, atol=0.02, rtol=0)


@pytest.mark.parametrize("inference", INFERENCE)
def test_one_layer_hvae_is_a_vae(inference):
    """With the same encoder, decoder and posterior head, a one-layer HVAE gives the VAE's bound, terms (``kl_z``),
    loss, latent means and samples."""
    h = _hvae((3,), inference)
    torch.manual_seed(1)
    v = VAE(VAEConfig(latent_dim=3, coder=SMALL), VEC).double().eval()
    head = h.q_top if inference == "top_down" else h.q_first
    c = torch.tensor([-0.7, 0.4, 1.3], dtype=DT)  # log-variances: constant, so the soft clamp is known
    with torch.no_grad():
        head.weight[3:].zero_()
        head.bias[3:] = c
        v.encoder.load_state_dict(h.encoder.state_dict())
        v.decoder.load_state_dict(h.decoder.state_dict())
        v.to_posterior.weight.copy_(head.weight)
        v.to_posterior.bias.copy_(torch.cat([head.bias[:3], H._soft_clamp(c)]))
    x = _x(10)
    assert h.kl_names() == v.kl_names() == ["kl_z"]
    for k in (1, 4):
        a, b = h.nll_terms(x, _g(13), k=k), v.nll_terms(x, _g(13), k=k)
        assert list(a.terms) == list(b.terms)
        torch.testing.assert_close(a.nll, b.nll)
        for n in a.terms:
            torch.testing.assert_close(a.terms[n], b.terms[n])
    torch.testing.assert_close(h.loss(x, _g(14)), v.loss(x, _g(14)))
    torch.testing.assert_close(h.latent_means(x)[0], v.latent_means(x)[0])
    h.float(), v.float()
    torch.testing.assert_close(h.sample(5, _g(15)), v.sample(5, _g(15)))


@pytest.mark.parametrize("inference", INFERENCE)
def test_hvae_on_images_with_conv_backbone(inference):
    spec = DataSpec("digits", (1, 8, 8), 17)
    torch.manual_seed(0)
    model = HVAE(HVAEConfig(latent_dims=(4, 2), inference=inference, latent_hidden=8,
                            coder=CoderConfig(backbone="conv", hidden=16, channels=4)), spec).eval()
    assert model.likelihood == "discretized_logistic"
    k = torch.randint(0, 17, (5, 1, 8, 8), generator=_g(16))
    x = 2 * k / 16 - 1
    out = model.nll_terms(x, _g(17), k=3)
    assert out.nll.shape == (5,) and torch.isfinite(out.nll).all() and (out.nll > 0).all()
    s = model.sample(4, _g(18))
    assert s.shape == (4, 1, 8, 8)
    torch.testing.assert_close(s * 8 + 8, (s * 8 + 8).round())
    assert model.reconstruct(x).shape == x.shape


def test_iwae_objective_and_free_bits_and_warmup_for_hvae():
    x = _x(6)
    iw = _hvae((3, 2), "top_down", objective="iwae", train_samples=4)
    torch.testing.assert_close(iw.loss(x, _g(19)), iw.nll_terms(x, _g(19), k=4, chunk=4).nll)
    fb = _hvae((3, 2), "bottom_up", free_bits=100.0)
    p = fb.latent_pass(x, 1, _g(20))
    torch.testing.assert_close(fb.loss(x, _g(20)), -p.log_px.mean(0) + 100.0 * 5)
    wu = _hvae((3, 2), "top_down", kl_warmup_steps=3).train()
    betas = []
    for i in range(4):
        betas.append(wu.kl_weight())
        wu.loss(x, _g(i)).mean().backward()
    assert betas == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0]) and int(wu.train_steps) == 4


def test_sample_from_a_float64_hvae():
    assert _hvae((3, 2), "top_down").sample(3, _g(0)).dtype == DT
