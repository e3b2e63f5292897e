"""Side-by-side GPU timing of W4A16 gemm for the Pi0.5 MLP shapes.

For every (N x K, M): cuBLAS bf16 (torch.nn.functional.linear), torch's int4 kernel
(_weight_int4pack_mm, group 128, bf16; up to M = 256), and w4a16 in each format with
prepacked weights and the default kernel choice (what FP4Linear / Int4Linear run: the
small-M kernel, then the tensor-core GEMM), plus nvfp4 in the canonical layout up to
M = 16 (the functional API without prepack); the 4-bit memory floor (packed weights +
scales + x + y at the copy bandwidth measured in this run), the percentage of that
roofline, and the speedup over cuBLAS bf16.

Method: weights rotate through enough copies to exceed 4x the L2 cache, so every call
reads its weights from DRAM; a CUDA graph holds one call per copy and is replayed; the
time per call is the median over replays (CUDA events) divided by the calls per graph, and
each cell is the median of --runs such graphs captured one after another (one graph's median
can land 5-25% off on an H100 when the clock or DRAM refresh catches it; three runs hide a
single outlier).

    python benchmarks/bench_gemm_gpu.py [--out DIR] [--quick] [--shapes 16384x2048,...] [--batches 32,64,...] [--runs N]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import statistics

import torch

import w4a16
from w4a16 import torch_ops
from w4a16.timing import capture, replay_seconds

# (N, K): the issues' shapes, then the action expert's gate and up fused as patch_mlp runs them
SHAPES = [(16384, 2048), (32768, 2048), (2048, 16384), (4096, 1024), (1024, 4096), (8192, 1024)]
BATCHES = [1, 2, 4, 8, 10, 16, 32, 50, 64, 128, 256, 968]
FORMATS = {
    "nvfp4": w4a16.quantize_nvfp4,
    "mxfp4": w4a16.quantize_mxfp4,
    "int4-g128": lambda w: w4a16.pack_int4(w, 128),
}


def copy_bandwidth(gib: float = 1.0, repeats: int = 20) -> float:
    """Device-to-device copy rate in bytes/s, counting bytes read plus bytes written."""
    n = int(gib * 2**30) // 4
    src = torch.empty(n, dtype=torch.float32, device="cuda").uniform_()
    dst = torch.empty_like(src)
    times = []
    for _ in range(repeats + 3):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    del src, dst
    return 2 * n * 4 / statistics.median(times[3:])


def copies_needed(bytes_per_copy: int, l2_bytes: int) -> int:
    return max(2, math.ceil(4 * l2_bytes / max(bytes_per_copy, 1)) + 1)


def time_per_call(calls: list, replays: int = 30) -> float:
    """Median seconds per call of a graph that runs each callable once, in order."""

    def run_all():
        for call in calls:
            call()

    graph = capture(run_all)
    seconds = replay_seconds(graph, replays)
    del graph
    return seconds / len(calls)


def median_time(calls: list, runs: int) -> float:
    """The median of `runs` time_per_call measurements, each with its own graph."""
    return statistics.median(time_per_call(calls) for _ in range(runs))


def clone_weight(qw: w4a16.QuantizedWeight) -> w4a16.QuantizedWeight:
    def c(t):
        return None if t is None else t.clone()

    return w4a16.QuantizedWeight(qw.format, qw.shape, qw.group_size, c(qw.codes), c(qw.scales),
                                 c(qw.global_scale), c(qw.zero_points), qw.layout)


def quantized_copies(qw: w4a16.QuantizedWeight, l2_bytes: int) -> list[w4a16.QuantizedWeight]:
    """qw and enough copies of it to exceed 4x L2, so that a graph cycling through them reads
    every weight from DRAM."""
    return [qw] + [clone_weight(qw) for _ in range(copies_needed(qw.nbytes, l2_bytes) - 1)]


def rotated_weights(w: torch.Tensor, formats: dict, l2_bytes: int) -> tuple[list, dict]:
    """Copies of w (bf16) and of its prepacked quantization in each of `formats` (name ->
    quantizer), as quantized_copies: (dense copies, {name: quantized copies})."""
    dense = [w.clone() for _ in range(copies_needed(w.numel() * 2, l2_bytes))]
    quantized = {name: quantized_copies(w4a16.prepack(make(w)), l2_bytes) for name, make in formats.items()}
    return dense, quantized


def torch_int4_weights(w: torch.Tensor, copies: int):
    """torch's tinygemm int4 (group 128) packing of w, or None where this torch lacks it."""
    n, k = w.shape
    try:
        g = w.float().reshape(n, k // 128, 128)
        lo, hi = g.amin(-1), g.amax(-1)
        scale = ((hi - lo) / 15).clamp(min=1e-8)
        q = ((g - lo[..., None]) / scale[..., None]).round().clamp(0, 15).to(torch.int32).reshape(n, k)
        packed_u8 = ((q[:, ::2] << 4) | q[:, 1::2]).to(torch.uint8)
        packed = torch._convert_weight_to_int4pack(packed_u8, 8)
        zeros = lo + 8 * scale  # tinygemm: w = (q - 8) * scale + zero
        sz = torch.stack([scale, zeros], dim=-1).transpose(0, 1).contiguous().to(torch.bfloat16)
        return [(packed.clone(), sz.clone()) for _ in range(copies)]
    except Exception as err:  # noqa: BLE001 - report, do not fail the run
        print(f"torch int4 unavailable: {err}")
        return None


def run(args) -> dict:
    torch.manual_seed(0)
    props = torch.cuda.get_device_properties(0)
    l2 = props.L2_cache_size
    bandwidth = copy_bandwidth()
    print(f"device {props.name}, L2 {l2 / 2**20:.0f} MiB, copy bandwidth {bandwidth / 1e12:.2f} TB/s")
    shapes = SHAPES[:2] if args.quick else SHAPES
    batches = [1, 16, 50] if args.quick else BATCHES
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    if args.batches:
        batches = [int(v) for v in args.batches.split(",")]
    rows = []
    for n, k in shapes:
        w = (torch.randn(n, k, device="cuda") * 0.02).to(torch.bfloat16)
        dense_copies, quantized = rotated_weights(w, FORMATS, l2)
        canonical = [w4a16.unprepack(qw) for qw in quantized["nvfp4"]]
        tiny = torch_int4_weights(w, copies_needed(n * k // 2, l2))
        for m in batches:
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
            row = {"N": n, "K": k, "M": m}
            row["cublas_bf16_us"] = 1e6 * median_time(
                [lambda wc=wc: torch.nn.functional.linear(x, wc) for wc in dense_copies], args.runs)
            if tiny is not None and m <= 256:
                row["torch_int4_us"] = 1e6 * median_time(
                    [lambda p=p, sz=sz: torch._weight_int4pack_mm(x, p, 128, sz) for p, sz in tiny], args.runs)
            for name, copies in quantized.items():
                t = median_time([lambda qw=qw: w4a16.gemm(x, qw, out=y) for qw in copies], args.runs)
                floor = (copies[0].nbytes + m * k * 2 + m * n * 2) / bandwidth
                row[f"{name}_us"] = 1e6 * t
                row[f"{name}_floor_us"] = 1e6 * floor
                row[f"{name}_roofline_pct"] = 100 * floor / t
                row[f"{name}_speedup"] = row["cublas_bf16_us"] / (1e6 * t)
            if m <= 16:
                t = median_time([lambda qw=qw: w4a16.gemm(x, qw, out=y) for qw in canonical], args.runs)
                row["nvfp4_canonical_us"] = 1e6 * t
            # what FP4Linear runs: the custom op, which hands large M to dequantize + cuBLAS
            op_fmt, layout = torch_ops.FORMAT_CODES["nvfp4"], w4a16._C.LAYOUT_PREPACKED
            row["nvfp4_op_us"] = 1e6 * median_time([
                lambda qw=qw: torch.ops.w4a16.gemm(x, qw.codes, qw.scales, qw.global_scale, None, None, op_fmt, 16,
                                                   1.0, layout) for qw in quantized["nvfp4"]], args.runs)
            row["nvfp4_op_speedup"] = row["cublas_bf16_us"] / row["nvfp4_op_us"]
            rows.append(row)
            print(format_row(row), flush=True)
        del dense_copies, quantized, tiny, canonical
        torch.cuda.empty_cache()
    return {"rows": rows, "runs": args.runs, "bandwidth": bandwidth, "quantize": bench_quantize(bandwidth)}


def bench_quantize(bandwidth: float) -> dict:
    """NVFP4 quantization of a 16384 x 2048 bf16 weight, global scale included, against the
    roofline of one read of the input and one write of the outputs."""
    n, k = 16384, 2048
    copies = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) for _ in range(2)]
    codes = torch.empty(n, k // 2, dtype=torch.uint8, device="cuda")
    scales = torch.empty(n, k // 16, dtype=torch.float8_e4m3fn, device="cuda")
    gs = torch.empty((), dtype=torch.float32, device="cuda")
    t = time_per_call([lambda w=w: w4a16._C.quantize_nvfp4(w, codes, scales, gs, None,
                                                          torch.cuda.current_stream().cuda_stream) for w in copies])
    bytes_moved = n * k * 2 + n * k // 2 + n * k // 16 + 4
    result = {"us": 1e6 * t, "floor_us": 1e6 * bytes_moved / bandwidth, "roofline_pct": 100 * bytes_moved / bandwidth / t}
    print(f"quantize_nvfp4 16384x2048 bf16: {result['us']:.1f} us, floor {result['floor_us']:.1f} us, "
          f"{result['roofline_pct']:.0f}% of roofline")
    return result


def format_row(r: dict) -> str:
    parts = [f"{r['N']}x{r['K']}", f"M={r['M']}", f"bf16 {r['cublas_bf16_us']:.1f}"]
    if "torch_int4_us" in r:
        parts.append(f"torch-int4 {r['torch_int4_us']:.1f}")
    for name in FORMATS:
        parts.append(f"{name} {r[f'{name}_us']:.1f} ({r[f'{name}_roofline_pct']:.0f}%, {r[f'{name}_speedup']:.2f}x)")
    if "nvfp4_canonical_us" in r:
        parts.append(f"nvfp4-canonical {r['nvfp4_canonical_us']:.1f}")
    parts.append(f"nvfp4-op {r['nvfp4_op_us']:.1f} ({r['nvfp4_op_speedup']:.2f}x)")
    return " | ".join(parts)


def markdown(result: dict, device: str) -> str:
    lines = [f"Device: {device}; copy bandwidth {result['bandwidth'] / 1e12:.2f} TB/s (read + write); "
             f"{datetime.date.today().isoformat()}; torch {torch.__version__}; w4a16 {w4a16.__version__}.",
             f"Times in µs per call (median of {result['runs']} graphs' medians, CUDA-graph replay, weights rotated past 4x L2); "
             "formats with prepacked weights and the default kernel choice (C API); "
             "'module op' = torch.ops.w4a16.gemm as FP4Linear calls it (dequantize + cuBLAS from "
             f"M = {torch_ops._large_m_prepacked(0)}). "
             "% = 4-bit floor / time; x = speedup over cuBLAS bf16.", "",
             "| N x K | M | cuBLAS bf16 | torch int4 | nvfp4 | mxfp4 | int4-g128 | floor (nvfp4) | nvfp4 canonical "
             "| nvfp4 module op |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        cells = [f"{r['N']}x{r['K']}", str(r["M"]), f"{r['cublas_bf16_us']:.1f}",
                 f"{r['torch_int4_us']:.1f}" if "torch_int4_us" in r else "n/a"]
        for name in FORMATS:
            cells.append(f"{r[f'{name}_us']:.1f} ({r[f'{name}_roofline_pct']:.0f}%, {r[f'{name}_speedup']:.2f}x)")
        cells.append(f"{r['nvfp4_floor_us']:.1f}")
        cells.append(f"{r['nvfp4_canonical_us']:.1f}" if "nvfp4_canonical_us" in r else "")
        cells.append(f"{r['nvfp4_op_us']:.1f} ({r['nvfp4_op_speedup']:.2f}x)")
        lines.append("| " + " | ".join(cells) + " |")
    q = result["quantize"]
    lines += ["", f"NVFP4 quantization of a 16384x2048 bf16 weight (global scale included): {q['us']:.1f} µs, "
              f"floor {q['floor_us']:.1f} µs, {q['roofline_pct']:.0f}% of the roofline."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=os.environ.get("OUT", "."), help="directory for results.json and results.md")
    parser.add_argument("--quick", action="store_true", help="two shapes, three batch sizes")
    parser.add_argument("--shapes", help="N x K pairs to run instead, e.g. 16384x2048,1024x4096")
    parser.add_argument("--batches", help="values of M to run instead, e.g. 32,64")
    parser.add_argument("--runs", type=int, default=3, help="graphs per cell, the median is reported (default 3)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs: expected at least 1, got {args.runs}")
    result = run(args)
    device = torch.cuda.get_device_name(0)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gemm_results.json"), "w") as f:
        json.dump({"device": device, **result}, f, indent=1)
    text = markdown(result, device)
    with open(os.path.join(args.out, "gemm_results.md"), "w") as f:
        f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
