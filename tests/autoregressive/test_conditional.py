"""Class-conditional PixelCNN (PixelCNN-Decoders Eq. 4) and WaveNet (global conditioning, WaveNet §2.5), issue 16:
an unconditional config builds no label parameters; a conditional model's p(x | y) is a normalized, causal
distribution for every y (brute force), its NLL depends on y, y=None is the null label, label dropout follows
p_uncond, training reaches the label tables, the caches and sampling paths agree with labels, and bad labels get a
clear error."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import torch

from genmodels.autoregressive.pixelcnn import PixelCNN, PixelCNNConfig
from genmodels.autoregressive.wavenet import WaveNet, WaveNetConfig
from genmodels.checkpoint import config_from_dict, config_to_dict
from genmodels.core import Conditioning, DataSpec
from genmodels.families import MODELS
from genmodels.nets.masked import MaskedConvNetConfig

DT = torch.float64
K = 3  # classes of every conditional test model


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pixelcnn(kind: str = "gated", C: int = 1, H: int = 4, W: int = 4, n_bins: int = 5, num_classes: int = K,
              p_uncond: float = 0.0, seed: int = 0) -> PixelCNN:
    torch.manual_seed(seed)
    cfg = PixelCNNConfig(net=MaskedConvNetConfig(kind=kind, n_layers=3, channels=8, first_kernel=3, head_channels=16),
                         cond=Conditioning(num_classes, p_uncond))
    return PixelCNN(cfg, DataSpec("tiny", (C, H, W), n_bins)).to(DT)


def _wavenet(num_classes: int = K, p_uncond: float = 0.0, L: int = 12, n_bins: int = 7, seed: int = 0) -> WaveNet:
    torch.manual_seed(seed)
    cfg = WaveNetConfig(residual_channels=8, skip_channels=8, cycle_length=3, n_cycles=1,
                        cond=Conditioning(num_classes, p_uncond))
    return WaveNet(cfg, DataSpec("seq", (1, L), n_bins)).to(DT)


def _images(model: PixelCNN, B: int, seed: int = 1) -> torch.Tensor:
    k = torch.randint(0, model.n_bins, (B, *model.spec.event_shape), generator=_g(seed))
    return model.to_data(k)


def _seqs(model: WaveNet, B: int, seed: int = 1) -> torch.Tensor:
    k = torch.randint(0, model.n_bins, (B, *model.spec.event_shape), generator=_g(seed))
    return (2.0 * k - (model.n_bins - 1)) / (model.n_bins - 1)


def _label_params(model) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if "label" in n}


MODELS_UNDER_TEST = {
    "pixelcnn-gated": (lambda **kw: _pixelcnn("gated", **kw), _images),
    "pixelcnn-plain": (lambda **kw: _pixelcnn("plain", **kw), _images),
    "wavenet": (_wavenet, _seqs),
}


@pytest.fixture(params=sorted(MODELS_UNDER_TEST))
def family(request):
    return MODELS_UNDER_TEST[request.param]


# ---------------------------------------------------------------------------------------------- parameters


def test_unconditional_builds_no_label_parameters(family):
    """cond.num_classes = 0 (the default): no label table, the same parameters as a config without ``cond``; a
    conditional model adds one table per layer (and stack) with K + 1 rows (the null label), nothing else."""
    build, _ = family
    plain, cond = build(num_classes=0), build(num_classes=K)
    assert not _label_params(plain) and plain.num_classes is None
    tables = _label_params(cond)
    assert tables and all(p.shape[0] == K + 1 for p in tables.values())
    base = {n: p.shape for n, p in cond.named_parameters() if "label" not in n}
    assert base == {n: p.shape for n, p in plain.named_parameters()}


def test_presets_stay_unconditional_and_the_config_round_trips():
    """The registered presets are unconditional (the golden values stay); a conditional config survives JSON."""
    for name, spec in (("pixelcnn", DataSpec("digits", (1, 8, 8), 17)), ("wavenet", DataSpec("seq", (1, 64), 256))):
        entry = MODELS.get(name)
        cfg = entry.preset(spec)
        assert cfg.cond == Conditioning() and entry.build(cfg, spec).num_classes is None
        cond = replace(cfg, cond=Conditioning(10, 0.2))
        assert config_from_dict(type(cfg), config_to_dict(cond)) == cond
        assert entry.build(cond, spec).num_classes == 10


# ---------------------------------------------------------------------------------------------- the distribution


def test_pixelcnn_conditionals_normalize_and_are_causal_for_every_label():
    """Σ_x p(x | y) = 1 over all 2^6 binary 1×2×3 images, for each y (the null label included), and the backbone
    stays causal with labels: outputs at a pixel have zero gradient w.r.t. it and every later pixel."""
    for kind in ("gated", "plain"):
        model = _pixelcnn(kind, H=2, W=3, n_bins=2)
        k = torch.tensor(list(itertools.product([0, 1], repeat=6))).view(-1, 1, 2, 3)
        X = model.to_data(k)
        for y in range(K + 1):
            with torch.no_grad():
                p = (-model.nll(X, y=torch.full((len(X),), y))).exp()
            torch.testing.assert_close(p.sum(), torch.tensor(1.0, dtype=DT), rtol=1e-10, atol=1e-10)
        x = torch.randn(2, 1, 2, 3, dtype=DT, requires_grad=True)
        out = model.net(x, torch.tensor([0, 2]))  # [2, 1, P, 2, 3]
        for pos in range(6):
            i, j = divmod(pos, 3)
            (grad,) = torch.autograd.grad(out[:, :, :, i, j].sum(), x, retain_graph=True)
            assert (grad.flatten(1)[:, pos:] == 0).all(), f"{kind}: output at {pos} sees a later pixel"


def test_wavenet_conditionals_normalize_for_every_label():
    """Σ_x p(x | y) = 1 over all 3^4 sequences of length 4, for each y."""
    model = _wavenet(L=4, n_bins=3)
    k = torch.tensor(list(itertools.product(range(3), repeat=4)))
    x = (k.double() - 1.0)[:, None]
    for y in range(K + 1):
        with torch.no_grad():
            p = (-model.nll(x, y=torch.full((len(x),), y))).exp()
        torch.testing.assert_close(p.sum(), torch.tensor(1.0, dtype=DT), rtol=1e-10, atol=1e-10)


def test_nll_depends_on_the_label_and_none_is_the_null_label(family):
    """The NLL differs between classes; y = None equals the explicit null label K; the loss is finite."""
    build, data = family
    model = build()
    x = data(model, 4)
    with torch.no_grad():
        by_class = torch.stack([model.nll(x, y=torch.full((4,), c)) for c in range(K + 1)])  # [K+1, 4]
        null = model.nll(x)
        loss = model.loss(x, _g(0), y=torch.arange(4) % K)
    assert (by_class.std(0) > 1e-3).all(), f"the NLL barely changes with the class: {by_class}"
    assert torch.equal(null, by_class[K])
    assert torch.isfinite(loss).all() and loss.shape == (4,)


def test_label_dropout_follows_p_uncond(family):
    """p_uncond = 0: the loss is the class-conditional NLL in bits/dim; p_uncond = 1: every label is replaced by
    the null label. An unconditional model's loss draws nothing from the generator."""
    build, data = family
    x = data(build(), 4)
    y = torch.tensor([0, 1, 2, 1])
    for p_uncond, target in ((0.0, y), (1.0, torch.full((4,), K))):
        model = build(p_uncond=p_uncond)
        with torch.no_grad():
            torch.testing.assert_close(model.loss(x, _g(0), y=y) * model.spec.dim * torch.log(torch.tensor(2.0)),
                                       model.nll(x, y=target).to(torch.float32).to(DT), rtol=1e-5, atol=1e-5)
    g = _g(5)
    build(num_classes=0).loss(x, g)
    assert torch.equal(g.get_state(), _g(5).get_state())


def test_training_reaches_the_label_tables(family):
    """One backward pass of the loss gives every label table a nonzero gradient (rows of the labels seen)."""
    build, data = family
    model = build()
    model.loss(data(model, 6), _g(0), y=torch.tensor([0, 1, 2, 0, 1, 2])).mean().backward()
    for name, p in _label_params(model).items():
        assert p.grad is not None and p.grad[:K].abs().sum(1).gt(0).all(), f"{name} gets no gradient"
        assert p.grad[K].abs().sum() == 0  # the null label was not seen (p_uncond = 0)


# ---------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("C", [1, 3])
def test_pixelcnn_caches_agree_with_labels(monkeypatch, C):
    """With labels, the layer cache, the row band and the full pass draw the same images from the same
    conditionals; the conditionals drawn from follow the labels (other classes, other conditionals) and y=None is
    the null label."""
    import genmodels.autoregressive.pixelcnn as pixelcnn_module

    inner = pixelcnn_module._gumbel_max
    model = _pixelcnn(C=C, seed=1).eval()

    def run(y, cache="auto"):
        seen = []

        def record(logits, generator):
            seen.append(logits.clone())
            return inner(logits, generator)

        monkeypatch.setattr(pixelcnn_module, "_gumbel_max", record)
        x = model.sample(4, _g(3), y=y, cache=cache)
        return x, torch.stack(seen)  # [C·H·W, 4, n_bins]

    y = torch.tensor([0, 1, 2, 0])
    outs = [run(y, c) for c in ("layers", "rows", "none")]
    assert outs[0][0].shape == (4, C, 4, 4)
    for x, logits in outs[1:]:
        assert torch.equal(outs[0][0], x)
        torch.testing.assert_close(logits, outs[0][1], rtol=1e-10, atol=1e-10)
    _, other = run(torch.tensor([2, 2, 1, 1]))
    assert (other - outs[0][1]).abs().amax() > 1e-3, "the labels do not reach the sampler's conditionals"
    assert torch.equal(model.sample(4, _g(3)), model.sample(4, _g(3), y=torch.full((4,), K)))


def test_wavenet_queues_agree_with_labels():
    """With labels, the queue-based and the naive sampler draw the same sequences; y=None is the null label."""
    model = _wavenet().eval()
    y = torch.tensor([0, 1, 2, 1])
    fast, slow = model.sample(4, _g(2), y=y), model.sample(4, _g(2), y=y, cache=False)
    assert fast.shape == (4, 1, 12) and torch.equal(fast, slow)
    assert torch.equal(model.sample(4, _g(2)), model.sample(4, _g(2), y=torch.full((4,), K)))


def test_draw_passes_the_labels(family):
    """``draw`` (the interface the CLI uses) samples p(x | y): the same as ``sample`` with the labels, with the
    model's nfe; without labels, the null label."""
    build, _ = family
    model = build().eval()
    y = torch.tensor([2, 0])
    out = model.draw(2, _g(4), y=y)
    assert out.x0.shape == (2, *model.spec.event_shape) and out.nfe == model.nfe()
    assert torch.equal(out.x0, model.sample(2, _g(4), y=y))
    assert torch.equal(model.draw(2, _g(4)).x0, model.sample(2, _g(4), y=torch.full((2,), K)))


def test_clear_label_errors(family):
    build, data = family
    model = build()
    x = data(model, 2)
    with pytest.raises(ValueError, match="out of range"):
        model.nll(x, y=torch.tensor([0, K + 1]))
    with pytest.raises(ValueError, match="one label per example"):
        model.loss(x, y=torch.tensor([0]))
    with pytest.raises(ValueError, match="integer"):
        model.sample(2, _g(0), y=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="unconditional"):
        build(num_classes=0).nll(x, y=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="no step count"):
        model.draw(2, _g(0), steps=3)
