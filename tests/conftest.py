"""Shared test set-up."""

import pytest
import torch

from genmodels import threads


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """The tests use small tensors; on a shared 2-core CPU intra-op threads only add contention (measured:
    elementwise ops up to 100× slower). Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _no_thread_tuner():
    """A command-line call without --threads starts the process's thread tuner (genmodels.threads); it must not
    change the thread count of the tests that follow."""
    yield
    threads._TUNER = None
