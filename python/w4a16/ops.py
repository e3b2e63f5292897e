"""gemm: y = alpha * x @ dequant(W)^T + bias on any DLPack arrays."""

from __future__ import annotations

import math

from . import _C
from ._arrays import (
    FLOAT_DTYPES,
    Array,
    check_input,
    cuda_stream,
    device_of,
    dtype_name,
    empty_like_framework,
    for_c,
    framework_of,
    shape_of,
    to_framework_of,
)
from .quantize import QuantizedWeight, _check_weight


def gemm(x: Array, qw: QuantizedWeight, bias: Array | None = None, alpha: float = 1.0,
         out: Array | None = None) -> Array:
    """y = alpha * x @ dequant(qw)^T + bias, accumulated in fp32.

    Args:
        x: [..., K] float16 or bfloat16 (float32 too on the CPU), C-contiguous.
        qw: the QuantizedWeight of W [N, K], on x's device.
        bias: optional [N], x's dtype.
        alpha: a finite scale applied before the bias.
        out: optional [..., N] array of x's dtype and framework to write into.
    Returns:
        y [..., N] of x's dtype, in x's framework (``out`` itself when given).
    """
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw: expected a QuantizedWeight, got {type(qw).__name__}")
    _check_weight(qw)
    check_input(x, "x", FLOAT_DTYPES)
    x_shape = shape_of(x)
    n, k = qw.shape
    if len(x_shape) < 1 or x_shape[-1] != k:
        raise ValueError(f"x: expected shape [..., {k}] to match the weight's K, got {list(x_shape)}")
    alpha = float(alpha)
    if not math.isfinite(alpha):
        raise ValueError(f"alpha: must be finite, got {alpha}")
    if device_of(x) != device_of(qw.codes):
        raise ValueError(f"x: is on device {device_of(x)} but the weight is on {device_of(qw.codes)} "
                         "(DLPack (type, id)); move one of them")
    if bias is not None:
        check_input(bias, "bias", (dtype_name(x),), ndim=1)
    m = math.prod(x_shape[:-1])
    out_shape = x_shape[:-1] + (n,)
    if out is None:
        y = empty_like_framework(x, out_shape, dtype_name(x))
    else:
        check_input(out, "out", (dtype_name(x),))
        if framework_of(out, "out") != framework_of(x, "x"):
            raise TypeError(f"out: must be a {framework_of(x, 'x')} array like x")
        if shape_of(out) != out_shape:
            raise ValueError(f"out: expected shape {list(out_shape)}, got {list(shape_of(out))}")
        y = out
    _C.gemm(for_c(x.reshape(m, k)), qw.c_weight(), for_c(bias), alpha, for_c(y.reshape(m, n)), cuda_stream(x))
    return to_framework_of(x, y)
