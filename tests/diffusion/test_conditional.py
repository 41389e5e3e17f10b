"""Class-conditional DDPM and VDM: the label embedding of the backbones, training with label dropout, the bound and
the probability-flow likelihood given a label.

The ODE reference is closed-form: for x | y ~ N(m_y, Σ) and the optimal ε*, the probability-flow ODE is linear and
decouples in the eigenbasis Σ = U diag(s_j²) Uᵀ, where each coordinate follows the isotropic flow of
``test_ode_likelihood.py``: z = Uᵀx, μ = Uᵀm_y, y_j = α_lo μ_j + r_j (z_j − α_hi μ_j), r_j = √(v_lo,j / v_hi,j),
v = α² s_j² + σ², and log p(x | y) = Σ_j [log N(y_j; 0, 1) + log r_j].
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from _gaussian_classes import MEANS, NULL, PRIOR, SIGMA, SPEC, D, K, draw_class, ref_logsnr, vp_alpha_sigma
from _gaussian_data import gen
from genmodels.core import Conditioning, DataSpec
from genmodels.diffusion.ddpm import DDPM, DDPMConfig
from genmodels.diffusion.ode import ode_log_likelihood
from genmodels.diffusion.schedules import GammaConfig, ScheduleConfig
from genmodels.diffusion.vdm import VDM, VDMConfig
from genmodels.nets.mlp import MLP, MLPConfig
from genmodels.nets.unet import UNet, UNetConfig

TINY_MLP = MLPConfig(hidden=16, depth=2, emb_dim=16)
TINY_UNET = UNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_levels=(1,), num_heads=2, groups=4)
IMAGE = DataSpec("tiny", (1, 8, 8), 17, num_classes=10)


def build(family: str, image: bool, cond: Conditioning | None = None, seed: int = 0):
    """A small DDPM or VDM on 8×8 images (UNet) or the 2-D class data (MLP); unconditional without ``cond``."""
    cond = cond or Conditioning()
    torch.manual_seed(seed)
    spec = IMAGE if image else SPEC
    if family == "ddpm":
        return DDPM(DDPMConfig(schedule=ScheduleConfig(T=100), unet=TINY_UNET, mlp=TINY_MLP, cond=cond), spec)
    return VDM(VDMConfig(schedule=GammaConfig(kind="learned_net", n_features=8), unet=TINY_UNET, mlp=TINY_MLP,
                         cond=cond), spec)


def image_batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(seed)
    x = 2 * torch.randint(0, 17, (n, 1, 8, 8), generator=g).float() / 16 - 1
    return x, torch.randint(0, 10, (n,), generator=g)


def perturb(model: nn.Module, seed: int = 7) -> nn.Module:
    """Random weights far from the zero-initialized output (a fresh backbone ignores its inputs)."""
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen(seed)))
    return model


# ------------------------------------------------------------------------------------------ the label embedding


@pytest.mark.parametrize("image", [False, True], ids=["mlp", "unet"])
@pytest.mark.parametrize("family", ["ddpm", "vdm"])
def test_label_embedding_is_the_only_new_parameter(family, image):
    """An unconditional model has no label parameter; a conditional one adds exactly the (K + 1)-row table (K
    classes and ∅), built last so that every other weight is the unconditional model's at the same seed."""
    k = 10 if image else K
    uncond = build(family, image)
    cond = build(family, image, Conditioning(k, 0.1))
    a, b = dict(uncond.named_parameters()), dict(cond.named_parameters())
    assert not any("label" in name for name in a) and uncond.net.label_emb is None
    assert set(b) - set(a) == {"net.label_emb.table.weight"}
    emb_dim = 4 * TINY_UNET.channels if image else TINY_MLP.emb_dim
    assert b["net.label_emb.table.weight"].shape == (k + 1, emb_dim) == (cond.num_label_embeddings, emb_dim)
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert set(uncond.state_dict()) == set(cond.state_dict()) - {"net.label_emb.table.weight"}
    assert uncond.num_classes is None and cond.num_classes == k and cond.null_label == k


def test_backbones_refuse_a_missing_or_unexpected_label():
    mlp, cmlp = MLP(2, TINY_MLP), MLP(2, TINY_MLP, num_labels=4)
    unet, cunet = UNet(1, TINY_UNET), UNet(1, TINY_UNET, num_labels=4)
    x2, x8, c, y = torch.randn(3, 2), torch.randn(3, 1, 8, 8), torch.rand(3) * 1000, torch.tensor([0, 3, 1])
    with pytest.raises(ValueError, match="takes no y"):
        mlp(x2, c, y)
    with pytest.raises(ValueError, match="give y"):
        cmlp(x2, c)
    with pytest.raises(ValueError, match="takes no y"):
        unet(x8, c, y)
    with pytest.raises(ValueError, match="give y"):
        cunet(x8, c)
    with pytest.raises(ValueError, match="one label per example"):
        cunet(x8, c, y[:2])
    assert cmlp(x2, c, y).shape == (3, 2) and cunet(x8, c, y).shape == (3, 1, 8, 8)


def test_the_label_is_added_to_the_noise_embedding():
    """improved-diffusion's ``emb = time_embed(t) + label_emb(y)``: the blocks see noise embedding + label row."""
    net = MLP(2, TINY_MLP, num_labels=4)
    seen = []
    net.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[1]))
    c, y = torch.tensor([10.0, 500.0]), torch.tensor([3, 0])
    net(torch.randn(2, 2), c, y)
    torch.testing.assert_close(seen[0], net.embed(c) + net.label_emb.table.weight[y])


# ------------------------------------------------------------------------------------------ training


@pytest.mark.parametrize("image", [False, True], ids=["mlp", "unet"])
@pytest.mark.parametrize("family", ["ddpm", "vdm"])
def test_conditional_model_trains_with_labels(family, image):
    """A few AdamW steps on labelled data: the loss is finite, the label table gets a gradient, and the loss falls
    on a fixed batch."""
    model = build(family, image, Conditioning(10 if image else K, 0.1))
    if image:
        x, y = image_batch(16, 1)
    else:
        y = torch.arange(64) % K
        x = torch.cat([draw_class(k, int((y == k).sum()), gen(2 + k)) for k in range(K)]).float()
        y = torch.cat([torch.full((int((y == k).sum()),), k) for k in range(K)])
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(8):
        loss = model.loss(x, gen(100 + step % 2), y=y).mean()  # two fixed draws, so the trend is the fit's
        opt.zero_grad()
        loss.backward()
        assert torch.isfinite(loss)
        opt.step()
        losses.append(loss.item())
    # (the zero-initialized output convolutions pass no gradient back to the embedding in the first steps)
    assert model.net.label_emb.table.weight.grad.abs().sum() > 0
    assert min(losses[-2:]) < max(losses[:2]), losses


@pytest.mark.parametrize("family", ["ddpm", "vdm"])
def test_label_dropout_draws_the_null_label_at_rate_p_uncond(family):
    """The network sees ∅ in place of the true label for a fraction p_uncond of the examples (binomial, within 5
    standard errors) and the true label for the rest; p_uncond = 0 keeps every label."""
    seen = []
    for p in (0.3, 0.0):
        model = build(family, False, Conditioning(K, p))
        model.net.register_forward_pre_hook(lambda m, args: seen.append(args[2].clone()))
        n = 4000
        y = torch.arange(n) % K
        model.loss(torch.randn(n, D), gen(3), y=y)
        got = seen[-1]
        dropped = got == NULL
        assert torch.equal(got[~dropped], y[~dropped])
        rate, se = dropped.double().mean().item(), math.sqrt(max(p * (1 - p), 1e-12) / n)
        assert abs(rate - p) < 5 * se or (p == 0 and rate == 0), (p, rate)
    assert len(seen) == 2


def test_labels_are_checked_where_they_enter():
    uncond, cond = build("ddpm", False), build("ddpm", False, Conditioning(K))
    x = torch.randn(4, D)
    with pytest.raises(ValueError, match="unconditional"):
        uncond.loss(x, gen(0), y=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="unconditional"):
        uncond.nll_terms(x, gen(0), y=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        cond.loss(x, gen(0), y=torch.tensor([0, 1, 2, K + 1]))
    with pytest.raises(ValueError, match="integer"):
        cond.nll_terms(x, gen(0), y=torch.zeros(4))
    assert torch.isfinite(cond.loss(x, gen(0))).all()  # no labels: all ∅ (the unconditional part of the model)


# ------------------------------------------------------------------------------------------ likelihood given y


@pytest.mark.parametrize("family", ["ddpm", "vdm"])
def test_bound_given_a_label(family):
    """nll_terms(x, y): y None is the null label, bitwise; another label gives another bound; the parts add up."""
    model = perturb(build(family, False, Conditioning(K))).eval()
    x = torch.randn(5, D, generator=gen(4))
    none = model.nll_terms(x, gen(5))
    null = model.nll_terms(x, gen(5), y=torch.full((5,), NULL))
    zero = model.nll_terms(x, gen(5), y=torch.zeros(5, dtype=torch.long))
    assert torch.equal(none.nll, null.nll)
    assert not torch.allclose(none.nll, zero.nll)
    torch.testing.assert_close(sum(zero.terms.values()), zero.nll)
    assert torch.isfinite(zero.nll).all() and zero.kind == "bound"


class ClassOracleDDPM(nn.Module):
    """Optimal ε* of each class / of the mixture at DDPM's fractional step (λ by np.interp on the paper's table)."""

    def __init__(self, T: int):
        super().__init__()
        self.T, self.lam = T, ref_logsnr(T)

    def forward(self, x, c_noise, y):
        import numpy as np

        from _gaussian_classes import optimal_eps

        i = c_noise.detach().double().numpy() * self.T / 1000
        lam = torch.from_numpy(np.interp(i, np.arange(self.T), self.lam))
        return optimal_eps(x, lam, y).to(x.dtype)


def class_ode_log_density(x: torch.Tensor, k: int, lam_hi: float, lam_lo: float) -> torch.Tensor:
    """log p(x | y = k) of the linear probability-flow ODE with the optimal ε* (module docstring)."""
    s2, U = torch.linalg.eigh(SIGMA)
    z, mu = x.double() @ U, MEANS[k] @ U
    (a_hi,), (sig_hi,) = vp_alpha_sigma(torch.tensor([lam_hi]))
    (a_lo,), (sig_lo,) = vp_alpha_sigma(torch.tensor([lam_lo]))
    v_hi, v_lo = a_hi**2 * s2 + sig_hi**2, a_lo**2 * s2 + sig_lo**2
    r = (v_lo / v_hi).sqrt()
    y = a_lo * mu + r * (z - a_hi * mu)
    return (-0.5 * y**2 - 0.5 * math.log(2 * math.pi) + r.log()).sum(1)


def test_ode_likelihood_given_a_label_is_the_class_density():
    """ode_log_likelihood(x, y): log p(x | y) of the flow of ε*(·, y) matches the closed form for each class, full
    Σ (within 2e-4 nats/dim at tolerances 1e-7, where the solver's error is ≈ 2e-5; ≈ 1e-3 at the default 1e-5);
    at y None (∅), the flow of the mixture's ε*, it is log Σ_y π_y p(x | y) of those class densities within the
    prior's mismatch at λ_min (α_min ≈ 0.006: 0.014 nats measured, 0.02 allowed)."""
    T = 1000
    model = DDPM(DDPMConfig(schedule=ScheduleConfig(T=T), clip_x0=False, mlp=TINY_MLP, cond=Conditioning(K)), SPEC)
    model.net = ClassOracleDDPM(T)
    model.eval()
    lam = ref_logsnr(T)
    x = torch.cat([draw_class(k, 4, gen(10 + k)) for k in range(K)])
    per_class = []
    for k in range(K):
        res = ode_log_likelihood(model, x, trace="exact", y=torch.full((len(x),), k), rtol=1e-7, atol=1e-7)
        want = class_ode_log_density(x, k, lam[0], lam[-1])
        assert (res.log_p - want).abs().max().item() / D < 2e-4, (k, res.log_p, want)
        per_class.append(res.log_p)
    mixture = torch.logsumexp(torch.stack(per_class) + PRIOR.log()[:, None], 0)
    null = ode_log_likelihood(model, x, trace="exact", rtol=1e-7, atol=1e-7).log_p
    assert (null - mixture).abs().max().item() < 0.02, (null, mixture)
    with pytest.raises(ValueError, match="out of range"):
        ode_log_likelihood(model, x, y=torch.full((len(x),), K + 1))


# ------------------------------------------------------------------------------------------ through the trainer


@pytest.mark.parametrize("family", ["ddpm", "vdm"])
def test_trainer_saves_a_conditional_model_that_loads_and_samples_with_guidance(family, tmp_path):
    """Three steps of the Trainer on labelled data, then from_pretrained: the config keeps ``cond``, the loaded
    model is conditional with the same weights, and its guided samples are those of the trained one, bitwise."""
    from genmodels.checkpoint import RunConfig, from_pretrained
    from genmodels.train import TrainConfig, Trainer

    model = build(family, False, Conditioning(K, 0.2))
    x = torch.cat([draw_class(k, 32, gen(20 + k)) for k in range(K)]).float()
    y = torch.arange(K).repeat_interleave(32)
    run = RunConfig(model=family, model_config=model.config, data=SPEC.name, spec=SPEC)
    cfg = TrainConfig(steps=3, batch_size=32, lr=1e-3, warmup_steps=1, log_every=1, checkpoint_every=3,
                      sample_every=0, progress=False)
    result = Trainer(model, x, SPEC, cfg, tmp_path / "run", run, train_labels=y).fit()
    assert math.isfinite(result.final_loss)
    loaded, loaded_config = from_pretrained(tmp_path / "run", ema=False)  # the trained weights themselves
    assert loaded_config.model_config.cond == Conditioning(K, 0.2) and loaded.num_classes == K
    assert torch.equal(loaded.net.label_emb.table.weight, model.net.label_emb.table.weight.cpu())
    labels = torch.tensor([0, 1, 2, 1])
    a = model.cpu().eval().draw(4, gen(30), sampler="ddim", steps=4, y=labels, guidance_scale=2.0)
    b = loaded.draw(4, gen(30), sampler="ddim", steps=4, y=labels, guidance_scale=2.0)
    assert torch.equal(a.x0, b.x0) and a.nfe == 8 and torch.isfinite(a.x0).all()
