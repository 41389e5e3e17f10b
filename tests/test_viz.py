"""Tests for genmodels.viz: grid geometry and pixel values, and that every writer produces a readable file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from genmodels import viz


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------ to_uint8


def test_to_uint8_endpoints_clamp_and_nan():
    x = torch.tensor([-1.0, 1.0, -5.0, 5.0, 0.0, float("nan")])
    out = viz.to_uint8(x, (-1.0, 1.0))
    assert out.dtype == torch.uint8
    assert out.tolist()[:4] == [0, 255, 0, 255]
    assert out[4].item() in (127, 128)
    assert out[5].item() == 0  # NaN drawn as black


def test_to_uint8_other_range():
    assert viz.to_uint8(torch.tensor([0.0, 0.5, 1.0]), (0.0, 1.0)).tolist() == [0, 128, 255]


@pytest.mark.parametrize("bad", [(1.0, 1.0), (1.0, -1.0), (0.0, float("inf")), (0.0,)])
def test_to_uint8_bad_range(bad):
    with pytest.raises(ValueError, match="value_range"):
        viz.to_uint8(torch.zeros(3), bad)


# ------------------------------------------------------------------------------------------ make_grid


def test_make_grid_shape_n10_nrow4():
    x = torch.zeros(10, 3, 5, 7)
    grid = viz.make_grid(x, nrow=4, padding=2)
    # 3 rows x 4 columns: H' = 3 * (5 + 2) + 2, W' = 4 * (7 + 2) + 2
    assert grid.shape == (3, 23, 38)
    assert grid.dtype == torch.uint8


def test_make_grid_default_nrow_rows_and_cols():
    grid = viz.make_grid(torch.zeros(10, 1, 4, 4), padding=0)
    assert grid.shape == (1, math.ceil(10 / 4) * 4, 4 * 4)
    assert viz.make_grid(torch.zeros(9, 1, 4, 4), padding=1).shape == (1, 3 * 5 + 1, 3 * 5 + 1)


def test_make_grid_pixel_values_and_tile_position():
    n, h, w, pad, nrow = 10, 5, 6, 2, 4
    x = -torch.ones(n, 1, h, w)  # all black tiles
    x[6] = 1.0  # one white tile: row 1, column 2
    grid = viz.make_grid(x, nrow=nrow, padding=pad, pad_value=0)
    top, left = pad + (6 // nrow) * (h + pad), pad + (6 % nrow) * (w + pad)
    assert (grid[:, top : top + h, left : left + w] == 255).all()
    assert grid.sum().item() == 255 * h * w  # nowhere else is white (tiles and padding are 0)


def test_make_grid_rgb_channels_kept():
    x = -torch.ones(2, 3, 4, 4)
    x[1, 0] = 1.0  # second image pure red
    grid = viz.make_grid(x, nrow=2, padding=1)
    tile = grid[:, 1:5, 6:10]
    assert (tile[0] == 255).all() and (tile[1:] == 0).all()


def test_make_grid_pad_value_fills_empty_cells():
    grid = viz.make_grid(-torch.ones(3, 1, 2, 2), nrow=2, padding=1, pad_value=200)
    # the unused 4th cell (row 1, column 1) keeps the pad value
    assert (grid[:, 4:6, 4:6] == 200).all()


@pytest.mark.parametrize("shape", [(4, 2, 8, 8), (4, 8, 8), (1, 4, 3, 8, 8), (0, 1, 8, 8)])
def test_make_grid_bad_shape(shape):
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        viz.make_grid(torch.zeros(shape))


def test_make_grid_bad_args():
    x = torch.zeros(4, 1, 3, 3)
    with pytest.raises(ValueError, match="nrow"):
        viz.make_grid(x, nrow=0)
    with pytest.raises(ValueError, match="padding"):
        viz.make_grid(x, padding=-1)


# ------------------------------------------------------------------------------------------ save_grid


def test_save_grid_gray_png(tmp_path):
    x = torch.rand(10, 1, 8, 8, generator=_gen()) * 2 - 1
    out = viz.save_grid(x, tmp_path / "a" / "b" / "gray.png", nrow=4)  # parents created
    assert out.exists()
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "L"
        assert im.size == (4 * 10 + 2, 3 * 10 + 2)  # (W, H)
        arr = torch.from_numpy(np.asarray(im).copy())
    assert torch.equal(arr, viz.make_grid(x, nrow=4)[0])
    assert not list(out.parent.glob(".*.tmp"))  # no temporary file left behind


def test_save_grid_rgb_png(tmp_path):
    x = torch.rand(4, 3, 6, 6, generator=_gen()) * 2 - 1
    out = viz.save_grid(x, tmp_path / "rgb.png")
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.size == (2 * 8 + 2, 2 * 8 + 2)


def test_save_grid_value_range(tmp_path):
    x = torch.full((1, 1, 2, 2), 255.0)
    out = viz.save_grid(x, tmp_path / "v.png", value_range=(0, 255), padding=0)
    with Image.open(out) as im:
        assert im.getextrema() == (255, 255)


def test_save_grid_scale_upsamples(tmp_path):
    x = torch.rand(4, 1, 8, 8, generator=_gen()) * 2 - 1
    base = viz.make_grid(x, nrow=2)
    out = viz.save_grid(x, tmp_path / "big.png", nrow=2, scale=4)
    with Image.open(out) as im:
        assert im.size == (base.shape[2] * 4, base.shape[1] * 4)
        big = torch.from_numpy(np.asarray(im).copy())
    assert torch.equal(big[::4, ::4], base[0])  # nearest: every 4th pixel is the original
    assert torch.equal(big[3::4, 3::4], base[0])
    with pytest.raises(ValueError, match="scale"):
        viz.save_grid(x, tmp_path / "bad.png", scale=0)


def test_save_grid_points_scatter(tmp_path):
    pts = torch.randn(200, 2, generator=_gen())
    out = viz.save_grid(pts, tmp_path / "pts.png")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100


@pytest.mark.parametrize("shape", [(10,), (10, 3), (4, 2, 8, 8), (2, 4, 1, 8, 8)])
def test_save_grid_bad_shape(tmp_path, shape):
    with pytest.raises(ValueError, match=r"save_grid|C, H, W"):
        viz.save_grid(torch.zeros(shape), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_save_grid_overwrites(tmp_path):
    p = tmp_path / "g.png"
    viz.save_grid(torch.zeros(1, 1, 4, 4), p, padding=0)
    viz.save_grid(torch.zeros(4, 1, 4, 4), p, padding=0)
    with Image.open(p) as im:
        assert im.size == (8, 8)


# ------------------------------------------------------------------------------------------ save_strip


def test_save_strip_images_with_labels(tmp_path):
    K, n = 4, 3
    frames = torch.rand(K, n, 1, 8, 8, generator=_gen()) * 2 - 1
    labels = [f"t={t}" for t in (0, 250, 500, 1000)]
    plain = viz.save_strip(frames, tmp_path / "plain.png", scale=2)
    labelled = viz.save_strip(frames, tmp_path / "strip.png", labels, scale=2)
    with Image.open(plain) as a, Image.open(labelled) as b:
        col_w, col_h = 8 * 2 + 4 * 2, (n * 10 + 2) * 2
        assert a.size == (K * col_w, col_h)  # n rows x K columns, no label band
        assert b.size[1] > col_h and b.size[0] >= K * col_w  # a band of labels on top
        band = b.size[1] - col_h
        pixels = np.asarray(b)
        assert (pixels[:band] < 255).any()  # some text was drawn on the white band
    # with labels no wider than a column, the images under the band are the unlabelled strip
    wide = viz.save_strip(frames, tmp_path / "wide.png", ["0", "1", "2", "3"], scale=4)
    narrow = viz.save_strip(frames, tmp_path / "narrow.png", scale=4)
    with Image.open(wide) as a, Image.open(narrow) as b:
        under = np.asarray(a)[a.size[1] - b.size[1] :]
        assert np.array_equal(under, np.asarray(b))


def test_save_strip_rgb(tmp_path):
    frames = torch.rand(3, 2, 3, 6, 6, generator=_gen()) * 2 - 1
    out = viz.save_strip(frames, tmp_path / "rgb.png", ["a", "b", "c"])
    with Image.open(out) as im:
        assert im.mode == "RGB"


def test_save_strip_points(tmp_path):
    frames = torch.randn(5, 100, 2, generator=_gen())
    out = viz.save_strip(frames, tmp_path / "pts.png", [f"t={i}" for i in range(5)])
    with Image.open(out) as im:
        assert im.size[0] > 2 * im.size[1]  # panels side by side


def test_save_strip_errors(tmp_path):
    with pytest.raises(ValueError, match="labels"):
        viz.save_strip(torch.zeros(3, 2, 1, 4, 4), tmp_path / "s.png", ["a", "b"])
    with pytest.raises(ValueError, match="save_strip"):
        viz.save_strip(torch.zeros(2, 1, 4, 4), tmp_path / "s.png")


# ------------------------------------------------------------------------------------------ save_gif


def test_save_gif_has_k_frames(tmp_path):
    K = 5
    frames = torch.stack([torch.full((4, 1, 8, 8), -1.0 + 2.0 * k / (K - 1)) for k in range(K)])
    out = viz.save_gif(frames, tmp_path / "traj.gif", duration_ms=50, scale=2)
    with Image.open(out) as im:
        assert im.format == "GIF"
        assert im.n_frames == K
        assert im.size == (2 * (2 * 10 + 2), 2 * (2 * 10 + 2))


def test_save_gif_rgb(tmp_path):
    frames = torch.rand(3, 2, 3, 8, 8, generator=_gen()) * 2 - 1
    out = viz.save_gif(frames, tmp_path / "rgb.gif")
    with Image.open(out) as im:
        assert im.n_frames == 3


def test_save_gif_bad_shape(tmp_path):
    with pytest.raises(ValueError, match="save_gif"):
        viz.save_gif(torch.zeros(3, 10, 2), tmp_path / "p.gif")


# ------------------------------------------------------------------------------------------ plots


def _schedule(T: int, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    if kind == "linear":
        betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
        ac = torch.cumprod(1 - betas, 0)
    else:
        s = 0.008
        t = torch.arange(1, T + 1, dtype=torch.float64) / T
        ac = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2 / math.cos(s / (1 + s) * math.pi / 2) ** 2
        ac = ac.clamp(1e-12, 1.0)
    return ac, torch.log(ac) - torch.log1p(-ac)


def test_save_schedule_plot(tmp_path):
    schedules = {"linear": _schedule(100, "linear"), "cosine": _schedule(100, "cosine")}
    out = viz.save_schedule_plot(schedules, tmp_path / "plots" / "schedules.png")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1]


def test_save_schedule_plot_different_T_and_inf(tmp_path):
    ac, ls = _schedule(50, "cosine")
    ls[0] = float("inf")
    out = viz.save_schedule_plot({"a": _schedule(100, "linear"), "b": (ac, ls)}, tmp_path / "s.png")
    with Image.open(out):
        pass


def test_save_schedule_plot_errors(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        viz.save_schedule_plot({}, tmp_path / "s.png")
    with pytest.raises(ValueError, match="same"):
        viz.save_schedule_plot({"x": (torch.ones(5), torch.ones(4))}, tmp_path / "s.png")


def _write_metrics(path, records, tail: str = ""):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n" + tail)


def test_save_loss_curve(tmp_path):
    metrics = tmp_path / "run" / "metrics.jsonl"
    metrics.parent.mkdir()
    recs = [{"step": s, "loss": 1.0 / (1 + s) + 0.01} for s in range(0, 200, 10)]
    recs.insert(3, {"step": 25, "eval_bpd": 3.2})  # other records are skipped
    _write_metrics(metrics, recs, tail='{"step": 200, "lo')  # partial last line of a killed run
    out = viz.save_loss_curve(metrics, tmp_path / "loss.png")
    with Image.open(out) as im:
        assert im.format == "PNG"
    out = viz.save_loss_curve(metrics, tmp_path / "bpd.png", key="eval_bpd", smoothing=0.0)
    with Image.open(out):
        pass


def test_save_loss_curve_negative_values(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    _write_metrics(metrics, [{"step": s, "loss": -float(s)} for s in range(5)])
    with Image.open(viz.save_loss_curve(metrics, tmp_path / "neg.png")):
        pass


def test_save_loss_curve_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics"):
        viz.save_loss_curve(tmp_path / "missing.jsonl", tmp_path / "x.png")
    metrics = tmp_path / "metrics.jsonl"
    _write_metrics(metrics, [{"step": 1, "other": 2.0}])
    with pytest.raises(ValueError, match="no records"):
        viz.save_loss_curve(metrics, tmp_path / "x.png")
    metrics.write_text('{"step": 1, "loss": 1.0}\nnot json\n{"step": 2, "loss": 0.5}\n')
    with pytest.raises(ValueError, match=":2: not valid JSON"):
        viz.save_loss_curve(metrics, tmp_path / "x.png")


def test_ema_smooth_debiased():
    out = viz._ema_smooth(np.array([2.0, 2.0, float("nan"), 2.0]), 0.9)
    assert np.allclose(out, 2.0)  # debiased: a constant stays constant, NaN skipped


def test_save_density_maps_writes_png_and_checks_shapes(tmp_path):
    ld = torch.randn(30, 40).double()
    ld[0, 0] = -math.inf  # outside the support is drawn as the floor, not an error
    out = viz.save_density_maps([("true", ld, None), ("model", ld, torch.randn(50, 2))], (-2, 2, -1, 1),
                                tmp_path / "d.png", title="t")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1]  # two panels side by side
    with pytest.raises(ValueError, match="at least one panel"):
        viz.save_density_maps([], (-1, 1, -1, 1), tmp_path / "e.png")
    with pytest.raises(ValueError, match=r"log_density must be \[H, W\]"):
        viz.save_density_maps([("x", torch.randn(5), None)], (-1, 1, -1, 1), tmp_path / "e.png")
    with pytest.raises(ValueError, match=r"points must be \[M, 2\]"):
        viz.save_density_maps([("x", ld, torch.randn(5, 3))], (-1, 1, -1, 1), tmp_path / "e.png")
    with pytest.raises(ValueError, match="extent"):
        viz.save_density_maps([("x", ld, None)], (1, -1, -1, 1), tmp_path / "e.png")


@pytest.mark.parametrize("shape", [(3, 100), (3, 1, 100)])
def test_save_waveforms(tmp_path, shape):
    out = viz.save_waveforms(torch.randn(shape), tmp_path / "w.png", title="speech")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[1] > 100


@pytest.mark.parametrize("shape", [(3, 2, 10), (3,), (0, 10)])
def test_save_waveforms_bad_shape(tmp_path, shape):
    with pytest.raises(ValueError, match="save_waveforms expects"):
        viz.save_waveforms(torch.zeros(shape), tmp_path / "w.png")


def test_loss_curve_of_a_single_point_is_not_empty(tmp_path):
    """One logged point (a 1-step run) still shows as a marker, not an empty axis."""
    metrics = tmp_path / "m.jsonl"
    metrics.write_text('{"step": 1, "loss": 0.5}\n')
    with Image.open(viz.save_loss_curve(metrics, tmp_path / "one.png", smoothing=0.0)) as im:
        a = np.asarray(im.convert("RGB")).astype(int)
    blue = (abs(a[..., 0] - 31) < 30) & (abs(a[..., 1] - 119) < 30) & (abs(a[..., 2] - 180) < 30)  # C0
    assert blue.sum() > 20
