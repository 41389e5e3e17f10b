"""``speech``: a 1-D dataset of real sequences that ships offline — English sentences spoken by Debian's
``espeak-ng`` (a formant synthesizer), resampled to 8 kHz and μ-law quantized to 256 levels.

Notation:

==============  ====================================================================================================
``x``           linear amplitude in [−1, 1] (the waveform)
``μ``           255, the μ-law parameter (WaveNet, van den Oord et al. 2016, §2.2)
``f(x)``        sign(x)·ln(1 + μ|x|)/ln(1 + μ) ∈ [−1, 1], μ-law companding (WaveNet §2.2)
``k``           the code round((f(x) + 1)·μ/2) ∈ {0, …, 255}
data value      2k/255 − 1 ∈ [−1, 1] (the project's discrete scale, :func:`~genmodels.data.base.scale_discrete`),
                i.e. f(x) rounded to one of the 256 levels; :func:`mu_law_decode` maps it back to linear
==============  ====================================================================================================

The corpus (:func:`generate_speech`, fixed and seeded; :data:`SPEECH_N_SENTENCES` sentences):

1. sentences from a small grammar (subject, verb, object, place, time; statements and questions) drawn from
   ``numpy.random.RandomState(SPEECH_SEED)`` (a stream NumPy keeps frozen, NEP 19), without repeats;
2. each sentence spoken by ``espeak-ng -w`` with its own voice (one of five English accents × a voice
   variant, e.g. ``en-gb+f2``), speed (words per minute) and pitch, drawn from the same stream;
3. peak-normalized to :data:`PEAK`, resampled from espeak-ng's 22050 Hz to 8000 Hz
   (``scipy.signal.resample_poly``, a polyphase anti-aliasing filter), leading and trailing silence trimmed;
4. cut into consecutive windows of :data:`SPEECH_WINDOW` = 2048 samples (0.256 s); a window whose RMS is below
   :data:`MIN_RMS` (a pause) is dropped, as is the last partial window;
5. μ-law quantized (WaveNet §2.2) to codes ``k`` (uint8).

Split by sentence (:func:`~genmodels.data.base.holdout_split` over the sentences, 10 % held out), so no sentence
has windows on both sides. Event shape ``(1, 2048)``, ``n_bins = 256``. The arrays are generated once (about
20 s) and cached atomically in ``$GENMODELS_CACHE/data`` (default ``~/.cache/genmodels/data``), under a name
that hashes the generation settings; the cache is read without espeak-ng. espeak-ng output is deterministic
for a given version; the version that generated a cache file is stored in it (:attr:`SpeechCorpus.espeak_version`).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genmodels.core import DataSpec
from genmodels.data.base import DATASETS, DataError, Dataset, DatasetEntry, holdout_split, scale_discrete

__all__ = [
    "MU",
    "SAMPLE_RATE",
    "SPEECH_WINDOW",
    "SPEECH_N_SENTENCES",
    "SPEECH_SEED",
    "SpeechCorpus",
    "mu_law_encode",
    "mu_law_decode",
    "save_wav",
    "speech_sentences",
    "generate_speech",
    "speech_corpus",
    "load_speech",
    "espeak_available",
]

logger = logging.getLogger(__name__)

MU = 255
"""μ of μ-law companding; 256 codes (WaveNet §2.2)."""
SAMPLE_RATE = 8000
"""Sample rate of the dataset, Hz."""
SPEECH_WINDOW = 2048
"""Samples per example (0.256 s at 8 kHz)."""
SPEECH_N_SENTENCES = 400
"""Sentences in the corpus."""
SPEECH_SEED = 0
"""Seed of the sentences and voices (``numpy.random.RandomState``)."""
PEAK = 0.9
"""Peak linear amplitude of each sentence after normalization."""
SILENCE = 0.02
"""Linear amplitude below which leading/trailing samples count as silence and are trimmed."""
MIN_RMS = 0.05
"""Windows whose linear RMS is below this (pauses between words) are dropped."""
CACHE_ENV = "GENMODELS_CACHE"
"""Environment variable naming the cache root (default ``~/.cache/genmodels``); shared with the metrics cache."""
_CORPUS_VERSION = 1  # bump when the generation recipe changes; part of the cache key
_INSTALL = "install it with `sudo apt-get install espeak-ng` (Debian/Ubuntu)"


# ----------------------------------------------------------------------------- μ-law (WaveNet §2.2)


def mu_law_encode(x: np.ndarray | Tensor, mu: int = MU) -> np.ndarray | Tensor:
    """μ-law codes of linear amplitudes: ``k = round((f(x) + 1)·μ/2)``, ``f(x) = sign(x) ln(1+μ|x|)/ln(1+μ)``.

    Args:
        x: linear amplitudes of any shape (NumPy array or tensor); values outside [−1, 1] are clipped.
        mu: μ; there are ``mu + 1`` codes.
    Returns:
        codes ``k ∈ {0, …, mu}`` of the same shape: int64 (a tensor for a tensor input, else an array).
        Non-decreasing in ``x``; ``k = mu/2 ± ½`` around 0.
    Source: van den Oord et al. 2016, "WaveNet", §2.2.
    """
    if isinstance(x, Tensor):
        x = x.clamp(-1.0, 1.0).double()
        f = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)  # WaveNet §2.2
        return torch.round((f + 1.0) * mu / 2.0).long()
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    f = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)  # WaveNet §2.2
    return np.round((f + 1.0) * mu / 2.0).astype(np.int64)


def mu_law_decode(k: np.ndarray | Tensor, mu: int = MU) -> np.ndarray | Tensor:
    """Linear amplitudes of μ-law codes: ``f = 2k/μ − 1``, ``x = sign(f)((1+μ)^|f| − 1)/μ`` (inverse of ``f``).

    Args:
        k: integer codes in ``[0, mu]`` of any shape (NumPy array or tensor); out-of-range codes are clipped.
    Returns:
        float64 amplitudes in [−1, 1] of the same shape, strictly increasing in ``k``;
        ``mu_law_encode(mu_law_decode(k)) == k``.
    Source: van den Oord et al. 2016, "WaveNet", §2.2 (the inverse of its f).
    """
    if isinstance(k, Tensor):
        f = 2.0 * k.double().clamp(0, mu) / mu - 1.0
        return torch.sign(f) * torch.expm1(f.abs() * math.log1p(mu)) / mu
    f = 2.0 * np.clip(np.asarray(k, dtype=np.float64), 0, mu) / mu - 1.0
    return np.sign(f) * np.expm1(np.abs(f) * np.log1p(mu)) / mu


def save_wav(x: np.ndarray | Tensor, path: str | os.PathLike, rate: int = SAMPLE_RATE, *,
             n_bins: int = MU + 1, gap: float = 0.1) -> Path:
    """Write μ-law data as a 16-bit PCM WAV file (atomically): codes are decoded to linear amplitude first.

    Args:
        x: data on the project's scale, ``2k/(n_bins−1) − 1`` (e.g. a ``speech`` example or a WaveNet sample),
            shape ``[L]``, ``[1, L]`` or ``[n, 1, L]``; several clips are joined with ``gap`` seconds of silence.
        path: destination ``.wav``; parent folders are created.
        rate: sample rate in Hz (8000 for ``speech``).
        n_bins: number of μ-law codes (μ = n_bins − 1).
    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    Raises:
        ValueError: for an empty input, non-finite values or a non-positive rate.
    """
    from scipy.io import wavfile

    from genmodels.fileio import atomic_write_bytes

    a = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)
    if a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError(f"save_wav: need a non-empty finite array, got shape {list(a.shape)}")
    if rate <= 0:
        raise ValueError(f"save_wav: rate must be positive, got {rate}")
    clips = a.reshape(-1, a.shape[-1])  # [n, L]
    k = np.round((clips + 1.0) * (n_bins - 1) / 2.0)  # inverse of 2k/(n_bins−1) − 1
    linear = mu_law_decode(k, mu=n_bins - 1)  # [n, L] in [−1, 1]
    silence = np.zeros((clips.shape[0], int(round(gap * rate))))  # noqa: RUF046  NumPy < 2: round(np.float64) is no int
    joined = np.concatenate([linear, silence], axis=1).reshape(-1)[: -silence.shape[1] or None]
    pcm = np.round(joined * 32767).astype(np.int16)
    buf = io.BytesIO()
    wavfile.write(buf, rate, pcm)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, buf.getvalue())


# ----------------------------------------------------------------------------- the text and the voices

_SUBJECTS = ("the old fisherman", "my little sister", "a tired doctor", "the young teacher", "our neighbour",
             "the clever fox", "a quiet student", "the baker", "his grandmother", "the captain", "every child",
             "a stranger", "the farmer", "her brother", "the pilot", "two musicians", "the gardener",
             "a hungry cat", "the painter", "my uncle", "the nurse", "a careful driver", "the king", "the twins")
_VERBS = ("found", "carried", "painted", "opened", "forgot", "repaired", "bought", "watched", "hid", "washed",
          "counted", "borrowed", "dropped", "cooked", "sold", "described", "lifted", "followed", "cleaned", "wrote")
_OBJECTS = ("a red umbrella", "the broken clock", "seven green apples", "an old map", "the wooden boat",
            "a heavy suitcase", "the silver key", "a long letter", "three yellow chairs", "the blue kettle",
            "a strange box", "the morning paper", "a bag of rice", "the garden gate", "a paper kite",
            "the kitchen window", "a basket of eggs", "the tall ladder", "a warm blanket", "the iron bridge")
_PLACES = ("near the river", "in the market", "behind the station", "at the harbour", "under the bridge",
           "in the village", "on the hill", "by the lake", "inside the museum", "across the road",
           "in the library", "at the farm", "beside the church", "in the forest", "on the beach")
_TIMES = ("yesterday", "this morning", "last winter", "after dinner", "on Sunday", "before sunrise",
          "every evening", "at midnight", "in the spring", "two days ago", "late at night", "at noon")
_QUESTION = ("why", "when", "where", "how")
_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp")
_VARIANTS = ("m1", "m3", "m7", "f1", "f2", "f4")
_SPEEDS = (130, 200)  # words per minute, espeak-ng -s
_PITCHES = (25, 75)  # 0..99, espeak-ng -p


def speech_sentences(n: int, seed: int = SPEECH_SEED) -> list[tuple[str, list[str]]]:
    """``n`` distinct sentences and the espeak-ng voice flags that speak each one.

    Args:
        n: number of sentences (at most a few hundred thousand: the grammar has ~10⁸ sentences).
        seed: seed of ``numpy.random.RandomState`` (a frozen stream: the same list on every machine).
    Returns:
        ``[(text, flags)]``, e.g. ``("The baker found an old map near the river yesterday.",
        ["-v", "en-gb+f2", "-s", "170", "-p", "41"])``.
    """
    rng = np.random.RandomState(seed)
    seen: set[str] = set()
    out: list[tuple[str, list[str]]] = []
    while len(out) < n:
        s, v, o, p, t = (w[rng.randint(len(w))] for w in (_SUBJECTS, _VERBS, _OBJECTS, _PLACES, _TIMES))
        form = rng.randint(4)
        if form == 0:
            text = f"{s} {v} {o} {p} {t}."
        elif form == 1:
            text = f"{t}, {s} {v} {o} {p}."
        elif form == 2:
            text = f"{_QUESTION[rng.randint(len(_QUESTION))]} did {s} leave {o} {p}?"
        else:
            text = f"{s} {v} {o}, and then {_SUBJECTS[rng.randint(len(_SUBJECTS))]} {v} it {t}."
        text = text[0].upper() + text[1:]
        voice = f"{_ACCENTS[rng.randint(len(_ACCENTS))]}+{_VARIANTS[rng.randint(len(_VARIANTS))]}"
        speed, pitch = rng.randint(_SPEEDS[0], _SPEEDS[1] + 1), rng.randint(_PITCHES[0], _PITCHES[1] + 1)
        if text in seen:
            continue
        seen.add(text)
        out.append((text, ["-v", voice, "-s", str(speed), "-p", str(pitch)]))
    return out


# ----------------------------------------------------------------------------- synthesis


def espeak_available() -> bool:
    """True when the ``espeak-ng`` program is on the PATH."""
    return shutil.which("espeak-ng") is not None


def _espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise DataError(f"dataset 'speech' is synthesized with espeak-ng, which is not installed; {_INSTALL}")
    return exe


def _espeak_version(exe: str) -> str:
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def _speak(exe: str, text: str, flags: list[str], wav: Path) -> tuple[int, np.ndarray]:
    """Run ``espeak-ng FLAGS -w WAV TEXT``; return ``(rate, float64 samples in [−1, 1])``."""
    from scipy.io import wavfile

    res = subprocess.run([exe, *flags, "-w", str(wav), text], capture_output=True, text=True, check=False)
    if res.returncode != 0 or not wav.is_file():
        raise DataError(f"dataset 'speech': `espeak-ng {' '.join(flags)}` failed (exit {res.returncode}: "
                        f"{res.stderr.strip()[:200]}); check the espeak-ng installation ({_INSTALL})")
    rate, pcm = wavfile.read(wav)
    if pcm.dtype != np.int16 or pcm.ndim != 1 or pcm.size == 0:
        raise DataError(f"dataset 'speech': espeak-ng wrote {pcm.dtype} audio of shape {list(pcm.shape)}, "
                        f"expected mono 16-bit PCM; check the espeak-ng installation")
    return int(rate), pcm.astype(np.float64) / 32768.0


def _windows(y: np.ndarray, window: int) -> np.ndarray:
    """Trim silence at both ends, cut consecutive windows, drop quiet ones: ``[n, window]`` (n may be 0)."""
    loud = np.flatnonzero(np.abs(y) > SILENCE)
    if loud.size == 0:
        return np.zeros((0, window))
    y = y[loud[0]: loud[-1] + 1]
    n = y.size // window
    w = y[: n * window].reshape(n, window)
    return w[np.sqrt(np.mean(w ** 2, axis=1)) >= MIN_RMS]


@dataclass(frozen=True, eq=False)
class SpeechCorpus:
    """The generated corpus before scaling: μ-law codes per window and where each window came from.

    Attributes:
        codes: ``[N, 1, window]`` uint8 μ-law codes ``k``.
        sentence: ``[N]`` int64, index into ``texts`` of the sentence each window was cut from.
        texts: the sentences, ``n_sentences`` strings.
        flags: the espeak-ng voice flags of each sentence (e.g. ``"-v en-gb+f2 -s 170 -p 41"``).
        test_sentences: ``[M]`` int64 sorted indices of the held-out sentences.
        rate: sample rate, Hz. espeak_version: ``espeak-ng --version`` of the generating program.
    """

    codes: np.ndarray
    sentence: np.ndarray
    texts: tuple[str, ...]
    flags: tuple[str, ...]
    test_sentences: np.ndarray
    rate: int
    espeak_version: str

    @property
    def test_mask(self) -> np.ndarray:
        """``[N]`` bool, True for windows of held-out sentences."""
        return np.isin(self.sentence, self.test_sentences)


def generate_speech(n_sentences: int = SPEECH_N_SENTENCES, *, seed: int = SPEECH_SEED,
                    window: int = SPEECH_WINDOW, rate: int = SAMPLE_RATE,
                    test_fraction: float = 0.1) -> SpeechCorpus:
    """Synthesize the corpus (no cache; see the module docstring for the recipe). About 50 ms per sentence.

    Args:
        n_sentences: number of sentences (≥ 2).
        seed: seed of the sentences and voices.
        window: samples per window.
        rate: target sample rate, Hz.
        test_fraction: fraction of sentences held out.
    Returns:
        a :class:`SpeechCorpus`; the same arrays for the same arguments and espeak-ng version.
    Raises:
        DataError: if espeak-ng is missing or fails (the message says how to install it), or no window is loud
            enough.
    """
    from scipy.signal import resample_poly

    if n_sentences < 2:
        raise ValueError(f"n_sentences must be at least 2 (one train, one test), got {n_sentences}")
    exe = _espeak()
    sentences = speech_sentences(n_sentences, seed)
    codes, owner = [], []
    with tempfile.TemporaryDirectory(prefix="genmodels-speech-") as tmp:
        wav = Path(tmp) / "s.wav"
        for i, (text, flags) in enumerate(sentences):
            src_rate, y = _speak(exe, text, flags, wav)
            y = y * (PEAK / max(np.abs(y).max(), 1e-9))
            g = math.gcd(rate, src_rate)
            y = np.clip(resample_poly(y, rate // g, src_rate // g), -1.0, 1.0)  # anti-aliased 22050 → 8000 Hz
            w = _windows(y, window)
            codes.append(mu_law_encode(w).astype(np.uint8))  # WaveNet §2.2
            owner.append(np.full(len(w), i, dtype=np.int64))
    all_codes = np.concatenate(codes)[:, None, :]  # [N, 1, window]
    if all_codes.shape[0] == 0:
        raise DataError("dataset 'speech': espeak-ng produced no audible window; check the espeak-ng installation")
    _, test = holdout_split(n_sentences, test_fraction=test_fraction)
    return SpeechCorpus(all_codes, np.concatenate(owner), tuple(t for t, _ in sentences),
                        tuple(" ".join(f) for _, f in sentences), test.astype(np.int64), rate, _espeak_version(exe))


# ----------------------------------------------------------------------------- cache and loader


def cache_dir() -> Path:
    """``$GENMODELS_CACHE/data``, default ``~/.cache/genmodels/data`` (not created here)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "genmodels")
    return Path(root) / "data"


def _cache_path(settings: dict) -> Path:
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"speech-v{_CORPUS_VERSION}-{key}.npz"


def _save(corpus: SpeechCorpus, path: Path) -> None:
    from genmodels.fileio import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, codes=corpus.codes, sentence=corpus.sentence, texts=np.array(corpus.texts),
             flags=np.array(corpus.flags), test_sentences=corpus.test_sentences, rate=np.int64(corpus.rate),
             espeak_version=np.array(corpus.espeak_version))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def _load(path: Path) -> SpeechCorpus:
    with np.load(path, allow_pickle=False) as f:
        return SpeechCorpus(f["codes"], f["sentence"], tuple(str(t) for t in f["texts"]),
                            tuple(str(t) for t in f["flags"]), f["test_sentences"], int(f["rate"]),
                            str(f["espeak_version"]))


def speech_corpus(n_sentences: int = SPEECH_N_SENTENCES, *, seed: int = SPEECH_SEED, window: int = SPEECH_WINDOW,
                  rate: int = SAMPLE_RATE, cache: bool = True) -> SpeechCorpus:
    """:func:`generate_speech`, cached: read from :func:`cache_dir` when there, else generated and written atomically.

    A cache file that cannot be read is regenerated. Raises as :func:`generate_speech`.
    """
    settings = {"n_sentences": n_sentences, "seed": seed, "window": window, "rate": rate, "mu": MU,
                "peak": PEAK, "silence": SILENCE, "min_rms": MIN_RMS, "version": _CORPUS_VERSION}
    path = _cache_path(settings)
    if cache and path.is_file():
        try:
            return _load(path)
        except (OSError, ValueError, KeyError) as e:
            logger.warning("speech cache %s is unreadable (%s); regenerating it", path, e)
    corpus = generate_speech(n_sentences, seed=seed, window=window, rate=rate)
    if cache:
        _save(corpus, path)
    return corpus


def load_speech() -> Dataset:
    """The ``speech`` dataset: espeak-ng sentences at 8 kHz, μ-law codes in windows of 2048 samples.

    Event ``(1, 2048)``, ``n_bins = 256``, values ``2k/255 − 1`` (the μ-law companded amplitude f(x), quantized;
    :func:`mu_law_decode` / :func:`save_wav` give linear audio). Split by sentence, 10 % of the sentences held
    out; no labels. See the module docstring for the recipe.

    Raises:
        DataError: if the corpus is not cached and espeak-ng is missing (install it with
            ``sudo apt-get install espeak-ng``) or fails.
    """
    c = speech_corpus(SPEECH_N_SENTENCES)
    test = c.test_mask
    spec = DataSpec(name="speech", event_shape=tuple(c.codes.shape[1:]), n_bins=MU + 1, sample_rate=SAMPLE_RATE)
    return Dataset(spec, scale_discrete(c.codes[~test], MU + 1), scale_discrete(c.codes[test], MU + 1))


DATASETS.register("speech", DatasetEntry(
    lambda name, seed: load_speech(),
    "espeak-ng speech, 8 kHz, mu-law 256 levels, windows of 2048 samples, split by sentence (generated, cached)"))
