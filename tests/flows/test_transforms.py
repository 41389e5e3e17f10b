"""The invertible transforms of :mod:`genmodels.flows.transforms`, each against the math: inverse ∘ forward = id,
log_det = log|det J| of the autograd Jacobian per example, NICE's unit determinant, zero-initialized couplings start
as the identity, actnorm's data-dependent initialization (and that it survives a reload), and clear shape errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from genmodels.flows.transforms import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ChannelPartition,
    CheckerboardPartition,
    Compose,
    Flatten,
    HalvesPartition,
    InvertibleConv1x1,
    Logit,
    ScaleLayer,
    Squeeze,
)
from genmodels.nets.coupling import CouplingNetConfig

DT = torch.float64
NET = CouplingNetConfig(hidden=8, depth=1, activation="tanh")
IMG_NET = CouplingNetConfig(hidden=4, depth=1)
VEC, IMG = (5,), (4, 4, 4)  # event shapes of the small inputs


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# name -> (factory, event shape); every transform of the module, on vectors and images where it applies
TRANSFORMS = {
    "additive-halves": (lambda: AdditiveCoupling(HalvesPartition(5, 1), NET), VEC),
    "additive-channel": (lambda: AdditiveCoupling(ChannelPartition(4, 0), IMG_NET), IMG),
    "additive-checkerboard": (lambda: AdditiveCoupling(CheckerboardPartition(4, 1), IMG_NET), IMG),
    "affine-halves-tanh": (lambda: AffineCoupling(HalvesPartition(5, 0), NET, "tanh"), VEC),
    "affine-halves-sigmoid": (lambda: AffineCoupling(HalvesPartition(5, 1), NET, "sigmoid"), VEC),
    "affine-channel-tanh": (lambda: AffineCoupling(ChannelPartition(4, 1), IMG_NET, "tanh"), IMG),
    "affine-channel-odd-sigmoid": (lambda: AffineCoupling(ChannelPartition(3, 0), IMG_NET, "sigmoid"), (3, 4, 4)),
    "affine-checkerboard-tanh": (lambda: AffineCoupling(CheckerboardPartition(4, 0), IMG_NET, "tanh"), IMG),
    "affine-checkerboard-sigmoid": (lambda: AffineCoupling(CheckerboardPartition(4, 1), IMG_NET, "sigmoid"), IMG),
    "scale-vector": (lambda: ScaleLayer(VEC), VEC),
    "scale-image": (lambda: ScaleLayer(IMG), IMG),
    "squeeze": (lambda: Squeeze(), IMG),
    "flatten": (lambda: Flatten(IMG), IMG),
    "actnorm-vector": (lambda: ActNorm(5), VEC),
    "actnorm-image": (lambda: ActNorm(4), IMG),
    "conv1x1-vector": (lambda: InvertibleConv1x1(5), VEC),
    "conv1x1-image": (lambda: InvertibleConv1x1(4), IMG),
    "logit": (lambda: Logit(0.05, -1.1, 1.1), IMG),
    "compose": (lambda: Compose([ActNorm(4), InvertibleConv1x1(4), AffineCoupling(ChannelPartition(4, 0), IMG_NET),
                                 Squeeze(), AffineCoupling(CheckerboardPartition(16, 0), IMG_NET)]), IMG),
}


def _inputs(shape: tuple[int, ...], n: int = 4, seed: int = 0, dtype=DT) -> torch.Tensor:
    """``[n, *shape]`` inputs in (−1, 1) (inside the logit's domain), not centred (so actnorm has work to do)."""
    return (0.9 * torch.rand(n, *shape, generator=_g(seed), dtype=dtype) * 2 - 0.9) * 0.7 + 0.2


def _built(name: str, dtype=DT):
    """The transform, with its data-dependent initialization done and every parameter perturbed (so the zero-
    initialized couplings are no longer the identity)."""
    factory, shape = TRANSFORMS[name]
    torch.manual_seed(0)
    t = factory().to(dtype)
    t(_inputs(shape, 8, seed=1, dtype=dtype))  # actnorm: initialize on a batch
    with torch.no_grad():
        g = _g(2)
        for p in t.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return t, shape


@pytest.mark.parametrize("name", TRANSFORMS)
def test_inverse_of_forward_is_identity(name):
    t, shape = _built(name)
    x = _inputs(shape)
    z, log_det = t(x)
    assert log_det.shape == (len(x),) and torch.isfinite(log_det).all()
    torch.testing.assert_close(t.inverse(z), x, atol=1e-10, rtol=0)
    # float32 to 1e-5
    t32, _ = _built(name, torch.float32)
    x32 = _inputs(shape, dtype=torch.float32)
    torch.testing.assert_close(t32.inverse(t32(x32)[0]), x32, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_log_det_matches_autograd_jacobian(name):
    t, shape = _built(name)
    x = _inputs(shape, n=3)
    _, log_det = t(x)
    for i in range(len(x)):
        J = jacobian(lambda xi: t(xi[None])[0].reshape(-1), x[i])  # [D, *shape]
        J = J.reshape(J.shape[0], -1)
        sign, logabs = torch.linalg.slogdet(J)
        assert sign != 0
        assert logabs.item() == pytest.approx(log_det[i].item(), abs=1e-8)


@pytest.mark.parametrize("name", ["additive-halves", "additive-channel", "additive-checkerboard"])
def test_nice_additive_coupling_is_volume_preserving(name):
    t, shape = _built(name)
    z, log_det = t(_inputs(shape))
    assert torch.equal(log_det, torch.zeros_like(log_det))
    assert not torch.allclose(z, _inputs(shape))  # a non-trivial map, all the same


@pytest.mark.parametrize("name", [n for n in TRANSFORMS if n.startswith(("additive", "affine")) and "sigmoid" not in n])
def test_zero_initialized_coupling_starts_as_identity(name):
    factory, shape = TRANSFORMS[name]
    t = factory().double()
    x = _inputs(shape)
    z, log_det = t(x)
    torch.testing.assert_close(z, x, atol=0, rtol=0)
    assert torch.equal(log_det, torch.zeros_like(log_det))


def test_sigmoid_scale_starts_at_glow_sigmoid_two():
    """Glow's bound: scale σ(h + 2) is σ(2) ≈ 0.881 at a zero h, on x_b only."""
    t = AffineCoupling(HalvesPartition(4, 0), NET, "sigmoid").double()
    x = _inputs((4,))
    z, log_det = t(x)
    s = torch.sigmoid(torch.tensor(2.0, dtype=DT))
    torch.testing.assert_close(z[:, 0::2], x[:, 0::2])
    torch.testing.assert_close(z[:, 1::2], s * x[:, 1::2])
    torch.testing.assert_close(log_det, torch.full((len(x),), 2 * math.log(s), dtype=DT))


def test_checkerboard_coupling_keeps_the_masked_pixels():
    t, _ = _built("affine-checkerboard-tanh")
    x = _inputs(IMG)
    z, _ = t(x)
    b = t.partition.mask(x).bool().expand_as(x)
    assert torch.equal(z[b], x[b]) and not torch.allclose(z[~b], x[~b])


def test_squeeze_moves_each_2x2_block_into_channels():
    x = torch.arange(2 * 4 * 6, dtype=DT).reshape(1, 2, 4, 6)
    z, _ = Squeeze()(x)
    assert z.shape == (1, 8, 2, 3)
    # channel 4c + 2i + j at (h, w) is x[c, 2h + i, 2w + j]
    for c in range(2):
        for i in range(2):
            for j in range(2):
                torch.testing.assert_close(z[0, 4 * c + 2 * i + j], x[0, c, i::2, j::2])


def test_logit_matches_realnvp_preprocessing_and_closed_form_log_det():
    """For 8-bit data on [−1, 1] with the half-bin margins, the logit is RealNVP's logit(α + (1 − 2α)(k + v)/256)."""
    n_bins, alpha = 256, 0.05
    delta = 2 / (n_bins - 1)
    t = Logit(alpha, -1 - delta / 2, 1 + delta / 2)
    k = torch.tensor([[0.0, 17.0, 128.0, 255.0]], dtype=DT)
    v = torch.tensor([[0.0, 0.3, 0.5, 0.999]], dtype=DT)  # noise in [0, 1) bin units
    x = 2 * k / (n_bins - 1) - 1 + (v - 0.5) * delta  # x + u on the model's scale
    z, log_det = t(x)
    p = alpha + (1 - 2 * alpha) * (k + v) / 256
    torch.testing.assert_close(z, torch.logit(p))
    dz_dx = (1 - 2 * alpha) / (p * (1 - p)) / (2 + delta)
    torch.testing.assert_close(log_det, torch.log(dz_dx).sum(1))


# ------------------------------------------------------------------------------------------------- actnorm


@pytest.mark.parametrize("shape", [VEC, IMG])
def test_actnorm_data_dependent_init_gives_zero_mean_unit_variance(shape):
    x = 3.0 * torch.randn(64, *shape, generator=_g(3), dtype=DT) + 1.5
    a = ActNorm(shape[0]).double()
    assert not a.initialized
    z, _ = a(x)
    dims = [0, *range(2, z.ndim)]
    torch.testing.assert_close(z.mean(dims), torch.zeros(shape[0], dtype=DT), atol=1e-10, rtol=0)
    torch.testing.assert_close(z.var(dims, unbiased=False), torch.ones(shape[0], dtype=DT), atol=1e-5, rtol=0)
    assert a.initialized


def test_actnorm_init_survives_state_dict_reload():
    a = ActNorm(4).double()
    a(_inputs(IMG, 16, seed=4) * 3)
    state = a.state_dict()
    assert "initialized" in state and bool(state["initialized"])
    b = ActNorm(4).double()
    b.load_state_dict(state)
    x = _inputs(IMG, 8, seed=5)  # another batch: a re-initialization would change the output
    torch.testing.assert_close(b(x)[0], a(x)[0], atol=0, rtol=0)
    assert not torch.allclose(b(x)[0].mean((0, 2, 3)), torch.zeros(4, dtype=DT), atol=1e-3)


def test_actnorm_needs_two_values_per_channel_to_initialize():
    with pytest.raises(ValueError, match="at least 2 examples"):
        ActNorm(3)(torch.randn(1, 3))


# ------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("t, x, match", [
    (Squeeze(), torch.zeros(2, 1, 7, 8), "even height and width"),
    (Squeeze(), torch.zeros(2, 4), r"\[B, None, H, W\]|expects input"),
    (AffineCoupling(ChannelPartition(4, 0), IMG_NET), torch.zeros(2, 3, 4, 4), r"\[B, 4, H, W\]"),
    (AffineCoupling(CheckerboardPartition(2, 0), IMG_NET), torch.zeros(2, 8), r"\[B, 2, H, W\]"),
    (AdditiveCoupling(HalvesPartition(4, 0), NET), torch.zeros(2, 5), r"\[B, 4\]"),
    (ActNorm(4), torch.zeros(2, 3, 2, 2), r"\[B, 4\]"),
    (InvertibleConv1x1(4), torch.zeros(2, 5), r"\[B, 4\]"),
    (ScaleLayer((3,)), torch.zeros(2, 4), r"\[B, 3\]"),
    (Logit(0.05, -1.0, 1.0), torch.full((2, 3), 1.5), "outside its domain"),
])
def test_bad_input_raises_a_clear_error(t, x, match):
    with pytest.raises(ValueError, match=match):
        t(x)


def test_bad_construction_raises():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        HalvesPartition(1, 0)
    with pytest.raises(ValueError, match="≥ 2 channels"):
        ChannelPartition(1, 0)
    with pytest.raises(ValueError, match="'tanh' or 'sigmoid'"):
        AffineCoupling(HalvesPartition(2, 0), NET, "exp")
    with pytest.raises(ValueError, match="alpha"):
        Logit(0.5, -1, 1)
