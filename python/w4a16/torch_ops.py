"""torch.library custom ops over the C extension, so that torch.compile (fullgraph) and
CUDA-graph capture see one opaque op per quantized matmul.

``torch.ops.w4a16.gemm(x, codes, scales, global_scale, zero_points, bias, format,
group_size, alpha, layout)`` -> y [..., N]: the op launches on
``torch.cuda.current_stream()`` for CUDA tensors and allocates its output (and the split-K
workspace, when the chosen kernel has one) with torch's caching allocator. The kernel is
the tuning cache's choice (w4a16.tuning) or the library's heuristic. Gradients flow to x
(alpha * dy @ dequant(W)) and to bias (dy summed over rows); the quantized weight is a
constant. ``torch.ops.w4a16.dequantize`` (same weight arguments, then a dtype) gives
dequant(W) [N, K] for that backward.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import torch

from . import _C
from .tuning import gpu_name, lookup

FORMAT_CODES = {"nvfp4": _C.FORMAT_NVFP4, "mxfp4": _C.FORMAT_MXFP4, "int4": _C.FORMAT_INT4}
_FORMAT_NAMES = {code: name for name, code in FORMAT_CODES.items()}
_LAYOUT_NAMES = {_C.LAYOUT_CANONICAL: "canonical", _C.LAYOUT_PREPACKED: "prepacked"}

# From these many rows of x on, a CUDA call dequantizes W to 16 bits (w4a16's kernel, into a
# tensor from torch's caching allocator) and multiplies with cuBLAS. Canonical weights:
# the small-M kernel re-decodes W for every 16 rows and loses from M ~ 64 on (H200,
# benchmarks/bench_large_m.py). Prepacked weights (what the modules hold): the tensor-core
# W4A16 GEMM wins below M ~ 256 and loses beyond (H100, benchmarks/RESULTS.md); on SM 9.0
# with the warpgroup (wgmma) kernels of an sm_90a build it wins to M ~ 768 and ties at 968
# (16384x2048: M = 512 62.5 vs 83.6 µs, M = 968 121.8 vs 121.0, M = 1536 185.0 vs 175.6;
# 32768x2048 M = 968 239.6 vs 244.4; 2048x16384 M = 968 122.5 vs 120.4), and at a tie the
# kernel is kept: it needs no 16-bit scratch. So Pi0.5's prefix (M = 968) runs the kernel.
LARGE_M = 64
LARGE_M_PREPACKED = 256
LARGE_M_PREPACKED_WGMMA = 1024
# The large-M path works in slices of W's rows whose 16-bit copy takes about this many
# bytes (never fewer than DEQUANT_SLICE_MIN_ROWS rows): one scratch of that size serves
# every slice, so the path needs 32 MB, not a 16-bit copy of W, and cuBLAS reads part of
# each slice from L2. Measured on an H100 (benchmarks/RESULTS.md): 32768x2048 at M = 968
# 269 -> 240 µs; narrower slices make cuBLAS slower than the L2 saves (2048x16384 sliced
# to 1024 rows: 116 -> 136 µs).
DEQUANT_SLICE_BYTES = 32 << 20
DEQUANT_SLICE_MIN_ROWS = 2048


# w4a16_gemm_geglu's pairing (w4a16.h, W4A16_GATED_ROWS): rows 16j .. 16j + 7 of the fused
# weight are gate rows 8j .., rows 16j + 8 .. 16j + 15 the matching up rows.
GATED_ROWS = 8
_GELU_TANH_C = 0.7978845608028654  # sqrt(2 / pi)


def interleave_gate_up(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """[I, ...] gate and up rows (I % GATED_ROWS == 0) -> [2I, ...] in gemm_geglu's order."""
    if gate.shape != up.shape or gate.dim() < 1 or gate.shape[0] % GATED_ROWS:
        raise ValueError(f"gate, up: expected the same shape [I, ...] with I a multiple of {GATED_ROWS}, got "
                         f"{list(gate.shape)} and {list(up.shape)}")
    blocks = gate.shape[0] // GATED_ROWS
    rest = tuple(gate.shape[1:])
    pair = torch.stack([gate.reshape(blocks, GATED_ROWS, *rest), up.reshape(blocks, GATED_ROWS, *rest)], dim=1)
    return pair.reshape(2 * gate.shape[0], *rest)


def split_gate_up(rows: torch.Tensor, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of interleave_gate_up along `dim`: (gate, up), each half of that dim."""
    dim = dim % rows.dim()
    size = rows.shape[dim]
    if size % (2 * GATED_ROWS):
        raise ValueError(f"rows: expected a multiple of {2 * GATED_ROWS} along dim {dim}, got {size}")
    pairs = rows.reshape(*rows.shape[:dim], size // (2 * GATED_ROWS), 2, GATED_ROWS, *rows.shape[dim + 1:])
    half = (*rows.shape[:dim], size // 2, *rows.shape[dim + 1:])
    return pairs.select(dim + 1, 0).reshape(half), pairs.select(dim + 1, 1).reshape(half)


def geglu_reference(h: torch.Tensor) -> torch.Tensor:
    """gelu_tanh(gate) * up of h [..., N] in gemm_geglu's order -> [..., N/2] in h's dtype,
    in fp32 and rounded once: the kernels' result, to fp32 rounding (they evaluate the same
    function as v / (1 + exp(-2z)), torch as 0.5 v (1 + tanh z))."""
    gate, up = split_gate_up(h.float(), dim=-1)
    return (torch.nn.functional.gelu(gate, approximate="tanh") * up).to(h.dtype)


_DTYPE_CODES = {
    torch.float32: _C.DTYPE_FLOAT32,
    torch.float16: _C.DTYPE_FLOAT16,
    torch.bfloat16: _C.DTYPE_BFLOAT16,
    torch.uint8: _C.DTYPE_UINT8,
    torch.float8_e4m3fn: _C.DTYPE_FLOAT8_E4M3FN,
}


@lru_cache(maxsize=None)
def _runs_wgmma(device_index: int) -> bool:
    """Whether the warpgroup kernels run here: SM 9.0 and a build that has sm_90 (which
    CMake compiles as sm_90a)."""
    archs = _C.build_info()["cuda_archs"].split(",")
    return torch.cuda.get_device_capability(device_index) == (9, 0) and ("90" in archs or "90a" in archs)


def _large_m_prepacked(device_index: int) -> int:
    """From this M on, prepacked weights take the dequantize + cuBLAS path on this GPU."""
    return LARGE_M_PREPACKED_WGMMA if _runs_wgmma(device_index) else LARGE_M_PREPACKED


def _dtype_code(t: torch.Tensor, name: str) -> int:
    code = _DTYPE_CODES.get(t.dtype)
    if code is None:
        raise TypeError(f"{name}: dtype {t.dtype} is not one w4a16 reads")
    return code


def _pointer(t: Optional[torch.Tensor], name: str, device: torch.device) -> int:
    """data_ptr of a contiguous tensor on `device` (0 for None)."""
    if t is None:
        return 0
    if t.device != device:
        raise ValueError(f"{name}: is on {t.device} but x is on {device}")
    if not t.is_contiguous():
        raise ValueError(f"{name}: must be contiguous")
    return t.data_ptr()


def _check_weight_tensors(codes: torch.Tensor, scales: torch.Tensor, global_scale: Optional[torch.Tensor],
                         zero_points: Optional[torch.Tensor], format: int, group_size: int, layout: int) -> None:
    """The raw-pointer calls trust the weight's shapes and byte sizes: checks every one (the
    C layer checks the scales' dtype, which it is told)."""
    for name, t, dtype in (("codes", codes, torch.uint8), ("global_scale", global_scale, torch.float32),
                           ("zero_points", zero_points, torch.uint8)):
        if t is not None and t.dtype != dtype:
            raise TypeError(f"{name}: expected dtype {dtype}, got {t.dtype}")
    if codes.dim() != 2:
        raise ValueError(f"codes: expected [N, K/2], got shape {list(codes.shape)}")
    n, k = codes.shape[0], codes.shape[1] * 2
    if group_size <= 0 or k % group_size:
        raise ValueError(f"group_size: {group_size} does not divide K = {k}")
    groups = (n, k // group_size)
    if tuple(scales.shape) != groups:
        raise ValueError(f"scales: expected shape {list(groups)}, got {list(scales.shape)}")
    if zero_points is not None and tuple(zero_points.shape) != groups:
        raise ValueError(f"zero_points: expected shape {list(groups)}, got {list(zero_points.shape)}")
    if layout not in _LAYOUT_NAMES or format not in _FORMAT_NAMES:
        raise ValueError(f"layout / format: unknown codes {layout} / {format}")
    if global_scale is not None and global_scale.numel() != 1:
        raise ValueError(f"global_scale: expected one element, got shape {list(global_scale.shape)}")


def _weight_pointers(codes: torch.Tensor, scales: torch.Tensor, global_scale: Optional[torch.Tensor],
                     zero_points: Optional[torch.Tensor], format: int, group_size: int, layout: int,
                     device: torch.device) -> tuple:
    """The weight as the raw-pointer calls take it: (codes, scales, scale dtype, global
    scale, zero points, format, group size, layout). Raw pointers, not DLPack: the tensors
    are held by the caller for the whole call, and five capsules per call would cost more
    than a small GEMV (the C API still checks dtypes)."""
    return (_pointer(codes, "codes", device), _pointer(scales, "scales", device), _dtype_code(scales, "scales"),
            _pointer(global_scale, "global_scale", device), _pointer(zero_points, "zero_points", device),
            format, group_size, layout)


def _place(device: torch.device) -> tuple[int, int]:
    """(DLPack device type, index) of a torch device."""
    return (2 if device.type == "cuda" else 1, device.index or 0)


def _stream(device: torch.device) -> int:
    """The stream to launch on: torch's current one on CUDA, 0 on the CPU."""
    return torch.cuda.current_stream(device).cuda_stream if device.type == "cuda" else 0


def _run_gemm(x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor, global_scale: Optional[torch.Tensor],
              zero_points: Optional[torch.Tensor], bias: Optional[torch.Tensor], format: int, group_size: int,
              alpha: float, layout: int, geglu: bool) -> torch.Tensor:
    """The body of both ops: y [..., N] (gemm) or [..., N/2] (gemm_geglu)."""
    _check_weight_tensors(codes, scales, global_scale, zero_points, format, group_size, layout)
    n, k = codes.shape[0], codes.shape[1] * 2
    if geglu and n % (2 * GATED_ROWS):
        raise ValueError(f"codes: gemm_geglu expects N a multiple of {2 * GATED_ROWS} (gate and up rows interleaved "
                         f"in blocks of {GATED_ROWS}), got N = {n}")
    cols = n // 2 if geglu else n
    if x.dim() == 0 or x.shape[-1] != k:
        raise ValueError(f"x: expected [..., {k}] to match the weight's K, got {list(x.shape)}")
    x2 = x.reshape(-1, k)
    if not x2.is_contiguous():
        x2 = x2.contiguous()  # documented copy: the op takes any strided activation
    if bias is not None and tuple(bias.shape) != (n,):
        raise ValueError(f"bias: expected shape [{n}], got {list(bias.shape)}")
    if bias is not None and bias.dtype != x.dtype:
        bias = bias.to(x.dtype)  # the kernels read bias in x's dtype (a module's bias may be another)
    device = x.device
    weight = _weight_pointers(codes, scales, global_scale, zero_points, format, group_size, layout, device)
    place, stream = _place(device), _stream(device)
    m, act_dtype = x2.shape[0], _dtype_code(x2, "x")
    if x.is_cuda and m >= (LARGE_M if layout == _C.LAYOUT_CANONICAL else _large_m_prepacked(place[1])):
        y = _dequantize_matmul(x2, act_dtype, codes, scales, global_scale, zero_points, bias, format, group_size,
                               alpha, layout, place, stream)
        if geglu:
            y = geglu_reference(y)
        return y.reshape(*x.shape[:-1], cols)
    config, workspace = _C.GEMM_AUTO, None
    if x.is_cuda and m > 0:
        if x2.data_ptr() % 16:
            x2 = x2.clone()  # the fast kernels read x in 16-byte pieces
        config = lookup(gpu_name(place[1]), _FORMAT_NAMES[format], str(x.dtype).removeprefix("torch."),
                        _LAYOUT_NAMES[layout], n, k, m)
        workspace_bytes = _C._gemm_workspace_raw(x2.data_ptr(), m, n, k, act_dtype, *weight, config, *place)
        if workspace_bytes:
            workspace = torch.empty(workspace_bytes, dtype=torch.uint8, device=device)
    y = torch.empty((m, cols), dtype=x.dtype, device=device)
    _C._gemm_raw(_pointer(x2, "x", device), y.data_ptr(), _pointer(bias, "bias", device), m, n, k, act_dtype,
                 *weight, alpha, config, workspace.data_ptr() if workspace is not None else 0,
                 workspace.numel() if workspace is not None else 0, *place, stream, geglu)
    return y.reshape(*x.shape[:-1], cols)


@torch.library.custom_op("w4a16::gemm", mutates_args=())
def gemm(x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor, global_scale: Optional[torch.Tensor],
         zero_points: Optional[torch.Tensor], bias: Optional[torch.Tensor], format: int, group_size: int,
         alpha: float, layout: int) -> torch.Tensor:
    """y [..., N] = alpha * x [..., K] @ dequant(W)^T + bias, W given by its tensors (codes
    uint8 [N, K/2] in `layout` order, scales [N, K/group_size], ...); format is a
    FORMAT_CODES value, layout _C.LAYOUT_CANONICAL or _C.LAYOUT_PREPACKED."""
    return _run_gemm(x, codes, scales, global_scale, zero_points, bias, format, group_size, alpha, layout, False)


@torch.library.custom_op("w4a16::gemm_geglu", mutates_args=())
def gemm_geglu(x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor, global_scale: Optional[torch.Tensor],
               zero_points: Optional[torch.Tensor], bias: Optional[torch.Tensor], format: int, group_size: int,
               alpha: float, layout: int) -> torch.Tensor:
    """y [..., N/2] = geglu_reference(h), h = the `gemm` of the same arguments [..., N]:
    gelu_tanh of its gate columns times its up columns, W's rows holding gate and up
    interleaved in blocks of GATED_ROWS (interleave_gate_up). One kernel on the GPU up to
    the large-M threshold (the activation in its epilogue); beyond, and on the CPU, the
    same formula after the gemm."""
    return _run_gemm(x, codes, scales, global_scale, zero_points, bias, format, group_size, alpha, layout, True)


def _dequantize_matmul(x2: torch.Tensor, act_dtype: int, codes: torch.Tensor, scales: torch.Tensor,
                       global_scale: Optional[torch.Tensor], zero_points: Optional[torch.Tensor],
                       bias: Optional[torch.Tensor], format: int, group_size: int, alpha: float, layout: int,
                       place: tuple, stream: int) -> torch.Tensor:
    """y [M, N] = alpha * x2 [M, K] @ dequant(W)^T + bias with w4a16's dequantizer and
    cuBLAS, one slice of W's rows at a time (DEQUANT_SLICE_BYTES); each slice's product
    goes straight into its columns of y (cuBLAS takes y's row pitch). act_dtype is x2's
    _C dtype code."""
    m, k = x2.shape
    n = codes.shape[0]
    rows = min(n, max(DEQUANT_SLICE_MIN_ROWS, DEQUANT_SLICE_BYTES // (2 * k) // 64 * 64))
    w16 = torch.empty((rows, k), dtype=x2.dtype, device=x2.device)
    y = torch.empty((m, n), dtype=x2.dtype, device=x2.device)
    for n0 in range(0, n, rows):
        n1 = min(n, n0 + rows)
        zp = zero_points[n0:n1] if zero_points is not None else None
        _C._dequantize_raw(w16.data_ptr(), act_dtype, n1 - n0, k,
                           *_weight_pointers(codes[n0:n1], scales[n0:n1], global_scale, zp, format, group_size, layout,
                                             x2.device), *place, stream)
        out = y[:, n0:n1]
        if bias is not None:
            torch.addmm(bias[n0:n1], x2, w16[: n1 - n0].t(), alpha=alpha, out=out)
        else:
            torch.mm(x2, w16[: n1 - n0].t(), out=out)
    if bias is None and alpha != 1.0:
        y.mul_(alpha)
    return y


@gemm.register_fake
def _gemm_fake(x, codes, scales, global_scale, zero_points, bias, format, group_size, alpha, layout):
    return x.new_empty((*x.shape[:-1], codes.shape[0]))


@gemm_geglu.register_fake
def _gemm_geglu_fake(x, codes, scales, global_scale, zero_points, bias, format, group_size, alpha, layout):
    return x.new_empty((*x.shape[:-1], codes.shape[0] // 2))


@torch.library.custom_op("w4a16::dequantize", mutates_args=())
def dequantize(codes: torch.Tensor, scales: torch.Tensor, global_scale: Optional[torch.Tensor],
               zero_points: Optional[torch.Tensor], format: int, group_size: int, layout: int,
               dtype: torch.dtype) -> torch.Tensor:
    """dequant(W) [N, K] of `dtype` (float32, float16 or bfloat16) on the weight's device,
    W given by its tensors as `gemm` takes them."""
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"dtype: expected torch.float32, float16 or bfloat16, got {dtype}")
    _check_weight_tensors(codes, scales, global_scale, zero_points, format, group_size, layout)
    device = codes.device
    w = torch.empty((codes.shape[0], codes.shape[1] * 2), dtype=dtype, device=device)
    _C._dequantize_raw(w.data_ptr(), _dtype_code(w, "dtype"), w.shape[0], w.shape[1],
                       *_weight_pointers(codes, scales, global_scale, zero_points, format, group_size, layout, device),
                       *_place(device), _stream(device))
    return w


@dequantize.register_fake
def _dequantize_fake(codes, scales, global_scale, zero_points, format, group_size, layout, dtype):
    return codes.new_empty((codes.shape[0], codes.shape[1] * 2), dtype=dtype)


def _gemm_setup_context(ctx, inputs, output) -> None:
    x, codes, scales, global_scale, zero_points, bias, format, group_size, alpha, layout = inputs
    ctx.save_for_backward(codes, scales, global_scale, zero_points)
    ctx.weight_args = (format, group_size, layout)
    ctx.alpha, ctx.x_dtype = alpha, x.dtype
    ctx.bias_dtype = None if bias is None else bias.dtype


def _gemm_backward(ctx, grad_y: torch.Tensor):
    """dx [..., K] = alpha * dy [..., N] @ dequant(W) [N, K], in x's dtype (as a 16-bit
    Linear's backward: W dequantized to that dtype, one matmul); dbias [N] = dy summed over
    its rows. The weight's tensors get none: a quantized weight is frozen."""
    return _grads_from(ctx, grad_y, *ctx.saved_tensors)


def _grads_from(ctx, grad_y: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor,
                global_scale: Optional[torch.Tensor], zero_points: Optional[torch.Tensor]) -> tuple:
    """_gemm_backward's grads for dy [..., N] of the gemm of these weight tensors."""
    grad_x = grad_bias = None
    if ctx.needs_input_grad[0]:
        w = torch.ops.w4a16.dequantize(codes, scales, global_scale, zero_points, *ctx.weight_args, ctx.x_dtype)
        grad_x = torch.matmul(grad_y.to(ctx.x_dtype), w)
        if ctx.alpha != 1.0:
            grad_x = grad_x * ctx.alpha
    if ctx.bias_dtype is not None and ctx.needs_input_grad[5]:
        grad_bias = grad_y.reshape(-1, codes.shape[0]).sum(0).to(ctx.bias_dtype)
    return grad_x, None, None, None, None, grad_bias, None, None, None, None


gemm.register_autograd(_gemm_backward, setup_context=_gemm_setup_context)


def _geglu_setup_context(ctx, inputs, output) -> None:
    x, codes, scales, global_scale, zero_points, bias, format, group_size, alpha, layout = inputs
    ctx.save_for_backward(x, codes, scales, global_scale, zero_points, bias)
    ctx.weight_args = (format, group_size, layout)
    ctx.alpha, ctx.x_dtype = alpha, x.dtype
    ctx.bias_dtype = None if bias is None else bias.dtype


def _geglu_backward(ctx, grad_y: torch.Tensor):
    """Through the activation first: h (the plain gemm, recomputed), dh [..., N] = (dy * up *
    gelu_tanh'(gate), dy * gelu_tanh(gate)) interleaved back, then the gemm's grads for dh."""
    x, codes, scales, global_scale, zero_points, bias = ctx.saved_tensors
    h = torch.ops.w4a16.gemm(x.detach(), codes, scales, global_scale, zero_points, bias, *ctx.weight_args[:2],
                             ctx.alpha, ctx.weight_args[2])
    gate, up = split_gate_up(h.float(), dim=-1)
    dy = grad_y.float()
    t = torch.tanh(_GELU_TANH_C * (gate + 0.044715 * gate ** 3))
    gelu = 0.5 * gate * (1.0 + t)
    dgelu = 0.5 * (1.0 + t) + 0.5 * gate * (1.0 - t * t) * _GELU_TANH_C * (1.0 + 3 * 0.044715 * gate * gate)
    grad_h = interleave_gate_up((dy * up * dgelu).movedim(-1, 0), (dy * gelu).movedim(-1, 0)).movedim(0, -1)
    return _grads_from(ctx, grad_h, codes, scales, global_scale, zero_points)


gemm_geglu.register_autograd(_geglu_backward, setup_context=_geglu_setup_context)
