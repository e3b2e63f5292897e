"""Quantizers and the QuantizedWeight container (canonical interchange layout).

Layout of every format (DESIGN.md): a Linear weight W [N, K]; 4-bit codes packed two per
byte along K, element 2j in the low nibble -> ``codes`` uint8 [N, K/2].

==========  ================================  =======================================
format      scales                            dequantized value
==========  ================================  =======================================
nvfp4       float8_e4m3fn [N, K/16]           e2m1(q) * (e4m3(s) * global_scale)
            + global_scale fp32 []
mxfp4       E8M0 bytes (uint8) [N, K/32]      e2m1(q) * 2^(s - 127)
int4        float16/bfloat16 [N, K/g]         q * s (symmetric, q in [-8, 7]) or
            (+ zero_points uint8 [N, K/g])    (q - z) * s (asymmetric, q in [0, 15])
==========  ================================  =======================================
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, replace
from typing import Any, Mapping

from . import _C
from ._arrays import (
    FLOAT_DTYPES,
    HALF_DTYPES,
    Array,
    check_input,
    cuda_stream,
    dtype_name,
    empty_like_framework,
    for_c,
    framework_of,
    scalar_f32,
    shape_of,
    to_framework_of,
)

FORMATS = ("nvfp4", "mxfp4", "int4")
_FORMAT_CODES = {"nvfp4": _C.FORMAT_NVFP4, "mxfp4": _C.FORMAT_MXFP4, "int4": _C.FORMAT_INT4}
_LAYOUT_CODES = {"canonical": _C.LAYOUT_CANONICAL, "prepacked": _C.LAYOUT_PREPACKED}
NVFP4_BLOCK = 16
MXFP4_BLOCK = 32
INT4_GROUPS = (32, 64, 128)


def _scale_block(format: str, k: int, group_size: int | None = None) -> int:
    """Elements of a row per scale for `format` (a weight's K must be a multiple of it):
    NVFP4 16, MXFP4 32, INT4 its group (128 when None, K for -1 = one group per row)."""
    if format == "nvfp4":
        return NVFP4_BLOCK
    if format == "mxfp4":
        return MXFP4_BLOCK
    return 128 if group_size is None else (k if group_size == -1 else group_size)


@dataclass(frozen=True)
class QuantizedWeight:
    """A 4-bit quantized Linear weight W [N, K] in the canonical layout.

    Attributes:
        format: "nvfp4", "mxfp4" or "int4".
        shape: (N, K) = (out_features, in_features).
        group_size: elements per scale along K: 16 (nvfp4), 32 (mxfp4), 32/64/128/K (int4).
        codes: uint8 [N, K/2], element 2j in the low nibble of byte j.
        scales: [N, K/group_size]: float8_e4m3fn (or uint8 bytes) for nvfp4, uint8 E8M0
            for mxfp4, float16/bfloat16 for int4.
        global_scale: 0-d float32 array (nvfp4 only), else None.
        zero_points: uint8 [N, K/group_size] in 0..15 (asymmetric int4), else None.
        layout: "canonical" (the interchange layout above) or "prepacked" (codes in the
            GPU kernels' private order, from :func:`prepack`; same shapes, scales unchanged).
    Arrays belong to the framework and device of the tensor that was quantized.
    """

    format: str
    shape: tuple[int, int]
    group_size: int
    codes: Array
    scales: Array
    global_scale: Array | None = None
    zero_points: Array | None = None
    layout: str = "canonical"

    @property
    def symmetric(self) -> bool:
        return self.zero_points is None

    @property
    def nbytes(self) -> int:
        """Bytes of all arrays together (codes, scales, global scale, zero points)."""
        total = 0
        for array in (self.codes, self.scales, self.global_scale, self.zero_points):
            if array is not None:
                total += math.prod(shape_of(array)) * _itemsize(array)
        return total

    def c_weight(self) -> tuple:
        """The tuple the C extension takes for a weight."""
        return (_FORMAT_CODES[self.format], self.group_size, for_c(self.codes), for_c(self.scales),
                for_c(self.global_scale), for_c(self.zero_points), _LAYOUT_CODES[self.layout])

    def dequantize(self, dtype: str = "float32") -> Array:
        """W [N, K] in `dtype` ("float32", "float16" or "bfloat16")."""
        return dequantize(self, dtype)

    def prepack(self) -> "QuantizedWeight":
        """This weight with its codes in the GPU kernels' order (see :func:`prepack`)."""
        return prepack(self)

    def canonical(self) -> "QuantizedWeight":
        """This weight in the canonical layout (itself when it already is)."""
        return unprepack(self)

    def state_dict(self) -> dict[str, Array]:
        """ModelOpt-style names: weight, weight_scale, weight_scale_2 (nvfp4),
        weight_zero_point (asymmetric int4); always in the canonical layout."""
        if self.layout != "canonical":
            return self.canonical().state_dict()
        state = {"weight": self.codes, "weight_scale": self.scales}
        if self.global_scale is not None:
            state["weight_scale_2"] = self.global_scale
        if self.zero_points is not None:
            state["weight_zero_point"] = self.zero_points
        return state

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Array], format: str | None = None) -> "QuantizedWeight":
        """Rebuilds a QuantizedWeight from :meth:`state_dict` output (or a ModelOpt
        checkpoint's tensors for one Linear). The format is inferred when not given:
        weight_scale_2 present or float8_e4m3fn scales -> nvfp4; 16-bit scales or zero points -> int4;
        uint8 or float8_e8m0fnu scales -> mxfp4."""
        codes, scales = _state_matrix(state, "weight"), _state_matrix(state, "weight_scale")
        n, half_k = shape_of(codes)
        k = 2 * half_k
        scale_dtype = dtype_name(scales)
        if format is None:
            if "weight_scale_2" in state or scale_dtype == "float8_e4m3fn":
                format = "nvfp4"
            elif scale_dtype in HALF_DTYPES or "weight_zero_point" in state:
                format = "int4"
            elif scale_dtype in ("uint8", "float8_e8m0fnu"):
                format = "mxfp4"
            else:
                raise TypeError(f"state['weight_scale']: dtype {scale_dtype} names no format: expected "
                                "float8_e4m3fn or uint8 with weight_scale_2 (nvfp4), uint8 or float8_e8m0fnu "
                                "(mxfp4), float16 or bfloat16 (int4)")
        if format not in FORMATS:
            raise ValueError(f"format: expected one of {FORMATS}, got {format!r}")
        scale_cols = shape_of(scales)[1]
        if scale_cols == 0 or k % scale_cols:
            raise ValueError(f"state: weight_scale shape {list(shape_of(scales))} does not divide K = {k}")
        weight = cls(format=format, shape=(n, k), group_size=k // scale_cols, codes=codes, scales=scales,
                     global_scale=state.get("weight_scale_2"), zero_points=state.get("weight_zero_point"))
        _check_weight(weight)
        return weight

    def to(self, device: Any) -> "QuantizedWeight":
        """Moves every array to `device` (torch arrays; numpy supports only "cpu")."""
        if framework_of(self.codes, "codes") != "torch":
            if str(device) != "cpu":
                raise ValueError(f"device: numpy weights live on the CPU; got {device!r} (convert to torch first)")
            return self

        def move(array: Array | None) -> Array | None:
            return None if array is None else array.to(device)

        return replace(self, codes=move(self.codes), scales=move(self.scales),
                       global_scale=move(self.global_scale), zero_points=move(self.zero_points))

    def __repr__(self) -> str:
        n, k = self.shape
        extra = "" if self.format != "int4" else f", symmetric={self.symmetric}"
        if self.layout != "canonical":
            extra += f", layout={self.layout!r}"
        return (f"QuantizedWeight(format={self.format!r}, shape=({n}, {k}), group_size={self.group_size}"
                f"{extra}, framework={framework_of(self.codes, 'codes')}, nbytes={self.nbytes})")


def _itemsize(array: Array) -> int:
    itemsize = getattr(array, "itemsize", None)
    if itemsize is None:
        itemsize = array.element_size()  # torch
    return int(itemsize)


def _state_matrix(state: Mapping[str, Array], key: str) -> Array:
    """state[key], checked to be a 2-D array (the C layer checks dtype, shape and device)."""
    if key not in state:
        raise KeyError(f"state: missing '{key}'")
    array = state[key]
    framework_of(array, f"state['{key}']")
    if len(shape_of(array)) != 2:
        raise ValueError(f"state['{key}']: expected 2 dimensions, got shape {list(shape_of(array))}")
    return array


def _check_weight(weight: QuantizedWeight) -> None:
    """Python-side consistency checks of a QuantizedWeight (C re-checks the views)."""
    if weight.format not in FORMATS:
        raise ValueError(f"format: expected one of {FORMATS}, got {weight.format!r}")
    if weight.format == "nvfp4" and weight.global_scale is None:
        raise ValueError("global_scale: nvfp4 needs the fp32 global scale (weight_scale_2)")
    if weight.format != "int4" and weight.zero_points is not None:
        raise ValueError("zero_points: only int4 has zero points")
    if weight.layout not in _LAYOUT_CODES:
        raise ValueError(f"layout: expected one of {tuple(_LAYOUT_CODES)}, got {weight.layout!r}")


def _nvfp4_scale_dtype(like: Array) -> str:
    """float8_e4m3fn where the framework has it, else raw bytes."""
    framework = framework_of(like, "w")
    if framework == "torch":
        return "float8_e4m3fn"
    has_ml_dtypes = importlib.util.find_spec("ml_dtypes") is not None  # numpy's float8 comes from it
    return "float8_e4m3fn" if framework in ("numpy", "jax") and has_ml_dtypes else "uint8"


def _finish(like: Array, weight: QuantizedWeight) -> QuantizedWeight:
    """Converts arrays computed in numpy back to `like`'s framework where needed (jax)."""
    if framework_of(like, "w") != "jax":
        return weight
    return replace(weight, codes=to_framework_of(like, weight.codes), scales=to_framework_of(like, weight.scales),
                   global_scale=None if weight.global_scale is None else to_framework_of(like, weight.global_scale),
                   zero_points=None if weight.zero_points is None else to_framework_of(like, weight.zero_points))


def quantize_nvfp4(w: Array, *, global_scale: float | None = None) -> QuantizedWeight:
    """NVFP4 quantization of a Linear weight.

    Args:
        w: [N, K] float32/float16/bfloat16, K a multiple of 16, CPU or CUDA.
        global_scale: the fp32 tensor scale; default amax(|w|) / (6 * 448).
    Returns:
        QuantizedWeight with codes uint8 [N, K/2], scales float8_e4m3fn [N, K/16] and a
        0-d float32 global_scale, in w's framework and device.
    Raises:
        TypeError/ValueError naming the argument for bad input; ValueError for NaN/Inf in w.
    """
    check_input(w, "w", FLOAT_DTYPES, ndim=2)
    n, k = shape_of(w)
    if global_scale is not None:
        global_scale = float(global_scale)
        if not (math.isfinite(global_scale) and global_scale > 0):
            raise ValueError(f"global_scale: must be a finite positive number, got {global_scale}")
    codes = empty_like_framework(w, (n, k // 2), "uint8")
    scales = empty_like_framework(w, (n, k // NVFP4_BLOCK), _nvfp4_scale_dtype(w))
    gs = scalar_f32(w)
    _C.quantize_nvfp4(for_c(w), for_c(codes), for_c(scales), for_c(gs), global_scale, cuda_stream(w))
    if cuda_stream(w) is not None and not math.isfinite(float(gs)):
        # the GPU kernel flags NaN/Inf through the global scale (reading it back syncs once)
        raise ValueError("w4a16.quantize_nvfp4: w: contains NaN or Inf; weights must be finite")
    return _finish(w, QuantizedWeight("nvfp4", (n, k), NVFP4_BLOCK, codes, scales, global_scale=gs))


def quantize_mxfp4(w: Array) -> QuantizedWeight:
    """MXFP4 (OCP MX) quantization: w [N, K] float32/float16/bfloat16, K % 32 == 0.
    Returns codes uint8 [N, K/2] and E8M0 scale bytes uint8 [N, K/32]."""
    check_input(w, "w", FLOAT_DTYPES, ndim=2)
    n, k = shape_of(w)
    codes = empty_like_framework(w, (n, k // 2), "uint8")
    scales = empty_like_framework(w, (n, k // MXFP4_BLOCK), "uint8")
    _C.quantize_mxfp4(for_c(w), for_c(codes), for_c(scales), cuda_stream(w))
    if cuda_stream(w) is not None and bool((scales == 255).any()):
        # the GPU kernel marks a block holding NaN/Inf with the E8M0 NaN code
        raise ValueError("w4a16.quantize_mxfp4: w: contains NaN or Inf; weights must be finite")
    return _finish(w, QuantizedWeight("mxfp4", (n, k), MXFP4_BLOCK, codes, scales))


def pack_int4(w: Array, group_size: int | None = 128, symmetric: bool = True,
              scale_dtype: str | None = None) -> QuantizedWeight:
    """Group-wise INT4 quantization of w [N, K] (float32/float16/bfloat16).

    Args:
        group_size: 32, 64, 128, or None / -1 / K for one group per output channel.
        symmetric: True -> q in [-8, 7], s = amax / 7; False -> q in [0, 15] with zero points.
        scale_dtype: "float16" or "bfloat16"; default bfloat16 for bfloat16 w, else float16.
    Returns:
        QuantizedWeight with codes uint8 [N, K/2], scales [N, K/g] and, if asymmetric,
        zero_points uint8 [N, K/g].
    """
    check_input(w, "w", FLOAT_DTYPES, ndim=2)
    n, k = shape_of(w)
    if n == 0 or k == 0:  # checked here too: group_size = K below would divide by zero
        raise ValueError(f"w4a16.pack_int4: w: expected a non-empty [N, K] matrix, got [{n}, {k}]")
    if group_size is None or group_size == -1:
        group_size = k
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise TypeError(f"group_size: expected an int (32, 64, 128 or -1), got {type(group_size).__name__}")
    if group_size not in INT4_GROUPS and group_size != k:
        raise ValueError(f"group_size: expected 32, 64, 128 or -1 (per channel, K = {k}), got {group_size}")
    if k % group_size:
        raise ValueError(f"w: K = {k} is not a multiple of group_size {group_size}")
    if k % 2:
        raise ValueError(f"w: K = {k} must be even to pack two 4-bit codes per byte")
    if scale_dtype is None:
        scale_dtype = "bfloat16" if dtype_name(w) == "bfloat16" else "float16"
    if scale_dtype not in HALF_DTYPES:
        raise ValueError(f"scale_dtype: expected 'float16' or 'bfloat16', got {scale_dtype!r}")
    groups = k // group_size
    codes = empty_like_framework(w, (n, k // 2), "uint8")
    scales = empty_like_framework(w, (n, groups), scale_dtype)
    zeros = None if symmetric else empty_like_framework(w, (n, groups), "uint8")
    _C.pack_int4(for_c(w), group_size, bool(symmetric), for_c(codes), for_c(scales), for_c(zeros), cuda_stream(w))
    if cuda_stream(w) is not None and bool((scales != scales).any()):
        # the GPU kernel marks a bad group with a NaN scale
        raise ValueError(f"w4a16.pack_int4: w: contains NaN or Inf, or a group needs a scale beyond {scale_dtype} "
                         "(use scale_dtype='bfloat16')")
    return _finish(w, QuantizedWeight("int4", (n, k), group_size, codes, scales, zero_points=zeros))


def dequantize(qw: QuantizedWeight, dtype: str = "float32") -> Array:
    """W [N, K] of `dtype` ("float32", "float16", "bfloat16") from a QuantizedWeight, in
    the weight's framework and device."""
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw: expected a QuantizedWeight, got {type(qw).__name__}")
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"dtype: expected one of {FLOAT_DTYPES}, got {dtype!r}")
    _check_weight(qw)
    out = empty_like_framework(qw.codes, qw.shape, dtype)
    _C.dequantize(qw.c_weight(), for_c(out), cuda_stream(qw.codes))
    return to_framework_of(qw.codes, out)


def convert_codes(codes: Array, format: str, to_prepacked: bool) -> Array:
    """uint8 [N, K/2] codes of a `format` weight to (or from) the prepacked order, as a new
    array in the framework and on the device of `codes` (C checks shape, dtype and layout)."""
    out = empty_like_framework(codes, shape_of(codes), "uint8")
    _C.prepack(_FORMAT_CODES[format], for_c(codes), for_c(out), to_prepacked, cuda_stream(codes))
    return to_framework_of(codes, out)


def _convert_layout(qw: QuantizedWeight, layout: str) -> QuantizedWeight:
    if not isinstance(qw, QuantizedWeight):
        raise TypeError(f"qw: expected a QuantizedWeight, got {type(qw).__name__}")
    _check_weight(qw)
    if qw.layout == layout:
        return qw
    return replace(qw, codes=convert_codes(qw.codes, qw.format, layout == "prepacked"), layout=layout)


def prepack(qw: QuantizedWeight) -> QuantizedWeight:
    """The weight with its codes reordered for the GPU kernels (a new codes array; scales,
    global scale and zero points are shared).

    The prepacked order permutes the code bits inside each 16-byte chunk (32 elements) of
    a row: pair p of a chunk (elements 2p, 2p + 1) goes to slot j = p // 4 of the low and
    the high 16-bit half of word p % 4 (like the halves of a 16-bit pair register), so
    word t holds exactly what thread t of a quad holds of a tensor-core A fragment over the
    chunk's two k16 steps; a shorter last chunk of W < 4 words uses p % W and p // W. For
    INT4, slot j is nibble j of the half. For NVFP4 and MXFP4, counting bits of the 32-bit
    word for the element in the low half (the high half's element: the same positions
    plus 16, modulo 32), slot 0 holds a code's three magnitude bits at 6-8 and its sign at
    15, where a bf16 value wants them; slots 1 and 2 hold that pattern rotated left by 3
    and 6 (magnitude at 9-11 and 12-14, sign at 18 and 21, i.e. in the other half); slot 3
    holds magnitude bits 0-1 at 3-4, bit 2 at 0 and the sign at 1. The kernels then decode
    a fragment word with a rotation and a mask per pair (slot 3: a mask, a multiply and a
    mask) and no data shuffles.
    Do it once, when a layer is built (FP4Linear / Int4Linear do); the gemm, dequantize
    and the modules accept both layouts, and :meth:`state_dict` and the exporters always
    write the canonical one. Needs K % 8 == 0 (true of every format).

    Args:
        qw: a QuantizedWeight in any layout, any framework and device.
    Returns:
        A QuantizedWeight with layout "prepacked" (``qw`` itself if it already is).
    """
    return _convert_layout(qw, "prepacked")


def unprepack(qw: QuantizedWeight) -> QuantizedWeight:
    """The inverse of :func:`prepack`: the weight in the canonical layout."""
    return _convert_layout(qw, "canonical")
