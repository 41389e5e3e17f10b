"""Tests for genmodels.masks: which entries each named mask keeps, random fractions, PNG masks and the CLI parser."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genmodels.core import DataSpec
from genmodels.masks import MASK_HELP, make_mask, parse_mask, unknown_fraction

IMAGE = (3, 7, 8)  # odd height: the known top half is ⌊7/2⌋ = 3 rows


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _same_in_every_channel(mask: torch.Tensor) -> bool:
    return bool((mask == mask[:, :1]).all())


def test_halves_of_an_image_say_which_half_is_known():
    top, bottom = make_mask(IMAGE, "top"), make_mask(IMAGE, "bottom")
    left, right = make_mask(IMAGE, "left"), make_mask(IMAGE, "right")
    for mask in (top, bottom, left, right):
        assert mask.shape == (1, *IMAGE) and mask.dtype == torch.bool and _same_in_every_channel(mask)
    assert top[0, 0, :3].all() and not top[0, 0, 3:].any()  # the top rows are known, the rest filled in
    assert torch.equal(bottom, ~top)
    assert left[0, 0, :, :4].all() and not left[0, 0, :, 4:].any()
    assert torch.equal(right, ~left)
    assert unknown_fraction(left) == 0.5


def test_center_box_is_unknown_and_half_the_side():
    mask = make_mask((1, 8, 8), "center")[0, 0]
    assert not mask[2:6, 2:6].any() and mask.sum() == 64 - 16
    odd = make_mask(IMAGE, "center")[0, 0]  # ⌊7/2⌋ × ⌊8/2⌋ = 3 × 4 box at rows 2–4, columns 2–5
    assert (~odd).sum() == 12 and not odd[2:5, 2:6].any()


def test_sequences_and_vectors_have_left_right_center_and_random():
    seq = (2, 10)
    left = make_mask(DataSpec(name="s", event_shape=seq), "left")
    assert left.shape == (1, 2, 10) and left[0, :, :5].all() and not left[0, :, 5:].any()
    assert torch.equal(make_mask(seq, "right"), ~left)
    center = make_mask(seq, "center")[0]
    assert not center[:, 2:7].any() and center[:, :2].all() and center[:, 7:].all()  # 5 of 10 steps, from ⌊5/2⌋
    rnd = make_mask(seq, "random:0.3", _gen(0))
    assert (~rnd[0, 0]).sum() == 3 and _same_in_every_channel(rnd)
    vec = make_mask((6,), "left")
    assert vec.tolist() == [[True, True, True, False, False, False]]
    for kind in ("top", "bottom"):
        with pytest.raises(ValueError, match="use left, right, center or random:F"):
            make_mask(seq, kind)


def test_random_fraction_is_exact_and_seeded():
    a = make_mask(IMAGE, "random:0.25", _gen(1))
    assert (~a[0, 0]).sum() == round(0.25 * 56) and _same_in_every_channel(a)
    assert torch.equal(a, make_mask(IMAGE, "random:0.25", _gen(1)))
    assert not torch.equal(a, make_mask(IMAGE, "random:0.25", _gen(2)))
    assert make_mask(IMAGE, "random:0").all() and not make_mask(IMAGE, "random:1").any()
    for bad, message in (("random:1.5", "between 0 and 1"), ("random:-0.1", "between 0 and 1"),
                         ("random", "e.g. random:0.5"), ("random:half", "e.g. random:0.5")):
        with pytest.raises(ValueError, match=message):
            make_mask(IMAGE, bad)


def _png(path, array: np.ndarray) -> str:
    Image.fromarray(array.astype(np.uint8)).save(path)
    return str(path)


def test_png_white_is_known_and_its_size_must_match(tmp_path):
    a = np.zeros((7, 8))
    a[:3] = 255
    a[5, 1] = 200  # light grey counts as white
    mask = make_mask(IMAGE, _png(tmp_path / "m.png", a))
    expected = make_mask(IMAGE, "top").clone()
    expected[:, :, 5, 1] = True
    assert torch.equal(mask, expected)
    # an RGB file reads the same; a path without the .png suffix is still read by parse_mask when it exists
    rgb = np.repeat(a[:, :, None], 3, axis=2)
    Image.fromarray(rgb.astype(np.uint8)).save(tmp_path / "mask_rgb", format="PNG")
    assert torch.equal(parse_mask(str(tmp_path / "mask_rgb"), IMAGE), expected)
    with pytest.raises(ValueError, match=r"is 4×7 \(width × height\), the images 8×7") as e:
        make_mask(IMAGE, _png(tmp_path / "small.png", np.zeros((7, 4))))
    assert "small.png" in str(e.value)
    with pytest.raises(ValueError, match="does not exist"):
        parse_mask(str(tmp_path / "missing.png"), IMAGE)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot be read as an image"):
        parse_mask(str(tmp_path / "junk.png"), IMAGE)
    with pytest.raises(ValueError, match="PNG mask is for images"):
        make_mask((2, 10), _png(tmp_path / "seq.png", np.zeros((1, 10))))


def test_parse_mask_reads_names_loosely_and_refuses_the_rest_in_one_line():
    assert torch.equal(parse_mask(" Top ", IMAGE), make_mask(IMAGE, "top"))
    assert torch.equal(parse_mask("centre", IMAGE), make_mask(IMAGE, "center"))
    assert torch.equal(parse_mask("random: 0.5", IMAGE, _gen(3)), make_mask(IMAGE, "random:0.5", _gen(3)))
    for text, message in (("diagonal", "unknown mask 'diagonal'; use top | bottom | left | right | center | "
                                       "random:F"),
                          ("", "--mask is empty"), ("random:2", "between 0 and 1")):
        with pytest.raises(ValueError, match=message) as e:
            parse_mask(text, IMAGE)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="event shape"):
        make_mask((1, 2, 3, 4), "top")
    assert "white = known" in MASK_HELP
