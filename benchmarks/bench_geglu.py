"""The gate and up projections of a Gemma MLP with the activation in the GEMM's epilogue
(w4a16.gemm_geglu) against the same work done the usual way, side by side on one GPU.

For the Pi0.5 gate/up weights as patch_mlp fuses them (action expert 8192x1024, prefix
32768x2048) and M = 1 .. 968, each row times one call of:
  - bf16:         cuBLAS (torch.nn.functional.linear) of the fused [2I, H] weight, then
                  torch's gelu(tanh) and product on the two halves (eager: 3 kernels);
  - 4-bit + torch: w4a16.gemm of the fused weight, then the same torch ops;
  - geglu:        w4a16.gemm_geglu (one kernel, h never written);
  - 4-bit gemm:   w4a16.gemm alone (what the fused kernel's main loop costs).
Method as bench_gemm_gpu.py: weights rotated past 4x L2, one CUDA graph per variant holding
one call per weight copy, median of the replays. bf16 and nvfp4 / int4-g128.

    python benchmarks/bench_geglu.py [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os

import torch

import w4a16
from w4a16.torch_ops import split_gate_up

from bench_gemm_gpu import rotated_weights, time_per_call

SHAPES = [(8192, 1024), (32768, 2048)]
BATCHES = [1, 10, 50, 128, 968]
FORMATS = {"nvfp4": w4a16.quantize_nvfp4, "int4-g128": lambda w: w4a16.pack_int4(w, 128)}


def geglu_torch(h: torch.Tensor) -> torch.Tensor:
    gate, up = split_gate_up(h, dim=-1)
    return torch.nn.functional.gelu(gate, approximate="tanh") * up


def run() -> list[dict]:
    torch.manual_seed(0)
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    rows = []
    for n, k in SHAPES:
        w = (torch.randn(n, k, device="cuda") * 0.02).to(torch.bfloat16)
        dense, quantized = rotated_weights(w, FORMATS, l2)
        for m in BATCHES:
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            h = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
            y = torch.empty(m, n // 2, device="cuda", dtype=torch.bfloat16)
            row = {"N": n, "K": k, "M": m}
            row["bf16_us"] = 1e6 * time_per_call(
                [lambda wc=wc: geglu_torch(torch.nn.functional.linear(x, wc)) for wc in dense])
            for name, copies in quantized.items():
                row[f"{name}_torch_us"] = 1e6 * time_per_call(
                    [lambda qw=qw: geglu_torch(w4a16.gemm(x, qw, out=h)) for qw in copies])
                row[f"{name}_geglu_us"] = 1e6 * time_per_call(
                    [lambda qw=qw: w4a16.gemm_geglu(x, qw, out=y) for qw in copies])
                row[f"{name}_gemm_us"] = 1e6 * time_per_call([lambda qw=qw: w4a16.gemm(x, qw, out=h) for qw in copies])
            rows.append(row)
            print(format_row(row), flush=True)
        del dense, quantized
        torch.cuda.empty_cache()
    return rows


def format_row(r: dict) -> str:
    parts = [f"{r['N']}x{r['K']} M={r['M']}", f"bf16+torch {r['bf16_us']:.1f}"]
    for name in FORMATS:
        parts.append(f"{name}: +torch {r[f'{name}_torch_us']:.1f}, geglu {r[f'{name}_geglu_us']:.1f} "
                     f"({r['bf16_us'] / r[f'{name}_geglu_us']:.2f}x bf16), gemm {r[f'{name}_gemm_us']:.1f}")
    return " | ".join(parts)


def markdown(rows: list[dict], device: str) -> str:
    lines = [f"Device: {device}; {datetime.date.today().isoformat()}; torch {torch.__version__}; "
             f"w4a16 {w4a16.__version__}. µs per call (median, CUDA-graph replay, weights rotated past 4x L2); "
             "'+ torch' = the 4-bit gemm, then torch's gelu and product; 'geglu' = w4a16.gemm_geglu; "
             "x = bf16 (cuBLAS + torch's gelu and product) / geglu.", "",
             "| N x K | M | bf16 + torch | " + " | ".join(
                 f"{f} + torch | {f} geglu | {f} gemm alone" for f in FORMATS) + " |",
             "|---|---:|---:|" + "---:|---:|---:|" * len(FORMATS)]
    for r in rows:
        cells = [f"{r['N']}x{r['K']}", str(r["M"]), f"{r['bf16_us']:.1f}"]
        for f in FORMATS:
            cells += [f"{r[f'{f}_torch_us']:.1f}", f"{r[f'{f}_geglu_us']:.1f} ({r['bf16_us'] / r[f'{f}_geglu_us']:.2f}x)",
                      f"{r[f'{f}_gemm_us']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="directory for geglu.json and geglu.md")
    args = parser.parse_args()
    rows = run()
    device = torch.cuda.get_device_name(0)
    table = markdown(rows, device)
    print(table)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "geglu.json"), "w") as f:
            json.dump({"device": device, "rows": rows}, f, indent=1)
        with open(os.path.join(args.out, "geglu.md"), "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
