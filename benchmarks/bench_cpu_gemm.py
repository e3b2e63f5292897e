"""CPU gemm of w4a16 against numpy's float32 matmul on the dequantized weights.

numpy (OpenBLAS sgemm) multiplies the fp32 weights that w4a16 decodes on the fly; the
ratio says what the 4-bit CPU path costs or saves against the best dense fp32 baseline
on the same machine. w4a16 is timed on canonical weights and on prepacked ones (what
FP4Linear / Int4Linear hold). Median of repeated runs after a warm-up.

    python benchmarks/bench_cpu_gemm.py [--markdown FILE]

On a shared VM whose cores come and go, time one core against one core, which holds still:

    W4A16_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_cpu_gemm.py
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

import w4a16

SHAPES = [(2048, 2048), (4096, 1024), (1024, 4096), (16384, 2048)]  # (N, K)
BATCHES = [1, 10, 16, 50, 128]  # 10 / 50: the action horizon of Pi0.5


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--markdown", help="append the table to this file")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng()
    rows = []
    for n, k in SHAPES:
        w = rng.standard_normal((n, k)).astype(np.float32) * 0.02
        for fmt, qw in (("nvfp4", w4a16.quantize_nvfp4(w)), ("int4-g128", w4a16.pack_int4(w, 128))):
            w_deq = qw.dequantize()
            prepacked = w4a16.prepack(qw)
            for m in BATCHES:
                x = rng.standard_normal((m, k)).astype(np.float32)
                ours = median_seconds(lambda: w4a16.gemm(x, qw), args.repeats)
                ours_prepacked = median_seconds(lambda: w4a16.gemm(x, prepacked), args.repeats)
                numpy_t = median_seconds(lambda: x @ w_deq.T, args.repeats)
                # OpenBLAS's idle threads spin for a while after a call; on a 16-core machine
                # they took the cores from the next gemm timed (~4 ms a call instead of ~0.7)
                time.sleep(0.5)
                rows.append((f"{n}x{k}", fmt, m, ours * 1e3, ours_prepacked * 1e3, numpy_t * 1e3, ours / numpy_t))
    header = "| N x K | format | M | w4a16 (ms) | w4a16 prepacked (ms) | numpy fp32 (ms) | w4a16 / numpy |"
    lines = [header, "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {s} | {f} | {m} | {a:.2f} | {p:.2f} | {b:.2f} | {r:.2f} |" for s, f, m, a, p, b, r in rows]
    table = "\n".join(lines)
    print(table)
    if args.markdown:
        cpu = platform.processor() or platform.machine()
        with open(args.markdown, "a") as f:
            f.write(f"\nCPU: {cpu}, {os.cpu_count()} cores, numpy {np.__version__}, "
                    f"w4a16 {w4a16.__version__}, {time.strftime('%Y-%m-%d')}\n\n{table}\n")


if __name__ == "__main__":
    main()
