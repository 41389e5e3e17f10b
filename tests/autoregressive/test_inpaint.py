"""PixelCNN completion (:meth:`genmodels.autoregressive.pixelcnn.PixelCNN.inpaint`, issue 16): against brute force
on tiny binary images whose every completion can be enumerated.

- A raster-prefix mask: the probability the procedure gives each completion it draws (the product of the softmaxes
  it drew from, recorded) equals the brute-force conditional p(x_u | x_o) = p(x_u, x_o) / Σ_u' p(x_u', x_o) to float64
  rounding, for every cache, both backbones and a conditional model; the drawn frequencies match it too (binomial).
- A mask with known pixels after unknown ones: sampling-importance-resampling with many particles matches the
  brute-force conditional within the stated tolerance, while the raster proposal alone (one particle) is measurably
  off, so the check has power.
- Known pixels are returned bitwise; the caches agree on random per-image, per-channel masks; nfe counts the
  evaluated positions; bad input gets a clear error.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import genmodels.autoregressive.pixelcnn as pixelcnn_module
from genmodels.autoregressive.pixelcnn import PixelCNN, PixelCNNConfig
from genmodels.core import Conditioning, DataSpec
from genmodels.nets.masked import MaskedConvNetConfig

DT = torch.float64


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _model(C: int = 1, H: int = 2, W: int = 3, n_bins: int = 2, kind: str = "gated", num_classes: int = 0,
           seed: int = 0, scale: float = 0.6) -> PixelCNN:
    """A tiny PixelCNN in float64 whose weights are redrawn N(0, scale²), so that its conditionals are far from
    uniform and depend on the context (the default initialization gives nearly uniform ones)."""
    torch.manual_seed(seed)
    cfg = PixelCNNConfig(net=MaskedConvNetConfig(kind=kind, n_layers=2, channels=3 * C, first_kernel=3, kernel=3,
                                                 head_channels=4 * C), cond=Conditioning(num_classes, 0.0))
    model = PixelCNN(cfg, DataSpec("tiny", (C, H, W), n_bins)).to(DT)
    g = _g(seed + 100)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=DT) * scale)
    return model.eval()


def _all_images(model: PixelCNN) -> torch.Tensor:
    """``[n_bins^D, C, H, W]`` every image, in the order of their base-n_bins codes (:func:`_code`)."""
    D = model.spec.dim
    k = torch.tensor(list(itertools.product(range(model.n_bins), repeat=D))).view(-1, *model.spec.event_shape)
    return model.to_data(k)


def _code(model: PixelCNN, x: torch.Tensor) -> torch.Tensor:
    """``[B]`` the index of each image in :func:`_all_images`."""
    k = model.levels(x).flatten(1)
    powers = model.n_bins ** torch.arange(k.shape[1] - 1, -1, -1)
    return (k * powers).sum(1)


def _brute_conditional(model: PixelCNN, x_obs: torch.Tensor, known: torch.Tensor,
                       y: torch.Tensor | None = None) -> torch.Tensor:
    """``[n_bins^D]`` p(x | x_known = x_obs[known] [, y]) by enumeration: the joint of every image, zero where it
    disagrees with the observed values, renormalized."""
    X = _all_images(model)
    with torch.no_grad():
        logp = -model.nll(X, y=None if y is None else y.expand(len(X)))
    agree = (X[:, known] == x_obs[known]).all(1)
    p = torch.where(agree, logp.exp(), torch.zeros_like(logp))
    return p / p.sum()


class _Recorder:
    """Wraps ``_gumbel_max`` to add up, per row, log softmax(logits)[drawn] of the draws at that row's unknown
    positions: the log-probability the procedure gave the values it drew. The level draws come in the model's order
    at the positions unknown in some row (``unknown`` ``[n, C, H, W]``); the others are not recorded."""

    def __init__(self, unknown: torch.Tensor):
        n = unknown.shape[0]
        self.logq = torch.zeros(n, dtype=DT)
        order = unknown.permute(0, 2, 3, 1).reshape(n, -1)  # [n, H·W·C]: the model's order
        self.at = order[:, order.any(0)].T  # [drawn positions, n]: which rows each draw counts for
        self.calls = 0
        self.inner = pixelcnn_module._gumbel_max

    def __call__(self, logits, generator):
        k = self.inner(logits, generator)
        if logits.shape[0] == self.logq.shape[0]:  # a level draw (not the [B, N] resampling draw)
            lp = torch.log_softmax(logits, 1).gather(1, k[:, None])[:, 0].to(DT)
            self.logq += torch.where(self.at[self.calls], lp, torch.zeros_like(lp))
            self.calls += 1
        return k


def _top_rows(model: PixelCNN, rows: int) -> torch.Tensor:
    C, H, W = model.spec.event_shape
    known = torch.zeros(1, C, H, W, dtype=torch.bool)
    known[:, :, :rows] = True
    return known


# ---------------------------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("kind,cache,num_classes", [("gated", "layers", 0), ("gated", "rows", 0),
                                                    ("gated", "none", 0), ("plain", "rows", 0),
                                                    ("gated", "layers", 3)])
def test_prefix_completion_is_the_exact_conditional(monkeypatch, kind, cache, num_classes):
    """Known: a raster prefix of a 1×2×3 binary image, per image the top row or the top row and the next pixel.
    Each completion's probability under the procedure, recorded draw by draw, equals the brute-force
    p(x_u | x_o [, y]) to 1e-9 (relative); every image of the batch keeps its own observed pixels (two different
    top rows), mask and label."""
    model = _model(kind=kind, num_classes=num_classes)
    X = _all_images(model)
    n = 64
    x = X[[13, 50]].repeat(n // 2, 1, 1, 1)  # two different top rows (codes 001 101 and 110 010), alternating
    known = _top_rows(model, 1).repeat(n, 1, 1, 1)
    known[n // 2:, 0, 1, 0] = True  # the second half also knows the first pixel of the bottom row
    y = torch.tensor([1, 2]).repeat(n // 2) if num_classes else None
    rec = _Recorder(~known)
    monkeypatch.setattr(pixelcnn_module, "_gumbel_max", rec)
    out = model.inpaint(x, known, _g(0), cache=cache, y=y)
    codes = _code(model, out.x0)
    for b in range(n):
        p = _brute_conditional(model, x[b], known[b], None if y is None else y[b:b + 1])
        assert math.isclose(rec.logq[b].exp().item(), p[codes[b]].item(), rel_tol=1e-9), (
            f"image {b}: the procedure drew its completion with probability {rec.logq[b].exp().item():.12g}, the "
            f"model's conditional is {p[codes[b]].item():.12g}")
    assert out.nfe == 3  # one evaluation per position unknown in some image


def test_prefix_completion_frequencies_match_brute_force():
    """The drawn completions' frequencies (20 000 draws of the 8 completions of a 1×2×3 image's bottom row) match
    the brute-force conditional: every cell within 4.5 binomial standard deviations, and total variation < 0.02."""
    model = _model()
    known = _top_rows(model, 1)
    x_obs = _all_images(model)[13]
    p = _brute_conditional(model, x_obs, known[0])
    assert p.max() < 0.6 and (p > 0.02).sum() >= 4, "the test model's conditional is too peaked to test anything"
    n = 20_000
    out = model.inpaint(x_obs.expand(n, -1, -1, -1), known, _g(1))
    freq = torch.bincount(_code(model, out.x0), minlength=len(p)).to(DT) / n
    sd = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() <= 4.5 * sd + 1e-12).all(), f"frequencies {freq[p > 0]} vs {p[p > 0]}"
    assert 0.5 * (freq - p).abs().sum() < 0.02


def _late_known_case() -> tuple[PixelCNN, torch.Tensor, torch.Tensor]:
    """A 1×2×2 binary model with the first and the last pixel known (0 and 1), the two between unknown: the last
    known pixel comes after them, so the raster proposal q(x_u) = p(x_01 | x_00) p(x_10 | x_00, x_01) ignores it.
    Here the conditional is p = (0.349, 0.064, 0.520, 0.067) over the four completions, q's total variation from it
    is 0.198, and the exact output distribution of SIR with N particles (computed once by enumerating the particles'
    counts) is within total variation 0.21/N of p (0.0068 at N = 32)."""
    model = _model(W=2, seed=1, scale=1.0)
    known = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
    known[0, 0, 0, 0] = known[0, 0, 1, 1] = True
    return model, _all_images(model)[1], known


def test_non_prefix_mask_sir_matches_brute_force_and_raster_alone_does_not():
    """With 32 particles per image, the frequencies of 4000 completions match the brute-force conditional: every
    cell within 4.5 binomial standard deviations plus the SIR bias bound 0.007 (:func:`_late_known_case`), total
    variation < 0.04. One particle (the raster proposal alone) is off by a total variation > 0.12 (its exact value is
    0.198), so the check has power."""
    model, x_obs, known = _late_known_case()
    p = _brute_conditional(model, x_obs, known[0])
    n = 4000
    tv = {}
    for particles in (1, 32):
        out = model.inpaint(x_obs.expand(n, -1, -1, -1), known, _g(3), particles=particles)
        freq = torch.bincount(_code(model, out.x0), minlength=len(p)).to(DT) / n
        tv[particles] = 0.5 * (freq - p).abs().sum().item()
        if particles == 32:
            sd = (p * (1 - p) / n).sqrt()
            assert ((freq - p).abs() <= 4.5 * sd + 0.007).all(), f"frequencies {freq[p > 0]} vs {p[p > 0]}"
        assert out.nfe == (2 if particles == 1 else 3)  # the unknown pixels, plus the weighed one
    assert tv[32] < 0.04, tv
    assert tv[1] > 0.12, f"the raster proposal should be biased here (the check has no power otherwise): {tv}"


def test_sir_weights_are_the_likelihood_of_the_late_known_pixels(monkeypatch):
    """With a non-prefix mask, the particles' importance weights are exactly Π_{known after an unknown}
    p(x_i | x_<i): the proposal's log-probability plus the log-weight equals the brute-force log joint (up to the
    constant log-probability of the known prefix) for every particle."""
    model, x_obs, known = _late_known_case()
    P = 32
    captured = {}
    rec = _Recorder((~known).expand(P, -1, -1, -1))

    def resample(logits, generator):  # the [B, N] resampling draw: keep its log-weights
        if logits.shape == (1, P):
            captured["logw"] = logits[0].clone()
            return torch.zeros(1, dtype=torch.long)
        return rec(logits, generator)

    monkeypatch.setattr(pixelcnn_module, "_gumbel_max", resample)
    model.inpaint(x_obs[None], known, _g(4), particles=P)
    monkeypatch.undo()
    assert "logw" in captured, "no resampling draw"
    xs = _particles(model, x_obs, known, P, 4)
    with torch.no_grad():
        log_joint = -model.nll(xs)
    prefix = log_joint - rec.logq - captured["logw"]  # log p(known prefix): the same for every particle
    torch.testing.assert_close(prefix, prefix[:1].expand_as(prefix), rtol=0, atol=1e-9)
    assert captured["logw"].std() > 0.1  # the weights differ: the check is not vacuous


def _particles(model: PixelCNN, x_obs, known, P: int, seed: int) -> torch.Tensor:
    """The P particles ``inpaint`` draws for one image with generator seed ``seed`` (the same draws: one image
    repeated P times with particles=1 consumes the generator in the same order, row b·P+p being particle p)."""
    return model.inpaint(x_obs.expand(P, -1, -1, -1), known, _g(seed), particles=1).x0


# ---------------------------------------------------------------------------------------------- mechanics


def _random_case(C: int = 3, H: int = 4, W: int = 4, n_bins: int = 5, B: int = 6, seed: int = 0):
    model = _model(C=C, H=H, W=W, n_bins=n_bins, scale=0.3)
    g = _g(seed)
    k = torch.randint(0, n_bins, (B, C, H, W), generator=g)
    known = torch.rand(B, C, H, W, generator=g) < 0.5
    return model, model.to_data(k), known


def _pixel_patterns(C: int, H: int, W: int, seed: int) -> torch.Tensor:
    """``[1, C, H, W]`` a mask shared by the batch whose pixels are, at random, fully known, fully unknown, or
    unknown in channel 0 only or in channel 1 only: known stretches in rows with unknown pixels, and pixels whose
    later channels are known after an earlier one is drawn."""
    patterns = torch.tensor([[1, 1, 1], [0, 0, 0], [0, 1, 1], [1, 0, 1]], dtype=torch.bool)[:, :C]  # [4, C]
    which = torch.randint(0, 4, (H, W), generator=_g(seed))
    return patterns[which].permute(2, 0, 1)[None]


@pytest.mark.parametrize("particles", [1, 4])
@pytest.mark.parametrize("masks", ["per-image", "pixel-patterns"])
def test_caches_agree_on_random_masks(monkeypatch, particles, masks):
    """Random masks on 3-channel images, per image and channel, or shared pixel patterns (:func:`_pixel_patterns`):
    the layer cache, the row band and the full pass give the same completion for the same generator (the cache's
    refresh of known stretches, and of a pixel whose last pass came before a draw, keeps the conditionals exact).
    Every conditional drawn from agrees to 1e-10."""
    inner = pixelcnn_module._gumbel_max
    model, x, known = _random_case()
    if masks == "pixel-patterns":
        known = _pixel_patterns(3, 4, 4, seed=2)
    outs, logits = [], []
    for cache in ("layers", "rows", "none"):
        seen: list[torch.Tensor] = []

        def record(lg, generator, seen=seen):
            seen.append(lg.clone())
            return inner(lg, generator)

        monkeypatch.setattr(pixelcnn_module, "_gumbel_max", record)
        outs.append(model.inpaint(x, known, _g(7), cache=cache, particles=particles).x0)
        logits.append(seen)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    for other in logits[1:]:  # every conditional drawn from, not only the draws: a small error would rarely flip one
        assert len(other) == len(logits[0])
        for a, b in zip(logits[0], other, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_known_pixels_are_returned_bitwise_and_the_rest_on_the_grid():
    """x0 equals x where known (bitwise; what x holds where unknown, even NaN, is never read) and lies on the level
    grid elsewhere; a [1, C, H, W] mask broadcasts."""
    model, x, known = _random_case()
    x_in = torch.where(known, x, torch.full_like(x, float("nan")))
    out = model.inpaint(x_in, known, _g(0))
    assert torch.equal(out.x0[known], x[known])
    assert torch.isfinite(out.x0).all()
    model.levels(out.x0)  # raises if off the grid
    top = _top_rows(model, 2)
    out = model.inpaint(x, top, _g(0))
    assert torch.equal(out.x0[:, :, :2], x[:, :, :2])
    assert out.nfe == 2 * 4 * 3  # the bottom two rows, three channels each


def test_default_particles_and_nfe():
    """Default particles: 1 for raster-prefix masks (the same draws as particles=1), 16 otherwise (the same as
    particles=16). nfe: the unknown positions (prefix), plus the weighed late-known ones (particles > 1); 0 and x
    itself when everything is known."""
    model, x, known = _random_case(C=1, n_bins=3)
    top = _top_rows(model, 2)
    assert torch.equal(model.inpaint(x, top, _g(2)).x0, model.inpaint(x, top, _g(2), particles=1).x0)
    out = model.inpaint(x, known, _g(2))
    assert torch.equal(out.x0, model.inpaint(x, known, _g(2), particles=16).x0)
    unknown_any = (~known).any(0)
    first = torch.where(~known, torch.arange(16).view(1, 1, 4, 4), 16).flatten(1).min(1).values
    late_any = (known & (torch.arange(16).view(1, 1, 4, 4) > first.view(-1, 1, 1, 1))).any(0)
    assert out.nfe == int((unknown_any | late_any).sum())
    assert model.inpaint(x, known, _g(2), particles=1).nfe == int(unknown_any.sum())
    full = model.inpaint(x, torch.ones_like(known), _g(2))
    assert full.nfe == 0 and torch.equal(full.x0, x)


def test_reproducible_and_label_conditional():
    """The same generator gives the same completion; a conditional model's completion follows its labels (different
    classes give different completions of the same images, for the same draws)."""
    model = _model(C=1, H=4, W=4, n_bins=5, num_classes=3, scale=0.8)
    k = torch.randint(0, 5, (32, 1, 4, 4), generator=_g(0))
    x = model.to_data(k)
    top = _top_rows(model, 1)
    a = model.inpaint(x, top, _g(5), y=torch.zeros(32, dtype=torch.long)).x0
    assert torch.equal(a, model.inpaint(x, top, _g(5), y=torch.zeros(32, dtype=torch.long)).x0)
    b = model.inpaint(x, top, _g(5), y=torch.full((32,), 2)).x0
    assert not torch.equal(a, b)
    null = model.inpaint(x, top, _g(5)).x0  # y=None: the null label
    assert torch.equal(null, model.inpaint(x, top, _g(5), y=torch.full((32,), 3)).x0)


def test_clear_errors():
    model, x, known = _random_case(C=1, n_bins=3)
    with pytest.raises(ValueError, match="fills in with raster"):
        model.inpaint(x, known, _g(0), method="repaint")
    with pytest.raises(ValueError, match="takes particles, cache"):
        model.inpaint(x, known, _g(0), jump_length=10)
    with pytest.raises(ValueError, match="mask has shape"):
        model.inpaint(x, known[:, :, :2], _g(0))
    with pytest.raises(ValueError, match="boolean"):
        model.inpaint(x, known.float(), _g(0))
    with pytest.raises(ValueError, match="particles"):
        model.inpaint(x, known, _g(0), particles=0)
    with pytest.raises(ValueError, match="unconditional"):
        model.inpaint(x, known, _g(0), y=torch.zeros(len(x), dtype=torch.long))
    with pytest.raises(ValueError, match="grid"):
        model.inpaint(x + 0.3 * known, known, _g(0))  # known values off the level grid
    assert model.inpainters == ("raster",)
