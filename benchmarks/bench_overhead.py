"""Eager call overhead of FP4Linear / Int4Linear against nn.Linear (F.linear).

A tiny layer (M=1, 256 -> 256) makes the kernel negligible, so the time per call is the
Python + dispatch + launch cost. Median of 5 rounds of 2000 back-to-back calls.

    python benchmarks/bench_overhead.py
"""

import statistics
import time

import torch

import w4a16


def per_call(fn, calls: int = 2000) -> float:
    rounds = []
    for _ in range(6):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        rounds.append((time.perf_counter() - start) / calls)
    return statistics.median(rounds[1:])


def main() -> None:
    device = "cuda" if torch.cuda.is_available() and w4a16.build_info()["cuda"] else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    linear = torch.nn.Linear(256, 256, bias=False).to(device, dtype)
    x = torch.randn(1, 256, device=device, dtype=dtype)
    rows = [("nn.Linear (F.linear)", linear)]
    rows += [(f"FP4Linear {f}", w4a16.FP4Linear.from_linear(linear, f)) for f in ("nvfp4", "mxfp4")]
    rows += [("Int4Linear g128", w4a16.Int4Linear.from_linear(linear, 128))]
    with torch.no_grad():
        base = per_call(lambda: linear(x))
        print(f"device {device}, x [1, 256] {dtype}")
        for name, module in rows:
            t = per_call(lambda m=module: m(x))
            print(f"{name:22s} {t * 1e6:7.1f} us per call ({t / base:4.2f}x nn.Linear)")


if __name__ == "__main__":
    main()
