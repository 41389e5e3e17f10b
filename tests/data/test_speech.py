"""The ``speech`` dataset: μ-law companding, WAV output, the espeak-ng corpus, its split and its cache."""

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from genmodels.data import DataError, load_dataset, speech
from genmodels.data.speech import (
    SPEECH_WINDOW,
    espeak_available,
    generate_speech,
    mu_law_decode,
    mu_law_encode,
    save_wav,
    speech_corpus,
    speech_sentences,
)

needs_espeak = pytest.mark.skipif(not espeak_available(),
                                  reason="espeak-ng is not installed (sudo apt-get install espeak-ng)")


# ----------------------------------------------------------------------------- μ-law (always run)


def test_mu_law_round_trip_and_formula():
    k = np.arange(256)
    assert np.array_equal(mu_law_encode(mu_law_decode(k)), k)  # codes survive decode → encode exactly
    x = np.linspace(-1, 1, 20001)
    f = mu_law_encode(x) / 255 * 2 - 1  # the quantized companded value
    f_exact = np.sign(x) * np.log1p(255 * np.abs(x)) / np.log1p(255)  # WaveNet §2.2
    assert np.abs(f - f_exact).max() <= 1 / 255 + 1e-12  # within half a level (levels are 2/255 apart)
    assert mu_law_encode(np.array([-1.0, 1.0])).tolist() == [0, 255]
    np.testing.assert_allclose(mu_law_decode(np.array([0, 255])), [-1.0, 1.0])
    np.testing.assert_allclose(mu_law_decode(255 - k), -mu_law_decode(k))  # odd symmetry


def test_mu_law_monotone_and_fine_near_zero():
    x = np.linspace(-1, 1, 20001)
    assert np.all(np.diff(mu_law_encode(x)) >= 0)
    assert np.all(np.diff(mu_law_decode(np.arange(256))) > 0)
    levels = mu_law_decode(np.arange(256))
    steps = np.diff(levels)
    assert steps[127] < steps[0] / 100  # companding: fine steps near 0, coarse near ±1


def test_mu_law_tensor_matches_numpy():
    x = np.random.RandomState(0).uniform(-1.2, 1.2, 1000)
    assert torch.equal(mu_law_encode(torch.from_numpy(x)), torch.from_numpy(mu_law_encode(x)))
    k = np.arange(256)
    np.testing.assert_allclose(mu_law_decode(torch.from_numpy(k)).numpy(), mu_law_decode(k))


def test_save_wav_decodes_to_linear(tmp_path):
    k = np.array([[0, 64, 128, 192, 255]])
    x = torch.from_numpy(2 * k / 255 - 1).float()[None]  # [1, 1, 5] on the data scale
    path = save_wav(x, tmp_path / "a" / "clip.wav", rate=8000)
    rate, pcm = wavfile.read(path)
    assert rate == 8000 and pcm.dtype == np.int16
    np.testing.assert_allclose(pcm / 32767, mu_law_decode(k[0]), atol=1 / 32767)
    two = save_wav(torch.cat([x, x]), tmp_path / "two.wav", rate=8000, gap=0.01)  # joined by 80 zeros
    assert wavfile.read(two)[1].shape == (5 + 80 + 5,)
    with pytest.raises(ValueError, match="finite"):
        save_wav(np.array([np.nan]), tmp_path / "bad.wav")


def test_sentences_are_seeded_and_distinct():
    a, b = speech_sentences(50), speech_sentences(50)
    assert a == b
    assert len({t for t, _ in a}) == 50
    assert len({" ".join(f) for _, f in a}) > 40  # voices, speeds and pitches vary
    assert speech_sentences(50, seed=1) != a


def test_missing_espeak_is_a_data_error(monkeypatch, tmp_path):
    monkeypatch.setenv("GENMODELS_CACHE", str(tmp_path))
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="apt-get install espeak-ng"):
        load_dataset("speech")


# ----------------------------------------------------------------------------- the corpus (needs espeak-ng)


@needs_espeak
def test_corpus_shape_split_and_determinism():
    c = generate_speech(12)
    assert c.codes.dtype == np.uint8 and c.codes.shape[1:] == (1, SPEECH_WINDOW) and c.codes.shape[0] >= 12
    assert c.sentence.shape == (c.codes.shape[0],)
    assert set(np.unique(c.sentence)) == set(range(12))  # every sentence gives windows
    train_s, test_s = set(c.sentence[~c.test_mask]), set(c.sentence[c.test_mask])
    assert test_s and train_s and not train_s & test_s  # split by sentence: no sentence on both sides
    assert not {c.texts[i] for i in train_s} & {c.texts[i] for i in test_s}
    rms = np.sqrt((mu_law_decode(c.codes) ** 2).mean(axis=(1, 2)))
    assert rms.min() >= speech.MIN_RMS * 0.9  # windows carry speech, not silence
    assert len(np.unique(c.codes)) > 200  # the 256 levels are used
    again = generate_speech(12)
    assert np.array_equal(c.codes, again.codes) and np.array_equal(c.sentence, again.sentence)


@needs_espeak
def test_load_dataset_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GENMODELS_CACHE", str(tmp_path))
    monkeypatch.setattr(speech, "SPEECH_N_SENTENCES", 10)
    ds = load_dataset("speech")
    assert ds.spec.event_shape == (1, SPEECH_WINDOW) and ds.spec.n_bins == 256
    assert ds.spec.value_range == (-1.0, 1.0) and not ds.spec.is_image
    assert ds.n_train > 0 and ds.n_test > 0
    k = torch.round((ds.train.double() + 1) * 127.5)
    torch.testing.assert_close(ds.train.double(), 2 * k / 255 - 1)  # on the 256-level grid
    files = list((tmp_path / "data").glob("speech-*.npz"))
    assert len(files) == 1 and not list((tmp_path / "data").glob(".*tmp"))
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)  # the cache needs no espeak-ng
    cached = load_dataset("speech")
    assert torch.equal(cached.train, ds.train) and torch.equal(cached.test, ds.test)


@needs_espeak
def test_corrupt_cache_is_regenerated(monkeypatch, tmp_path):
    monkeypatch.setenv("GENMODELS_CACHE", str(tmp_path))
    first = speech_corpus(3)
    (path,) = (tmp_path / "data").glob("speech-*.npz")
    path.write_bytes(b"not an npz")
    again = speech_corpus(3)
    assert np.array_equal(first.codes, again.codes)
    assert path.stat().st_size > 100


@needs_espeak
@pytest.mark.slow
def test_full_speech_dataset():
    ds = load_dataset("speech")
    assert ds.spec.event_shape == (1, SPEECH_WINDOW)
    assert ds.n_train > 3000 and ds.n_test > 300
