"""Settings shared by every test."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run torch on one thread: the test models are tiny, and on a busy 2-core machine
    two threads competing made their steps 10-30x slower (measured on the CI machine kind)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
