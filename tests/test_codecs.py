"""The scalar codecs of csrc/core/codecs.h against ml_dtypes, an independent oracle."""

import ml_dtypes
import numpy as np
import pytest

from w4a16 import _C


def run_codec(kind, src, dst_dtype):
    """src: an array, or an (array, dtype code) pair for raw 16-bit storage."""
    shape = src[0].shape if isinstance(src, tuple) else src.shape
    dst = np.empty(shape, dst_dtype)
    _C._codec(kind, src, dst)
    return dst


def same_floats(a, b):
    """Bitwise-equal floats, NaN equal to NaN."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(a[~np.isnan(a)].view(np.uint32),
                                                                        b[~np.isnan(b)].view(np.uint32))


def test_e2m1_decode_all_16_codes():
    codes = np.arange(16, dtype=np.uint8)
    expected = codes.view(ml_dtypes.float4_e2m1fn).astype(np.float32)
    assert same_floats(run_codec("e2m1_decode", codes, np.float32), expected)


def test_e2m1_encode_matches_ml_dtypes(rng):
    grid = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], np.float32)
    midpoints = (grid[1:] + grid[:-1]) / 2  # the ties: 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5
    values = np.concatenate([
        rng.normal(0, 3, 20000).astype(np.float32),
        midpoints, -midpoints, grid, -grid,
        np.nextafter(midpoints, np.float32(0)), np.nextafter(midpoints, np.float32(10)),
        np.array([6.5, 7, 100, 1e30, -1e30, -1e-30, 1e-30], np.float32),
    ])
    got = run_codec("e2m1_encode", values, np.uint8)
    expected = np.clip(values, -6, 6).astype(ml_dtypes.float4_e2m1fn).view(np.uint8) & 0xF
    assert np.array_equal(got, expected)


def test_e2m1_hand_worked_ties():
    # ties go to the even code: 0.25 -> 0, 0.75 -> 1.0, 1.25 -> 1.0, 1.75 -> 2.0, 2.5 -> 2, 3.5 -> 4, 5 -> 4
    values = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.2, 7.0, -7.0], np.float32)
    got = run_codec("e2m1_encode", values, np.uint8)
    assert got.tolist() == [0, 2, 2, 4, 4, 6, 6, 8, 7, 15]


def test_e4m3_decode_all_256_codes():
    codes = np.arange(256, dtype=np.uint8)
    expected = codes.view(ml_dtypes.float8_e4m3fn).astype(np.float32)
    assert same_floats(run_codec("e4m3_decode", codes, np.float32), expected)


def test_e4m3_encode_matches_ml_dtypes_with_saturation(rng):
    representable = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float32)
    finite = np.unique(np.abs(representable[np.isfinite(representable)]))
    ties = (finite[1:] + finite[:-1]) / 2
    values = np.concatenate([
        rng.normal(0, 50, 20000).astype(np.float32),
        np.exp2(rng.uniform(-14, 10, 20000)).astype(np.float32),
        finite, -finite, ties, -ties,
        np.array([448, 449, 464, 500, 1e6, 3e38, -1e6, 2.0**-9, 2.0**-10, 2.0**-11 * 3, 1e-30], np.float32),
    ])
    got = run_codec("e4m3_encode", values, np.uint8)
    expected = np.clip(values, -448, 448).astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
    assert np.array_equal(got, expected)


def test_e8m0_decode_all_256_codes():
    codes = np.arange(256, dtype=np.uint8)
    expected = codes.view(ml_dtypes.float8_e8m0fnu).astype(np.float32)
    assert same_floats(run_codec("e8m0_decode", codes, np.float32), expected)


@pytest.mark.parametrize("kind", ["f16", "bf16"])
def test_half_conversions_match_numpy_and_ml_dtypes(rng, kind):
    values = np.concatenate([
        rng.normal(0, 1, 10000), np.exp2(rng.uniform(-30, 20, 10000)) * rng.choice([-1, 1], 10000),
        np.array([65504, 65519, 65520, 1e10, -1e10, 6e-8, 3e-8, 2.9e-8, 0.0, -0.0, np.inf, -np.inf]),
    ]).astype(np.float32)
    target = np.float16 if kind == "f16" else ml_dtypes.bfloat16
    code = _C.DTYPE_FLOAT16 if kind == "f16" else _C.DTYPE_BFLOAT16
    with np.errstate(over="ignore"):
        expected = values.astype(target).view(np.uint16)
    encoded = np.empty(values.shape, np.uint16)
    _C._codec(f"{kind}_encode", values, (encoded, code))
    assert np.array_equal(encoded, expected)

    every_code = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    decoded = run_codec(f"{kind}_decode", (every_code, code), np.float32)
    assert same_floats(decoded, every_code.view(target).astype(np.float32))
