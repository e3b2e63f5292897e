"""Export before the TensorRT / TensorRT-LLM engine build: ModelOpt-style checkpoints.

save_modelopt(model_or_weights, directory) writes
    model.safetensors        every quantized Linear as <name>.weight (uint8 [N, K/2], element
                             2j in the low nibble), <name>.weight_scale, <name>.weight_scale_2
                             (nvfp4, fp32 scalar), <name>.weight_zero_point (asymmetric int4);
                             every other tensor of the model as it is (name and dtype kept)
    hf_quant_config.json     {"producer": ..., "quantization": {"quant_algo", "group_size",
                             "exclude_modules"}} as ModelOpt writes it
    quantization_config.json the "quantization_config" block to merge into config.json
and load_modelopt(directory) reads it back into QuantizedWeights bit for bit.
to_onnx (in onnx_export.py, re-exported here) writes standard DequantizeLinear graphs.

Formats: nvfp4 -> quant_algo "NVFP4" (weight_scale float8_e4m3fn [N, K/16]); mxfp4 ->
"MXFP4" (weight_scale E8M0 bytes uint8 [N, K/32]); int4 -> "W4A16_AWQ" with our canonical
packing (uint8 [N, K/2], signed two's-complement nibbles, element 2j low) and fp16/bf16
weight_scale [N, K/g] (plus uint8 weight_zero_point [N, K/g] when asymmetric, an extension
AWQ itself does not have). Fused gate_up modules of patch_mlp are written as separate
gate_proj / up_proj tensors (rows split; one shared weight_scale_2, as TensorRT-LLM wants
for fused layers).

swizzle=True stores NVFP4 / MXFP4 block scales in the 128x4-tiled layout that Blackwell's
tensor cores read (see swizzle_scales_128x4); hf_quant_config.json then says so under
"w4a16": {"scale_layout": "128x4"}, and load_modelopt undoes it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Mapping, Union

import numpy as np
import torch

from .info import build_info
from .quantize import QuantizedWeight

QUANT_ALGO = {"nvfp4": "NVFP4", "mxfp4": "MXFP4", "int4": "W4A16_AWQ"}
FORMAT_OF_ALGO = {v: k for k, v in QUANT_ALGO.items()}
WEIGHTS_FILE = "model.safetensors"


# ---- the 128x4 scale layout ---------------------------------------------------------------

def swizzle_scales_128x4(scales: torch.Tensor) -> torch.Tensor:
    """[R, C] one-byte block scales -> the 128x4-tiled layout, padded with zeros to
    R' = ceil(R/128)*128 rows and C' = ceil(C/4)*4 columns, returned flat (R' * C' bytes,
    same dtype). Tile (rb, cb) covers rows 128rb.. and columns 4cb..; tiles are stored in
    row-major tile order, 512 bytes each, and inside a tile element (r, c) sits at
    (r % 32) * 16 + (r // 32) * 4 + c."""
    if not isinstance(scales, torch.Tensor) or scales.dim() != 2 or scales.element_size() != 1:
        raise ValueError(f"scales: expected a 2-D tensor of one-byte scales, got "
                         f"{getattr(scales, 'dtype', type(scales).__name__)} {list(getattr(scales, 'shape', []))}")
    rows, cols = scales.shape
    rows_p, cols_p = -(-rows // 128) * 128, -(-cols // 4) * 4
    raw = scales.view(torch.uint8) if scales.dtype != torch.uint8 else scales
    padded = torch.zeros(rows_p, cols_p, dtype=torch.uint8, device=scales.device)
    padded[:rows, :cols] = raw
    # [rb, r//32 (4), r%32 (32), cb, c (4)] -> [rb, cb, r%32, r//32, c]
    tiles = padded.view(rows_p // 128, 4, 32, cols_p // 4, 4).permute(0, 3, 2, 1, 4)
    out = tiles.contiguous().view(-1)
    return out.view(scales.dtype) if scales.dtype != torch.uint8 else out


def unswizzle_scales_128x4(flat: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Inverse of swizzle_scales_128x4: the [rows, cols] scales."""
    rows_p, cols_p = -(-rows // 128) * 128, -(-cols // 4) * 4
    raw = flat.view(torch.uint8) if flat.dtype != torch.uint8 else flat
    if raw.numel() != rows_p * cols_p:
        raise ValueError(f"scales: expected {rows_p * cols_p} swizzled bytes for [{rows}, {cols}], got {raw.numel()}")
    tiles = raw.view(rows_p // 128, cols_p // 4, 32, 4, 4).permute(0, 3, 2, 1, 4)
    out = tiles.contiguous().view(rows_p, cols_p)[:rows, :cols].contiguous()
    return out.view(flat.dtype) if flat.dtype != torch.uint8 else out


# ---- collecting what to write ----------------------------------------------------------------

def _from_module(model: torch.nn.Module):
    """(quantized weights by Linear name, other tensors by name, names of plain Linears)."""
    from .nn import QuantizedLinear
    from .patch import GatedMLP

    weights: dict[str, QuantizedWeight] = {}
    excluded: list[str] = []
    owned: set[str] = set()
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, GatedMLP):
            qw = module.gate_up.quantized_weight()
            gate, up = split_gate_up_weight(qw)
            weights[f"{prefix}gate_proj"], weights[f"{prefix}up_proj"] = gate, up
            owned.update(f"{prefix}gate_up.{t}" for t, _ in module.gate_up.named_buffers())
            owned.add(f"{prefix}gate_up_interleave")  # the row order of the fused weight: not the model's
        elif isinstance(module, QuantizedLinear) and not name.endswith("gate_up"):
            weights[name] = module.quantized_weight()
            owned.update(f"{prefix}{t}" for t, _ in module.named_buffers())
        elif isinstance(module, torch.nn.Linear):
            excluded.append(name)
    others = {}
    for key, tensor in model.state_dict().items():
        if key in owned:
            continue
        # the bias of a converted module keeps its own name (<name>.bias)
        others[key.replace(".gate_up.bias", ".gate_proj.bias")] = tensor
    return weights, others, excluded


def split_gate_up_weight(qw: QuantizedWeight) -> tuple[QuantizedWeight, QuantizedWeight]:
    """The gate and up weights of GatedMLP's fused one (rows interleaved in blocks of 8,
    torch_ops.split_gate_up); the global scale is shared."""
    from .torch_ops import split_gate_up

    n, k = qw.shape
    codes, scales = split_gate_up(qw.codes), split_gate_up(qw.scales)
    zeros = (None, None) if qw.zero_points is None else split_gate_up(qw.zero_points)
    return tuple(QuantizedWeight(qw.format, (n // 2, k), qw.group_size, codes[i].contiguous(), scales[i].contiguous(),
                                 qw.global_scale, None if zeros[i] is None else zeros[i].contiguous())
                 for i in (0, 1))


def _as_torch(weight: QuantizedWeight) -> QuantizedWeight:
    def conv(t):
        if t is None or isinstance(t, torch.Tensor):
            return t
        import numpy as np

        array = np.asarray(t)
        if array.dtype.name == "float8_e4m3fn":
            return torch.from_numpy(array.view(np.uint8).copy()).view(torch.float8_e4m3fn)
        if array.dtype.name == "bfloat16":
            return torch.from_numpy(array.view(np.uint16).copy()).view(torch.bfloat16)
        return torch.from_numpy(np.ascontiguousarray(array))

    return QuantizedWeight(weight.format, weight.shape, weight.group_size, conv(weight.codes), conv(weight.scales),
                           conv(weight.global_scale), conv(weight.zero_points))


# ---- save / load -----------------------------------------------------------------------------------

def save_modelopt(model_or_weights: Union[torch.nn.Module, Mapping[str, Any]], directory: str, *,
                  overwrite: bool = False, swizzle: bool = False) -> dict:
    """Writes a ModelOpt-style checkpoint (see the module docstring) into `directory`.

    Args:
        model_or_weights: a model patched with patch_mlp / holding FP4Linear or Int4Linear
            modules, or a mapping {name: QuantizedWeight or tensor} (numpy or torch).
        directory: created; an existing non-empty one needs overwrite=True.
        swizzle: NVFP4 / MXFP4 block scales in the 128x4 layout of Blackwell tensor cores.
    Returns:
        The hf_quant_config dict written.
    The files are written to a temporary directory beside `directory` and moved in place at
    the end, so a failure leaves nothing half-written.
    """
    from safetensors.torch import save_file

    if isinstance(model_or_weights, torch.nn.Module):
        weights, others, excluded = _from_module(model_or_weights)
    elif isinstance(model_or_weights, Mapping):
        weights = {k: v for k, v in model_or_weights.items() if isinstance(v, QuantizedWeight)}
        others = {k: v for k, v in model_or_weights.items() if not isinstance(v, QuantizedWeight)}
        excluded = []
        for name, value in model_or_weights.items():
            if not isinstance(name, str):
                raise TypeError(f"model_or_weights: names must be strings, got {name!r}")
            if not isinstance(value, (QuantizedWeight, torch.Tensor, np.ndarray)):
                raise TypeError(f"model_or_weights[{name!r}]: expected a QuantizedWeight or a torch / numpy "
                                f"tensor, got {type(value).__name__}")
    else:
        raise TypeError(f"model_or_weights: expected a torch module or a mapping of names to QuantizedWeights, "
                        f"got {type(model_or_weights).__name__}")
    if not weights:
        raise ValueError("model_or_weights: holds no quantized weight (run patch_mlp or quantize first)")
    formats = {w.format for w in weights.values()}
    groups = {w.group_size for w in weights.values()}
    if len(formats) != 1 or len(groups) != 1:
        raise ValueError(f"model_or_weights: one format and group size per checkpoint, got {sorted(formats)} "
                         f"and {sorted(groups)}")
    fmt, group = formats.pop(), groups.pop()
    if os.path.isdir(directory) and os.listdir(directory) and not overwrite:
        raise FileExistsError(f"directory: {directory} exists and is not empty; pass overwrite=True "
                              "(--overwrite on the command line)")

    tensors: dict[str, torch.Tensor] = {}
    for name, weight in weights.items():
        weight = _as_torch(weight)
        scales = weight.scales
        if swizzle and fmt != "int4":
            scales = swizzle_scales_128x4(scales)
        tensors[f"{name}.weight"] = weight.codes
        tensors[f"{name}.weight_scale"] = scales
        if weight.global_scale is not None:
            tensors[f"{name}.weight_scale_2"] = weight.global_scale.reshape(())
        if weight.zero_points is not None:
            tensors[f"{name}.weight_zero_point"] = weight.zero_points
    for name, tensor in others.items():
        if not isinstance(tensor, torch.Tensor):
            tensor = torch.from_numpy(np.ascontiguousarray(tensor))
        tensors[name] = tensor
    # own copies: safetensors refuses tensors that share memory (tied embeddings, the
    # global scale shared by gate and up)
    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in tensors.items()}

    quantization = {"quant_algo": QUANT_ALGO[fmt], "group_size": group, "exclude_modules": sorted(excluded)}
    config = {"producer": {"name": "w4a16", "version": build_info()["version"]}, "quantization": quantization}
    if swizzle and fmt != "int4":
        config["w4a16"] = {"scale_layout": "128x4",
                           "shapes": {name: list(w.shape) for name, w in weights.items()}}
    block = {"quant_method": "modelopt", **quantization}

    parent = os.path.dirname(os.path.abspath(directory)) or "."
    staging = tempfile.mkdtemp(prefix=".w4a16-export-", dir=parent)
    try:
        save_file(tensors, os.path.join(staging, WEIGHTS_FILE), metadata={"format": "pt"})
        with open(os.path.join(staging, "hf_quant_config.json"), "w") as f:
            json.dump(config, f, indent=2)
        with open(os.path.join(staging, "quantization_config.json"), "w") as f:
            json.dump({"quantization_config": block}, f, indent=2)
        if os.path.exists(directory):
            old = tempfile.mkdtemp(prefix=".w4a16-old-", dir=parent)
            os.rmdir(old)
            os.replace(directory, old)
            os.replace(staging, directory)
            shutil.rmtree(old)
        else:
            os.replace(staging, directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return config


def load_modelopt(directory: str) -> tuple[dict, dict, dict]:
    """Reads a checkpoint written by save_modelopt (or ModelOpt's own, for the formats
    above). Returns (quantized weights {linear name: QuantizedWeight}, other tensors
    {name: tensor}, the hf_quant_config dict). Torch tensors on the CPU."""
    from safetensors.torch import load_file

    with open(os.path.join(directory, "hf_quant_config.json")) as f:
        config = json.load(f)
    algo = config["quantization"]["quant_algo"]
    if algo not in FORMAT_OF_ALGO:
        raise ValueError(f"hf_quant_config.json: quant_algo {algo!r} is not one of {sorted(FORMAT_OF_ALGO)}")
    fmt = FORMAT_OF_ALGO[algo]
    swizzled = config.get("w4a16", {}).get("scale_layout") == "128x4"
    shapes = config.get("w4a16", {}).get("shapes", {})
    tensors = load_file(os.path.join(directory, WEIGHTS_FILE))
    names = sorted(k[: -len(".weight_scale")] for k in tensors if k.endswith(".weight_scale"))
    weights, used = {}, set()
    for name in names:
        state = {key[len(name) + 1:]: tensors[key] for key in tensors
                 if key.startswith(name + ".") and key[len(name) + 1:] in
                 ("weight", "weight_scale", "weight_scale_2", "weight_zero_point")}
        used.update(f"{name}.{key}" for key in state)
        if swizzled:
            n, k = shapes[name]
            state["weight_scale"] = unswizzle_scales_128x4(state["weight_scale"], n,
                                                           k // config["quantization"]["group_size"])
        weights[name] = QuantizedWeight.from_state_dict(state, format=fmt)
    others = {k: v for k, v in tensors.items() if k not in used}
    return weights, others, config


def to_onnx(model, example_inputs, path=None):
    """ONNX graph of a quantized MLP with standard DequantizeLinear nodes; see
    w4a16.onnx_export.to_onnx (needs the onnx package)."""
    from .onnx_export import to_onnx as build

    return build(model, example_inputs, path)
