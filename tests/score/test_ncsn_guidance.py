"""Class-conditional NCSN and classifier-free guidance in its annealed Langevin sampler (Ho & Salimans 2022, Eq. 6
in score form: s̃ = (1 + w)·s(x, σ, y) − w·s(x, σ, ∅)).

The reference network is the exact score of class-conditional Gaussian data noised at σ, q_σ(x | y) = N(m_y, Σ + σ²I)
and, at the null label, of the mixture (``tests/_gaussian_classes.py``); the conditional sampler's reference is the
same sampler run on the network with the labels fixed inside it, which guidance with w = 0 must equal bitwise.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from _gaussian_classes import MEANS, NULL, SIGMA, SPEC, D, K, mixture_score
from _gaussian_data import F64, Z, gen
from genmodels.core import Conditioning
from genmodels.nets.mlp import MLPConfig
from genmodels.score.ebm import EBM, EBMConfig
from genmodels.score.ncsn import NCSN, NCSNConfig

TINY = MLPConfig(hidden=16, depth=2, emb_dim=16)
S_MAX, S_MIN = 6.0, 0.01


class ScoreOracle(nn.Module):
    """σ·∇ log q_σ(x | y) (the mixture's at ∅), reading σ from NCSN's c_noise = 1000 (log σ − log σ_min)/(log σ_max −
    log σ_min); records the batch size and labels of every call."""

    def __init__(self):
        super().__init__()
        self.lo, self.hi, self.calls = math.log(S_MIN), math.log(S_MAX), []

    def forward(self, x, c_noise, y):
        self.calls.append((x.shape[0], y.clone()))
        sigma = torch.exp(self.lo + c_noise.double() / 1000 * (self.hi - self.lo))
        return (sigma[:, None] * mixture_score(x, torch.ones_like(sigma), sigma, y)).to(x.dtype)


def oracle_ncsn(steps_each: int = 100) -> NCSN:
    model = NCSN(NCSNConfig(sigma_max=S_MAX, sigma_min=S_MIN, n_sigmas=10, sample_steps_each=steps_each, mlp=TINY,
                            cond=Conditioning(K)), SPEC)
    model.net = ScoreOracle()
    return model.eval()


def small_ncsn(cond: Conditioning | None = None) -> NCSN:
    """A real NCSN (conditional on the K classes unless ``cond`` says otherwise) with random weights far from the
    zero-initialized output."""
    cond = Conditioning(K) if cond is None else cond
    torch.manual_seed(0)
    model = NCSN(NCSNConfig(sigma_max=3.0, sigma_min=0.05, n_sigmas=4, sample_steps_each=3, mlp=TINY, cond=cond),
                 SPEC)
    with torch.no_grad():
        for p in model.net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen(7)))
    return model.eval()


class FixedLabels(nn.Module):
    def __init__(self, net, y):
        super().__init__()
        self.inner, self.y = net, y

    def forward(self, x, c_noise):
        return self.inner(x, c_noise, self.y)


class Recorder(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.inner, self.calls = net, []

    def forward(self, x, c_noise, y):
        self.calls.append((x.shape[0], y.clone()))
        return self.inner(x, c_noise, y)


@pytest.mark.parametrize("w", [0.0, 0.7, 3.0])
def test_guided_score_is_the_linear_combination(w):
    model = oracle_ncsn()
    x = 1.5 * torch.randn(6, D, generator=gen(0), dtype=F64)
    y = torch.tensor([0, 1, 2, NULL, 0, 2])
    sigma = torch.tensor([5.0, 1.0, 0.3, 0.1, 0.03, 0.01], dtype=F64)
    got = model.guided_score(y, w)(x, sigma)
    ones = torch.ones_like(sigma)
    want = (1 + w) * mixture_score(x, ones, sigma, y) - w * mixture_score(x, ones, sigma, torch.full_like(y, NULL))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    assert len(model.net.calls) == 1
    n, seen = model.net.calls[0]
    assert (n, seen.tolist()) == ((6, y.tolist()) if w == 0 else (12, [*y.tolist(), *[NULL] * 6]))


def test_cfg_with_w0_is_the_conditional_sampler_bitwise():
    model = small_ncsn()
    assert model.guidance_samplers == ("annealed",) and "guidance_scale" in model.sampler_options["annealed"]
    y = torch.tensor([0, 2, NULL, 1, 1])
    ref = copy.deepcopy(model)
    ref.num_classes = None  # knows nothing of labels
    ref.net = FixedLabels(ref.net, y)
    want = ref.draw(5, gen(1), keep_trajectory=True)
    model.net = Recorder(model.net)
    got = model.draw(5, gen(1), y=y, guidance_scale=0.0, keep_trajectory=True)
    assert torch.equal(got.x0, want.x0) and torch.equal(got.trajectory, want.trajectory)
    assert got.nfe == want.nfe == len(model.net.calls) == model.nfe()
    assert all(b == 5 and torch.equal(seen, y) for b, seen in model.net.calls)
    guided = model.draw(5, gen(1), y=y, guidance_scale=1.0)
    assert not torch.equal(guided.x0, got.x0)


def test_guided_nfe_counts_both_passes():
    model = small_ncsn()
    model.net = Recorder(model.net)
    y = torch.tensor([0, 1, 2])
    out = model.draw(3, gen(2), steps=2, y=y, guidance_scale=2.0)
    assert all(b == 6 and seen.tolist() == [0, 1, 2, NULL, NULL, NULL] for b, seen in model.net.calls)
    assert out.nfe == 2 * len(model.net.calls) == model.nfe(steps=2, guidance_scale=2.0) == 2 * model.nfe(steps=2)
    assert len(model.net.calls) == 4 * 2 + 1  # L·T + the final denoising step


def test_conditional_samples_have_the_class_mean_and_guidance_moves_them_away():
    """w = 0: each class's sample mean is m_y within Z standard errors. (Its covariance is not checked: annealed
    Langevin at the step-size rule is biased on this data, ≈ +30% at L = 10, T = 100 with the exact score, because
    the chain stops mixing where σ ≪ the data's scale; a property of the sampler, not of the labels.) w > 0: with the
    same noise, the mean projection on m_y − m_k (k ≠ y) grows with w."""
    model = oracle_ncsn()
    n = 3000
    y = torch.arange(n) % K
    x = model.draw(n, gen(3), y=y).x0.double()
    for k in range(K):
        xs = x[y == k]
        se = (SIGMA.diagonal() / len(xs)).sqrt()
        assert ((xs.mean(0) - MEANS[k]).abs() < Z * se).all(), (k, xs.mean(0))
    y0 = torch.zeros(1000, dtype=torch.long)
    xs = [model.draw(1000, gen(4), y=y0, guidance_scale=w).x0.double() for w in (0.0, 1.0, 3.0)]
    for k in (1, 2):
        u = MEANS[0] - MEANS[k]
        proj = [((x - MEANS[0]) @ u).mean().item() for x in xs]
        se = ((u @ SIGMA @ u) / 1000).sqrt().item()
        assert proj[0] + se < proj[1] and proj[1] + se < proj[2], (k, proj)


def test_unconditional_samples_of_a_conditional_ncsn_read_the_null_label():
    model = small_ncsn()
    a = model.draw(4, gen(5))
    b = model.draw(4, gen(5), y=torch.full((4,), NULL))
    assert torch.equal(a.x0, b.x0)


def test_conditional_ncsn_trains_with_label_dropout():
    model = small_ncsn(Conditioning(K, 0.25)).train()
    seen = []
    model.net.register_forward_pre_hook(lambda m, args: seen.append(args[2].clone()))
    n = 4000
    y = torch.arange(n) % K
    loss = model.loss(torch.randn(n, D), gen(6), y=y)
    assert loss.shape == (n,) and torch.isfinite(loss).all()
    loss.mean().backward()
    assert model.net.label_emb.table.weight.grad.abs().sum() > 0
    dropped = seen[0] == NULL
    assert torch.equal(seen[0][~dropped], y[~dropped])
    assert abs(dropped.double().mean().item() - 0.25) < 5 * math.sqrt(0.25 * 0.75 / n)


def test_guidance_errors():
    uncond = small_ncsn(Conditioning())
    assert uncond.net.label_emb is None and not any("label" in n for n, _ in uncond.named_parameters())
    with pytest.raises(ValueError, match="class-conditional model"):
        uncond.draw(2, gen(0), guidance_scale=1.0)
    with pytest.raises(ValueError, match="unconditional"):
        uncond.draw(2, gen(0), y=torch.zeros(2, dtype=torch.long))
    cond = small_ncsn()
    with pytest.raises(ValueError, match="give the classes"):
        cond.draw(2, gen(0), guidance_scale=1.0)
    ebm = EBM(EBMConfig(sample_steps=2), SPEC)
    with pytest.raises(ValueError, match="class-conditional model"):
        ebm.draw(2, gen(0), guidance_scale=1.0)
    assert ebm.nfe(guidance_scale=0.0) == ebm.nfe()
