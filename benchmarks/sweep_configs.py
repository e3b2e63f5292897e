"""Times every gemm config (the small-M kernel and each tensor-core tile x K split) for the
Pi0.5 shapes, so that the dispatch heuristic in csrc/cuda/dispatch.cu rests on
measurements. Same method as bench_gemm_gpu.py (rotated weights past 2x L2, CUDA-graph
replay, median). The tuner (python -m w4a16 tune) does the same per machine and caches it.

Each line also gives the default choice (the heuristic, config -1) timed in the same run,
and how far the fastest config is below it: where that is more than the spread of a few
percent, the heuristic misses.

    python benchmarks/sweep_configs.py [--out DIR] [--format nvfp4] [--ms 64,128] [--shapes 16384x2048]
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from w4a16.tuning import tune

SHAPES = [(16384, 2048), (32768, 2048), (2048, 16384), (4096, 1024), (1024, 4096)]
MS = [1, 8, 16, 32, 50, 64, 128, 256]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    parser.add_argument("--format", default="nvfp4", choices=("nvfp4", "mxfp4", "int4"))
    parser.add_argument("--ms", default=",".join(map(str, MS)), help="comma-separated M values")
    parser.add_argument("--shapes", default=",".join(f"{n}x{k}" for n, k in SHAPES), help="comma-separated NxK")
    args = parser.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    ms = [int(v) for v in args.ms.split(",")]
    results = tune(shapes, ms=ms, formats=[args.format], repeats=10, save=False)
    for key, entry in results.items():
        timings = entry["timings_us"]
        top = sorted(timings, key=timings.get)[:4]
        default = entry["default_us"]
        gain = 100.0 * (entry["us"] / default - 1.0)
        print(f"{key}: default {default:.1f}, best {gain:+.1f}%: " +
              "  ".join(f"{name} {timings[name]:.1f}" for name in top), flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"sweep_{args.format}.json"), "w") as f:
        json.dump({"device": torch.cuda.get_device_name(0), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
