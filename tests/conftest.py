"""Shared fixtures: fresh random data per test (seed printed for reproduction) and the
GPU marker, which skips cleanly where no CUDA device is present."""

import numpy as np
import pytest

import w4a16


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() and w4a16.build_info()["cuda"]


HAS_CUDA = _cuda_available()


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA GPU and a CUDA build of w4a16")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip)


@pytest.fixture
def rng() -> np.random.Generator:
    seed = int(np.random.SeedSequence().entropy % (2**32))
    print(f"random seed: {seed}")
    return np.random.default_rng(seed)
