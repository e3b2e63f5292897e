"""ONNX graphs with standard DequantizeLinear for the quantized MLPs, for TensorRT.

Each quantized Linear becomes DequantizeLinear -> Transpose -> MatMul, with the weight as
a packed 4-bit initializer:
  - INT4 (opset 21): W int4 [N, K] (uint4 with zero points), scale [N, K/g] fp16/bf16,
    axis 1, block_size g: the blocked layout TensorRT documents for weight-only INT4.
  - NVFP4 (opset 23): double dequantization: the FLOAT8E4M3FN block scales [N, K/16] are
    first dequantized by the fp32 global scale (a scalar DequantizeLinear), then scale
    the FLOAT4E2M1 weight [N, K] with axis 1, block_size 16. The result equals
    w4a16.dequantize bit for bit (both round e4m3 * global_scale to fp32 first).
  - MXFP4 has no standard E8M0 DequantizeLinear in these opsets: not exported.
ONNX packs 4-bit tensors two per byte, first element in the low nibble: the canonical
codes go in unchanged.

Supported models: FP4Linear / Int4Linear, patch_mlp's GatedMLP, a Gemma-style MLP whose
gate/up/down were converted, and nn.Sequential / nn.ModuleList chains of those.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from .export import split_gate_up_weight
from .nn import QuantizedLinear
from .patch import GatedMLP
from .quantize import QuantizedWeight

_FLOAT_TYPES = {torch.float16: TensorProto.FLOAT16, torch.bfloat16: TensorProto.BFLOAT16,
                torch.float32: TensorProto.FLOAT}


class _Builder:
    def __init__(self, dtype: torch.dtype) -> None:
        self.nodes, self.initializers, self.counter = [], [], 0
        self.elem = _FLOAT_TYPES[dtype]
        self.opset = 21

    def name(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}_{self.counter}"

    def raw(self, stem: str, data_type: int, dims: Sequence[int], raw: bytes) -> str:
        name = self.name(stem)
        self.initializers.append(helper.make_tensor(name, data_type, list(dims), raw, raw=True))
        return name

    def node(self, op: str, inputs: Sequence[str], **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [out], **attrs))
        return out

    def dequantized_weight(self, qw: QuantizedWeight) -> str:
        """The [N, K] float weight of `qw` (canonical layout), by DequantizeLinear nodes."""
        n, k = qw.shape
        codes = qw.codes.detach().cpu().contiguous().numpy().tobytes()
        if qw.format == "int4":
            signed = qw.zero_points is None
            w = self.raw("w", TensorProto.INT4 if signed else TensorProto.UINT4, (n, k), codes)
            scale_t = qw.scales.detach().cpu().contiguous()
            scale = self.raw("w_scale", _FLOAT_TYPES[scale_t.dtype], scale_t.shape, scale_t.view(torch.uint8).numpy().tobytes())
            inputs = [w, scale]
            if not signed:
                z = qw.zero_points.detach().cpu().numpy().astype(np.uint8)
                flat = np.append(z.reshape(-1), np.uint8(0)) if z.size % 2 else z.reshape(-1)
                packed = (flat[0::2] | (flat[1::2] << 4)).astype(np.uint8)  # two per byte, first low
                inputs.append(self.raw("w_zero", TensorProto.UINT4, z.shape, packed.tobytes()))
            out = self.node("DequantizeLinear", inputs, axis=1, block_size=qw.group_size)
            if _FLOAT_TYPES[scale_t.dtype] != self.elem:
                out = self.node("Cast", [out], to=self.elem)
            return out
        if qw.format == "nvfp4":
            self.opset = 23
            w = self.raw("w", TensorProto.FLOAT4E2M1, (n, k), codes)
            s8 = qw.scales.detach().cpu().contiguous()
            scale8 = self.raw("w_scale_e4m3", TensorProto.FLOAT8E4M3FN, s8.shape, s8.view(torch.uint8).numpy().tobytes())
            gs = self.raw("w_scale_2", TensorProto.FLOAT, (), np.float32(qw.global_scale.item()).tobytes())
            scale = self.node("DequantizeLinear", [scale8, gs])  # e4m3 * global scale, fp32
            out = self.node("DequantizeLinear", [w, scale], axis=1, block_size=16)
            if self.elem != TensorProto.FLOAT:
                out = self.node("Cast", [out], to=self.elem)
            return out
        raise NotImplementedError(f"{qw.format}: no standard ONNX DequantizeLinear for this format (opset <= 23)")

    def linear(self, module: QuantizedLinear, x: str) -> str:
        return self.weight_matmul(module.quantized_weight(), module.bias, x)

    def weight_matmul(self, qw: QuantizedWeight, bias: torch.Tensor | None, x: str) -> str:
        w = self.dequantized_weight(qw)
        y = self.node("MatMul", [x, self.node("Transpose", [w], perm=[1, 0])])
        if bias is not None:
            b = bias.detach().cpu().to(bias.dtype).contiguous()
            y = self.node("Add", [y, self.raw("bias", _FLOAT_TYPES[b.dtype], b.shape, b.view(torch.uint8).numpy().tobytes())])
        return y

    def gelu_tanh(self, act, x: str) -> str:
        if getattr(act, "approximate", None) == "tanh" or "tanh" in type(act).__name__.lower():
            return self.node("Gelu", [x], approximate="tanh")
        raise NotImplementedError(f"activation {type(act).__name__}: only tanh-approximated GELU is exported")

    def module(self, module: torch.nn.Module, x: str) -> str:
        if isinstance(module, QuantizedLinear):
            return self.linear(module, x)
        if isinstance(module, GatedMLP):
            # gate and up as the two Linears they were (the fused weight's rows interleaved):
            # the graph TensorRT sees is the model's own, whatever the kernel layout
            gate_w, up_w = split_gate_up_weight(module.gate_up.quantized_weight())
            gate = self.gelu_tanh(module.act_fn, self.weight_matmul(gate_w, None, x))
            up = self.weight_matmul(up_w, None, x)
            return self.linear(module.down_proj, self.node("Mul", [gate, up]))
        if all(isinstance(getattr(module, p, None), QuantizedLinear) for p in ("gate_proj", "up_proj", "down_proj")):
            gate = self.gelu_tanh(module.act_fn, self.linear(module.gate_proj, x))
            return self.linear(module.down_proj, self.node("Mul", [gate, self.linear(module.up_proj, x)]))
        if isinstance(module, (torch.nn.Sequential, torch.nn.ModuleList)):
            for child in module:
                x = self.module(child, x)
            return x
        raise NotImplementedError(f"{type(module).__name__}: to_onnx exports quantized Linears, gated MLPs and "
                                  "sequences of them")


def dequantize_graph(module: QuantizedLinear) -> onnx.ModelProto:
    """The DequantizeLinear part of `module`'s graph alone, its output the float32 weight
    [N, K]: evaluates to module.quantized_weight().dequantize() exactly."""
    builder = _Builder(torch.float32)
    w = builder.dequantized_weight(module.quantized_weight())
    builder.nodes.append(helper.make_node("Identity", [w], ["w"]))
    n, k = module.out_features, module.in_features
    graph = helper.make_graph(builder.nodes, "w4a16_dequantize", [],
                              [helper.make_tensor_value_info("w", TensorProto.FLOAT, [n, k])], builder.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", builder.opset)], producer_name="w4a16")
    proto.ir_version = 10 if builder.opset <= 21 else 11
    onnx.checker.check_model(proto, full_check=True)
    return proto


def to_onnx(model: torch.nn.Module, example_inputs: torch.Tensor, path: str | None = None) -> onnx.ModelProto:
    """Builds the ONNX graph of `model` (see the module docstring) for inputs shaped like
    `example_inputs` [..., K] (the leading dimensions become symbolic), checks it with
    onnx.checker and writes it to `path` when given. Returns the ModelProto."""
    if not isinstance(example_inputs, torch.Tensor) or example_inputs.dtype not in _FLOAT_TYPES:
        raise TypeError("example_inputs: expected a float16, bfloat16 or float32 tensor")
    builder = _Builder(example_inputs.dtype)
    out = builder.module(model, "x")
    dims = [f"d{i}" for i in range(example_inputs.dim() - 1)]
    x_info = helper.make_tensor_value_info("x", builder.elem, dims + [example_inputs.shape[-1]])
    with torch.no_grad():
        out_features = model(example_inputs).shape[-1]
    y_info = helper.make_tensor_value_info("y", builder.elem, dims + [out_features])
    builder.nodes.append(helper.make_node("Identity", [out], ["y"]))
    graph = helper.make_graph(builder.nodes, "w4a16", [x_info], [y_info], builder.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", builder.opset)],
                              producer_name="w4a16")
    proto.ir_version = 10 if builder.opset <= 21 else 11
    onnx.checker.check_model(proto, full_check=True)
    if path is not None:
        onnx.save(proto, path)
    return proto
