"""gemm: y = alpha * x @ dequant(W)^T + bias on any DLPack arrays; gemm_geglu: the same with
Gemma's gelu_tanh(gate) * up in the epilogue."""

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
         out: Array | None = None, config: int | str | None = None) -> Array:
    """y = alpha * x @ dequant(qw)^T + bias, accumulated in fp32.

    On a GPU, prepacked weights (:func:`w4a16.prepack`) run the tensor-core GEMM beyond
    small M; canonical ones run the small-M kernel for every M (correct, slower).

    Args:
        x: [..., K] float16 or bfloat16 (float32 too on the CPU), C-contiguous.
        qw: the QuantizedWeight of W [N, K], on x's device.
        bias: optional [N], x's dtype.
        alpha: a finite scale applied before the bias.
        out: optional [..., N] array of x's dtype and framework to write into.
        config: CUDA kernel choice: None = the tuning cache (:mod:`w4a16.tuning`), else the
            heuristic; an index or name from :func:`gemm_configs`. Ignored on the CPU.
    Returns:
        y [..., N] of x's dtype, in x's framework (``out`` itself when given).
    """
    return _gemm(x, qw, bias, alpha, out, config, geglu=False)


def gemm_geglu(x: Array, qw: QuantizedWeight, bias: Array | None = None, alpha: float = 1.0,
               out: Array | None = None, config: int | str | None = None) -> Array:
    """The gate and up projections of a Gemma MLP in one call: gelu_tanh(gate) * up.

    h = alpha * x @ dequant(qw)^T + bias [..., N] as :func:`gemm` gives it (rounded to x's
    dtype; on a GPU, where the small-M kernel runs (M <= 16) a weight of fewer than 16 rows
    per SM (N < 2112 on an H100), gemm adds K in two halves and gemm_geglu in one piece, so
    there h may differ from gemm's by one rounding); qw holds gate and up rows interleaved
    in blocks of 8
    (:func:`w4a16.torch_ops.interleave_gate_up`: rows 16j .. 16j + 7 are gate rows 8j ..,
    the next 8 the matching up rows), and y[..., 8j + r] = gelu_tanh(h[..., 16j + r]) *
    h[..., 16j + 8 + r], in fp32, rounded once. On a GPU the activation and the product
    run in the kernel's epilogue: h is never written.

    Args: as :func:`gemm`; N must be a multiple of 16; ``out`` is [..., N/2].
    Returns:
        y [..., N/2] of x's dtype, in x's framework (``out`` itself when given).
    """
    return _gemm(x, qw, bias, alpha, out, config, geglu=True)


def _gemm(x: Array, qw: QuantizedWeight, bias: Array | None, alpha: float, out: Array | None,
          config: int | str | None, geglu: bool) -> Array:
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw: expected a QuantizedWeight, got {type(qw).__name__}")
    _check_weight(qw)
    check_input(x, "x", FLOAT_DTYPES)
    x_shape = shape_of(x)
    n, k = qw.shape
    if geglu and n % 16:
        raise ValueError(f"qw: gemm_geglu expects N a multiple of 16 (gate and up rows interleaved in blocks of 8), "
                         f"got N = {n}")
    cols = n // 2 if geglu else n
    if len(x_shape) < 1 or x_shape[-1] != k:
        raise ValueError(f"x: expected shape [..., {k}] to match the weight's K, got {list(x_shape)}")
    if isinstance(alpha, (str, bytes, bool)) or not hasattr(alpha, "__float__"):
        raise TypeError(f"alpha: expected a real number, got {type(alpha).__name__}")
    alpha = float(alpha)
    if not math.isfinite(alpha):
        raise ValueError(f"alpha: must be finite, got {alpha}")
    if device_of(x) != device_of(qw.codes):
        raise ValueError(f"x: is on device {device_of(x)} but the weight is on {device_of(qw.codes)} "
                         "(DLPack (type, id)); move one of them")
    if bias is not None:
        check_input(bias, "bias", (dtype_name(x),), ndim=1)
    m = math.prod(x_shape[:-1])
    out_shape = x_shape[:-1] + (cols,)
    if out is None:
        y = empty_like_framework(x, out_shape, dtype_name(x))
    else:
        check_input(out, "out", (dtype_name(x),))
        if framework_of(out, "out") != framework_of(x, "x"):
            raise TypeError(f"out: must be a {framework_of(x, 'x')} array like x")
        if shape_of(out) != out_shape:
            raise ValueError(f"out: expected shape {list(out_shape)}, got {list(shape_of(out))}")
        y = out
    x2, weight, stream = for_c(x.reshape(m, k)), qw.c_weight(), cuda_stream(x)
    workspace = None
    if stream is not None:
        config = _resolve_config(config, qw, dtype_name(x), m, device_of(x)[1])
        workspace_bytes = _C.gemm_workspace(x2, weight, config) if m else 0
        if workspace_bytes:
            workspace = for_c(empty_like_framework(x, (workspace_bytes,), "uint8"))
    else:
        config = _C.GEMM_AUTO
    _C.gemm(x2, weight, for_c(bias), alpha, for_c(y.reshape(m, cols)), stream, config, workspace, geglu)
    return to_framework_of(x, y)


def gemm_configs() -> list[str]:
    """Names of the CUDA gemm configurations, by index ([] in a build without CUDA):
    "gemv" (the small-M kernel) and the tensor-core tile shapes with their K split."""
    return list(_C.gemm_configs())


def _resolve_config(config: int | str | None, qw: QuantizedWeight, dtype: str, m: int, device_id: int) -> int:
    if config is None:
        from .tuning import gpu_name, lookup

        n, k = qw.shape
        return lookup(gpu_name(device_id), qw.format, dtype, qw.layout, n, k, m)
    names = _C.gemm_configs()
    if isinstance(config, str):
        if config not in names:
            raise ValueError(f"config: expected one of {names}, got {config!r}")
        return names.index(config)
    if isinstance(config, bool) or not isinstance(config, int) or not -1 <= config < len(names):
        raise ValueError(f"config: expected None, a name or an index in -1 .. {len(names) - 1}, got {config!r}")
    return config
