"""Command line: ``python -m w4a16 info | export | check | tune``."""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import json
import sys

from .info import build_info, format_info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m w4a16", description="w4a16: 4-bit weight kernels")
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="version, build (CUDA, architectures), GPUs seen, formats")
    info.add_argument("--json", action="store_true", help="print the facts as JSON")
    export = commands.add_parser("export", help="quantize a checkpoint or a model and export it")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a .safetensors file (tensor by tensor)")
    source.add_argument("--module", help="'package.module:function' returning (model, example_input)")
    export.add_argument("--format", choices=("nvfp4", "mxfp4", "int4"), default="nvfp4")
    export.add_argument("--group-size", type=int, choices=(32, 64, 128, -1), default=None,
                        help="int4 group: 32, 64, 128 or -1 (one per output channel); default 128")
    export.add_argument("--to", choices=("modelopt", "onnx"), default="modelopt")
    export.add_argument("--include", nargs="*", default=["*mlp.gate_proj.weight", "*mlp.up_proj.weight",
                                                         "*mlp.down_proj.weight"],
                        help="fnmatch patterns of checkpoint weights to quantize (default: MLP projections)")
    export.add_argument("--output", required=True, help="a directory (modelopt) or a .onnx file")
    export.add_argument("--overwrite", action="store_true")
    export.add_argument("--swizzle", action="store_true", help="128x4 scale layout (Blackwell)")
    check = commands.add_parser("check", help="weight-error table of a .safetensors checkpoint, per format")
    check.add_argument("checkpoint")
    check.add_argument("--formats", nargs="+", default=["nvfp4", "mxfp4", "int4-g128"])
    check.add_argument("--include", nargs="*", default=None, help="fnmatch patterns on layer names")
    tune = commands.add_parser("tune", help="time the GPU gemm kernels for shapes and cache the fastest")
    tune.add_argument("--shapes", nargs="+", default=["16384x2048", "32768x2048", "2048x16384", "4096x1024",
                                                      "1024x4096"], help="N x K of the weights (default: Pi0.5 MLPs)")
    tune.add_argument("--m", nargs="+", type=int, default=[1, 4, 10, 16, 32, 50, 64, 128, 256, 968],
                      help="rows of x to tune for")
    tune.add_argument("--formats", nargs="+", choices=("nvfp4", "mxfp4", "int4"), default=["nvfp4"])
    tune.add_argument("--dtype", choices=("bfloat16", "float16"), default="bfloat16")
    tune.add_argument("--device", type=int, default=0)
    tune.add_argument("--repeats", type=int, default=20, help="CUDA-graph replays per timing (median)")
    args = parser.parse_args(argv)
    try:
        if args.command == "tune":
            return run_tune(args)
        if args.command == "check":
            return run_check(args)
        if args.command == "export":
            return run_export(args)
    except (ValueError, TypeError, RuntimeError, OSError, ImportError) as err:
        # what the user can mend (a missing file, no GPU, a weight the format cannot take):
        # one line, as argparse reports bad arguments, not a traceback
        print(f"python -m w4a16 {args.command}: error: {err}", file=sys.stderr)
        return 1
    facts = build_info()
    print(json.dumps(facts, indent=2) if args.json else format_info(facts))
    return 0


def run_tune(args: argparse.Namespace) -> int:
    from .tuning import cache_path, gpu_name, tune

    shapes = []
    for text in args.shapes:
        n, sep, k = text.lower().partition("x")
        if not sep or not n.isdigit() or not k.isdigit():
            print(f"tune: --shapes takes NxK pairs like 16384x2048, got {text!r}", file=sys.stderr)
            return 2
        shapes.append((int(n), int(k)))
    results = tune(shapes, ms=args.m, formats=args.formats, dtype=args.dtype, device=args.device,
                   repeats=args.repeats, verbose=True)
    print(f"tune: {len(results)} entries -> {cache_path(gpu_name(args.device))}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from safetensors import safe_open

    from .accuracy import Report, _quantizer, weight_rows

    for spec in args.formats:
        _quantizer(spec)
    report = Report(f"weight quantization error: {args.checkpoint}")
    with safe_open(args.checkpoint, "pt") as f:
        for key in f.keys():  # one tensor at a time: a multi-GB file is never held twice
            name = key[: -len(".weight")]
            if not key.endswith(".weight") or (args.include and not any(fnmatch.fnmatch(name, p) for p in args.include)):
                continue
            tensor = f.get_tensor(key)
            if tensor.dim() == 2 and tensor.is_floating_point():
                report.rows.extend(weight_rows(name, tensor, args.formats))
    print(report)
    summary = report.summary()
    if summary:
        print("mean SQNR (dB): " + ", ".join(f"{k} {v:.2f}" for k, v in summary.items()))
    return 0


def run_export(args: argparse.Namespace) -> int:
    import torch

    from . import pack_int4, patch_mlp, quantize_mxfp4, quantize_nvfp4
    from .export import save_modelopt, to_onnx
    from .quantize import _scale_block

    if args.group_size is not None and args.format != "int4":
        raise ValueError(f"--group-size: only int4 takes one ({args.format} has a fixed block)")
    group_size = 128 if args.group_size is None else args.group_size

    def quantize(weight):
        if args.format == "int4":
            return pack_int4(weight, group_size)
        return quantize_nvfp4(weight) if args.format == "nvfp4" else quantize_mxfp4(weight)

    if args.checkpoint:
        if args.to != "modelopt":
            print("export: --to onnx needs --module (a checkpoint has no graph)", file=sys.stderr)
            return 2
        from safetensors import safe_open

        entries = {}
        with safe_open(args.checkpoint, "pt") as f:
            for name in f.keys():  # one tensor at a time: a large file is never held twice
                tensor = f.get_tensor(name)
                chosen = tensor.dim() == 2 and any(fnmatch.fnmatch(name, p) for p in args.include)
                if chosen:
                    k = tensor.shape[1]
                    block = _scale_block(args.format, k, group_size)
                    if k % block:
                        # kept as it is, as patch_mlp skips such a Linear: padding K is not supported
                        print(f"export: kept {name} unquantized: K = {k} is not a multiple of the {args.format} "
                              f"block {block}", file=sys.stderr)
                        chosen = False
                entries[name[: -len(".weight")] if chosen else name] = quantize(tensor) if chosen else tensor
        config = save_modelopt(entries, args.output, overwrite=args.overwrite, swizzle=args.swizzle)
        count = sum(1 for v in entries.values() if not isinstance(v, torch.Tensor))
        print(f"export: {count} weights as {config['quantization']['quant_algo']} -> {args.output}")
        return 0
    module_name, _, function = args.module.partition(":")
    model, example = getattr(importlib.import_module(module_name), function)()
    report = patch_mlp(model, format=args.format, group_size=args.group_size)
    print(report)
    if args.to == "onnx":
        to_onnx(model, example, args.output)
    else:
        save_modelopt(model, args.output, overwrite=args.overwrite, swizzle=args.swizzle)
    print(f"export: -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
