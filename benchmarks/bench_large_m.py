"""Where the torch op should switch from the small-M kernel to dequantize + cuBLAS.

Times torch.ops.w4a16.gemm (through FP4Linear / Int4Linear) both ways for the Pi0.5
shapes and M in 8..968, weights rotated past 4x L2, CUDA-graph replay.

    python benchmarks/bench_large_m.py
"""

import bench_gemm_gpu as b
import torch

import w4a16
from w4a16 import torch_ops

props = torch.cuda.get_device_properties(0)
print(f"{'N x K':12s} {'M':>4s} {'format':6s} {'kernel us':>10s} {'dequant+cuBLAS us':>18s} {'cuBLAS bf16 us':>15s}")
for n, k in [(16384, 2048), (2048, 16384), (4096, 1024), (1024, 4096)]:
    lin = torch.nn.Linear(k, n, bias=False).cuda().to(torch.bfloat16)
    dense = [lin.weight.detach().clone() for _ in range(b.copies_needed(n * k * 2, props.L2_cache_size))]
    for fmt, make in (("nvfp4", lambda: w4a16.FP4Linear.from_linear(lin)), ("int4", lambda: w4a16.Int4Linear.from_linear(lin))):
        module = make()
        copies = [module] + [w4a16.FP4Linear.from_linear(lin) if fmt == "nvfp4" else w4a16.Int4Linear.from_linear(lin)
                             for _ in range(b.copies_needed(module.nbytes, props.L2_cache_size) - 1)]
        for m in (8, 16, 32, 50, 64, 128, 968):
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            times = []
            for large_m in (10**9, 0):
                torch_ops.LARGE_M = large_m
                with torch.no_grad():
                    times.append(b.time_per_call([lambda c=c: c(x) for c in copies], replays=10))
            with torch.no_grad():
                t_dense = b.time_per_call([lambda w=w: torch.nn.functional.linear(x, w) for w in dense], replays=10)
            print(f"{n}x{k:<6d} {m:4d} {fmt:6s} {times[0] * 1e6:10.1f} {times[1] * 1e6:18.1f} {t_dense * 1e6:15.1f}",
                  flush=True)
        del copies
    torch.cuda.empty_cache()
torch_ops.LARGE_M = 32
