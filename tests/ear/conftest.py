"""The ear's tests train small models."""

import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Train with one thread: on a shared 2-core machine a waiting OpenMP thread spins, and two
    threads make these small models several times slower, not faster."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
