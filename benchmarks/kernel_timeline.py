"""Where a tensor-core GEMM call's time goes, CTA by CTA (needs the build that
benchmarks/kernel_timeline.sh makes: kernel_timeline.patch's stamps in gemm_tc.cu).

For each case (N x K x M, nvfp4, prepacked, default kernel choice) a CUDA graph of calls
cycling through weight copies (past 4x L2, as bench_gemm_gpu.py) is timed, then replayed
once more with the stamps recorded. Every CTA's thread 0 wrote %globaltimer and clock64 at:
entry (0), after griddepcontrol.wait (1), first stage landed (2), first stage decoded (3),
K loop done (4), output stored (5). Launches are grouped in the order CTAs took their
slots (a launch's CTAs all start before the next launch's: programmatic dependent launch
schedules it only once they have). Per kernel kind, the median over launches of:

  ctas         CTAs of the launch
  gap          the previous launch's last CTA done -> this launch's first release (µs)
  entry_p50    a CTA's entry relative to that first release (negative: resident early)
  release_p50  a CTA's release relative to the first release
  first_stage  release -> first stage in shared memory (clock64, per CTA median)
  decode0      decode of the first stage (the first scales' loads included)
  loop         the rest of the K loop
  epilogue     K loop done -> output stored
  end_p50/max  a CTA's end relative to the first release

globaltimer advances in steps of ~0.26 µs on an H100, so the per-CTA segments use clock64
(at the SM clock this script estimates from both).

    CASES=16384x2048x32,2048x16384x32 PYTHONPATH=<build> python benchmarks/kernel_timeline.py
"""

from __future__ import annotations

import ctypes
import os
import statistics

import numpy as np
import torch

import w4a16
from bench_gemm_gpu import quantized_copies
from w4a16.timing import capture, replay_seconds

RECORD = np.dtype([("g", "<u8", 6), ("c", "<i8", 6), ("sm", "<u4"), ("cta", "<u4"), ("kind", "<u4"),
                   ("grid", "<u4")])  # tl_record of kernel_timeline.patch
CAPACITY = 1 << 16
KINDS = {1: "mma.sync", 2: "wgmma", 3: "wgmma-walk", 4: "reduce_split_k"}
DEFAULT_CASES = "16384x2048x32,16384x2048x64,16384x2048x128,32768x2048x32,2048x16384x32,1024x4096x50,4096x1024x50"


def timeline_reader():
    lib = ctypes.CDLL(w4a16._C.__file__)
    if not hasattr(lib, "w4a16_timeline_read"):
        raise SystemExit("this w4a16 build has no timeline stamps: build it with benchmarks/kernel_timeline.sh")
    read = lib.w4a16_timeline_read
    read.restype, read.argtypes = ctypes.c_uint, [ctypes.c_void_p, ctypes.c_uint]

    def records() -> np.ndarray:
        buf = np.zeros(CAPACITY, dtype=RECORD)
        n = read(buf.ctypes.data, CAPACITY)
        return buf[:min(n, CAPACITY)]
    return records


def launches(records: np.ndarray) -> list[np.ndarray]:
    out, i = [], 0
    while i < len(records):
        grid = int(records[i]["grid"])
        out.append(records[i:i + grid])
        i += grid
    return out


def launch_stats(launch: np.ndarray, previous: np.ndarray, ghz: float) -> dict:
    g, c = launch["g"].astype(np.int64), launch["c"].astype(np.int64)
    if int(launch["kind"][0]) == 4:  # reduce_split_k stamps only entry, release and end
        c[:, 2:5] = c[:, 1:2]
    release = g[:, 1].min()

    def us(cycles: np.ndarray) -> float:  # the median CTA's clock64 segment in µs
        return float(np.median(cycles)) / (ghz * 1e3)
    return {
        "ctas": len(launch),
        "gap": (release - previous["g"][:, 5].astype(np.int64).max()) / 1e3,
        "entry_p50": float(np.median(g[:, 0] - release)) / 1e3,
        "release_p50": float(np.median(g[:, 1] - release)) / 1e3,
        "first_stage": us(c[:, 2] - c[:, 1]),
        "decode0": us(c[:, 3] - c[:, 2]),
        "loop": us(c[:, 4] - c[:, 3]),
        "epilogue": us(c[:, 5] - c[:, 4]),
        "end_p50": float(np.median(g[:, 5] - release)) / 1e3,
        "end_max": (g[:, 5].max() - release) / 1e3,
    }


def main() -> None:
    records = timeline_reader()
    l2 = torch.cuda.get_device_properties(0).L2_cache_size
    cases = [tuple(int(v) for v in c.split("x")) for c in os.environ.get("CASES", DEFAULT_CASES).split(",")]
    print(f"device: {torch.cuda.get_device_name()}")
    for n, k, m in cases:
        w = (torch.randn(n, k, device="cuda") * 0.02).to(torch.bfloat16)
        weights = quantized_copies(w4a16.prepack(w4a16.quantize_nvfp4(w)), l2)
        x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)

        def run():
            for q in weights:
                w4a16.gemm(x, q, out=y)
        graph = capture(run)
        per_call = min(replay_seconds(graph, repeats=20) for _ in range(3)) / len(weights) * 1e6
        records()  # drop the stamps of the timing replays
        graph.replay()
        torch.cuda.synchronize()
        recorded = records()
        g, c = recorded["g"].astype(np.float64), recorded["c"].astype(np.float64)
        ghz = float(np.median((c[:, 5] - c[:, 0]) / np.maximum(g[:, 5] - g[:, 0], 1)))
        groups = launches(recorded)
        by_kind: dict[str, list[dict]] = {}
        for i in range(1, len(groups)):  # the first launch has no previous one in the replay
            by_kind.setdefault(KINDS.get(int(groups[i]["kind"][0]), "?"), []).append(
                launch_stats(groups[i], groups[i - 1], ghz))
        print(f"\n{n}x{k} M={m}: {per_call:.2f} µs a call (graph replay), {len(groups)} launches, "
              f"SM clock ~{ghz:.2f} GHz")
        for kind, stats in by_kind.items():
            medians = {key: statistics.median(s[key] for s in stats) for key in stats[0]}
            print(f"  {kind:14s} " + ", ".join(f"{key} {v:.0f}" if key == "ctas" else f"{key} {v:.2f}"
                                               for key, v in medians.items()))
        del graph, weights
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
