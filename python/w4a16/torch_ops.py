"""torch.library custom ops over the C extension, so that torch.compile (fullgraph) and
CUDA-graph capture see one opaque op per quantized matmul.

``torch.ops.w4a16.gemm(x, codes, scales, global_scale, zero_points, bias, format,
group_size, alpha)`` -> y [..., N]: the op launches on ``torch.cuda.current_stream()``
for CUDA tensors and allocates its output with torch's caching allocator.
"""

from __future__ import annotations

from typing import Optional

import torch

from . import _C

FORMAT_CODES = {"nvfp4": _C.FORMAT_NVFP4, "mxfp4": _C.FORMAT_MXFP4, "int4": _C.FORMAT_INT4}


def _stream_of(t: torch.Tensor) -> Optional[int]:
    return int(torch.cuda.current_stream(t.device).cuda_stream) if t.is_cuda else None


@torch.library.custom_op("w4a16::gemm", mutates_args=())
def gemm(x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor, global_scale: Optional[torch.Tensor],
         zero_points: Optional[torch.Tensor], bias: Optional[torch.Tensor], format: int, group_size: int,
         alpha: float) -> torch.Tensor:
    """y [..., N] = alpha * x [..., K] @ dequant(W)^T + bias, W given by its canonical tensors
    (codes uint8 [N, K/2], scales [N, K/group_size], ...); format is a FORMAT_CODES value."""
    n, k = codes.shape[0], codes.shape[1] * 2
    x2 = x.detach().reshape(-1, k)  # no autograd through this op; DLPack refuses grad tensors
    if bias is not None:
        bias = bias.detach()
    if not x2.is_contiguous():
        x2 = x2.contiguous()  # documented copy: the op takes any strided activation
    y = torch.empty((x2.shape[0], n), dtype=x.dtype, device=x.device)
    _C.gemm(x2, (format, group_size, codes, scales, global_scale, zero_points), bias, alpha, y, _stream_of(x))
    return y.reshape(*x.shape[:-1], n)


@gemm.register_fake
def _gemm_fake(x, codes, scales, global_scale, zero_points, bias, format, group_size, alpha):
    return x.new_empty((*x.shape[:-1], codes.shape[0]))
