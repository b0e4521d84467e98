"""Test-wide settings."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # The tests run small tensors: a second intra-op thread buys nothing there, and on a busy
    # 2-core machine its spin-waits made some tests 10-50x slower. One thread also makes float
    # reductions the same on every machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
