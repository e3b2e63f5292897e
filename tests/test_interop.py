"""numpy <-> torch interop through DLPack: results come back in the caller's framework,
bytes agree across frameworks, and the DLPack protocol paths (versioned, legacy,
byte_offset, read-only) behave as the spec says."""

import numpy as np
import pytest
import torch

import w4a16
from w4a16 import _C


def test_results_follow_the_input_framework(rng):
    w = rng.standard_normal((16, 64)).astype(np.float32)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    q_np, q_t = w4a16.quantize_nvfp4(w), w4a16.quantize_nvfp4(torch.from_numpy(w))
    assert isinstance(w4a16.gemm(x, q_np), np.ndarray)
    assert isinstance(w4a16.gemm(torch.from_numpy(x), q_t), torch.Tensor)
    # a torch activation against a numpy weight (both on the CPU) comes back as torch
    y_mixed = w4a16.gemm(torch.from_numpy(x), q_np)
    assert isinstance(y_mixed, torch.Tensor)
    assert np.array_equal(y_mixed.numpy(), w4a16.gemm(x, q_np))


def test_bfloat16_numpy_and_torch_agree(rng):
    import ml_dtypes

    w = torch.randn(24, 128, dtype=torch.bfloat16, generator=torch.Generator().manual_seed(int(rng.integers(1 << 30))))
    x = torch.randn(5, 128, dtype=torch.bfloat16)
    q_t = w4a16.pack_int4(w, 64)
    q_np = w4a16.pack_int4(w.float().numpy().astype(ml_dtypes.bfloat16), 64)
    assert q_np.scales.dtype == ml_dtypes.bfloat16 and q_t.scales.dtype == torch.bfloat16
    y_t = w4a16.gemm(x, q_t)
    y_np = w4a16.gemm(x.float().numpy().astype(ml_dtypes.bfloat16), q_np)
    assert y_np.dtype == ml_dtypes.bfloat16
    assert np.array_equal(y_t.view(torch.int16).numpy(), y_np.view(np.int16))


class LegacyProducer:
    """A producer from before DLPack 1.0: __dlpack__ takes no max_version."""

    def __init__(self, array):
        self.array = array

    def __dlpack__(self, stream=None):
        return self.array.__dlpack__()  # numpy's legacy capsule

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


def test_legacy_capsules_and_byte_offsets(rng):
    buffer = rng.standard_normal(8 * 64 + 5).astype(np.float32)
    w = buffer[5:].reshape(8, 64)  # starts 20 bytes into its buffer
    codes = np.empty((8, 32), np.uint8)
    scales = np.empty((8, 4), np.uint8)
    gs = np.empty(1, np.float32)
    _C.quantize_nvfp4(LegacyProducer(w), codes, scales, gs, None, None)
    expected = w4a16.quantize_nvfp4(np.ascontiguousarray(w))
    assert np.array_equal(codes, expected.codes)
    assert np.array_equal(scales, expected.scales.view(np.uint8))


def test_torch_slices_with_storage_offset(rng):
    base = torch.from_numpy(rng.standard_normal((10, 64)).astype(np.float32))
    w = base[2:6]  # contiguous, storage offset 128 elements
    q = w4a16.quantize_nvfp4(w)
    assert torch.equal(q.codes, w4a16.quantize_nvfp4(w.clone()).codes)


def test_non_dlpack_object_is_a_type_error():
    with pytest.raises(TypeError, match="x: expected an array"):
        _C.gemm(object(), (0, 16, None, None, None, None, 0), None, 1.0, None, None, -1, None)
