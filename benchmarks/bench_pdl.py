"""What programmatic dependent launch (PDL) gives: w4a16.gemm timed back to back with it
(the default from SM90 on) and without it (W4A16_PDL=0), side by side with cuBLAS bf16.

The rows are the issues' target rows, nvfp4 with prepacked weights and the default kernel
choice; the method is bench_gemm_gpu.py's (weights rotated past 4x L2, one CUDA graph of
one call per copy, median of replays). The variable is read once per process, so each
mode runs in a child process of this script.

    python benchmarks/bench_pdl.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CASES = [(16384, 2048, 1), (32768, 2048, 1), (2048, 16384, 1), (16384, 2048, 16), (16384, 2048, 32),
         (16384, 2048, 64), (4096, 1024, 1), (1024, 4096, 1), (4096, 1024, 10), (1024, 4096, 10),
         (4096, 1024, 16), (1024, 4096, 16), (4096, 1024, 50), (1024, 4096, 50), (16384, 2048, 128)]


def child() -> None:
    """Times every case in this process's PDL mode; prints one JSON line."""
    import torch

    import w4a16
    from bench_gemm_gpu import copies_needed, quantized_copies, time_per_call

    torch.manual_seed(0)
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    out = {}
    for n, k, m in CASES:
        w = (torch.randn(n, k, device="cuda") * 0.02).to(torch.bfloat16)
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
        dense = [w.clone() for _ in range(copies_needed(w.numel() * 2, l2))]
        copies = quantized_copies(w4a16.prepack(w4a16.quantize_nvfp4(w)), l2)
        out[f"{n}x{k}/{m}"] = {
            "cublas_us": 1e6 * time_per_call([lambda wc=wc: torch.nn.functional.linear(x, wc) for wc in dense]),
            "nvfp4_us": 1e6 * time_per_call([lambda q=q: w4a16.gemm(x, q, out=y) for q in copies]),
        }
    print(json.dumps(out))


def run_mode(pdl: bool) -> dict:
    env = dict(os.environ, W4A16_PDL="1" if pdl else "0")
    here = os.path.dirname(os.path.abspath(__file__))
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child"], env=env, cwd=here,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child()
        return
    on, off = run_mode(True), run_mode(False)
    lines = ["| N x K | M | cuBLAS bf16 | nvfp4, PDL off | nvfp4, PDL on (default) | gain |",
             "|---|---:|---:|---:|---:|---:|"]
    for n, k, m in CASES:
        key = f"{n}x{k}/{m}"
        cublas = on[key]["cublas_us"]
        t_off, t_on = off[key]["nvfp4_us"], on[key]["nvfp4_us"]
        lines.append(f"| {n}x{k} | {m} | {cublas:.1f} | {t_off:.1f} ({cublas / t_off:.2f}x) | "
                     f"{t_on:.1f} ({cublas / t_on:.2f}x) | {100 * (t_off - t_on) / t_off:.0f}% |")
    text = "\n".join(lines)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "pdl_results.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
