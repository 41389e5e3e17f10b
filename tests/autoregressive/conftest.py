"""Shared by the autoregressive tests: every test runs on one thread (the tiny brute-force models are fastest so, and
the machine's other core is often busy)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """torch on one thread for the test, restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
