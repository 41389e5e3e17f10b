"""Class-conditional VAEs (VAE and HVAE with ``cond``: CVAEs, Sohn et al. 2015): the label conditions the encoder,
the decoder and a learned prior p(z | y). Checked: the conditional ELBO (their Eq. 4) against a replay with the
closed-form KL to the learned prior, that KL against torch.distributions and against its Monte Carlo estimate, the
interface (loss, nll with k importance samples, sample and draw take y; None is the null label; label dropout),
sampling from p(z | y), and that an unconditional model gets no label parameters."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from genmodels.checkpoint import RunConfig, from_pretrained, save_pretrained
from genmodels.core import Conditioning, DataSpec
from genmodels.nets.coders import CoderConfig
from genmodels.vae import HVAE, VAE, HVAEConfig, VAEConfig
from genmodels.vae import likelihoods as L
from genmodels.vae.vae import LABEL_DIM

DT = torch.float64
K = 3
SMALL = CoderConfig(hidden=16, depth=1, activation="silu")
CONV = CoderConfig(backbone="conv", hidden=16, channels=4, activation="silu")
VEC = DataSpec("vec", (6,), None)
IMG = DataSpec("tiny-images", (1, 8, 8), n_bins=17)

MODELS = {
    "vae-mlp": (VEC, lambda **kw: VAE(VAEConfig(latent_dim=3, coder=SMALL, **kw), VEC)),
    "vae-conv": (IMG, lambda **kw: VAE(VAEConfig(latent_dim=3, coder=CONV, **kw), IMG)),
    "hvae-bottom_up": (VEC, lambda **kw: HVAE(HVAEConfig(latent_dims=(3, 2), inference="bottom_up",
                                                         latent_hidden=16, coder=SMALL, **kw), VEC)),
    "hvae-top_down": (VEC, lambda **kw: HVAE(HVAEConfig(latent_dims=(3, 2), inference="top_down",
                                                        latent_hidden=16, coder=SMALL, **kw), VEC)),
    "hvae-conv": (IMG, lambda **kw: HVAE(HVAEConfig(latent_dims=(4, 2), latent_hidden=16, coder=CONV, **kw), IMG)),
}


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mean_se(v: torch.Tensor) -> tuple[float, float]:
    v = v.double()
    return v.mean().item(), (v.std() / math.sqrt(len(v))).item()


def _prior_table(model) -> torch.nn.Embedding:
    return model.prior_params if isinstance(model, VAE) else model.top_prior_params


def _model(name: str, p_uncond: float = 0.1, prior: float = 0.5):
    """A small CVAE in float64 and eval mode, its learned prior moved away from N(0, I) (``prior``: the scale of
    the random per-class means and log-variances) and, for top_down, its residual posteriors away from the prior."""
    _, build = MODELS[name]
    torch.manual_seed(0)
    model = build(cond=Conditioning(K, p_uncond)).double().eval()
    with torch.no_grad():
        if prior:
            table = _prior_table(model)
            table.weight.copy_(prior * torch.randn(table.weight.shape, generator=_g(11), dtype=DT))
        for m in getattr(model, "q_residual", []):
            m.weight.normal_(0.0, 0.3, generator=_g(1))
            m.bias.normal_(0.0, 0.3, generator=_g(2))
    return model


def _x(spec: DataSpec, n: int, seed: int = 3) -> torch.Tensor:
    if spec.is_discrete:
        k = torch.randint(0, spec.n_bins, (n, *spec.event_shape), generator=_g(seed))
        return (2 * k / (spec.n_bins - 1) - 1).to(DT)
    return torch.randn(n, *spec.event_shape, generator=_g(seed), dtype=DT)


def _labels(n: int, seed: int = 5) -> torch.Tensor:
    return torch.randint(0, K, (n,), generator=_g(seed))


@pytest.mark.parametrize("name", MODELS)
def test_cvae_builds_with_a_label_embedding_and_a_prior_starting_at_the_standard_normal(name):
    model = _model(name, prior=0)
    assert model.num_classes == K and model.null_label == K
    assert model.label_embedding.weight.shape == (K + 1, LABEL_DIM)
    table = _prior_table(model)
    assert table.weight.shape == (K + 1, 2 * model.latent_dims[-1]) and torch.count_nonzero(table.weight) == 0


@pytest.mark.parametrize("name", MODELS)
def test_unconditional_model_has_no_label_parameters_and_refuses_labels(name):
    spec, build = MODELS[name]
    torch.manual_seed(0)
    plain = build()
    assert plain.config.cond == Conditioning() and plain.num_classes is None and plain.label_dim == 0
    keys = set(plain.state_dict())
    assert not any("label" in k or "prior_params" in k for k in keys)
    torch.manual_seed(0)
    cond = build(cond=Conditioning(K))
    extra = set(cond.state_dict()) - keys
    assert extra == {"label_embedding.weight", "prior_params.weight" if isinstance(cond, VAE)
                     else "top_prior_params.weight"}
    y = torch.zeros(2, dtype=torch.long)
    for call in (lambda: plain.nll(_x(spec, 2), y=y), lambda: plain.loss(_x(spec, 2), y=y),
                 lambda: plain.sample(2, y=y), lambda: plain.draw(2, y=y)):
        with pytest.raises(ValueError, match="unconditional"):
            call()


@pytest.mark.parametrize("name", MODELS)
def test_loss_is_finite_and_differentiable_in_every_label_parameter(name):
    spec, _ = MODELS[name]
    model = _model(name).train()
    x, y = _x(spec, 6), _labels(6)
    loss = model.loss(x, _g(3), y)
    assert loss.shape == (6,) and torch.isfinite(loss).all()
    loss.mean().backward()
    params = dict(model.named_parameters())
    for key in ("label_embedding.weight", "prior_params.weight" if isinstance(model, VAE)
                else "top_prior_params.weight"):
        grad = params[key].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, key
    rows = _prior_table(model).weight.grad.abs().sum(1)  # only the classes in the batch (and ∅) move their prior
    assert all(rows[c] == 0 for c in range(K) if c not in y.tolist())


@pytest.mark.parametrize("name", MODELS)
def test_nll_and_iwae_take_labels_none_is_the_null_label_and_labels_matter(name):
    spec, _ = MODELS[name]
    model = _model(name)
    x, y = _x(spec, 5), _labels(5)
    for k in (1, 4):
        out = model.nll_terms(x, _g(4), y=y, k=k)
        assert out.nll.shape == (5,) and out.kind == "bound" and torch.isfinite(out.nll).all()
        assert all(t.shape == (5,) for t in out.terms.values())
        torch.testing.assert_close(sum(out.terms.values()), out.nll, rtol=1e-12, atol=1e-10)
        null = torch.full((5,), K, dtype=torch.long)
        assert torch.equal(model.nll(x, _g(4), k=k), model.nll(x, _g(4), y=null, k=k))
    per_class = torch.stack([model.nll(x, _g(4), y=torch.full((5,), c)) for c in range(K + 1)])  # [K+1, 5]
    assert (per_class[1:] - per_class[:1]).abs().min() > 1e-4


def test_conditional_elbo_is_sohn_eq4_with_the_closed_form_kl_to_the_learned_prior():
    """Replaying the generator: −ELBO = −log p(x | z, y) + KL(q(z | x, y) ‖ p(z | y)) with z = μ + σε from
    q(z | x, y), the decoder fed [z, e(y)] and the KL between the two diagonal Gaussians from torch.distributions
    (Sohn et al. 2015, Eq. 4)."""
    model = _model("vae-mlp")
    x, y = _x(VEC, 7), _labels(7)
    out = model.nll_terms(x, _g(6), y=y, k=1)
    mu, logvar = model.posterior(x, y)
    mu_p, lv_p = model.prior(y, 7)
    z = L.reparameterize(mu, logvar, _g(6))
    log_px = L.log_prob(model.decode(z, y), x, model.likelihood, VEC)
    kl = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(mu_p, (0.5 * lv_p).exp())).sum(1)
    torch.testing.assert_close(out.terms["reconstruction"], -log_px)
    torch.testing.assert_close(out.terms["kl_z"], kl)
    torch.testing.assert_close(out.nll, kl - log_px)
    # the prior is the learned p(z | y), not N(0, I): the standard-normal KL differs
    kl_std = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    assert (kl - kl_std).abs().min() > 1e-3


@pytest.mark.parametrize("name", MODELS)
def test_kl_to_the_learned_prior_matches_its_monte_carlo_estimate(name):
    """E_q[log q(z | x, y) − log p(z | y)] (the sampled −log_ratio of the importance weight) equals the reported KL
    terms in expectation (analytic where both are Gaussian given the layers above): per example, over 4000 draws,
    within 4 standard errors, with labels whose prior is far from N(0, I)."""
    spec, _ = MODELS[name]
    model = _model(name)
    x, y, S = _x(spec, 4, seed=7), _labels(4), 4000
    with torch.no_grad():
        p = model.latent_pass(x, S, _g(8), y)
    kl_sum = sum(k.sum(-1) for k in p.kl)  # [S, B]
    diff = -p.log_ratio - kl_sum
    assert diff.abs().max() > 1e-3  # not a per-sample identity
    for b in range(4):
        m, se = _mean_se(diff[:, b])
        assert abs(m) < 4 * se, (b, m, se)
        assert se < 0.1 * kl_sum[:, b].mean().abs().item() + 0.05


@pytest.mark.parametrize("name", ["vae-mlp", "hvae-bottom_up", "hvae-top_down"])
def test_iwae_given_the_label_is_tighter_than_the_conditional_elbo(name):
    spec, _ = MODELS[name]
    model = _model(name)
    x, y = _x(spec, 200, seed=9), _labels(200, seed=10)
    elbo = model.nll_terms(x, _g(10), y=y, k=1).nll
    iwae = model.nll_terms(x, _g(11), y=y, k=20)
    m, se = _mean_se(elbo - iwae.nll)
    assert m > 3 * se, (m, se)


@pytest.mark.parametrize("name", MODELS)
def test_encoder_and_decoder_read_the_label(name):
    spec, _ = MODELS[name]
    model = _model(name)
    x, y = _x(spec, 4), _labels(4)
    with torch.no_grad():
        means, other = model.latent_means(x, y), model.latent_means(x, (y + 1) % K)
        assert all((a - b).abs().max() > 1e-4 for a, b in zip(means, other, strict=True))
        z = means[0]
        assert (model.decode(z, y) - model.decode(z, (y + 1) % K)).abs().max() > 1e-4
        assert torch.equal(model.decode(z), model.decode(z, torch.full((4,), K)))


@pytest.mark.parametrize("name", MODELS)
def test_sample_and_draw_take_labels(name):
    spec, _ = MODELS[name]
    model = _model(name)
    y = _labels(7)
    x = model.sample(7, _g(8), y=y)
    assert x.shape == (7, *spec.event_shape) and torch.isfinite(x).all()
    assert model.sample(7, _g(8), mean=True, y=y).shape == (7, *spec.event_shape)
    out = model.draw(7, _g(8), y=y)
    assert torch.equal(out.x0, x) and out.nfe == 1
    assert torch.equal(model.draw(7, _g(8), sampler="mean", y=y).x0, model.sample(7, _g(8), mean=True, y=y))
    null = torch.full((7,), K, dtype=torch.long)
    assert torch.equal(model.sample(7, _g(8)), model.sample(7, _g(8), y=null))
    mean = model.sample(7, _g(8), mean=True, y=y)  # (draws on 17 levels may not move by a bin at initialization)
    assert (model.sample(7, _g(8), mean=True, y=(y + 1) % K) - mean).abs().max() > 1e-4
    with pytest.raises(ValueError, match="out of range"):
        model.sample(2, y=torch.tensor([0, K + 1]))


@pytest.mark.parametrize("name", ["vae-mlp", "hvae-one-layer"])
def test_prior_samples_follow_the_learned_class_prior(name):
    """z ~ p(z | y) = N(μ_y, diag σ²_y): sample mean and variance per class within sampling error."""
    if name == "hvae-one-layer":
        torch.manual_seed(0)
        model = HVAE(HVAEConfig(latent_dims=(3,), latent_hidden=16, coder=SMALL, cond=Conditioning(K)), VEC).double()
        with torch.no_grad():
            model.top_prior_params.weight.copy_(0.8 * torch.randn(K + 1, 6, generator=_g(11), dtype=DT))
        params = lambda y: model.top_prior(y, len(y))  # noqa: E731
    else:
        model = _model(name, prior=0.8)
        params = lambda y: model.prior(y, len(y))  # noqa: E731
    n = 20000
    for c in range(K + 1):
        y = torch.full((n,), c)
        z = model.prior_sample(n, _g(c), y)
        mu, logvar = (t[0] for t in params(y[:1]))
        sd = (0.5 * logvar).exp()
        assert ((z.mean(0) - mu).abs() < 4 * sd / math.sqrt(n)).all()
        assert ((z.var(0) / sd**2 - 1).abs() < 4 * math.sqrt(2 / n)).all()


def test_label_dropout_with_p_uncond_one_trains_the_null_label():
    model = _model("vae-mlp", p_uncond=1.0).train()
    x, y = _x(VEC, 6), _labels(6)
    assert torch.equal(model.loss(x, _g(3), y), model.loss(x, _g(3), None))
    model0 = _model("vae-mlp", p_uncond=0.0).train()
    assert not torch.equal(model0.loss(x, _g(3), y), model0.loss(x, _g(3), None))


def test_active_units_and_reconstruct_take_labels():
    model = _model("vae-conv")
    x, y = _x(IMG, 12), _labels(12)
    assert len(model.active_units(x, batch_size=5, y=y)) == 1
    assert model.reconstruct(x, y).shape == x.shape
    assert torch.equal(model.reconstruct(x), model.reconstruct(x, torch.full((12,), K)))


@pytest.mark.parametrize("name", ["vae-conv", "hvae-bottom_up"])
def test_cvae_saves_and_reloads(name, tmp_path):
    spec, _ = MODELS[name]
    model = _model(name).float()
    family = "vae" if isinstance(model, VAE) else "hvae"
    run = RunConfig(model=family, model_config=model.config, data=spec.name, spec=spec)
    save_pretrained(tmp_path, model, run)
    loaded, cfg = from_pretrained(tmp_path)
    assert cfg.model_config.cond == Conditioning(K, 0.1) and loaded.num_classes == K
    assert dataclasses.asdict(cfg.model_config) == dataclasses.asdict(model.config)
    x, y = _x(spec, 5).float(), _labels(5)
    torch.testing.assert_close(loaded.eval().nll(x, _g(1), y=y), model.nll(x, _g(1), y=y))
