"""The feature classifier: trains fast and accurately on digits, is cached under its version, fails clearly."""

import json
import time

import pytest
import torch

from genmodels.data import load_dataset
from genmodels.metrics import features
from genmodels.metrics.features import (
    CLASSIFIER_VERSION,
    ClassifierConfig,
    ConvClassifier,
    FeatureExtractor,
    dataset_features,
    feature_extractor,
)


def _files(folder, pattern):
    return sorted((folder / "metrics").glob(pattern))


def test_digits_classifier_trains_in_seconds_and_is_accurate(tmp_path, monkeypatch):
    monkeypatch.setenv(features.CACHE_ENV, str(tmp_path))
    start = time.perf_counter()
    fe = feature_extractor("digits")
    assert time.perf_counter() - start < 30  # about 2 s on one thread; loose for a loaded machine
    assert isinstance(fe, FeatureExtractor)
    assert fe.test_accuracy > 0.9
    assert fe.version == CLASSIFIER_VERSION and fe.num_features == 128 and fe.dataset == "digits"
    (weights,), (meta,) = _files(tmp_path, "*.safetensors"), _files(tmp_path, "*.json")
    assert f"-v{CLASSIFIER_VERSION}-" in weights.name and weights.name.startswith("digits-classifier")
    assert meta.stem == weights.stem
    info = json.loads(meta.read_text())
    ds = load_dataset("digits")
    assert info["version"] == CLASSIFIER_VERSION and info["dataset"] == "digits"
    assert info["data_sha256"] == features.data_fingerprint(ds) and info["data_sha256"][:12] in weights.name
    assert info["test_accuracy"] == pytest.approx(fe.test_accuracy) and info["train_seconds"] > 0


def test_second_call_loads_the_cache_without_training(digits_env, monkeypatch):
    weights = _files(digits_env, "digits-classifier-*.safetensors")[0]
    mtime = weights.stat().st_mtime_ns
    first = feature_extractor("digits")

    def no_training(*args, **kwargs):
        raise AssertionError("the classifier was trained again")

    monkeypatch.setattr(features, "train_classifier", no_training)
    second = feature_extractor("digits", train_if_missing=False)
    assert weights.stat().st_mtime_ns == mtime
    x = load_dataset("digits").test[:50]
    torch.testing.assert_close(first(x), second(x), rtol=0, atol=0)
    assert second.test_accuracy == first.test_accuracy


def test_a_new_version_never_reads_the_old_cache(digits_env, monkeypatch):
    monkeypatch.setattr(features, "CLASSIFIER_VERSION", "999")
    with pytest.raises(FileNotFoundError, match="train_if_missing"):
        feature_extractor("digits", train_if_missing=False)


def test_other_data_gets_its_own_cache_entry(digits_env):
    ds = load_dataset("digits")
    other = type(ds)(ds.spec, ds.train.flip(-1), ds.test, ds.train_labels, ds.test_labels)  # mirrored digits
    with pytest.raises(FileNotFoundError):
        feature_extractor(other, train_if_missing=False)


def test_features_shape_eval_mode_and_errors(digits_env):
    fe = feature_extractor("digits")
    x = load_dataset("digits").test[:7]
    fe.train()
    assert not fe.training and not fe.classifier.training
    f = fe(x)
    assert f.shape == (7, 128) and f.dtype == torch.float32
    torch.testing.assert_close(fe(x[:3]), f[:3])  # a feature does not depend on its batch
    torch.testing.assert_close(fe.extract(x, batch_size=2), f.detach())
    assert fe.classifier(x).shape == (7, 10)
    with pytest.raises(ValueError, match=r"\[N, 1, 8, 8\]"):
        fe(torch.zeros(2, 1, 28, 28))


def test_dataset_features_are_cached(digits_env, monkeypatch):
    fe = feature_extractor("digits")
    train, test = dataset_features("digits", fe)
    ds = load_dataset("digits")
    assert train.shape == (ds.n_train, 128) and test.shape == (ds.n_test, 128)
    torch.testing.assert_close(test[:20], fe(ds.test[:20]).detach())
    monkeypatch.setattr(FeatureExtractor, "extract", lambda *a, **k: pytest.fail("features recomputed"))
    train2, _ = dataset_features("digits", fe)
    torch.testing.assert_close(train, train2, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["moons", "8gaussians"])
def test_vector_data_has_no_classifier(name, tmp_path, monkeypatch):
    monkeypatch.setenv(features.CACHE_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="digits, fashion-mnist, mnist5k") as e:
        feature_extractor(name)
    assert "inception_weights" in str(e.value) and "genmodels[inception]" in str(e.value)


def test_other_image_data_has_no_classifier(tmp_path, monkeypatch):
    monkeypatch.setenv(features.CACHE_ENV, str(tmp_path))
    ds = load_dataset("digits")
    spec = type(ds.spec)(name="my-images", event_shape=(1, 8, 8), n_bins=17)
    custom = type(ds)(spec, ds.train, ds.test, ds.train_labels, ds.test_labels)
    with pytest.raises(ValueError, match=r"my-images.*inception_weights"):
        feature_extractor(custom)


def test_random_shift_moves_content_within_bounds():
    x = torch.full((64, 1, 8, 8), -1.0)
    x[:, 0, 4, 4] = 1.0  # one bright pixel
    y = features._random_shift(x, 2, -1.0, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert ((y == 1.0).flatten(1).sum(1) == 1).all()  # the pixel is kept, nothing else appears
    rows, cols = (y[:, 0] == 1.0).nonzero()[:, 1], (y[:, 0] == 1.0).nonzero()[:, 2]
    assert ((rows - 4).abs() <= 2).all() and ((cols - 4).abs() <= 2).all()
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 10  # shifts differ between images


def test_classifier_shapes_for_28x28():
    net = ConvClassifier((1, 28, 28), 10, ClassifierConfig())
    net.eval()
    x = torch.zeros(3, 1, 28, 28)
    assert net.features(x).shape == (3, 128) and net(x).shape == (3, 10)


@pytest.mark.slow
@pytest.mark.parametrize("name, accuracy", [("mnist5k", 0.97), ("fashion-mnist", 0.90)])
def test_28x28_classifiers(name, accuracy, tmp_path, monkeypatch):
    """Trains from scratch (about 30 s and 3 min on one thread)."""
    monkeypatch.setenv(features.CACHE_ENV, str(tmp_path))
    fe = feature_extractor(name)
    assert fe.test_accuracy > accuracy
    assert fe.train_seconds < 400
