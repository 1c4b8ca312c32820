"""Shared pytest fixtures."""
import pytest
import torch


@pytest.fixture(scope='module')
def one_thread():
    "One intra-op thread for a test module: tiny models run ~10x faster than with two threads on a busy 2-core machine."
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
