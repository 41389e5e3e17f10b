"""PixelCNN (:mod:`genmodels.autoregressive.pixelcnn`) and its masked-convolution backbones
(:mod:`genmodels.nets.masked`): causality and the receptive field by gradients (against an independent
set-propagation of each architecture's promise), normalized conditionals for both heads, the exact NLL against
brute-force per-pixel re-evaluation, sampling (reproducible, on the grid, the same with every cache, the right
frequencies), training and bad input."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from genmodels.autoregressive.pixelcnn import PixelCNN, PixelCNNConfig, default_config
from genmodels.checkpoint import config_from_dict, config_to_dict
from genmodels.core import DataSpec
from genmodels.families import MODELS
from genmodels.nets.masked import MaskedConvNet, MaskedConvNetConfig

DT = torch.float64


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _net(kind: str, C: int = 1, P: int = 2, n_layers: int = 3, first_kernel: int = 3, kernel: int = 3,
         channels: int = 6, seed: int = 0) -> MaskedConvNet:
    torch.manual_seed(seed)
    cfg = MaskedConvNetConfig(kind=kind, n_layers=n_layers, channels=channels, first_kernel=first_kernel,
                              kernel=kernel, head_channels=16)
    return MaskedConvNet(C, P, cfg).to(DT)


def _model(C: int = 1, H: int = 4, W: int = 4, n_bins: int = 5, head: str = "softmax", kind: str = "gated",
           n_layers: int = 3, seed: int = 0) -> PixelCNN:
    torch.manual_seed(seed)
    cfg = PixelCNNConfig(net=MaskedConvNetConfig(kind=kind, n_layers=n_layers, channels=6, first_kernel=3,
                                                 head_channels=8), head=head, n_mixtures=3)
    return PixelCNN(cfg, DataSpec("tiny", (C, H, W), n_bins)).to(DT)


def _data(model: PixelCNN, B: int, seed: int = 1) -> torch.Tensor:
    k = torch.randint(0, model.n_bins, (B, *model.spec.event_shape), generator=_g(seed))
    return model.to_data(k).to(DT)


def _dependency(net: MaskedConvNet, C: int, H: int, W: int, batch: int = 3) -> torch.Tensor:
    """``[C, H, W, C, H, W]`` bool: whether any of the P outputs of (c, i, j) has a nonzero gradient w.r.t. input
    (c', i', j'), for some of ``batch`` random inputs (several, so that a ReLU switched off by chance cannot hide a
    path)."""
    x = torch.randn(batch, C, H, W, dtype=DT, generator=_g(3))
    jac = torch.autograd.functional.jacobian(lambda z: net(z).sum(2), x)  # [b, C, H, W, b, C, H, W]
    idx = torch.arange(batch)
    return (jac[idx, :, :, :, idx] != 0).any(0)


# ---------------------------------------------------------------------------------------------- causality


def _allowed(C: int, H: int, W: int) -> torch.Tensor:
    """``[C, H, W, C, H, W]`` bool: (c', i', j') precedes (c, i, j) in raster order, then channel order."""
    pos = torch.arange(H * W).view(H, W)
    out_p = pos.view(1, H, W, 1, 1, 1)
    in_p = pos.view(1, 1, 1, 1, H, W)
    ch_out = torch.arange(C).view(C, 1, 1, 1, 1, 1)
    ch_in = torch.arange(C).view(1, 1, 1, C, 1, 1)
    return (in_p < out_p) | ((in_p == out_p) & (ch_in < ch_out))


@pytest.mark.parametrize("kind", ["gated", "plain"])
@pytest.mark.parametrize("C", [1, 3])
def test_causality_exact_zero_gradients(kind, C):
    """∂ out(c, i, j)/∂ x(c', i', j') is exactly 0 unless (c', i', j') comes before (c, i, j); nonzero for some
    that do."""
    H = W = 4
    dep = _dependency(_net(kind, C=C, channels=12), C, H, W)
    allowed = _allowed(C, H, W)
    assert not (dep & ~allowed).any(), "an output depends on its own or a later pixel/channel"
    assert dep.any()
    # each output but the very first (channel 0 of pixel 0, which has no past) depends on something
    has_past = allowed.flatten(3).any(3)
    assert (dep.flatten(3).any(3) == has_past).all()
    if C > 1:  # within a pixel: channel c sees the channels c' < c of the same pixel
        for c in range(1, C):
            assert dep[c, 2, 2, :c, 2, 2].all()


# ---------------------------------------------------------------------------------------------- receptive field


def _promise_gated(H: int, W: int, kernels: list[int]) -> torch.Tensor:
    """``[H, W, H, W]``: the inputs the gated architecture promises (C = 1), by propagating sets layer by layer.

    Vertical stack: v_l(i, j) ⊇ v_{l−1}(a, b) for i−r ≤ a ≤ i, |b − j| ≤ r. Horizontal stack: h_l(i, j) ⊇
    h_{l−1}(i, b) for j−r ≤ b < j, the centre (i, j) itself for l > 1 (mask B, residual) but not for l = 1 (mask A),
    and v_l's pre-activation at (i−1, j) (the shifted link)."""
    v = {(i, j): {(i, j)} for i in range(H) for j in range(W)}
    h = {(i, j): {(i, j)} for i in range(H) for j in range(W)}
    for l, k in enumerate(kernels):
        r = k // 2
        v_new = {(i, j): set().union(*(v[a, b] for a in range(i - r, i + 1) for b in range(j - r, j + r + 1)
                                       if 0 <= a < H and 0 <= b < W)) for i in range(H) for j in range(W)}
        h_new = {}
        for i in range(H):
            for j in range(W):
                s = set().union(*(h[i, b] for b in range(j - r, j) if b >= 0))
                if l > 0:
                    s |= h[i, j]
                if i > 0:
                    s |= v_new[i - 1, j]
                h_new[i, j] = s
        v, h = v_new, h_new
    out = torch.zeros(H, W, H, W, dtype=torch.bool)
    for (i, j), s in h.items():
        for a, b in s:
            out[i, j, a, b] = True
    return out


def _promise_plain(H: int, W: int, kernels: list[int]) -> torch.Tensor:
    """``[H, W, H, W]``: the plain architecture's promise (C = 1): k×k masked taps — rows above within r, and the
    row itself left of the centre (mask A) or up to it (mask B)."""
    m = {(i, j): {(i, j)} for i in range(H) for j in range(W)}
    for l, k in enumerate(kernels):
        r = k // 2
        new = {}
        for i in range(H):
            for j in range(W):
                taps = [(a, b) for a in range(i - r, i) for b in range(j - r, j + r + 1)]
                taps += [(i, b) for b in range(j - r, j + (0 if l == 0 else 1))]
                new[i, j] = set().union(*(m[a, b] for a, b in taps if 0 <= a < H and 0 <= b < W))
        m = new
    out = torch.zeros(H, W, H, W, dtype=torch.bool)
    for (i, j), s in m.items():
        for a, b in s:
            out[i, j, a, b] = True
    return out


@pytest.mark.parametrize("kind, first_kernel, kernel, n_layers", [
    ("gated", 3, 3, 3), ("gated", 5, 3, 2), ("plain", 3, 3, 3), ("plain", 5, 3, 2)])
def test_receptive_field_matches_the_architecture(kind, first_kernel, kernel, n_layers):
    """The gradient's support is exactly the set of pixels the architecture promises (C = 1, 7×7 image)."""
    H = W = 7
    net = _net(kind, n_layers=n_layers, first_kernel=first_kernel, kernel=kernel, channels=8)
    dep = _dependency(net, 1, H, W)[0, :, :, 0]  # [H, W, H, W]
    kernels = [first_kernel] + [kernel] * (n_layers - 1)
    promise = (_promise_gated if kind == "gated" else _promise_plain)(H, W, kernels)
    assert torch.equal(dep, promise)
    # the upward reach the sampler's row band relies on
    rows = torch.arange(H)
    reach = max(int(i - rows[dep[i, j].any(1)].min()) for i in range(H) for j in range(W) if dep[i, j].any())
    assert reach == net.rows_above


def test_gated_has_no_blind_spot_plain_has_one():
    """Three layers of 3×3 on a 5×5 image, output at (2, 2): the gated network sees every earlier pixel; the plain
    one misses (1, 4), above-right and inside its kernels' bounding reach (the blind spot, PixelCNN-Decoders §2.2,
    Fig. 1)."""
    H = W = 5
    before = _allowed(1, H, W)[0, 2, 2, 0]
    gated = _dependency(_net("gated", n_layers=3), 1, H, W)[0, 2, 2, 0]
    plain = _dependency(_net("plain", n_layers=3), 1, H, W)[0, 2, 2, 0]
    assert torch.equal(gated, before)
    assert not plain[1, 4] and not (plain & ~before).any()
    assert plain[1, 3] and plain[0, 4]  # its neighbours are seen: a hole, not the edge of the reach


# ---------------------------------------------------------------------------------------------- conditionals


@pytest.mark.parametrize("head", ["softmax", "logistic_mixture"])
@pytest.mark.parametrize("n_bins", [2, 17, 256])
def test_conditionals_sum_to_one(head, n_bins):
    """Σ_k p(k | ·) = 1 at every pixel and channel, for random parameters (wide, so edge bins and far means count)."""
    m = _model(C=2, head=head, n_bins=n_bins)
    P = n_bins if head == "softmax" else 3 * m.config.n_mixtures
    params = 3 * torch.randn(4, 2, P, 3, 3, dtype=DT, generator=_g(0))
    logp = m.log_prob_levels(params)  # [4, 2, n_bins, 3, 3]
    assert logp.shape == (4, 2, n_bins, 3, 3)
    torch.testing.assert_close(logp.exp().sum(2), torch.ones(4, 2, 3, 3, dtype=DT), rtol=0, atol=1e-10)
    # the observed-level path agrees with reading the full table
    k = torch.randint(0, n_bins, (4, 2, 3, 3), generator=_g(1))
    x = m.to_data(k).to(DT)
    torch.testing.assert_close(m.log_prob_observed(params, x, k), logp.gather(2, k.unsqueeze(2)).squeeze(2))


# ---------------------------------------------------------------------------------------------- exact NLL


@pytest.mark.parametrize("head", ["softmax", "logistic_mixture"])
@pytest.mark.parametrize("C", [1, 2])
def test_nll_equals_brute_force_chain_rule(head, C):
    """nll(x) = −Σ_{(i,c)} log p(x_{i,c} | x_{<(i,c)}), each factor from a fresh pass on an image whose current and
    later values are replaced by junk (so any leak would change the sum)."""
    m = _model(C=C, H=3, W=3, n_bins=7, head=head)
    x = _data(m, 2)
    k = m.levels(x)
    junk = _data(m, 2, seed=9)
    total = torch.zeros(2, dtype=DT)
    order = [(i, j, c) for i in range(3) for j in range(3) for c in range(C)]
    for t, (i, j, c) in enumerate(order):
        z = junk.clone()
        for (a, b, d) in order[:t]:
            z[:, d, a, b] = x[:, d, a, b]
        logp = m.log_prob_levels(m.params(z))[:, c, :, i, j]  # [2, n_bins]
        total = total - logp.gather(1, k[:, c, i, j, None]).squeeze(1)
    out = m.nll_terms(x)
    assert out.kind == "exact" == m.nll_kind
    torch.testing.assert_close(out.nll, total)
    torch.testing.assert_close(out.terms["autoregressive"], out.nll)
    torch.testing.assert_close(m.loss(x), out.nll / (C * 9 * math.log(2)))


def test_levels_are_recovered_robustly():
    m = _model(n_bins=256)
    k = torch.randint(0, 256, (2, 1, 4, 4), generator=_g(0))
    x = (2 * k.float() / 255 - 1)  # float32 rounding of the grid
    assert torch.equal(m.levels(x), k)
    torch.testing.assert_close(m.nll(x.to(DT)), m.nll(m.to_data(k)))


# ---------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("head", ["softmax", "logistic_mixture"])
def test_sampling_reproducible_and_on_the_grid(head):
    m = _model(C=2, H=3, W=4, n_bins=9, head=head)
    a, b = m.sample(5, _g(7)), m.sample(5, _g(7))
    assert a.shape == (5, 2, 3, 4) and a.dtype == DT
    assert torch.equal(a, b)
    assert torch.equal(a, m.to_data(m.levels(a)))  # exact level values
    assert not torch.equal(a, m.sample(5, _g(8)))


@pytest.mark.parametrize("kind, C", [("gated", 1), ("gated", 2), ("plain", 1)])
def test_cached_and_cropped_sampling_equal_the_plain_one(kind, C):
    """Every cache draws the same images with the same generator (the band crop is exact; the layer cache
    recomputes the same conditionals)."""
    m = _model(C=C, H=6, W=5, n_bins=17, kind=kind, n_layers=2)  # rows_above < H: the band crop is exercised
    assert m.net.rows_above < 5
    caches = ["layers", "rows", "none"] if kind == "gated" else ["rows", "none"]
    draws = [m.sample(4, _g(3), cache=c) for c in caches]
    for d in draws[1:]:
        assert torch.equal(draws[0], d)
    if kind == "plain":
        with pytest.raises(ValueError, match="gated"):
            m.sample(1, _g(0), cache="layers")


def test_layer_cache_conditionals_equal_the_full_pass():
    """On a fixed image: the layer cache's output at every (i, j) equals the network's full pass."""
    m = _model(C=2, H=5, W=5, n_bins=5, n_layers=3)
    x = _data(m, 3)
    full = m.params(x)  # [3, C, P, H, W]
    cache = m.net.incremental(x)
    for i in range(5):
        cache.start_row(i)
        for j in range(5):
            torch.testing.assert_close(cache.pixel(i, j), full[:, :, :, i, j])


@pytest.mark.parametrize("head", ["softmax", "logistic_mixture"])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sample_frequencies_match_the_model(head, temperature):
    """A 1×1 image has one factor p(k): draws ∝ p(k)^{1/T} (χ²-style bound, 20000 draws)."""
    m = _model(C=1, H=1, W=1, n_bins=6, head=head)
    with torch.no_grad():
        p = (m.log_prob_levels(m.params(torch.zeros(1, 1, 1, 1, dtype=DT)))[0, 0, :, 0, 0] / temperature).softmax(0)
    n = 20000
    k = m.levels(m.sample(n, _g(5), temperature=temperature)).flatten()
    freq = torch.bincount(k, minlength=6).to(DT) / n
    se = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() <= 5 * se + 1e-4).all(), (freq, p)


# ---------------------------------------------------------------------------------------------- training, config


@pytest.mark.parametrize("head", ["softmax", "logistic_mixture"])
def test_loss_finite_and_decreasing(head):
    """On 8 images of two levels (≤ 1 bit/dim) the loss falls from ≈ log2(17) = 4.09 bits/dim in 15 Adam steps."""
    m = _model(C=1, H=5, W=5, n_bins=17, head=head).float()
    x = m.to_data(16 * torch.randint(0, 2, (8, 1, 5, 5), generator=_g(0)))
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = m.loss(x)
        assert loss.shape == (8,) and torch.isfinite(loss).all()
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        losses.append(loss.mean().item())
    assert losses[-1] < losses[0] - 0.2, losses


def test_registered_presets_and_config_round_trip():
    entry = MODELS.get("pixelcnn")
    for spec in (DataSpec("digits", (1, 8, 8), 17), DataSpec("mnist5k", (1, 28, 28), 256)):
        cfg = entry.preset(spec)
        assert cfg == default_config(spec)
        assert config_from_dict(PixelCNNConfig, config_to_dict(cfg)) == cfg
        model = entry.build(cfg, spec)
        assert isinstance(model, PixelCNN) and model.nll_kind == "exact"
        assert model.nfe() == spec.dim


def test_clear_errors():
    cont = DataSpec("moons", (2,), None)
    with pytest.raises(ValueError, match="continuous"):
        PixelCNN(PixelCNNConfig(), cont)
    with pytest.raises(ValueError, match="continuous"):
        PixelCNN(PixelCNNConfig(), DataSpec("cimg", (1, 4, 4), None))
    with pytest.raises(ValueError, match="images"):
        PixelCNN(PixelCNNConfig(), DataSpec("vec", (5,), 17))
    with pytest.raises(ValueError, match="head"):
        PixelCNNConfig(head="gaussian")
    with pytest.raises(ValueError, match="odd"):
        MaskedConvNetConfig(kernel=4)
    with pytest.raises(ValueError, match="data channels"):
        PixelCNN(replace(PixelCNNConfig(), net=MaskedConvNetConfig(channels=2)), DataSpec("rgb", (3, 4, 4), 256))
    m = _model(n_bins=17)
    x = _data(m, 2)
    with pytest.raises(ValueError, match="grid"):
        m.nll(x + 0.01 * torch.rand(x.shape, dtype=DT, generator=_g(0)) + 0.03)  # dequantized
    with pytest.raises(ValueError, match="grid"):
        m.nll(x * 1.5)
    with pytest.raises(ValueError, match="shape"):
        m.nll(x[:, :, :2])
    with pytest.raises(ValueError, match="NaN"):
        m.nll(torch.full_like(x, float("nan")))
    with pytest.raises(ValueError, match="temperature"):
        m.sample(2, temperature=0.0)
    with pytest.raises(ValueError, match="steps"):
        m.sample(2, steps=50)
