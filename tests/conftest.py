"""Shared test set-up."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    """The tests use small tensors; on a shared 2-core CPU intra-op threads only add contention (measured:
    elementwise ops up to 100× slower). Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
