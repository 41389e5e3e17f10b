"""Golden values of the data the models see: the SHA-256 of every train and test value (float32, as read) of the
embedded datasets and of a folder, an IDX directory and an npz file built here. Written before the loaders moved
from float32 tensors to uint8 levels scaled per batch (issue 18): how data is held must not change one value."""

from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest
from PIL import Image

from genmodels.data import load_dataset

EMBEDDED = {"digits": "776cdf5952064a0b", "mnist5k": "09e76c74846808c1", "fashion-mnist": "8d7058b7e7c1b747",
            "binary:digits": "63917fd59a8953cb"}
FILES = {"folder": "04c3d06d02b592b5", "idx": "5290324bfd1e39f0", "npz": "04c3d06d02b592b5"}


def _digest(ds) -> str:
    h = hashlib.sha256()
    for x in (ds.train, ds.test):
        for i in range(0, len(x), 4096):  # the values as the model reads them, in batches
            h.update(np.ascontiguousarray(x[i:i + 4096].numpy(), dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("name", list(EMBEDDED))
def test_embedded_values_are_unchanged(name):
    try:
        ds = load_dataset(name)
    except Exception as e:  # fashion-mnist needs the Debian package
        pytest.skip(str(e))
    assert _digest(ds) == EMBEDDED[name]


def _levels(n=40, shape=(9, 7, 3), seed=0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, size=(n, *shape)).astype(np.uint8)


def test_user_file_values_are_unchanged(tmp_path):
    a = _levels()  # [N, H, W, C]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, im in enumerate(a):
        Image.fromarray(im).save(folder / f"{i:03d}.png")
    idx = tmp_path / "idx"
    idx.mkdir()
    grey = a[..., 0]
    with gzip.open(idx / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 8, 3) + struct.pack(">III", *grey.shape) + grey.tobytes())
    np.savez(tmp_path / "x.npz", x=a.transpose(0, 3, 1, 2))
    got = {"folder": _digest(load_dataset(f"folder:{folder}")), "idx": _digest(load_dataset(f"idx:{idx}")),
           "npz": _digest(load_dataset(f"npz:{tmp_path / 'x.npz'}"))}
    assert got == FILES
