"""Times of the default kernel choice for one build, for A/B runs of kernel changes.

Imports whichever w4a16 is first on PYTHONPATH (ab_device.sh points it at each build in
turn) and prints one line per (format, shape, M): `NAME FORMAT NxK M=m MICROSECONDS`,
the best of 3 x 20 replays of a CUDA graph that calls gemm once per weight copy (prepacked
weights rotated past 4x L2, as bench_gemm_gpu.py). ab_table.py summarises the lines of
several builds and passes.

    PYTHONPATH=BUILD python benchmarks/ab_times.py NAME [--rows issue|focus] [--formats nvfp4,mxfp4,int4]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

import w4a16
from w4a16.timing import capture, replay_seconds

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_gemm_gpu import quantized_copies  # noqa: E402

QUANTIZERS = {
    "nvfp4": w4a16.quantize_nvfp4,
    "mxfp4": w4a16.quantize_mxfp4,
    "int4": lambda w: w4a16.pack_int4(w, 128),
}
# (N, K, values of M): issue 4's speed rows, or the two shapes most A/B runs watched
ROWS = {
    "issue": [(16384, 2048, [32, 64]), (32768, 2048, [32, 64]), (2048, 16384, [32, 64]),
              (4096, 1024, [10, 50]), (1024, 4096, [10, 50]), (8192, 1024, [50])],
    "focus": [(8192, 1024, [17, 32, 50, 64]), (16384, 2048, [32, 50, 64])],
}


def best_call_seconds(calls_per_graph: int, run) -> float:
    """Best of three medians of 20 graph replays of `run`, per call."""
    graph = capture(run)
    seconds = min(replay_seconds(graph, repeats=20) for _ in range(3)) / calls_per_graph
    del graph
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the build's label, first word of every line")
    parser.add_argument("--rows", choices=sorted(ROWS), default="issue")
    parser.add_argument("--formats", default="nvfp4,mxfp4", help="comma-separated: " + ", ".join(QUANTIZERS))
    args = parser.parse_args()
    formats = args.formats.split(",")
    unknown = [f for f in formats if f not in QUANTIZERS]
    if unknown:
        parser.error(f"--formats: unknown {', '.join(unknown)}; expected some of {', '.join(QUANTIZERS)}")
    if not torch.cuda.is_available():
        sys.exit("ab_times.py: needs a CUDA GPU")
    device = torch.device("cuda")
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    for fmt in formats:
        for n, k, batches in ROWS[args.rows]:
            g = torch.Generator(device=device).manual_seed(n + k)
            w = torch.randn(n, k, device=device, generator=g, dtype=torch.bfloat16)
            copies = quantized_copies(w4a16.prepack(QUANTIZERS[fmt](w)), l2)
            for m in batches:
                x = torch.randn(m, k, device=device, generator=g, dtype=torch.bfloat16)
                y = torch.empty(m, n, device=device, dtype=torch.bfloat16)

                def run() -> None:
                    for qw in copies:
                        w4a16.gemm(x, qw, out=y)

                print(f"{args.name} {fmt} {n}x{k} M={m} {best_call_seconds(len(copies), run) * 1e6:.2f}", flush=True)
            del copies


if __name__ == "__main__":
    main()
