"""Where the torch op should switch from the W4A16 kernels to dequantize + cuBLAS.

Times torch.ops.w4a16.gemm (through FP4Linear / Int4Linear, prepacked weights) both ways
for the Pi0.5 shapes, weights rotated past 4x L2, CUDA-graph replay; the kernel column is
the C dispatch's choice (on SM 9.0 the warpgroup kernels from M = 64).

    python benchmarks/bench_large_m.py [--shapes 16384x2048,2048x16384] [--ms 128,256,512,968]
"""

import argparse

import bench_gemm_gpu as b
import torch

import w4a16
from w4a16 import torch_ops

SHAPES = "16384x2048,2048x16384,4096x1024,1024x4096"
MS = "8,16,32,50,64,128,256,384,512,768,968"


def set_threshold(large_m: int) -> None:
    torch_ops.LARGE_M = torch_ops.LARGE_M_PREPACKED = torch_ops.LARGE_M_PREPACKED_WGMMA = large_m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shapes", default=SHAPES)
    parser.add_argument("--ms", default=MS)
    args = parser.parse_args()
    saved = (torch_ops.LARGE_M, torch_ops.LARGE_M_PREPACKED, torch_ops.LARGE_M_PREPACKED_WGMMA)
    props = torch.cuda.get_device_properties(0)
    print(f"{'N x K':12s} {'M':>4s} {'format':6s} {'kernel us':>10s} {'dequant+cuBLAS us':>18s} {'cuBLAS bf16 us':>15s}")
    for shape in args.shapes.split(","):
        n, k = (int(v) for v in shape.split("x"))
        lin = torch.nn.Linear(k, n, bias=False).cuda().to(torch.bfloat16)
        dense = [lin.weight.detach().clone() for _ in range(b.copies_needed(n * k * 2, props.L2_cache_size))]
        for fmt, make in (("nvfp4", w4a16.FP4Linear.from_linear), ("int4", w4a16.Int4Linear.from_linear)):
            module = make(lin)
            copies = [module] + [make(lin) for _ in range(b.copies_needed(module.nbytes, props.L2_cache_size) - 1)]
            for m in (int(v) for v in args.ms.split(",")):
                x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
                times = []
                for large_m in (10**9, 0):
                    set_threshold(large_m)
                    with torch.no_grad():
                        times.append(b.time_per_call([lambda c=c: c(x) for c in copies], replays=10))
                with torch.no_grad():
                    t_dense = b.time_per_call([lambda w=w: torch.nn.functional.linear(x, w) for w in dense], replays=10)
                print(f"{n}x{k:<6d} {m:4d} {fmt:6s} {times[0] * 1e6:10.1f} {times[1] * 1e6:18.1f} "
                      f"{t_dense * 1e6:15.1f}", flush=True)
            del copies
        torch.cuda.empty_cache()
    torch_ops.LARGE_M, torch_ops.LARGE_M_PREPACKED, torch_ops.LARGE_M_PREPACKED_WGMMA = saved


if __name__ == "__main__":
    main()
