"""Quantizers against the independent oracle (tests/oracle.py), edge cases worked by hand,
numpy/torch agreement, dequantization error bounds, and the state_dict round trip."""

import ml_dtypes
import numpy as np
import pytest
import torch

import w4a16
import oracle


def as_bytes(a) -> np.ndarray:
    """Raw bytes of a numpy or torch array as uint8 numpy."""
    if isinstance(a, torch.Tensor):
        a = a.contiguous().view(torch.uint8).numpy() if a.element_size() == 1 else a.contiguous().numpy()
    a = np.asarray(a)
    return a.view(np.uint8) if a.dtype.itemsize == 1 else a


def gaussian(rng, n, k, dtype=np.float32):
    return (rng.standard_normal((n, k)) * rng.uniform(0.01, 2.0)).astype(dtype)


# ---- NVFP4 -------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 16), (7, 48), (64, 256), (33, 1024)])
def test_nvfp4_matches_oracle_on_random_data(rng, shape):
    w = gaussian(rng, *shape)
    qw = w4a16.quantize_nvfp4(w)
    codes, scales, gs = oracle.quantize_nvfp4(w)
    assert np.array_equal(qw.codes, codes)
    assert np.array_equal(as_bytes(qw.scales), scales)
    assert np.float32(qw.global_scale) == gs
    assert qw.scales.dtype == ml_dtypes.float8_e4m3fn


def test_nvfp4_hand_worked_block():
    # global scale 1 and block amax 6 give block scale e4m3(6 / 6) = 1.0 exactly (code 0x38),
    # so the codes are the E2M1 rounding of the values themselves
    block = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0,
                      -0.1, -0.0, 0.5, -6.0, 0.26, 2.9, -4.4, 1.0], np.float32)
    qw = w4a16.quantize_nvfp4(block[None, :], global_scale=1.0)
    expected_nibbles = [0, 2, 2, 4, 4, 6, 6, 7, 8, 8, 1, 15, 1, 5, 14, 2]
    expected = [expected_nibbles[2 * j] | expected_nibbles[2 * j + 1] << 4 for j in range(8)]
    assert qw.codes[0].tolist() == expected
    assert as_bytes(qw.scales)[0].tolist() == [0x38]


def test_nvfp4_edge_cases_match_oracle(rng):
    k = 16 * 8
    w = gaussian(rng, 6, k)
    w[0, :16] = 0.0                                   # all-zero block: scale 1.0, codes 0
    w[0, 16:32] = -0.0                                # negative zeros too
    w[1, :16] = 1e-30 * rng.standard_normal(16)       # tiny block: scale clamped at 2^-9
    w[2, :16] = np.float32(5.0) * np.sign(rng.standard_normal(16))
    w[3, 16:32] = np.linspace(-1, 1, 16)              # values on the grid and between
    w[4] = np.abs(w[4])                               # all positive row
    w[5, :16] = -np.abs(w[5, :16])                    # all negative block
    qw = w4a16.quantize_nvfp4(w)
    codes, scales, gs = oracle.quantize_nvfp4(w)
    assert np.array_equal(qw.codes, codes) and np.array_equal(as_bytes(qw.scales), scales)
    assert as_bytes(qw.scales)[0, 0] == 0x38 and qw.codes[0, :8].tolist() == [0] * 8


def test_nvfp4_saturation_at_448_and_6(rng):
    # a global scale far below amax / 2688 drives block scales past 448: they saturate at
    # 448 (0x7E) and the codes saturate at +-6 (code 7 / 15)
    w = gaussian(rng, 4, 64)
    qw = w4a16.quantize_nvfp4(w, global_scale=1e-6)
    codes, scales, _ = oracle.quantize_nvfp4(w, global_scale=1e-6)
    assert np.array_equal(qw.codes, codes) and np.array_equal(as_bytes(qw.scales), scales)
    assert (as_bytes(qw.scales) == 0x7E).all()
    nibbles = oracle.unpack(qw.codes)
    assert set(np.unique(nibbles[np.abs(w) / (448 * 1e-6) > 5])) <= {7, 15}


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_nvfp4_numpy_and_torch_give_identical_bytes(rng, dtype):
    w32 = gaussian(rng, 40, 160)
    t = torch.from_numpy(w32).to(getattr(torch, dtype))
    n = t.float().numpy().astype(np.float16) if dtype == "float16" else (
        t.float().numpy().astype(ml_dtypes.bfloat16) if dtype == "bfloat16" else t.numpy())
    q_np, q_t = w4a16.quantize_nvfp4(n), w4a16.quantize_nvfp4(t)
    assert isinstance(q_t.codes, torch.Tensor) and q_t.scales.dtype == torch.float8_e4m3fn
    assert isinstance(q_np.codes, np.ndarray)
    assert np.array_equal(as_bytes(q_np.codes), as_bytes(q_t.codes))
    assert np.array_equal(as_bytes(q_np.scales), as_bytes(q_t.scales))
    codes, scales, gs = oracle.quantize_nvfp4(t.float().numpy())
    assert np.array_equal(as_bytes(q_t.codes), codes) and np.array_equal(as_bytes(q_t.scales), scales)
    assert float(q_t.global_scale) == float(gs)


# ---- MXFP4 -------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 32), (5, 96), (64, 512)])
def test_mxfp4_matches_oracle(rng, shape):
    w = gaussian(rng, *shape)
    w[0, :32] = 0.0
    if shape[1] > 32:
        w[0, 32:64] = rng.standard_normal(32) * 1e-20
    qw = w4a16.quantize_mxfp4(w)
    codes, scales = oracle.quantize_mxfp4(w)
    assert np.array_equal(qw.codes, codes) and np.array_equal(qw.scales, scales)


def test_mxfp4_hand_worked_block():
    # amax 6 -> floor(log2 6) - 2 = 0 -> scale 2^0 (byte 127); 7.9 in the block would need
    # the same exponent and saturate at 6
    block = np.zeros(32, np.float32)
    block[:4] = [6.0, 7.9, -1.25, 0.75]
    qw = w4a16.quantize_mxfp4(block[None, :])
    assert qw.scales[0].tolist() == [127]
    assert qw.codes[0, :2].tolist() == [7 | 7 << 4, 10 | 2 << 4]


# ---- INT4 --------------------------------------------------------------------------------

@pytest.mark.parametrize("group", [32, 64, 128, -1])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("scale_dtype", ["float16", "bfloat16"])
def test_int4_matches_oracle(rng, group, symmetric, scale_dtype):
    w = gaussian(rng, 9, 256)
    w[0, :32] = 0.0
    w[1, :64] = np.abs(w[1, :64]) + 0.5     # all-positive group: zero point 0
    w[2, :64] = -np.abs(w[2, :64]) - 0.5    # all-negative group: zero point 15
    qw = w4a16.pack_int4(w, group, symmetric=symmetric, scale_dtype=scale_dtype)
    g = 256 if group == -1 else group
    codes, scales, zeros = oracle.pack_int4(w, g, symmetric, scale_dtype)
    assert qw.group_size == g
    assert np.array_equal(qw.codes, codes)
    assert np.array_equal(np.asarray(qw.scales).view(np.uint16), scales.view(np.uint16))
    if symmetric:
        assert qw.zero_points is None
    else:
        assert np.array_equal(qw.zero_points, zeros)


def test_int4_hand_worked_group():
    # symmetric, amax 7 -> s = 1 exactly: codes are rint(x), two's complement nibbles
    g = np.zeros(32, np.float32)
    g[:6] = [7.0, -7.0, 2.5, -2.5, 3.5, 0.4]
    qw = w4a16.pack_int4(g[None, :], 32, symmetric=True)
    assert float(qw.scales[0, 0]) == 1.0
    assert qw.codes[0, :3].tolist() == [7 | (-7 & 0xF) << 4, 2 | (-2 & 0xF) << 4, 4 | 0 << 4]


# ---- error bounds ------------------------------------------------------------------------

def test_dequantize_error_bounds(rng):
    w = gaussian(rng, 64, 512)
    norm = np.linalg.norm(w)
    # NVFP4: per element |err| <= one grid step below 6 (1 * scale), plus saturation
    qw = w4a16.quantize_nvfp4(w)
    d = qw.dequantize()
    assert np.array_equal(d, oracle.dequantize_nvfp4(qw.codes, as_bytes(qw.scales), float(qw.global_scale)))
    blocks = w.reshape(64, -1, 16)
    denom = (as_bytes(qw.scales).view(ml_dtypes.float8_e4m3fn).astype(np.float32) * float(qw.global_scale))
    amax = np.abs(blocks).max(axis=2)
    bound = denom + np.maximum(0, amax - 6 * denom)
    assert (np.abs(d.reshape(64, -1, 16) - blocks) <= bound[:, :, None] * (1 + 1e-6)).all()
    assert np.linalg.norm(d - w) / norm < 0.11
    # MXFP4: scale 2^e with amax / 2^e in [4, 8): saturation at 6 costs at most 2 * 2^e
    qm = w4a16.quantize_mxfp4(w)
    dm = qm.dequantize()
    assert np.array_equal(dm, oracle.dequantize_mxfp4(qm.codes, qm.scales))
    scale = np.exp2(qm.scales.astype(np.float64) - 127)
    assert (np.abs(dm - w).reshape(64, -1, 32) <= 2 * scale[:, :, None]).all()
    assert np.linalg.norm(dm - w) / norm < 0.14
    # INT4 symmetric: half a step; asymmetric: one step (zero-point rounding can clip)
    for symmetric, steps in ((True, 0.5), (False, 1.0)):
        qi = w4a16.pack_int4(w, 64, symmetric=symmetric)
        di = qi.dequantize()
        assert np.array_equal(di, oracle.dequantize_int4(qi.codes, qi.scales, qi.zero_points, 64))
        s = np.repeat(qi.scales.astype(np.float32), 64, axis=1)
        assert (np.abs(di - w) <= steps * s * (1 + 1e-3)).all()
        assert np.linalg.norm(di - w) / norm < 0.12


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_dequantize_to_16_bit(rng, dtype):
    qw = w4a16.quantize_nvfp4(torch.from_numpy(gaussian(rng, 8, 64)))
    d16 = qw.dequantize(dtype)
    assert d16.dtype == getattr(torch, dtype)
    assert torch.equal(d16, qw.dequantize().to(getattr(torch, dtype)))


# ---- container ---------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    w4a16.quantize_nvfp4, w4a16.quantize_mxfp4,
    lambda w: w4a16.pack_int4(w, 32), lambda w: w4a16.pack_int4(w, 128, symmetric=False),
])
@pytest.mark.parametrize("framework", ["numpy", "torch"])
def test_state_dict_round_trip(rng, make, framework):
    w = gaussian(rng, 12, 256)
    qw = make(torch.from_numpy(w) if framework == "torch" else w)
    state = qw.state_dict()
    assert state["weight"].dtype == (torch.uint8 if framework == "torch" else np.uint8)
    assert tuple(state["weight"].shape) == (12, 128)
    if qw.format == "nvfp4":
        assert tuple(state["weight_scale_2"].shape) == ()
    back = w4a16.QuantizedWeight.from_state_dict(state)
    assert (back.format, back.shape, back.group_size, back.symmetric) == \
        (qw.format, qw.shape, qw.group_size, qw.symmetric)
    assert np.array_equal(np.asarray(back.dequantize()), np.asarray(qw.dequantize()))


def test_nbytes_counts_every_array(rng):
    qw = w4a16.quantize_nvfp4(gaussian(rng, 32, 64))
    assert qw.nbytes == 32 * 32 + 32 * 4 + 4
    qi = w4a16.pack_int4(gaussian(rng, 32, 64), 32, symmetric=False)
    assert qi.nbytes == 32 * 32 + 32 * 2 * 2 + 32 * 2
