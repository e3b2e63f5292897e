"""w4a16: 4-bit weights, 16-bit activations.

Quantize Linear weights to NVFP4, MXFP4 or group-wise INT4 and multiply with them, on any
DLPack array (torch, numpy, cupy, jax) on the CPU or a CUDA GPU.

    >>> import numpy as np, w4a16
    >>> w = np.random.randn(256, 512).astype(np.float32)
    >>> qw = w4a16.quantize_nvfp4(w)
    >>> y = w4a16.gemm(np.random.randn(4, 512).astype(np.float32), qw)   # [4, 256]
"""

from . import _C
from .info import build_info, get_include, get_library
from .ops import gemm, gemm_configs, gemm_geglu
from .quantize import QuantizedWeight, dequantize, pack_int4, prepack, quantize_mxfp4, quantize_nvfp4, unprepack

__version__ = _C.build_info()["version"]

# torch-only parts load on first use, so that numpy users need no torch
_TORCH_NAMES = {"FP4Linear": "nn", "Int4Linear": "nn", "patch_mlp": "patch", "PatchReport": "patch", "tune": "tuning"}


def __getattr__(name: str):
    if name in _TORCH_NAMES:
        import importlib

        return getattr(importlib.import_module(f".{_TORCH_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'w4a16' has no attribute {name!r}")

__all__ = [
    "FP4Linear",
    "Int4Linear",
    "PatchReport",
    "QuantizedWeight",
    "build_info",
    "dequantize",
    "get_include",
    "get_library",
    "gemm",
    "gemm_configs",
    "gemm_geglu",
    "pack_int4",
    "patch_mlp",
    "prepack",
    "quantize_mxfp4",
    "quantize_nvfp4",
    "tune",
    "unprepack",
]
