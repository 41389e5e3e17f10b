"""Shared fixtures of the metrics tests: one small feature classifier for ``digits``, trained once."""

import pytest
import torch

from genmodels.metrics import features


@pytest.fixture(scope="session")
def digits_cache(tmp_path_factory):
    """A cache folder holding the trained ``digits`` classifier and its split features.

    Session-scoped (trained once, about 2 s on one thread); tests point ``$GENMODELS_CACHE`` at it with
    ``monkeypatch.setenv``.
    """
    root = tmp_path_factory.mktemp("genmodels-cache")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(features.CACHE_ENV, str(root))
        fe = features.feature_extractor("digits")
        features.dataset_features("digits", fe)
    torch.set_num_threads(threads)
    return root


@pytest.fixture
def digits_env(digits_cache, monkeypatch):
    """``$GENMODELS_CACHE`` set to :func:`digits_cache` for one test."""
    monkeypatch.setenv(features.CACHE_ENV, str(digits_cache))
    return digits_cache
