import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # 2-core machines: tiny CPU networks are fastest (and reproducible) on one thread
    torch.set_num_threads(1)
    yield
