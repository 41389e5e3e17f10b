"""End-to-end conditional generation on the command line (issue 16): train --conditional, sample --class/--guidance,
evaluate (−log p(x | y), the marginal, --classify), inpaint, the guidance sweep, and one clear line for each misuse."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from _cli import cli_error, last_json, ok, runner
from genmodels.cli import app

TINY = ["--T", "50", "--channels", "8", "--channel-mult", "1,2", "--num-res-blocks", "1", "--attn-levels", "1",
        "--batch-size", "16", "--log-every", "2", "--checkpoint-every", "3", "--sample-every", "0", "--threads", "1",
        "--no-progress"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A conditional and an unconditional tiny DDPM on digits (4 steps each), and a conditional PixelCNN."""
    root = tmp_path_factory.mktemp("cond")
    ok(runner.invoke(app, ["train", "ddpm", "--data", "digits", "--out", str(root / "c"), "--steps", "4",
                           "--conditional", *TINY]))
    ok(runner.invoke(app, ["train", "ddpm", "--data", "digits", "--out", str(root / "u"), "--steps", "4", *TINY]))
    ok(runner.invoke(app, ["train", "pixelcnn", "--data", "digits", "--out", str(root / "p"), "--steps", "2",
                           "--conditional", "--batch-size", "16", "--sample-every", "0", "--threads", "1",
                           "--no-progress"]))
    return root


def test_conditional_run_records_its_classes(runs):
    cfg = json.loads((runs / "c" / "config.json").read_text())
    assert cfg["model_config"]["cond"] == {"num_classes": 10, "p_uncond": 0.1}
    assert cfg["spec"]["num_classes"] == 10
    assert json.loads((runs / "u" / "config.json").read_text())["model_config"]["cond"]["num_classes"] == 0


def test_sample_by_class_with_guidance(runs, tmp_path):
    out = tmp_path / "all.png"
    res = last_json(ok(runner.invoke(app, ["sample", str(runs / "c"), "--class", "all", "--n", "20", "--guidance",
                                           "2", "--sampler", "ddim", "--steps", "3", "--out", str(out),
                                           "--no-progress"])))
    assert res["nfe"] == 6 and res["guidance_scale"] == 2 and res["classes"] == "all"  # both passes counted
    y = np.load(out.with_suffix(".npz"))["y"]
    assert y.tolist() == [k for k in range(10) for _ in range(2)]  # one grid row per class
    assert Image.open(out).size[0] < Image.open(out).size[1] * 1.5  # 2 per row, 10 rows: taller than wide
    res = last_json(ok(runner.invoke(app, ["sample", str(runs / "c"), "--class", "7", "--n", "3", "--sampler",
                                           "ddim", "--steps", "3", "--out", str(tmp_path / "7.png"),
                                           "--no-progress"])))
    assert res["nfe"] == 3 and res["classes"] == [7]


def test_evaluate_reports_conditional_marginal_and_classifier(runs):
    res = json.loads(ok(runner.invoke(app, ["evaluate", str(runs / "c"), "--limit", "12", "--no-progress"])).stdout)
    cond = res["conditional"]
    assert res["given"].startswith("the true labels")
    assert cond["classes"] == 10 and cond["examples"] == 12 and 0 <= cond["accuracy"] <= 1
    assert np.isfinite([cond["marginal_bpd"], cond["null_bpd"], res["bpd"]]).all()
    # −log Σ p(y) p(x|y) ≤ −log p(x|y_true) − log p(y_true): the marginal is at most the conditional + log K-ish
    assert cond["marginal_bpd"] <= res["bpd"] + np.log2(10) / 64 + 0.5
    assert (runs / "c" / "eval_test_classes.npy").is_file()
    assert np.load(runs / "c" / "eval_test_classes.npy").shape == (12, 11)


def test_inpaint_keeps_the_known_pixels(runs, tmp_path):
    out = tmp_path / "inp.png"
    res = last_json(ok(runner.invoke(app, ["inpaint", str(runs / "u"), "--images", "test:0-3", "--mask", "top",
                                           "--method", "replace", "--steps", "5", "--out", str(out),
                                           "--no-progress"])))
    assert res["nfe"] == 5 and res["method"] == "replace" and out.is_file()
    z = np.load(out.with_suffix(".npz"))
    known = np.broadcast_to(z["known"], z["x"].shape)
    assert np.array_equal(z["filled"][0][known], z["x"][known])
    res = last_json(ok(runner.invoke(app, ["inpaint", str(runs / "p"), "--images", "test:0,2", "--mask", "top",
                                           "--class", "true", "--out", str(tmp_path / "p.png"), "--no-progress"])))
    assert res["method"] == "raster" and res["nfe"] == 32  # one pass per unknown pixel (the bottom half of 8×8)


def test_guidance_sweep_writes_table_and_figure(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("GENMODELS_CACHE", str(tmp_path))  # the digits classifier: trained here in about 2 s
    res = json.loads(ok(runner.invoke(app, ["guidance", str(runs / "c"), "--scales", "0,1", "--n-per-class", "2",
                                            "--sampler", "ddim", "--steps", "2", "--no-progress"])).stdout)
    assert [r["guidance_scale"] for r in res["rows"]] == [0.0, 1.0]
    assert [r["nfe"] for r in res["rows"]] == [2, 4]
    assert all(0 <= r["class_accuracy"] <= 1 and len(r["per_class_accuracy"]) == 10 for r in res["rows"])
    for name in ("sweep.md", "sweep.json", "sweep.png", "grid_w0.png", "grid_w1.png"):
        assert (runs / "c" / "guidance_sweep" / name).is_file(), name


@pytest.mark.parametrize("args,needles", [
    (["sample", "{u}", "--class", "3"], ["unconditional"]),
    (["sample", "{c}", "--class", "12"], ["class 12 is out of range", "0..9"]),
    (["sample", "{c}", "--class", "Sandal"], ["not a class of", "0..9"]),
    (["sample", "{u}", "--guidance", "2"], ["guidance needs a class-conditional model"]),
    (["sample", "{c}", "--guidance", "2"], ["give the classes"]),
    (["evaluate", "{u}", "--classify"], ["--classify needs a class-conditional model"]),
    (["inpaint", "{u}", "--mask", "{png}"], ["mask"]),
    (["inpaint", "{u}", "--images", "test:0-999"], ["the test split has"]),
    (["inpaint", "{u}", "--images", "nonsense"], ["SPLIT:RANGE"]),
    (["train", "ddpm", "--data", "moons", "--conditional", "--steps", "1"], []),  # moons has labels: trains
    (["train", "ebm", "--data", "digits", "--conditional"], ["no class conditioning"]),
])
def test_misuse_is_one_clear_line(runs, tmp_path, args, needles):
    png = tmp_path / "mask.png"
    Image.new("L", (5, 7), 255).save(png)
    args = [a.format(u=runs / "u", c=runs / "c", png=png) for a in args]
    if not needles:
        ok(runner.invoke(app, [*args, "--out", str(tmp_path / "m"), "--threads", "1", "--no-progress"]))
        return
    cli_error(args, *needles)
