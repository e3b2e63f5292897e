"""Drop-in torch modules: FP4Linear (nvfp4 / mxfp4) and Int4Linear.

Both hold the weight under ModelOpt's names, so that their state_dict is a ModelOpt-style
checkpoint of the layer. In memory the codes are prepacked (w4a16.prepack: the GPU
kernels' order, done once when the module is built or loaded); state_dict() writes them
back in the canonical layout and load_state_dict() prepacks what it reads:

    weight             uint8 [N, K/2]        two 4-bit codes per byte, element 2j low
    weight_scale       [N, K/g]              float8_e4m3fn (nvfp4), uint8 E8M0 (mxfp4),
                                             float16/bfloat16 (int4)
    weight_scale_2     float32 []            nvfp4 only
    weight_zero_point  uint8 [N, K/g]        asymmetric int4 only
    bias               [N]                   optional, the activation dtype

forward(x) has nn.Linear's contract: x [..., K] float16/bfloat16 (float32 too on the CPU)
-> [..., N] of x's dtype, through the custom op torch.ops.w4a16.gemm. Its backward gives x
(and the bias, once it is set to require grad) their gradients, dy @ dequant(W) in x's dtype;
the quantized weight itself is frozen, so a model can train other layers (adapters, the
unquantized parts) through it.
"""

from __future__ import annotations

from typing import Optional

import torch

from . import _C, torch_ops
from ._arrays import is_positive_int
from .quantize import QuantizedWeight, convert_codes, pack_int4, prepack, quantize_mxfp4, quantize_nvfp4, unprepack

_QUANTIZED_BUFFERS = ("weight", "weight_scale", "weight_scale_2", "weight_zero_point")


class QuantizedLinear(torch.nn.Module):
    """Shared machinery of FP4Linear and Int4Linear (use those)."""

    format: str

    def __init__(self, in_features: int, out_features: int, bias: bool, format: str, group_size: int,
                 symmetric: bool = True, scale_dtype: torch.dtype = torch.float16,
                 device: Optional[torch.device] = None, bias_dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if not is_positive_int(value):
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if format == "int4" and scale_dtype not in (torch.float16, torch.bfloat16):
            raise ValueError(f"scale_dtype: expected torch.float16 or torch.bfloat16, got {scale_dtype}")
        if in_features % 2:
            raise ValueError(f"in_features: must be even to pack two 4-bit codes per byte, got {in_features}")
        if group_size <= 0 or in_features % group_size:
            raise ValueError(f"group_size: {group_size} does not divide in_features = {in_features}")
        self.in_features, self.out_features = in_features, out_features
        self.format, self.group_size = format, group_size
        groups = in_features // group_size
        scale_type = {"nvfp4": torch.float8_e4m3fn, "mxfp4": torch.uint8, "int4": scale_dtype}[format]
        self.register_buffer("weight", torch.empty(out_features, in_features // 2, dtype=torch.uint8, device=device))
        self.register_buffer("weight_scale", torch.empty(out_features, groups, dtype=scale_type, device=device))
        self.register_buffer("weight_scale_2",
                             torch.empty((), dtype=torch.float32, device=device) if format == "nvfp4" else None)
        self.register_buffer("weight_zero_point",
                             None if symmetric else torch.empty(out_features, groups, dtype=torch.uint8, device=device))
        self.bias = (torch.nn.Parameter(torch.empty(out_features, dtype=bias_dtype, device=device), requires_grad=False)
                     if bias else None)

    @classmethod
    def _from_quantized(cls, qw: QuantizedWeight, bias: Optional[torch.Tensor], **kwargs) -> "QuantizedLinear":
        n, k = qw.shape
        module = cls(k, n, bias is not None, device="meta", **kwargs)
        qw = prepack(qw)
        module.weight, module.weight_scale = qw.codes, qw.scales
        module.weight_scale_2, module.weight_zero_point = qw.global_scale, qw.zero_points
        if bias is not None:
            module.bias = torch.nn.Parameter(bias.detach().clone(), requires_grad=False)
        return module

    def quantized_weight(self, layout: str = "canonical") -> QuantizedWeight:
        """The weight as a QuantizedWeight: "prepacked" shares this module's tensors;
        "canonical" (the interchange layout, for export) has its own codes tensor."""
        qw = QuantizedWeight(self.format, (self.out_features, self.in_features), self.group_size, self.weight,
                             self.weight_scale, self.weight_scale_2, self.weight_zero_point, layout="prepacked")
        if layout == "prepacked":
            return qw
        if layout != "canonical":
            raise ValueError(f"layout: expected 'canonical' or 'prepacked', got {layout!r}")
        return unprepack(qw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.w4a16.gemm(x, self.weight, self.weight_scale, self.weight_scale_2, self.weight_zero_point,
                                    self.bias, torch_ops.FORMAT_CODES[self.format], self.group_size, 1.0,
                                    _C.LAYOUT_PREPACKED)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        codes = destination.get(prefix + "weight")
        if isinstance(codes, torch.Tensor) and codes.device.type != "meta":
            destination[prefix + "weight"] = convert_codes(codes.detach().contiguous(), self.format, to_prepacked=False)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # torch hands each module its own copy of the mapping: replacing an entry is local
        codes = state_dict.get(prefix + "weight")
        if (isinstance(codes, torch.Tensor) and codes.dtype == torch.uint8 and codes.dim() == 2
                and codes.shape[1] % 4 == 0 and codes.device.type != "meta"):
            state_dict[prefix + "weight"] = convert_codes(codes.detach().contiguous(), self.format, to_prepacked=True)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _apply(self, fn, recurse=True):
        # Module.half() / .to(dtype) cast every floating buffer; the quantized tensors keep
        # their dtypes and only follow device moves (re-read from the originals: exact)
        originals = {name: self._buffers[name] for name in _QUANTIZED_BUFFERS if self._buffers.get(name) is not None}
        super()._apply(fn, recurse)
        for name, tensor in originals.items():
            moved = self._buffers[name]
            if moved.dtype != tensor.dtype:
                self._buffers[name] = tensor.to(moved.device)
        return self

    @property
    def nbytes(self) -> int:
        """Bytes of the quantized weight and the bias."""
        tensors = [self._buffers.get(n) for n in _QUANTIZED_BUFFERS] + [self.bias]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"format={self.format}, group_size={self.group_size}")


def _linear_weight(linear: torch.nn.Module) -> torch.Tensor:
    weight = getattr(linear, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise TypeError(f"linear: expected a module with a 2-D weight (nn.Linear), got {type(linear).__name__}")
    if weight.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"linear: weight dtype {weight.dtype} is not float32, float16 or bfloat16")
    return weight.detach()


class FP4Linear(QuantizedLinear):
    """A Linear with NVFP4 (E2M1 + E4M3 scales per 16 + fp32 global scale) or MXFP4 (E2M1 +
    E8M0 scales per 32) weights."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, format: str = "nvfp4",
                 device: Optional[torch.device] = None, bias_dtype: torch.dtype = torch.bfloat16) -> None:
        if format not in ("nvfp4", "mxfp4"):
            raise ValueError(f"format: FP4Linear takes 'nvfp4' or 'mxfp4', got {format!r}")
        block = 16 if format == "nvfp4" else 32
        if in_features % block:
            raise ValueError(f"in_features: {in_features} is not a multiple of the {format} block {block}")
        super().__init__(in_features, out_features, bias, format, block, device=device, bias_dtype=bias_dtype)

    @classmethod
    def from_linear(cls, linear: torch.nn.Module, format: str = "nvfp4") -> "FP4Linear":
        """Quantizes linear.weight [N, K] (K a multiple of 16 for nvfp4, 32 for mxfp4); the
        new module does not keep the 16-bit weight."""
        if format not in ("nvfp4", "mxfp4"):
            raise ValueError(f"format: FP4Linear takes 'nvfp4' or 'mxfp4', got {format!r}")
        weight = _linear_weight(linear)
        qw = quantize_nvfp4(weight) if format == "nvfp4" else quantize_mxfp4(weight)
        bias = getattr(linear, "bias", None)
        return cls._from_quantized(qw, bias, format=format,
                                   bias_dtype=bias.dtype if bias is not None else torch.bfloat16)


class Int4Linear(QuantizedLinear):
    """A Linear with group-wise INT4 weights (group 32, 64, 128 or the whole row),
    symmetric or with zero points; fp16/bf16 scales."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, group_size: int = 128,
                 symmetric: bool = True, scale_dtype: torch.dtype = torch.bfloat16,
                 device: Optional[torch.device] = None, bias_dtype: torch.dtype = torch.bfloat16) -> None:
        group_size = in_features if group_size in (None, -1) else group_size
        if group_size not in (32, 64, 128, in_features):
            raise ValueError(f"group_size: expected 32, 64, 128 or -1 (per channel), got {group_size}")
        super().__init__(in_features, out_features, bias, "int4", group_size, symmetric, scale_dtype, device,
                         bias_dtype)

    @classmethod
    def from_linear(cls, linear: torch.nn.Module, group_size: int = 128, symmetric: bool = True) -> "Int4Linear":
        """Quantizes linear.weight [N, K]; scales take the weight's 16-bit dtype (bfloat16
        for float32 weights)."""
        weight = _linear_weight(linear)
        scale_dtype = "float16" if weight.dtype == torch.float16 else "bfloat16"
        qw = pack_int4(weight, group_size, symmetric=symmetric, scale_dtype=scale_dtype)
        bias = getattr(linear, "bias", None)
        return cls._from_quantized(qw, bias, group_size=qw.group_size, symmetric=symmetric,
                                   scale_dtype=getattr(torch, scale_dtype),
                                   bias_dtype=bias.dtype if bias is not None else torch.bfloat16)
