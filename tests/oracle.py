"""Independent reference implementations of the formats, written from their definitions
with numpy and ml_dtypes casts (not from the C code), for the tests to compare against.

NVFP4 (NVIDIA, as ModelOpt / TensorRT-LLM define it):
    global_scale = amax(W) / (6 * 448)
    block scale  = e4m3(max(amax_block / (6 * global_scale), 2^-9)), saturating at 448;
                   an all-zero block gets 1.0 and codes 0
    codes        = e2m1(clip(x / (e4m3(s) * global_scale), -6, 6)), ties to even
MXFP4 (OCP MX v1.0): scale 2^(floor(log2(amax_block)) - 2); codes e2m1(clip(x / scale, -6, 6)).
INT4: symmetric s = amax / 7, q = clip(rint(x / s), -8, 7); asymmetric on [min(lo, 0),
max(hi, 0)]: s = (hi - lo) / 15, z = rint(-lo / s), q = clip(rint(x / s) + z, 0, 15).
"""

import ml_dtypes
import numpy as np

F32 = np.float32


def e2m1_codes(v: np.ndarray) -> np.ndarray:
    """fp32 -> 4-bit codes via ml_dtypes' cast (round to nearest even, saturating)."""
    return np.clip(v.astype(F32), -6, 6).astype(ml_dtypes.float4_e2m1fn).view(np.uint8) & 0xF


def e2m1_values(codes: np.ndarray) -> np.ndarray:
    return codes.astype(np.uint8).view(ml_dtypes.float4_e2m1fn).astype(F32)


def e4m3(v: np.ndarray) -> np.ndarray:
    """fp32 -> float8_e4m3fn, saturating at 448."""
    return np.clip(v.astype(F32), -448, 448).astype(ml_dtypes.float8_e4m3fn)


def pack(codes: np.ndarray) -> np.ndarray:
    """[N, K] nibbles -> [N, K/2] bytes, element 2j in the low nibble."""
    codes = codes.astype(np.uint8)
    return (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)


def unpack(packed: np.ndarray) -> np.ndarray:
    out = np.empty((packed.shape[0], packed.shape[1] * 2), np.uint8)
    out[:, 0::2] = packed & 0xF
    out[:, 1::2] = packed >> 4
    return out


def quantize_nvfp4(w: np.ndarray, global_scale: float | None = None):
    """Returns (codes uint8 [N, K/2], scale bytes uint8 [N, K/16], global_scale fp32)."""
    w = w.astype(F32)
    n, k = w.shape
    if global_scale is None:
        gs = F32(np.abs(w).max()) / F32(6 * 448)
        if gs == 0:
            gs = F32(1.0)
    else:
        gs = F32(global_scale)
    blocks = w.reshape(n, k // 16, 16)
    amax = np.abs(blocks).max(axis=2)
    s = amax / (F32(6) * gs)
    s = np.maximum(s, F32(2.0**-9))
    s8 = e4m3(s)
    s8[amax == 0] = 1.0
    denom = s8.astype(F32) * gs
    codes = e2m1_codes(blocks / denom[:, :, None])
    codes[amax == 0] = 0
    return pack(codes.reshape(n, k)), s8.view(np.uint8), gs


def dequantize_nvfp4(codes, scale_bytes, gs):
    n = codes.shape[0]
    vals = e2m1_values(unpack(codes)).reshape(n, -1, 16)
    scale = scale_bytes.view(ml_dtypes.float8_e4m3fn).astype(F32) * F32(gs)
    return (vals * scale[:, :, None]).reshape(n, -1)


def quantize_mxfp4(w: np.ndarray):
    w = w.astype(F32)
    n, k = w.shape
    blocks = w.reshape(n, k // 32, 32)
    amax = np.abs(blocks).max(axis=2).astype(np.float64)
    with np.errstate(divide="ignore"):
        exp = np.floor(np.log2(np.where(amax > 0, amax, 1.0))) - 2
    exp = np.clip(exp, -127, 127).astype(np.int32)
    exp[amax == 0] = 0
    scaled = (blocks.astype(np.float64) * np.exp2(-exp[:, :, None].astype(np.float64))).astype(F32)
    codes = e2m1_codes(scaled)
    return pack(codes.reshape(n, k)), (exp + 127).astype(np.uint8)


def dequantize_mxfp4(codes, scale_bytes):
    n = codes.shape[0]
    vals = e2m1_values(unpack(codes)).reshape(n, -1, 32)
    scale = np.exp2(scale_bytes.astype(np.float64) - 127).astype(F32)
    return (vals * scale[:, :, None]).reshape(n, -1)


def _to_scale_dtype(s: np.ndarray, scale_dtype: str) -> np.ndarray:
    target = np.float16 if scale_dtype == "float16" else ml_dtypes.bfloat16
    return s.astype(target)


def pack_int4(w: np.ndarray, group: int, symmetric: bool, scale_dtype: str = "float16"):
    """Returns (codes [N, K/2], scales [N, K/g] in scale_dtype, zero points or None)."""
    w = w.astype(F32)
    n, k = w.shape
    g = w.reshape(n, k // group, group)
    lo = np.minimum(g.min(axis=2), F32(0))
    hi = np.maximum(g.max(axis=2), F32(0))
    s = np.maximum(hi, -lo) / F32(7) if symmetric else (hi - lo) / F32(15)
    s = np.where(s == 0, F32(1), s).astype(F32)
    stored = _to_scale_dtype(s, scale_dtype)
    sd = stored.astype(F32)
    if symmetric:
        q = np.clip(np.rint(g / sd[:, :, None]), -8, 7).astype(np.int32)
        zeros = None
    else:
        zeros = np.clip(np.rint(-lo / sd), 0, 15).astype(np.int32)
        q = np.clip(np.rint(g / sd[:, :, None]) + zeros[:, :, None], 0, 15).astype(np.int32)
        zeros = zeros.astype(np.uint8)
    codes = (q & 0xF).astype(np.uint8).reshape(n, k)
    return pack(codes), stored, zeros


def dequantize_int4(codes, scales, zeros, group):
    n = codes.shape[0]
    q = unpack(codes).astype(np.int32)
    if zeros is None:
        q = np.where(q >= 8, q - 16, q)
        z = 0
    else:
        z = np.repeat(zeros.astype(np.int32), group, axis=1)
    s = np.repeat(np.asarray(scales).astype(F32), group, axis=1)
    return ((q - z).astype(F32) * s).reshape(n, -1)
