"""Times of the default kernel choice for one build, for A/B runs of kernel changes.

Imports whichever w4a16 is first on PYTHONPATH (ab_device.sh points it at each build in
turn) and prints one line per (format, shape, M): `NAME FORMAT NxK M=m MICROSECONDS`,
the best of 3 medians of 20 replays of a CUDA graph that calls gemm once per weight copy
(bench_gemm_gpu.py's time_per_call; prepacked weights rotated past 4x L2, as there).
With `--dtype float16` x and y are fp16 and FORMAT reads e.g. `nvfp4-fp16`, so that bf16
and fp16 lines of one build stay apart. ab_table.py summarises the lines of several
builds and passes.

    PYTHONPATH=BUILD python benchmarks/ab_times.py NAME [--rows issue,focus,gemv,large,small]
        [--formats nvfp4,mxfp4,int4-g128] [--dtype bfloat16|float16] [--config NAME]

`--config` times one gemm config (a name from w4a16.gemm_configs()) instead of the default
choice, so that a dispatch rule can be compared with the config it would pick, in one build;
a row that config cannot run is left out.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

import w4a16

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_gemm_gpu import FORMATS, quantized_copies, time_per_call  # noqa: E402

# (N, K, values of M): issue 4's speed rows, the two shapes most A/B runs watched, the
# small-M kernel's rows (issue 3), or the 128- and 256-row warpgroup tiles' rows
ROWS = {
    "issue": [(16384, 2048, [32, 64]), (32768, 2048, [32, 64]), (2048, 16384, [32, 64]),
              (4096, 1024, [10, 50]), (1024, 4096, [10, 50]), (8192, 1024, [50])],
    "focus": [(8192, 1024, [17, 32, 50, 64]), (16384, 2048, [32, 50, 64])],
    "gemv": [(16384, 2048, [1, 16]), (2048, 16384, [1, 16]), (4096, 1024, [1]), (1024, 4096, [1])],
    "large": [(16384, 2048, [128, 256, 968]), (32768, 2048, [128]), (2048, 16384, [128, 256, 968])],
    "small": [(4096, 1024, [40, 50, 64]), (2048, 2048, [50]), (1024, 1024, [50])],
}


def pick(parser: argparse.ArgumentParser, option: str, text: str, choices) -> list[str]:
    """The comma-separated names of `text`, each one of `choices`, or a parser error."""
    names = text.split(",")
    unknown = [name for name in names if name not in choices]
    if unknown:
        parser.error(f"{option}: unknown {', '.join(unknown)}; expected some of {', '.join(choices)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="the build's label, first word of every line")
    parser.add_argument("--rows", default="issue", help="comma-separated: " + ", ".join(ROWS))
    parser.add_argument("--formats", default="nvfp4,mxfp4", help="comma-separated: " + ", ".join(FORMATS))
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"], help="x and y")
    parser.add_argument("--config", default=None, help="a gemm config name (default: the heuristic's choice)")
    args = parser.parse_args()
    formats = pick(parser, "--formats", args.formats, FORMATS)
    rows = [row for r in pick(parser, "--rows", args.rows, ROWS) for row in ROWS[r]]
    if not torch.cuda.is_available():
        sys.exit("ab_times.py: needs a CUDA GPU")
    config = -1 if args.config is None else args.config  # -1: the heuristic, not the tuning cache
    device = torch.device("cuda")
    dtype = getattr(torch, args.dtype)
    suffix = "" if dtype == torch.bfloat16 else "-fp16"
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    for fmt in formats:
        for n, k, batches in rows:
            g = torch.Generator(device=device).manual_seed(n + k)
            w = torch.randn(n, k, device=device, generator=g, dtype=dtype)
            copies = quantized_copies(w4a16.prepack(FORMATS[fmt](w)), l2)
            for m in batches:
                x = torch.randn(m, k, device=device, generator=g, dtype=dtype)
                y = torch.empty(m, n, device=device, dtype=dtype)
                calls = [lambda q=q: w4a16.gemm(x, q, out=y, config=config) for q in copies]
                try:
                    calls[0]()
                except (RuntimeError, ValueError):  # the config cannot run this row
                    continue
                seconds = min(time_per_call(calls, replays=20) for _ in range(3))  # best of 3 medians
                print(f"{args.name} {fmt}{suffix} {n}x{k} M={m} {seconds * 1e6:.2f}", flush=True)
            del copies


if __name__ == "__main__":
    main()
