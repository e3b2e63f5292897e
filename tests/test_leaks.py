"""10k-call loops: every DLPack capsule the bridge takes is released (numpy's deleter
drops the array reference it holds), on success and on error paths alike, and neither
Python-tracked nor process memory grows."""

import gc
import sys
import tracemalloc

import numpy as np
import pytest
import torch

import w4a16
from w4a16 import _C

CALLS = 10_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_no_leak_over_10k_calls(rng):
    w = rng.standard_normal((64, 256)).astype(np.float32)
    x = rng.standard_normal((2, 256)).astype(np.float32)
    qw = w4a16.quantize_nvfp4(w)
    weight = qw.c_weight()
    y = np.empty((2, 64), np.float32)
    bad_y = np.empty((2, 63), np.float32)
    x_t = torch.from_numpy(x).to(torch.bfloat16)
    y_t = torch.empty(2, 64, dtype=torch.bfloat16)
    q_t = w4a16.quantize_nvfp4(torch.from_numpy(w)).c_weight()

    def one_round():
        _C.gemm(x, weight, None, 1.0, y, None, -1, None)
        _C.gemm(x_t, q_t, None, 1.0, y_t, None, -1, None)
        try:
            _C.gemm(x, weight, None, 1.0, bad_y, None, -1, None)  # error path after every import
        except ValueError:
            pass

    for _ in range(200):  # warm up allocator pools and caches
        one_round()
    gc.collect()
    refs = [sys.getrefcount(a) for a in (x, y, bad_y, w, qw.codes, x_t, y_t)]
    tracemalloc.start()
    rss_before = rss_bytes()
    snapshot_before = tracemalloc.take_snapshot()
    for _ in range(CALLS):
        one_round()
    gc.collect()
    growth = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(snapshot_before, "filename"))
    tracemalloc.stop()
    rss_growth = rss_bytes() - rss_before
    assert [sys.getrefcount(a) for a in (x, y, bad_y, w, qw.codes, x_t, y_t)] == refs
    # a leaked capsule per call would hold ~1 KB of Python objects: 30k calls -> ~30 MB
    assert growth < 256 * 1024, growth
    assert rss_growth < 16 * 2**20, rss_growth


def test_quantizer_outputs_are_released(rng):
    w = rng.standard_normal((32, 64)).astype(np.float32)
    before = sys.getrefcount(w)
    for _ in range(CALLS // 10):
        w4a16.quantize_nvfp4(w)
        w4a16.pack_int4(w, 32, symmetric=False)
    gc.collect()
    assert sys.getrefcount(w) == before
