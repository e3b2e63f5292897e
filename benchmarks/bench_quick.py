"""A few representative cases of bench_gemm_gpu.py, for kernel experiments (seconds)."""

import bench_gemm_gpu as b
import torch

import w4a16

cases = [(16384, 2048, 1), (16384, 2048, 16), (2048, 16384, 1), (1024, 4096, 1), (4096, 1024, 8)]
props = torch.cuda.get_device_properties(0)
bw = b.copy_bandwidth(0.5, 10)
for n, k, m in cases:
    w = (torch.randn(n, k, device="cuda") * 0.02).bfloat16()
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
    parts = []
    for name in ("nvfp4", "int4-g128"):
        qw = b.FORMATS[name](w)
        copies = [qw] + [b.clone_weight(qw) for _ in range(b.copies_needed(qw.nbytes, props.L2_cache_size) - 1)]
        t = b.time_per_call([lambda q=q: w4a16.gemm(x, q, out=y) for q in copies], replays=20)
        floor = (qw.nbytes + m * k * 2 + m * n * 2) / bw
        parts.append(f"{name} {t * 1e6:6.1f} us {100 * floor / t:4.0f}%")
    print(f"{n}x{k} M={m}: " + " | ".join(parts), flush=True)
