"""CPU gemm against a float64 matmul of the dequantized weights, and against torch's own
16-bit matmul on the same weights (DESIGN.md: within twice torch's error)."""

import numpy as np
import pytest
import torch

import w4a16

MAKERS = {
    "nvfp4": w4a16.quantize_nvfp4,
    "mxfp4": w4a16.quantize_mxfp4,
    "int4-g128": lambda w: w4a16.pack_int4(w, 128),
    "int4-g32-asym": lambda w: w4a16.pack_int4(w, 32, symmetric=False),
    "int4-channel": lambda w: w4a16.pack_int4(w, -1),
}


def reference(x64, qw, bias=None, alpha=1.0):
    y = alpha * (x64 @ np.asarray(qw.dequantize(), np.float64).T)
    return y if bias is None else y + np.asarray(bias, np.float64)


def rel_err(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(b)


@pytest.mark.parametrize("fmt", list(MAKERS))
@pytest.mark.parametrize("m,n,k", [(1, 64, 256), (3, 37, 128), (16, 129, 512), (65, 300, 384)])
def test_gemm_float32_matches_float64(rng, fmt, m, n, k):
    w = rng.standard_normal((n, k)).astype(np.float32) * 0.05
    x = rng.standard_normal((m, k)).astype(np.float32)
    qw = MAKERS[fmt](w)
    y = w4a16.gemm(x, qw)
    assert y.dtype == np.float32 and y.shape == (m, n)
    assert rel_err(y, reference(x.astype(np.float64), qw)) < 1e-5


BLOCK = {"nvfp4": 16, "mxfp4": 32, "int4-g128": 128, "int4-g32-asym": 32, "int4-channel": 2}


def weight_for(rng, fmt, k, layout):
    if k % BLOCK[fmt]:
        pytest.skip(f"K = {k} is not a multiple of {fmt}'s block")
    qw = MAKERS[fmt](rng.standard_normal((40, k)).astype(np.float32))
    return w4a16.prepack(qw) if layout == "prepacked" else qw


@pytest.mark.parametrize("fmt", list(MAKERS))
@pytest.mark.parametrize("k", [80, 128, 2048])  # K = 80: nvfp4 rows end in a 2-word chunk
@pytest.mark.parametrize("layout", ["canonical", "prepacked"])
def test_gemm_decodes_the_weight_as_the_reference_does(rng, fmt, k, layout):
    """x = the identity, so y^T is W as the gemm decoded it: bit for bit the reference
    dequantizer's (a plain loop over codes), in both layouts, though the gemm decodes 8 codes
    at a time by a vector permute and reads prepacked codes in place (M = K: the plan for
    large M, which decodes W into panels in slices of K)."""
    qw = weight_for(rng, fmt, k, layout)
    y = w4a16.gemm(np.eye(k, dtype=np.float32), qw)
    assert np.array_equal(y.T, np.asarray(qw.dequantize()))


@pytest.mark.parametrize("fmt", list(MAKERS))
@pytest.mark.parametrize("k", [40, 80, 2048])  # K = 40: per-channel INT4 rows end in 8 elements past the last 16
@pytest.mark.parametrize("layout", ["canonical", "prepacked"])
@pytest.mark.parametrize("m", [1, 5, 12])
def test_small_m_gemm_decodes_the_weight_as_the_reference_does(rng, fmt, k, layout, m):
    """The small-M plan (M <= 12: decoding fused with the multiply): x = m rows of the
    identity at a time, so every column of W comes back, bit for bit the reference's."""
    qw = weight_for(rng, fmt, k, layout)
    eye = np.eye(k, dtype=np.float32)
    columns = np.concatenate([w4a16.gemm(eye[start:start + m], qw) for start in range(0, k, m)])
    assert np.array_equal(columns.T, np.asarray(qw.dequantize()))


@pytest.mark.parametrize("fmt", list(MAKERS))
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m", [1, 5, 17, 64])
def test_gemm_16_bit_within_twice_torch_error(rng, fmt, dtype, m):
    n, k = 96, 512
    w = torch.from_numpy(rng.standard_normal((n, k)).astype(np.float32) * 0.05).to(dtype)
    x = torch.from_numpy(rng.standard_normal((m, k)).astype(np.float32)).to(dtype)
    bias = torch.from_numpy(rng.standard_normal(n).astype(np.float32)).to(dtype)
    qw = MAKERS[fmt](w)
    y = w4a16.gemm(x, qw, bias=bias, alpha=0.75)
    assert y.dtype == dtype and y.shape == (m, n)
    ref = reference(x.double().numpy(), qw, bias.double().numpy(), 0.75)
    w_deq = qw.dequantize(str(dtype).removeprefix("torch."))
    torch_y = torch.nn.functional.linear(x, w_deq * 0.75, bias)  # torch's own 16-bit path
    ours, theirs = rel_err(y.double().numpy(), ref), rel_err(torch_y.double().numpy(), ref)
    assert ours <= 2 * theirs + 1e-6, (ours, theirs)
    assert ours < (4e-3 if dtype == torch.bfloat16 else 5e-4)


def test_gemm_leading_dimensions_bias_alpha_and_out(rng):
    w = rng.standard_normal((48, 64)).astype(np.float32)
    x = rng.standard_normal((2, 3, 5, 64)).astype(np.float32)
    bias = rng.standard_normal(48).astype(np.float32)
    qw = w4a16.quantize_nvfp4(w)
    out = np.full((2, 3, 5, 48), np.nan, np.float32)
    y = w4a16.gemm(x, qw, bias=bias, alpha=-2.0, out=out)
    assert y is out and np.isfinite(out).all()
    ref = reference(x.reshape(-1, 64).astype(np.float64), qw, bias, -2.0).reshape(2, 3, 5, 48)
    assert rel_err(out, ref) < 1e-5


def test_gemm_empty_batch(rng):
    qw = w4a16.quantize_nvfp4(rng.standard_normal((8, 32)).astype(np.float32))
    y = w4a16.gemm(np.zeros((0, 32), np.float32), qw)
    assert y.shape == (0, 8)


@pytest.mark.parametrize("m", [9, 40])  # both plans
def test_gemm_threads_agree(rng, monkeypatch, m):
    # the N split across threads must not change any output (each output has one writer)
    w = rng.standard_normal((1000, 256)).astype(np.float32)
    x = rng.standard_normal((m, 256)).astype(np.float32)
    qw = w4a16.pack_int4(w, 64)
    monkeypatch.setenv("W4A16_NUM_THREADS", "1")
    single = w4a16.gemm(x, qw)
    monkeypatch.setenv("W4A16_NUM_THREADS", "7")
    assert np.array_equal(w4a16.gemm(x, qw), single)
