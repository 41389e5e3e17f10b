"""The user's own 1-D sequences: ``npz:FILE?layout=sequence`` (arrays ``[N, L]``) and ``wav:DIR`` (WAV files).

Both give event shape ``(1, L)`` and discrete levels (what WaveNet models: a softmax over ``n_bins`` levels), and
both record how the levels map back to the user's values (:class:`Quantization`), so that ``genmodels sample``
writes samples in the user's units (``x_user`` in the samples' ``.npz``).

Quantization (``?quantize=``, ``?levels=``; stated on load in one log line):

============  ==========================================================================================================
``levels``    integer series already in ``0..K−1``: taken as they are, ``K = max + 1`` (at least 2) or ``?levels=K``;
              ``x_user = k``. The default for integer arrays.
``uniform``   ``K`` equal bins over the data's range ``[lo, hi]`` (all of it, train and test):
              ``k = round((v − lo)/(hi − lo)·(K − 1))``, ``x_user = lo + k·(hi − lo)/(K − 1)`` (error ≤ half a bin).
              The default for float arrays (any series: prices, sensor readings, …), ``K = 256``.
``mulaw``     μ-law companding (WaveNet §2.2, the functions of the ``speech`` dataset) of ``v/s``, ``s = max |v|``,
              ``μ = K − 1``: fine steps near 0, coarse at the peaks, for audio-like series;
              ``x_user = s·μ-law⁻¹(k)``. ``wav:DIR`` always uses it with ``s = 1`` (full scale) and ``K = 256``.
============  ==========================================================================================================

``wav:DIR`` (or one ``.wav`` file): every ``.wav`` under the folder (recursive, sorted, hidden files skipped), all at
one sample rate (no resampling: convert them first, e.g. ``sox in.wav -r 8000 out.wav``); stereo is mixed to mono
(the mean of the channels); PCM is scaled to ``[−1, 1]`` (int16 / 32768, int32 / 2³¹, uint8 (v − 128)/128, float as
is, clipped); each file is cut into non-overlapping windows of ``?length=`` samples (default
:data:`WAV_WINDOW` = 2048), its last partial window dropped. Split by file (10 % of the files held out, at least one)
when that leaves windows on both sides, else the windows get the fixed 90/10 split. The spec records the sample rate,
so samples are also written as WAV files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
from torch import Tensor

from genmodels.core import DataSpec
from genmodels.data.base import (
    DATASETS,
    DataError,
    DataOption,
    Dataset,
    DatasetEntry,
    check_finite,
    holdout_split,
    parse_options,
    scale_discrete,
    unscale_discrete,
)
from genmodels.data.speech import mu_law_decode, mu_law_encode

__all__ = ["Quantization", "fit_quantization", "sequence_dataset", "load_wav_folder", "WAV_WINDOW",
           "SEQUENCE_LEVELS"]

logger = logging.getLogger(__name__)

WAV_WINDOW = 2048
"""Default samples per example of ``wav:DIR`` (``?length=``), as the ``speech`` dataset."""
SEQUENCE_LEVELS = 256
"""Default number of levels of quantized float series (``?levels=``)."""

QuantKind = Literal["levels", "uniform", "mu_law"]


@dataclass(frozen=True)
class Quantization:
    """How a series' levels ``k ∈ {0, …, n_bins−1}`` map to the user's values (module docstring).

    Attributes:
        kind: ``levels`` (``x_user = k``), ``uniform`` (``low + k·(high − low)/(n_bins − 1)``) or ``mu_law``
            (``scale · μ-law⁻¹(k)`` with ``μ = n_bins − 1``).
        n_bins: number of levels K.
        low, high: the values of levels 0 and K − 1 (``uniform``).
        scale: the value of amplitude ±1 (``mu_law``).
        units: what the values are, in words (e.g. ``"linear amplitude, full scale ±1"``), or empty.
    """

    kind: QuantKind
    n_bins: int
    low: float | None = None
    high: float | None = None
    scale: float | None = None
    units: str = ""

    def encode(self, v: np.ndarray) -> np.ndarray:
        """The levels of values ``v`` (int64, same shape; values outside the range go to the end levels)."""
        K = self.n_bins
        if self.kind == "levels":
            return np.clip(np.asarray(v), 0, K - 1).astype(np.int64)
        if self.kind == "uniform":
            k = np.round((np.asarray(v, dtype=np.float64) - self.low) / (self.high - self.low) * (K - 1))
            return np.clip(k, 0, K - 1).astype(np.int64)
        return np.asarray(mu_law_encode(np.asarray(v, dtype=np.float64) / self.scale, mu=K - 1), dtype=np.int64)

    def decode(self, k: np.ndarray) -> np.ndarray:
        """The user's values of levels ``k``: int64 for ``levels``, else float64 (same shape)."""
        k = np.clip(np.asarray(k, dtype=np.int64), 0, self.n_bins - 1)
        if self.kind == "levels":
            return k
        if self.kind == "uniform":
            return self.low + k.astype(np.float64) * ((self.high - self.low) / (self.n_bins - 1))
        return self.scale * np.asarray(mu_law_decode(k, mu=self.n_bins - 1), dtype=np.float64)

    def to_user(self, x: Tensor) -> np.ndarray:
        """Data on the model's scale ``[n, 1, L]`` (samples) → the user's values ``[n, L]``."""
        k = unscale_discrete(x.detach().cpu(), self.n_bins).numpy()
        v = self.decode(k)
        return v.reshape(v.shape[0], -1) if v.ndim == 3 and v.shape[1] == 1 else v

    def describe(self) -> str:
        """One line: what ``x_user`` holds (``"256 uniform levels over [-2.3, 2.4] (step 0.0184)"``)."""
        K = self.n_bins
        if self.kind == "levels":
            what = f"integer levels 0..{K - 1}, as in the data"
        elif self.kind == "uniform":
            what = (f"{K} uniform levels over [{self.low:.6g}, {self.high:.6g}] "
                    f"(step {(self.high - self.low) / (K - 1):.4g})")
        else:
            what = f"{K} mu-law levels, amplitude up to ±{self.scale:.6g}"
        return what + (f", {self.units}" if self.units else "")

    def to_json(self) -> dict:
        """A JSON-ready dict; inverse of :meth:`from_json`."""
        d: dict = {"kind": self.kind, "n_bins": self.n_bins}
        d.update({k: getattr(self, k) for k in ("low", "high", "scale") if getattr(self, k) is not None})
        if self.units:
            d["units"] = self.units
        return d

    @classmethod
    def from_json(cls, d: dict) -> Quantization:
        """Rebuild :meth:`to_json`'s dict.

        Raises:
            ValueError: a missing, unknown or badly typed field.
        """
        try:
            q = cls(kind=d["kind"], n_bins=int(d["n_bins"]),
                    **{k: float(d[k]) for k in ("low", "high", "scale") if d.get(k) is not None},
                    units=str(d.get("units", "")))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"bad data quantization {d!r}: {type(e).__name__} {e}") from None
        if q.kind not in get_args(QuantKind) or q.n_bins < 2:
            raise ValueError(f"bad data quantization {d!r}: kind must be levels, uniform or mu_law, n_bins ≥ 2")
        return q


def fit_quantization(values: np.ndarray, quantize: str, levels: str, source: str, *,
                     scale: float | None = None, units: str = "") -> Quantization:
    """Choose the :class:`Quantization` of a series from all its values (module docstring).

    Args:
        values: every value (train and test), any shape, finite.
        quantize: ``auto`` (integers: ``levels``; floats: ``uniform``), ``levels``, ``uniform`` or ``mulaw``.
        levels: ``auto`` (``levels``: max + 1; else :data:`SEQUENCE_LEVELS`) or an integer K ≥ 2, as a string.
        source: the file, for messages.
        scale: ``mulaw``: the amplitude of ±1 (default ``max |v|``).
    Raises:
        DataError: integer levels below 0 or above ``levels − 1``, fractional values read as levels, a constant
            series (uniform), an all-zero one (μ-law), fewer than 2 levels.
    """
    integer = np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_
    kind = ("levels" if integer else "uniform") if quantize == "auto" else quantize
    K = None if levels == "auto" else int(levels)
    if K is not None and K < 2:
        raise DataError(f"{source}: levels={K}; a sequence needs at least 2 levels")
    if kind == "levels":
        if not integer and not np.array_equal(values, np.round(values)):
            raise DataError(f"{source}: quantize=levels reads whole numbers 0..K−1, but the values are fractional; "
                            f"use quantize=uniform (bins over the range) or quantize=mulaw (audio)")
        lo, hi = int(values.min()), int(values.max())
        if lo < 0:
            raise DataError(f"{source}: integer series must hold levels 0..K−1, found values down to {lo}; shift "
                            f"them to start at 0, or pass quantize=uniform to bin them over their range")
        K = K or max(2, hi + 1)
        if hi > K - 1:
            raise DataError(f"{source}: values reach {hi} but levels={K} allows 0..{K - 1}; raise levels or omit it")
        return Quantization("levels", K, units=units)
    K = K or SEQUENCE_LEVELS
    v = values.astype(np.float64)
    if kind == "uniform":
        lo, hi = float(v.min()), float(v.max())
        if not hi > lo:
            raise DataError(f"{source}: the series is constant ({lo:g}); there is nothing to model")
        return Quantization("uniform", K, low=lo, high=hi, units=units)
    s = float(np.abs(v).max()) if scale is None else float(scale)
    if not s > 0:
        raise DataError(f"{source}: the series is all zeros; there is nothing to model")
    return Quantization("mu_law", K, scale=s, units=units)


def sequence_dataset(name: str, train: np.ndarray, test: np.ndarray, q: Quantization, *,
                     sample_rate: int | None = None, train_labels=None, test_labels=None) -> Dataset:
    """A ``(1, L)`` dataset of series ``[N, L]`` / ``[M, L]`` quantized by ``q``, recording ``q`` for sampling."""
    K = q.n_bins
    spec = DataSpec(name=name, event_shape=(1, train.shape[1]), n_bins=K, sample_rate=sample_rate)
    return Dataset(spec, scale_discrete(q.encode(train)[:, None, :], K), scale_discrete(q.encode(test)[:, None, :], K),
                   train_labels, test_labels, quantization=q)


def series_layout(a: np.ndarray, source: str) -> np.ndarray:
    """``[N, L]`` or ``[N, 1, L]`` → ``[N, L]``, finite.

    Raises:
        DataError: another shape (the message gives the accepted ones), no examples, NaN/inf, a dtype that is not
            numeric.
    """
    if a.ndim == 3 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise DataError(f"{source}: layout=sequence reads x of shape [N, L] (N series of L steps) or [N, 1, L], "
                        f"got {list(a.shape)}; reshape it (e.g. x.reshape(N, L)), or cut one long series into "
                        f"windows: x[: len(x) // L * L].reshape(-1, L)")
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise DataError(f"{source}: dtype {a.dtype} is not numeric; save float or integer series")
    check_finite(a, source)
    return a


# ----------------------------------------------------------------------------- wav:DIR


def _read_wav(path: Path) -> tuple[int, np.ndarray, int]:
    """``(rate, mono float64 samples in [−1, 1], channels)`` of one WAV file."""
    from scipy.io import wavfile

    try:
        rate, a = wavfile.read(path)
    except (ValueError, OSError, EOFError, TypeError) as e:
        raise DataError(f"WAV file {path} cannot be read ({type(e).__name__}: {e}); it is corrupt or not a PCM/float "
                        f"WAV file: re-save it (e.g. `sox {path.name} -b 16 out.wav`) or remove it") from None
    channels = 1 if a.ndim == 1 else a.shape[1]
    if a.dtype == np.uint8:
        x = (a.astype(np.float64) - 128.0) / 128.0
    elif np.issubdtype(a.dtype, np.integer):
        x = a.astype(np.float64) / float(2 ** (8 * a.dtype.itemsize - 1))
    elif np.issubdtype(a.dtype, np.floating):
        x = a.astype(np.float64)
        check_finite(x, f"WAV file {path}")
    else:
        raise DataError(f"WAV file {path} holds {a.dtype} samples; save it as 16-bit PCM")
    if x.ndim == 2:
        x = x.mean(axis=1)
    return int(rate), np.clip(x, -1.0, 1.0), channels


def load_wav_folder(directory: str | Path, name: str | None = None, *, length: int = WAV_WINDOW) -> Dataset:
    """Load WAV files as μ-law sequences of ``length`` samples (module docstring).

    Args:
        directory: a folder of ``.wav`` files (searched recursively), or one ``.wav`` file.
        name: the name recorded in the spec (default ``"wav:<directory>"``).
        length: samples per example L.
    Returns:
        a :class:`~genmodels.data.base.Dataset` with event ``(1, length)``, ``n_bins = 256``, the sample rate in
        its spec and its :class:`Quantization` (μ-law, full scale ±1).
    Raises:
        DataError: missing path, no WAV files, an unreadable file (named), two sample rates (two files named), no
            file as long as ``length``.
    """
    root = Path(directory)
    name = name or f"wav:{directory}"
    if length < 2:
        raise DataError(f"dataset {name!r}: length={length}; a window needs at least 2 samples")
    if root.is_file() and root.suffix.lower() == ".wav":
        paths = [root]
    elif root.is_dir():
        paths = sorted(p for p in root.rglob("*")
                       if p.suffix.lower() == ".wav" and not p.name.startswith(".") and p.is_file())
        if not paths:
            raise DataError(f"dataset {name!r}: folder {root} holds no .wav files (searched recursively); "
                            f"put WAV files in it")
    else:
        what = "is not a .wav file" if root.exists() else "does not exist"
        raise DataError(f"dataset {name!r}: {root} {what}; give a folder of .wav files (or one .wav file)")
    rate0, windows, owner, stereo, longest = None, [], [], 0, 0
    for i, p in enumerate(paths):
        rate, x, channels = _read_wav(p)
        if rate0 is None:
            rate0 = rate
        elif rate != rate0:
            raise DataError(f"dataset {name!r}: {paths[0]} is at {rate0} Hz but {p} is at {rate} Hz; wav:DIR needs "
                            f"one sample rate (no resampling here): convert them, e.g. `sox IN.wav -r {rate0} OUT.wav`")
        stereo += channels > 1
        longest = max(longest, x.size)
        n = x.size // length
        windows.append(x[: n * length].reshape(n, length))
        owner.append(np.full(n, i, dtype=np.int64))
    w, who = np.concatenate(windows), np.concatenate(owner)
    if w.shape[0] == 0:
        raise DataError(f"dataset {name!r}: no file holds {length} samples (the longest has {longest}); "
                        f"pass a shorter window, e.g. 'wav:{directory}?length={max(2, longest)}'")
    files = np.unique(who)
    split = "by window (90/10)"
    test_mask = np.zeros(len(w), dtype=bool)
    if len(files) >= 2:
        _, te = holdout_split(len(files))
        test_mask = np.isin(who, files[te])
        if test_mask.any() and not test_mask.all():
            split = f"by file ({len(te)} of {len(files)} held out)"
        else:
            test_mask[:] = False
    if not test_mask.any():
        _, te = holdout_split(len(w))
        test_mask[te] = True
    q = Quantization("mu_law", 256, scale=1.0, units="linear amplitude, full scale ±1")
    ds = sequence_dataset(name, w[~test_mask], w[test_mask], q, sample_rate=rate0)
    logger.info("%s: %d WAV file(s) at %d Hz%s, cut into %d windows of %d samples (%.3g s; the last partial window "
                "of each file dropped); mu-law, 256 levels; split %s", name, len(paths), rate0,
                f" ({stereo} stereo, mixed to mono)" if stereo else ", mono", len(w), length, length / rate0, split)
    return ds


WAV_OPTIONS = (DataOption("length", str(WAV_WINDOW), help=f"samples per example L, default {WAV_WINDOW}",
                          minimum=2),)


def _load_wav_entry(arg: str, seed: int) -> Dataset:
    path, opts = parse_options("wav:", arg)
    if not path:
        raise DataError(f"dataset 'wav:{arg}' names no path; write it as 'wav:DIR'")
    return load_wav_folder(path, f"wav:{arg}", length=int(opts["length"]))


DATASETS.register("wav:", DatasetEntry(
    _load_wav_entry,
    "a folder of .wav files at one sample rate, mono (stereo is mixed), cut into windows of L samples, mu-law 256 "
    "levels, event (1, L) (for wavenet); samples are also written as WAV",
    pattern="wav:DIR", options=WAV_OPTIONS, paths=True))

