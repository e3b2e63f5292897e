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


def test_e2m1_division_free_magnitude_equals_the_encoder(rng):
    """w4a16_e2m1_magnitude_biased (the GPU quantizer's branch-free rounding) against
    ml_dtypes on [0, 7): a dense run of floats around every grid point and midpoint, plus
    random values. (Every float in [0, 7) was also checked once, in C: no mismatch.)"""
    grid = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], np.float32)
    anchors = np.concatenate([grid, (grid[1:] + grid[:-1]) / 2, np.float32([7.0])])
    bits = anchors.view(np.int32)[:, None] + np.arange(-3000, 3001, dtype=np.int32)[None, :]
    values = np.concatenate([bits.ravel().view(np.float32), rng.uniform(0, 7, 200000).astype(np.float32)])
    values = values[(values >= 0) & (values < 7)]
    got = run_codec("e2m1_magnitude_biased", values, np.float32)  # the float 2^23 + code
    expected = values.astype(ml_dtypes.float4_e2m1fn).view(np.uint8) & 0x7
    assert np.array_equal(got - 2.0**23, expected)


def quotients_next_to_midpoints(rng, count):
    """float32 pairs (x, d) whose quotient lies within about 2^-49 (relative) of a
    midpoint between two floats: the hardest cases for rounding a quotient. With 24-bit
    integers X, D (D odd) and X * 2^k = (2m + 1) D +- 1, X / D is (2m + 1) / 2^k off by
    1 / (D 2^k), and (2m + 1) / 2^k with 2m + 1 of 25 bits is such a midpoint."""
    xs, ds = [], []
    while len(xs) < count:
        big_d = int(rng.integers(2**23, 2**24)) | 1
        k, sign = int(rng.integers(24, 26)), int(rng.choice([-1, 1]))
        big_x = (sign * pow(2**k, -1, big_d)) % big_d  # X 2^k = sign (mod D)
        while big_x < 2**23:
            big_x += big_d
        odd = (big_x * 2**k - sign) // big_d
        if big_x < 2**24 and odd % 2 == 1 and 2**24 <= odd < 2**25:
            scale = int(rng.integers(-20, 20))
            xs.append(np.ldexp(np.float32(big_x), scale - 23))
            ds.append(np.ldexp(np.float32(big_d), -23))
    return np.array(xs, np.float32), np.array(ds, np.float32)


def test_division_through_the_reciprocal_is_correctly_rounded(rng):
    """w4a16_div_by_reciprocal (x / d from y = RN(1/d) and its remainder) against the
    quotient rounded from float64 (correct: float32 quotients are never within 2^-53 of a
    float32 midpoint without being on it): random operands, mantissas of d near all ones,
    x = t * d for E2M1 midpoints t with neighbours, and quotients next to midpoints."""
    n = 400000
    x = (rng.uniform(1, 2, n) * np.exp2(rng.integers(-30, 30, n))).astype(np.float32)
    d = (rng.uniform(1, 2, n) * np.exp2(rng.integers(-60, 60, n))).astype(np.float32)
    d[: n // 4] = (d[: n // 4].view(np.uint32) | 0x7FFF00).view(np.float32)
    t = rng.choice(np.float32([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]), n // 4)
    x[n // 4 : n // 2] = (t * d[n // 4 : n // 2]).astype(np.float32)
    x[n // 4 : n // 2] = (x[n // 4 : n // 2].view(np.int32) + rng.integers(-2, 3, n // 4).astype(np.int32)).view(np.float32)
    hard_x, hard_d = quotients_next_to_midpoints(rng, 20000)
    x, d = np.concatenate([x, hard_x]), np.concatenate([d, hard_d])
    got = np.empty(len(x), np.float32)
    _C._codec("div_by_reciprocal", np.stack([x, d], axis=1).ravel(), got)
    expected = (x.astype(np.float64) / d.astype(np.float64)).astype(np.float32)
    assert same_floats(got, expected)


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
