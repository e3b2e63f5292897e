"""patch_mlp: swap the MLP Linears of a Pi0.5 policy (or any gated / fc1-fc2 MLP) for
quantized modules, in place, and report what changed.

Found by walking the module tree, so every nesting works:
  - Hugging Face Gemma / PaliGemma ``GemmaMLP`` (gate_proj, up_proj, down_proj, act_fn),
    openpi ``PI0Pytorch`` (paligemma_with_expert.paligemma.language_model.layers[i].mlp and
    paligemma_with_expert.gemma_expert.model.layers[i].mlp), lerobot ``PI05Policy``
    (model.paligemma_with_expert...): any module with gate_proj / up_proj / down_proj;
  - generic fc1 / fc2 MLPs (SigLIP's vision MLP, whose fc2 has K = 4304 = 16 * 269): only
    when ``include`` names them; NVFP4 takes K = 4304, MXFP4 and INT4 (blocks of 32+) skip
    that Linear with the reason in the report.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from . import _C, torch_ops
from .nn import FP4Linear, Int4Linear, QuantizedLinear
from .quantize import _scale_block
from .torch_ops import GATED_ROWS, interleave_gate_up, split_gate_up

FORMATS = ("nvfp4", "mxfp4", "int4")


@dataclass
class PatchReport:
    """What patch_mlp did: converted modules (name, shape [N, K], format), skipped ones
    with the reason, and the weight bytes before and after."""

    converted: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    bytes_before: int = 0
    bytes_after: int = 0

    @property
    def saved_bytes(self) -> int:
        return self.bytes_before - self.bytes_after

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} Linear(s), skipped {len(self.skipped)}; weights "
                 f"{self.bytes_before / 2**20:.1f} MiB -> {self.bytes_after / 2**20:.1f} MiB "
                 f"(saved {self.saved_bytes / 2**20:.1f} MiB)"]
        lines += [f"  {name}: [{n}, {k}] -> {fmt}" for name, (n, k), fmt in self.converted]
        lines += [f"  skipped {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)


def is_gelu_tanh(act_fn: Callable) -> bool:
    """Whether act_fn computes torch's gelu(approximate="tanh") (Gemma's gelu_pytorch_tanh,
    whatever class holds it): checked on values, to 1e-6, so that only that activation is
    fused into the gate/up kernel."""
    probe = torch.linspace(-6.0, 6.0, 97)
    try:
        with torch.no_grad():
            out = act_fn(probe)
    except Exception:  # an activation that cannot run on a CPU float tensor is not this one
        return False
    expected = torch.nn.functional.gelu(probe, approximate="tanh")
    return (isinstance(out, torch.Tensor) and out.shape == probe.shape
            and bool(torch.allclose(out.float(), expected, rtol=0.0, atol=1e-6)))


class GatedMLP(torch.nn.Module):
    """down(act(gate(x)) * up(x)) with gate and up fused into one quantized GEMM of
    [2I, H], their rows interleaved in blocks of 8 (torch_ops.interleave_gate_up). With
    tanh-approximated GELU (Gemma, Pi0.5) the activation and the product run in that
    GEMM's epilogue (torch.ops.w4a16.gemm_geglu), so h [.., 2I] is never written; any
    other act_fn runs as elementwise ops after it.

    The buffer ``gate_up_interleave`` (8) records that order in the state dict; a state
    dict without it (saved before the interleave: gate rows, then up rows) is converted
    when loaded."""

    def __init__(self, gate_up: QuantizedLinear, down: QuantizedLinear, act_fn: Callable, intermediate: int) -> None:
        super().__init__()
        if intermediate % GATED_ROWS or gate_up.out_features != 2 * intermediate:
            raise ValueError(f"gate_up: expected [2 * intermediate, H] with intermediate a multiple of {GATED_ROWS}, "
                             f"got {gate_up.out_features} rows for intermediate = {intermediate}")
        self.gate_up, self.down_proj, self.act_fn = gate_up, down, act_fn
        self.intermediate = intermediate
        self.fused_activation = is_gelu_tanh(act_fn)
        self.register_buffer("gate_up_interleave",
                             torch.tensor(GATED_ROWS, dtype=torch.int32, device=gate_up.weight.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gu = self.gate_up
        if self.fused_activation:
            hidden = torch.ops.w4a16.gemm_geglu(x, gu.weight, gu.weight_scale, gu.weight_scale_2, gu.weight_zero_point,
                                                gu.bias, torch_ops.FORMAT_CODES[gu.format], gu.group_size, 1.0,
                                                _C.LAYOUT_PREPACKED)
        else:
            gate, up = split_gate_up(gu(x), dim=-1)
            hidden = self.act_fn(gate) * up
        return self.down_proj(hidden)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # torch hands each module its own copy of the mapping: replacing an entry is local
        marker = state_dict.get(prefix + "gate_up_interleave")
        if marker is None and prefix + "gate_up.weight" in state_dict:
            # saved before the interleave: [gate rows; up rows] -> the kernels' order
            for name in ("weight", "weight_scale", "weight_zero_point", "bias"):
                t = state_dict.get(f"{prefix}gate_up.{name}")
                if isinstance(t, torch.Tensor) and t.dim() >= 1 and t.shape[0] == 2 * self.intermediate:
                    state_dict[f"{prefix}gate_up.{name}"] = interleave_gate_up(*t.split(self.intermediate))
            state_dict[prefix + "gate_up_interleave"] = torch.tensor(GATED_ROWS, dtype=torch.int32)
        elif marker is not None and int(marker) != GATED_ROWS:
            error_msgs.append(f"{prefix}gate_up_interleave: expected {GATED_ROWS} (rows interleaved in blocks of "
                              f"{GATED_ROWS}), got {int(marker)}")
            return
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


def _patterns(patterns: Optional[Sequence[str]], name: str) -> Optional[list[str]]:
    """fnmatch patterns as a list: one string is one pattern, not its letters."""
    if patterns is None:
        return None
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    for p in patterns:
        if not isinstance(p, str):
            raise TypeError(f"{name}: expected fnmatch patterns (strings), got {type(p).__name__} {p!r}")
    return patterns


def _matches(name: str, patterns: Optional[Sequence[str]]) -> bool:
    return patterns is not None and any(fnmatch.fnmatch(name, p) for p in patterns)


def _convert(linear: torch.nn.Linear, format: str, group_size: Optional[int], symmetric: bool) -> QuantizedLinear:
    if format == "int4":
        return Int4Linear.from_linear(linear, group_size=128 if group_size is None else group_size,
                                      symmetric=symmetric)
    return FP4Linear.from_linear(linear, format=format)


def _why_not(linear: torch.nn.Module, format: str, group_size: Optional[int]) -> Optional[str]:
    """None when `linear` can be converted, else the reason."""
    if not isinstance(linear, torch.nn.Linear):
        return f"not an nn.Linear ({type(linear).__name__})"
    k = linear.in_features
    block = _scale_block(format, k, group_size)
    if k % block:
        return f"in_features {k} is not a multiple of the {format} block {block} (padding not supported yet)"
    return None


def _weight_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(module.parameters()) + list(module.buffers()))


def patch_mlp(model: torch.nn.Module, format: str = "nvfp4", include: Optional[Sequence[str]] = None,
              exclude: Optional[Sequence[str]] = None, group_size: Optional[int] = None,
              fuse_gate_up: bool = True, symmetric: bool = True) -> PatchReport:
    """Replaces the MLP Linears of `model` in place.

    Args:
        format: "nvfp4", "mxfp4" or "int4".
        include: fnmatch patterns (one string or a list) on MLP module names; when given
            only matching MLPs are converted (and fc1/fc2 MLPs become eligible).
        exclude: fnmatch patterns (one string or a list) on MLP or Linear names never to convert.
        group_size: int4 group (32, 64, 128, -1 per channel; default 128); None (or the
            format's own block) for nvfp4 / mxfp4.
        fuse_gate_up: gate and up become one quantized GEMM (their rows interleaved in blocks
            of 8, one global scale for nvfp4) and, for tanh GELU, its epilogue applies the
            activation and the product (GatedMLP).
        symmetric: int4 without zero points.
    Returns:
        PatchReport (converted, skipped with reasons, bytes before and after).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if format not in FORMATS:
        raise ValueError(f"format: expected one of {FORMATS}, got {format!r}")
    if format == "int4" and group_size not in (None, -1, 32, 64, 128):
        raise ValueError(f"group_size: expected 32, 64, 128 or -1 (per channel), got {group_size}")
    if format != "int4" and group_size not in (None, _scale_block(format, 0)):
        raise ValueError(f"group_size: only int4 takes one; {format} scales blocks of {_scale_block(format, 0)}, "
                         f"got {group_size}")
    include, exclude = _patterns(include, "include"), _patterns(exclude, "exclude")
    report = PatchReport()
    mlps = []
    for name, module in model.named_modules():
        gated = all(isinstance(getattr(module, p, None), torch.nn.Module) for p in ("gate_proj", "up_proj", "down_proj"))
        fc = all(isinstance(getattr(module, p, None), torch.nn.Module) for p in ("fc1", "fc2"))
        if not (gated or fc) or _matches(name, exclude):
            continue
        if include is not None and not _matches(name, include):
            continue
        if fc and include is None:
            continue  # fc1/fc2 MLPs (SigLIP) only on request
        mlps.append((name, module, gated))
    for name, mlp, gated in mlps:
        parts = ("gate_proj", "up_proj", "down_proj") if gated else ("fc1", "fc2")
        linears = {p: getattr(mlp, p) for p in parts}
        for p in parts:
            full = f"{name}.{p}" if name else p
            reason = "excluded" if _matches(full, exclude) else _why_not(linears[p], format, group_size)
            if reason:
                report.skipped.append((full, reason))
                linears[p] = None
        report.bytes_before += sum(_weight_bytes(m) for m in linears.values() if m is not None)
        fuse = (gated and fuse_gate_up and name != "" and linears["gate_proj"] is not None and linears["up_proj"] is not None
                and hasattr(mlp, "act_fn") and linears["gate_proj"].bias is None and linears["up_proj"].bias is None
                and linears["gate_proj"].out_features % GATED_ROWS == 0
                and linears["gate_proj"].weight.shape == linears["up_proj"].weight.shape)
        if fuse:
            gate, up = linears.pop("gate_proj"), linears.pop("up_proj")
            fused = torch.nn.Linear(gate.in_features, 2 * gate.out_features, bias=False, device="meta")
            fused.weight = torch.nn.Parameter(interleave_gate_up(gate.weight.detach(), up.weight.detach()),
                                              requires_grad=False)
            gate_up = _convert(fused, format, group_size, symmetric)
            del fused
            down = linears.pop("down_proj")
            down = _convert(down, format, group_size, symmetric) if down is not None else mlp.down_proj
            replacement = GatedMLP(gate_up, down, mlp.act_fn, gate.out_features)
            _set_module(model, name, replacement)
            report.converted.append((f"{name}.gate_up", (2 * gate.out_features, gate.in_features), format))
            report.bytes_after += gate_up.nbytes
            if isinstance(down, QuantizedLinear):
                report.converted.append((f"{name}.down_proj", (down.out_features, down.in_features), format))
                report.bytes_after += down.nbytes
            continue
        for p, linear in linears.items():
            if linear is None:
                continue
            q = _convert(linear, format, group_size, symmetric)
            setattr(mlp, p, q)
            report.converted.append((f"{name}.{p}", (linear.out_features, linear.in_features), format))
            report.bytes_after += q.nbytes
    return report


def _set_module(model: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
