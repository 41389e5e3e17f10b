"""WaveNet: causality, receptive field, exact likelihood, fast (queued) sampling, errors, registry."""

import itertools
import math

import pytest
import torch

from genmodels.autoregressive.wavenet import WaveNet, WaveNetConfig, default_config
from genmodels.checkpoint import config_from_dict, config_to_dict
from genmodels.core import DataSpec
from genmodels.families import MODELS
from genmodels.nets.causal import CausalConv1d

TINY = WaveNetConfig(residual_channels=8, skip_channels=8, cycle_length=3, n_cycles=2, kernel_size=2)


def tiny(n_bins=8, length=40, config=TINY, seed=0) -> WaveNet:
    torch.manual_seed(seed)
    return WaveNet(config, DataSpec("seq", (1, length), n_bins)).double()


def data(k: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Codes [B, L] → data [B, 1, L] on the [−1, 1] scale."""
    return (2.0 * k.double() / (n_bins - 1) - 1.0)[:, None]


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_causal_and_receptive_field_exact(kernel_size):
    cfg = WaveNetConfig(residual_channels=8, skip_channels=8, cycle_length=3, n_cycles=2, kernel_size=kernel_size)
    model = tiny(config=cfg, length=64)
    R = 1 + sum((kernel_size - 1) * d for d in (1, 2, 4, 1, 2, 4))
    assert model.receptive_field == R
    L = 64
    g = torch.Generator().manual_seed(1)
    onehot = torch.nn.functional.one_hot(torch.randint(0, 8, (1, L), generator=g), 8).permute(0, 2, 1).double()
    onehot.requires_grad_(True)
    logits = model.logits_from_onehot(onehot)  # [1, 8, L]
    w = torch.randn(8, generator=g, dtype=torch.float64)
    for i in (0, 1, R - 1, R, R + 7, L - 1):
        (grad,) = torch.autograd.grad((logits[0, :, i] * w).sum(), onehot, retain_graph=True)
        touched = grad[0].abs().sum(0)  # [L]
        assert torch.all(touched[i:] == 0), f"output {i} sees inputs at or after itself"
        nonzero = set(torch.nonzero(touched).flatten().tolist())
        assert nonzero == set(range(max(0, i - R), i)), f"output {i}: receptive field {sorted(nonzero)}"


def test_logits_from_onehot_match_codes():
    model = tiny()
    k = torch.randint(0, 8, (2, 40), generator=torch.Generator().manual_seed(0))
    onehot = torch.nn.functional.one_hot(k, 8).permute(0, 2, 1).double()
    torch.testing.assert_close(model.logits_from_onehot(onehot), model.logits(k))


def test_probabilities_sum_to_one_over_every_sequence():
    """Σ_x p(x) = 1 over all 3⁴ sequences: the start token and the shift make p a normalized distribution."""
    n_bins, L = 3, 4
    model = tiny(n_bins=n_bins, length=L)
    k = torch.tensor(list(itertools.product(range(n_bins), repeat=L)))  # [81, 4]
    with torch.no_grad():
        probs = torch.softmax(model.logits(k), dim=1)
        total = torch.exp(-model.nll(data(k, n_bins))).sum()
    torch.testing.assert_close(probs.sum(1), torch.ones(81, L, dtype=torch.float64))
    assert abs(total.item() - 1.0) < 1e-10


def test_exact_nll_equals_bruteforce_chain_rule():
    n_bins, L = 8, 20
    model = tiny(n_bins=n_bins, length=L)
    k = torch.randint(0, n_bins, (3, L), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model.nll_terms(data(k, n_bins))
        brute = torch.zeros(3, dtype=torch.float64)
        for t in range(L):  # −log p(x_t | x_<t) from the prefix alone
            logp = torch.log_softmax(model.logits(k[:, : t + 1])[:, :, t], dim=1)
            brute -= logp.gather(1, k[:, t : t + 1]).squeeze(1)
    assert out.kind == "exact" and model.nll_kind == "exact"
    torch.testing.assert_close(out.nll, brute)
    torch.testing.assert_close(out.terms["autoregressive"], out.nll)
    bpd = model.loss(data(k, n_bins))
    torch.testing.assert_close(bpd, out.nll / (L * math.log(2)))


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_cached_sampling_equals_naive(kernel_size):
    cfg = WaveNetConfig(residual_channels=8, skip_channels=8, cycle_length=3, n_cycles=2, kernel_size=kernel_size)
    model = tiny(n_bins=16, length=30, config=cfg)
    fast = model.sample(4, torch.Generator().manual_seed(3))
    slow = model.sample(4, torch.Generator().manual_seed(3), cache=False)
    assert fast.shape == (4, 1, 30)
    assert torch.equal(fast, slow)
    assert len(torch.unique(fast)) > 3  # not a degenerate constant
    k = torch.round((fast.double() + 1) * 15 / 2)
    torch.testing.assert_close(fast.double(), 2 * k / 15 - 1)  # on the data grid
    assert torch.equal(model.sample(4, torch.Generator().manual_seed(3)), fast)  # reproducible


def test_step_matches_forward_for_a_causal_conv():
    torch.manual_seed(0)
    conv = CausalConv1d(3, 5, kernel_size=3, dilation=4).double()
    x = torch.randn(2, 3, 25, dtype=torch.float64)
    q = conv.new_queue(2)
    steps = torch.stack([conv.step(x[:, :, t], q) for t in range(25)], dim=2)
    torch.testing.assert_close(steps, conv(x))


def test_temperature_and_length():
    model = tiny(n_bins=16, length=30)
    g = torch.Generator().manual_seed(0)
    assert model.sample(2, g, length=7).shape == (2, 1, 7)
    cold = model.sample(8, torch.Generator().manual_seed(0), temperature=1e-9, length=6)  # T → 0: greedy
    k = torch.zeros(1, 6, dtype=torch.long)
    with torch.no_grad():
        for t in range(6):
            k[0, t] = model.logits(k[:, : t + 1])[0, :, t].argmax()
    assert torch.equal(cold, data(k, 16).float().expand(8, 1, 6))
    with pytest.raises(ValueError, match="temperature"):
        model.sample(2, g, temperature=0.0)


def test_loss_finite_and_decreasing():
    torch.manual_seed(0)
    n_bins, L = 16, 64
    model = WaveNet(TINY, DataSpec("seq", (1, L), n_bins))
    t = torch.arange(L, dtype=torch.float32)
    x = torch.stack([torch.round(7.5 + 7.5 * torch.sin(t / p)) for p in (2.0, 3.0, 5.0, 7.0)])  # [4, L] codes
    x = (2 * x / (n_bins - 1) - 1)[:, None]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = model.loss(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[0] > 3.5  # ≈ log2(16) = 4 bits at initialization
    assert losses[-1] < 0.6 * losses[0]


def test_gradients_reach_every_parameter():
    model = tiny()
    k = torch.randint(0, 8, (2, 40), generator=torch.Generator().manual_seed(0))
    model.loss(data(k, 8)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_clear_errors():
    with pytest.raises(ValueError, match="continuous"):
        WaveNet(TINY, DataSpec("moons", (2,), None))
    with pytest.raises(ValueError, match=r"event shape \(1, L\)"):
        WaveNet(TINY, DataSpec("digits", (1, 8, 8), 17))
    with pytest.raises(ValueError, match=r"event shape \(1, L\)"):
        WaveNet(TINY, DataSpec("stereo", (2, 100), 256))
    with pytest.raises(ValueError, match="continuous"):
        default_config(DataSpec("moons", (2,), None))
    model = tiny()
    with pytest.raises(ValueError, match=r"\[B, 1, L\]"):
        model.loss(torch.zeros(2, 40))
    with pytest.raises(ValueError, match=r"\[B, 1, L\]"):
        model.nll(torch.zeros(2, 2, 40))
    with pytest.raises(ValueError, match="cycle_length"):
        WaveNetConfig(cycle_length=0)


def test_registry_preset_and_config_roundtrip():
    spec = DataSpec("speech", (1, 2048), 256)
    entry = MODELS.get("wavenet")
    cfg = entry.preset(spec)
    assert cfg == default_config(spec)
    model = entry.build(cfg, spec)
    n_params = sum(p.numel() for p in model.parameters())
    assert 1e5 < n_params < 1e6
    assert model.receptive_field == 1 + 2 * sum(2 ** i for i in range(8)) == 511
    assert config_from_dict(WaveNetConfig, config_to_dict(cfg)) == cfg
    x = torch.zeros(2, 1, 2048)
    with torch.no_grad():
        assert torch.isfinite(model.loss(x)).all()
