"""Atomic writes of :mod:`genmodels.fileio`: content, permissions, parents, and that a failing write keeps the old
file and leaves no temporary file behind, in each of the three forms."""

from __future__ import annotations

import os

import numpy as np
import pytest

from genmodels import fileio


def _plain_mode(folder) -> int:
    """The mode ``open()`` gives a new file here (0666 & ~umask)."""
    p = folder / "plain"
    p.write_text("")
    mode = p.stat().st_mode & 0o777
    p.unlink()
    return mode


def test_write_bytes_and_text_round_trip_with_the_usual_mode(tmp_path):
    out = fileio.atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    assert out == tmp_path / "a.bin" and out.read_bytes() == b"\x00\x01"
    fileio.atomic_write_text(tmp_path / "b.txt", "héllo\n")
    assert (tmp_path / "b.txt").read_bytes() == "héllo\n".encode()
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == _plain_mode(tmp_path)  # not mkstemp's 0600
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.txt"]


def test_missing_parent_is_refused_unless_asked_to_create_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fileio.atomic_write_text(tmp_path / "no" / "f.txt", "x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        with fileio.atomic_path(tmp_path / "no" / "f.npz"):
            pass
    assert fileio.atomic_write_text(tmp_path / "no" / "f.txt", "x", parents=True).read_text() == "x"


def test_a_failing_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = fileio.atomic_write_text(tmp_path / "f.txt", "old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        fileio.atomic_write_bytes(target, b"new")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_atomic_open_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = fileio.atomic_write_text(tmp_path / "g.png", "old")
    with pytest.raises(RuntimeError, match="writer"):
        with fileio.atomic_open(target) as f:
            f.write(b"half")
            raise RuntimeError("writer failed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["g.png"]
    with fileio.atomic_open(target) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new" and os.listdir(tmp_path) == ["g.png"]


def test_atomic_path_keeps_the_suffix_for_writers_that_need_a_name(tmp_path):
    target = tmp_path / "sub" / "x.npz"
    with fileio.atomic_path(target, parents=True) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".npz" and not tmp.exists()
        np.savez_compressed(tmp, x=np.arange(3))  # would append ".npz" to a name without it
    with np.load(target) as f:
        assert f["x"].tolist() == [0, 1, 2]
    assert os.listdir(target.parent) == ["x.npz"]
    with pytest.raises(ValueError, match="bad"):
        with fileio.atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise ValueError("bad")
    assert os.listdir(target.parent) == ["x.npz"]  # old file kept, temporary removed
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with fileio.atomic_path(target):
            pass
