"""The Gaussian VAE (:mod:`genmodels.vae.vae`): exact likelihood of probabilistic PCA against the ELBO and
IWAE bounds, reparameterized gradients against finite differences, KL warm-up, free bits, active units and
config validation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genmodels import distributions as D
from genmodels.core import DataSpec
from genmodels.nets.coders import CoderConfig
from genmodels.vae import VAE, HVAEConfig, VAEConfig
from genmodels.vae import likelihoods as L

DT = torch.float64
SMALL = CoderConfig(hidden=16, depth=1, activation="silu")


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mean_se(v: torch.Tensor) -> tuple[float, float]:
    v = v.double()
    return v.mean().item(), (v.std() / math.sqrt(len(v))).item()


# ---------------------------------------------------------------------------------------------- PPCA


class _PPCADecoder(nn.Module):
    """p(x|z) = N(Wz + b, s²I) as the Gaussian decoder's (location, log-scale) params, ``[B, 2D]``."""

    def __init__(self, W: torch.Tensor, b: torch.Tensor, s: float):
        super().__init__()
        self.W, self.b, self.log_s = nn.Parameter(W.clone()), nn.Parameter(b.clone()), math.log(s)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        loc = z @ self.W.T + self.b
        return torch.cat([loc, torch.full_like(loc, self.log_s)], dim=1)


class _PPCA:
    """Probabilistic PCA (Tipping & Bishop 1999) as a VAE: p(z) = N(0, I), p(x|z) = N(Wz + b, s²I) with W's columns
    orthogonal, so the exact posterior N(M⁻¹Wᵀ(x − b), s²M⁻¹), M = WᵀW + s²I, is diagonal."""

    D, d, s = 5, 2, 0.5

    def __init__(self, seed: int = 0):
        g = _g(seed)
        Q, _ = torch.linalg.qr(torch.randn(self.D, self.d, generator=g, dtype=DT))
        self.c = torch.tensor([2.0, 1.2], dtype=DT)  # column norms
        self.W = Q * self.c  # [D, d], WᵀW = diag(c²)
        self.b = 0.3 * torch.randn(self.D, generator=g, dtype=DT)
        m_inv = 1 / (self.c ** 2 + self.s ** 2)  # diagonal of M⁻¹
        self.A = m_inv[:, None] * self.W.T  # [d, D]: posterior mean = A (x − b)
        self.post_logvar = torch.log(self.s ** 2 * m_inv)  # [d]

    def model(self, mean_scale: float = 1.0, mean_shift: float = 0.0, logvar_shift: float = 0.0) -> VAE:
        """The VAE with the exact posterior, or a perturbed one (mean ×scale + shift, log-variance + shift)."""
        m = VAE(VAEConfig(latent_dim=self.d, likelihood="gaussian"), DataSpec("ppca", (self.D,), None)).double()
        m.encoder = nn.Identity()
        m.to_posterior = nn.Linear(self.D, 2 * self.d).double()
        with torch.no_grad():
            m.to_posterior.weight.copy_(torch.cat([mean_scale * self.A, torch.zeros(self.d, self.D, dtype=DT)]))
            m.to_posterior.bias.copy_(torch.cat([-mean_scale * self.A @ self.b + mean_shift,
                                                 self.post_logvar + logvar_shift]))
        m.decoder = _PPCADecoder(self.W, self.b, self.s)
        return m.eval()

    def data(self, n: int, seed: int) -> torch.Tensor:
        g = _g(seed)
        z = torch.randn(n, self.d, generator=g, dtype=DT)
        return z @ self.W.T + self.b + self.s * torch.randn(n, self.D, generator=g, dtype=DT)

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        cov = self.W @ self.W.T + self.s ** 2 * torch.eye(self.D, dtype=DT)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)


def test_ppca_exact_posterior_makes_every_importance_weight_log_px():
    """With q(z|x) the true posterior, log p(x,z) − log q(z|x) = log p(x) for every z: the IWAE bound is exact per
    example, and so is every sampled log-weight of ``latent_pass``."""
    ppca = _PPCA()
    model, x = ppca.model(), ppca.data(64, seed=1)
    log_px = ppca.log_px(x)
    p = model.latent_pass(x, samples=7, generator=_g(2))
    torch.testing.assert_close(p.log_px + p.log_ratio, log_px.expand(7, -1), rtol=1e-9, atol=1e-9)
    for k in (2, 37):
        out = model.nll_terms(x, _g(3), k=k)
        torch.testing.assert_close(-out.nll, log_px, rtol=1e-6, atol=0)
        assert set(out.terms) == {"reconstruction", "kl_z", "iwae_gap"}


def test_ppca_exact_posterior_elbo_equals_log_px_in_expectation():
    """The k = 1 bound uses one z sample for E_q[log p(x|z)] (and the analytic KL), so it equals log p(x) only in
    expectation: averaged over 200 draws per example, within 4 standard errors, for each of 16 examples."""
    ppca = _PPCA()
    model, x = ppca.model(), ppca.data(16, seed=4)
    R = 200
    out = model.nll_terms(x.repeat(R, 1), _g(5), k=1)
    assert set(out.terms) == {"reconstruction", "kl_z"}
    diff = (-out.nll - ppca.log_px(x).repeat(R)).view(R, 16)
    for j in range(16):
        m, se = _mean_se(diff[:, j])
        assert abs(m) < 4 * se + 1e-9, (j, m, se)
    # the analytic KL term of the exact posterior is KL(N(Ax', s²M⁻¹) ‖ N(0, I)), the same for both bounds
    mu = (x - ppca.b) @ ppca.A.T
    kl = D.standard_normal_kl(mu, ppca.post_logvar.expand_as(mu)).sum(1)
    torch.testing.assert_close(out.terms["kl_z"][:16], kl)


def test_ppca_bounds_are_ordered_and_tighten_with_k():
    """Perturbed encoder: ELBO ≤ IWAE_10 ≤ IWAE_100 ≤ IWAE_1000 ≤ log p(x) (Burda et al. 2016, Thm 1), each
    averaged over examples and checked beyond 3 standard errors of the paired differences. The bounds share
    their first samples (same seed, same chunk), so the differences are paired."""
    ppca = _PPCA()
    # q as wide as the posterior, its mean shrunk and shifted: the weights' variance is finite and the bound
    # still far from log p(x) at k = 1000, so every step of the chain is resolved (> 5 standard errors)
    model, x = ppca.model(mean_scale=0.7, mean_shift=0.3), ppca.data(1000, seed=16)
    log_px = ppca.log_px(x)
    bounds = {k: -model.nll_terms(x, _g(7), k=k, chunk=10).nll for k in (1, 10, 100, 1000)}
    chain = [bounds[1], bounds[10], bounds[100], bounds[1000], log_px]
    names = ["ELBO", "IWAE_10", "IWAE_100", "IWAE_1000", "log p(x)"]
    for lo, hi, a, b in zip(chain[:-1], chain[1:], names[:-1], names[1:], strict=True):
        m, se = _mean_se(hi - lo)
        assert m > 3 * se, f"{a} < {b} not resolved: mean difference {m:.4g}, standard error {se:.4g}"
    # the gap closes: log p(x) − IWAE_1000 is a small fraction of log p(x) − ELBO
    assert (log_px - bounds[1000]).mean() < 0.1 * (log_px - bounds[1]).mean()


def test_iwae_terms_sum_to_nll_and_gap_is_negative():
    ppca = _PPCA()
    model, x = ppca.model(mean_scale=0.6, mean_shift=0.4, logvar_shift=1.0), ppca.data(200, seed=8)
    out = model.nll_terms(x, _g(9), k=20)
    torch.testing.assert_close(sum(out.terms.values()), out.nll, rtol=1e-12, atol=1e-10)
    m, se = _mean_se(out.terms["iwae_gap"])
    assert m < -3 * se, (m, se)
    assert out.nll.dtype == DT and out.kind == "bound"
    # the reconstruction and KL parts are the ELBO's, averaged over the same 20 samples
    mu, logvar = model.posterior(x)
    torch.testing.assert_close(out.terms["kl_z"], D.standard_normal_kl(mu, logvar).sum(1))


def test_nll_terms_rejects_k_below_one_and_chunking_does_not_change_the_bound():
    ppca = _PPCA()
    model, x = ppca.model(mean_scale=0.8, logvar_shift=0.5), ppca.data(8, seed=10)
    with pytest.raises(ValueError, match="k"):
        model.nll_terms(x, _g(0), k=0)
    # chunk=k draws all samples at once: [k, B, d]; chunk=1 draws them one [1, B, d] at a time — same stream
    a = model.nll_terms(x, _g(11), k=6, chunk=6).nll
    b = model.nll_terms(x, _g(11), k=6, chunk=1).nll
    torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------------------------- gradients


def _small_vae(likelihood_spec, **cfg) -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(latent_dim=3, coder=SMALL, **cfg), likelihood_spec).double().eval()


def _data_for(spec: DataSpec, n: int = 6) -> torch.Tensor:
    g = _g(12)
    if spec.n_bins is None:
        return torch.randn(n, *spec.event_shape, generator=g, dtype=DT)
    k = torch.randint(0, spec.n_bins, (n, *spec.event_shape), generator=g)
    return (2 * k / (spec.n_bins - 1) - 1).to(DT)


PARAMS = [("to_posterior.weight", (0, 1)), ("to_posterior.weight", (4, 2)), ("to_posterior.bias", (1,)),
          ("to_posterior.bias", (5,)), ("encoder.net.0.weight", (3, 0)), ("decoder.net.0.weight", (2, 1)),
          ("decoder.net.2.weight", (1, 4)), ("decoder.net.2.bias", (0,))]


@pytest.mark.parametrize("spec, cfg", [
    (DataSpec("vec", (4,), None), {}),
    (DataSpec("bin", (4,), 2), {}),
    (DataSpec("lev", (4,), 17), {}),
    (DataSpec("vec", (4,), None), {"objective": "iwae", "train_samples": 3}),
], ids=["gaussian", "bernoulli", "discretized_logistic", "iwae"])
def test_reparameterized_gradient_matches_finite_differences(spec, cfg):
    """The autograd gradient of the loss (the same ε each evaluation: a fixed-seed generator re-created every
    time) equals central finite differences, in float64, for encoder, posterior-head and decoder weights."""
    model = _small_vae(spec, **cfg)
    x = _data_for(spec)
    f = lambda: model.loss(x, _g(13)).mean()  # noqa: E731
    model.zero_grad()
    f().backward()
    named = dict(model.named_parameters())
    h = 1e-6
    for name, idx in PARAMS:
        p = named[name]
        auto = p.grad[idx].item()
        with torch.no_grad():
            old = p[idx].item()
            p[idx] = old + h
            up = f().item()
            p[idx] = old - h
            down = f().item()
            p[idx] = old
        fd = (up - down) / (2 * h)
        assert auto == pytest.approx(fd, rel=1e-5, abs=1e-8), (name, idx, auto, fd)
    assert any(abs(named[n].grad[i].item()) > 1e-4 for n, i in PARAMS)  # not all trivially zero


def test_loss_is_negative_elbo_and_nll_k1_matches_it():
    """Without warm-up or free bits the loss is −ELBO: with the same generator it equals nll_terms(k=1)."""
    spec = DataSpec("vec", (4,), None)
    model = _small_vae(spec)
    x = _data_for(spec)
    loss = model.loss(x, _g(14))
    nll = model.nll_terms(x, _g(14), k=1).nll
    torch.testing.assert_close(loss, nll)
    iwae = _small_vae(spec, objective="iwae", train_samples=5)
    torch.testing.assert_close(iwae.loss(x, _g(15)), iwae.nll_terms(x, _g(15), k=5, chunk=5).nll)


# ---------------------------------------------------------------------------------------------- warm-up, free bits


def test_kl_warmup_weight_rises_with_training_steps_only():
    spec = DataSpec("vec", (4,), None)
    model = _small_vae(spec, kl_warmup_steps=4).train()
    x = _data_for(spec)
    seen = []
    for i in range(6):
        assert int(model.train_steps) == i
        seen.append(model.kl_weight())
        model.loss(x, _g(i))
    assert seen == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    # no step is counted in eval mode, nor without gradients
    model.eval()
    model.loss(x)
    model.train()
    with torch.no_grad():
        model.loss(x)
    model.nll_terms(x, _g(0), k=3)
    assert int(model.train_steps) == 6
    model.train_steps.fill_(1)
    assert model.kl_weight() == pytest.approx(0.5)
    assert _small_vae(spec).kl_weight() == 1.0  # no warm-up
    assert "train_steps" in model.state_dict()  # saved and resumed with the weights


def test_kl_warmup_weight_multiplies_the_kl_term():
    spec = DataSpec("vec", (4,), None)
    model = _small_vae(spec, kl_warmup_steps=10)
    model.train_steps.fill_(3)  # β = 0.4
    x = _data_for(spec)
    p = model.latent_pass(x, 1, _g(16))
    expect = -(p.log_px - 0.4 * p.kl[0].sum(-1)).mean(0)
    torch.testing.assert_close(model.loss(x, _g(16)), expect)
    assert not torch.allclose(expect, -(p.log_px - p.kl[0].sum(-1)).mean(0))


def test_free_bits_floor_every_dimension_and_stop_their_gradient():
    """λ above every dimension's batch-mean KL: the KL part is λ·latent_dim per example and no gradient flows
    through it (the gradient is the reconstruction's alone)."""
    spec = DataSpec("vec", (4,), None)
    lam = 50.0
    model = _small_vae(spec, free_bits=lam)
    x = _data_for(spec)
    p = model.latent_pass(x, 1, _g(17))
    assert (p.kl[0].mean((0, 1)) < lam).all()
    loss = model.loss(x, _g(17))
    torch.testing.assert_close(loss, -p.log_px.mean(0) + lam * 3)
    model.zero_grad()
    loss.sum().backward()
    grads = {n: q.grad.clone() for n, q in model.named_parameters()}
    model.zero_grad()
    (-model.latent_pass(x, 1, _g(17)).log_px.mean(0)).sum().backward()
    for n, q in model.named_parameters():
        torch.testing.assert_close(grads[n], q.grad, msg=n)


def test_free_bits_keep_the_kl_of_dimensions_above_the_floor():
    """Dimension 0 is pushed far from the prior (large KL) and keeps its per-example KL; the others are floored
    at λ (Kingma et al. 2016: Σ_d max(λ, batch-mean KL_d))."""
    spec = DataSpec("vec", (4,), None)
    lam = 1.0
    model = _small_vae(spec, free_bits=lam)
    with torch.no_grad():
        model.to_posterior.weight[:3].mul_(0.01)
        model.to_posterior.bias[:3] = torch.tensor([4.0, 0.0, 0.0])
        model.to_posterior.weight[3:].zero_()
        model.to_posterior.bias[3:] = 0.0
    x = _data_for(spec)
    p = model.latent_pass(x, 1, _g(18))
    per_dim = p.kl[0].mean((0, 1))
    assert per_dim[0] > lam and (per_dim[1:] < lam).all()
    expect = -p.log_px.mean(0) + p.kl[0][0, :, 0] + 2 * lam
    torch.testing.assert_close(model.loss(x, _g(18)), expect)
    # the batch mean of the loss's KL part is Σ_d max(λ, mean KL_d)
    kl_part = (model.loss(x, _g(18)) + p.log_px.mean(0)).mean()
    torch.testing.assert_close(kl_part, torch.clamp(per_dim, min=lam).sum())


def test_active_units_counts_dimensions_whose_posterior_mean_varies():
    spec = DataSpec("vec", (4,), None)
    model = VAE(VAEConfig(latent_dim=5, coder=SMALL), spec).double().eval()
    with torch.no_grad():
        model.to_posterior.weight[:5].mul_(20.0)  # means that vary a lot across examples …
        model.to_posterior.weight[[1, 3]] = 0.0  # … except dims 1 and 3: constant means (their bias)
        model.to_posterior.weight[4] *= 1e-3  # … and dim 4: varies, but Cov < 10⁻²
    x = torch.randn(300, 4, generator=_g(19), dtype=DT)
    means = model.latent_means(x)[0]
    assert means.shape == (300, 5)
    var = means.var(0)
    assert (var[[0, 2]] > 1e-2).all() and var[4] < 1e-2
    assert model.active_units(x) == [2]
    assert model.active_units(x, batch_size=7) == [2]  # the split into batches does not matter
    assert model.active_units(x, threshold=0.0) == [3]  # dim 4 varies a little; 1 and 3 not at all


# ---------------------------------------------------------------------------------------------- shapes, sampling


@pytest.mark.parametrize("spec, backbone", [(DataSpec("digits", (1, 8, 8), 17), "conv"),
                                            (DataSpec("odd", (3, 7, 5), 256), "conv"),
                                            (DataSpec("bin", (1, 8, 8), 2), "mlp"),
                                            (DataSpec("vec", (3,), None), "mlp")])
def test_shapes_of_every_output(spec, backbone):
    torch.manual_seed(0)
    cfg = VAEConfig(latent_dim=3, coder=CoderConfig(backbone=backbone, hidden=16, depth=1, channels=4))
    model = VAE(cfg, spec).eval()
    x = _data_for(spec, 5).float()
    p = model.latent_pass(x, samples=4, generator=_g(0))
    ppd = L.params_per_dim(model.likelihood)
    assert p.log_px.shape == (4, 5) and p.log_ratio.shape == (4, 5) and p.kl[0].shape == (4, 5, 3)
    assert p.params.shape == (20, ppd * spec.event_shape[0], *spec.event_shape[1:])
    out = model.nll_terms(x, _g(0), k=3)
    assert out.nll.shape == (5,) and torch.isfinite(out.nll).all()
    assert model.loss(x, _g(0)).shape == (5,)
    for mean in (False, True):
        s = model.sample(6, _g(1), mean=mean)
        assert s.shape == (6, *spec.event_shape) and torch.isfinite(s).all()
    if spec.is_discrete:
        s = model.sample(6, _g(1))
        lv = (s + 1) * (spec.n_bins - 1) / 2
        torch.testing.assert_close(lv, lv.round())
    assert model.reconstruct(x).shape == x.shape
    assert model.prior_sample(7, _g(2)).shape == (7, 3)
    assert model.kl_names() == ["kl_z"] and model.latent_dims == (3,)
    # sampling is reproducible with a generator
    assert torch.equal(model.sample(4, _g(3)), model.sample(4, _g(3)))


def test_sample_from_a_float64_model():
    spec = DataSpec("vec", (4,), None)
    model = _small_vae(spec)
    assert model.sample(3, _g(0)).dtype == DT


# ---------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize("make, needle", [
    (lambda: VAEConfig(latent_dim=0), "latent_dim"),
    (lambda: VAEConfig(objective="iwae", free_bits=0.5), "free bits"),
    (lambda: VAEConfig(objective="bogus"), "objective"),
    (lambda: VAEConfig(train_samples=0), "train_samples"),
    (lambda: VAEConfig(free_bits=-1.0), "free_bits"),
    (lambda: VAEConfig(kl_warmup_steps=-1), "kl_warmup_steps"),
    (lambda: HVAEConfig(latent_dims=()), "latent_dims"),
    (lambda: HVAEConfig(latent_dims=(4, 0)), "latent_dims"),
    (lambda: HVAEConfig(inference="sideways"), "inference"),
    (lambda: HVAEConfig(latent_hidden=0), "latent_hidden"),
    (lambda: HVAEConfig(objective="iwae", free_bits=0.1), "free bits"),
    (lambda: CoderConfig(backbone="x"), "backbone"),
    (lambda: CoderConfig(activation="tanh"), "activation"),
    (lambda: CoderConfig(depth=0), "depth"),
    (lambda: VAE(VAEConfig(coder=CoderConfig(backbone="conv")), DataSpec("moons", (2,), None)), "mlp"),
    (lambda: VAE(VAEConfig(likelihood="bernoulli"), DataSpec("digits", (1, 8, 8), 17)), "binary:digits"),
    (lambda: VAE(VAEConfig(likelihood="gaussian"), DataSpec("digits", (1, 8, 8), 17)), "discretized"),
])
def test_config_errors_are_value_errors_naming_the_problem(make, needle):
    with pytest.raises(ValueError, match=needle):
        make()


def test_train_metrics_report_the_last_training_batch_parts_and_reach_metrics_jsonl(tmp_path):
    """The trainer writes a VAE's reconstruction, KL per layer and β into metrics.jsonl (to watch for collapse)."""
    import json

    from genmodels.jobs import run_train

    run_train("hvae", "digits", tmp_path / "run", False,
              dict(steps=4, log_every=2, batch_size=16, progress=False, checkpoint_every=0),
              ["latent_dims=4,2", "coder.hidden=16", "coder.depth=1", "latent_hidden=8", "kl_warmup_steps=8"])
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    last = lines[-1]
    assert {"reconstruction", "kl_z1", "kl_z2", "kl_weight"} <= set(last)
    assert last["kl_weight"] == pytest.approx(4 / 8)  # β of the 4th step of an 8-step warm-up
    assert last["reconstruction"] > 0 and last["kl_z1"] >= -1e-6 and last["kl_z2"] >= 0
    model = VAE(VAEConfig(latent_dim=2, coder=CoderConfig(hidden=8, depth=1)), DataSpec("v", (3,), None))
    assert model.train_metrics() == {}  # nothing before a training call
    model.eval()
    model.loss(torch.randn(5, 3))
    assert model.train_metrics() == {}  # evaluation calls do not count
