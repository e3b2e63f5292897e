"""w4a16: 4-bit weights, 16-bit activations.

Quantize Linear weights to NVFP4, MXFP4 or group-wise INT4 and multiply with them, on any
DLPack array (torch, numpy, cupy, jax) on the CPU or a CUDA GPU.

    >>> import numpy as np, w4a16
    >>> w = np.random.randn(256, 512).astype(np.float32)
    >>> qw = w4a16.quantize_nvfp4(w)
    >>> y = w4a16.gemm(np.random.randn(4, 512).astype(np.float32), qw)   # [4, 256]
"""

from . import _C
from .info import build_info
from .ops import gemm
from .quantize import QuantizedWeight, dequantize, pack_int4, quantize_mxfp4, quantize_nvfp4

__version__ = _C.build_info()["version"]

__all__ = [
    "QuantizedWeight",
    "build_info",
    "dequantize",
    "gemm",
    "pack_int4",
    "quantize_mxfp4",
    "quantize_nvfp4",
]
