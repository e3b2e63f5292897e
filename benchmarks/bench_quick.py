"""A few representative cases of bench_gemm_gpu.py, for kernel experiments (seconds)."""

import bench_gemm_gpu as b
import torch

import w4a16

cases = [(16384, 2048, 1), (32768, 2048, 1), (2048, 16384, 1), (16384, 2048, 8), (16384, 2048, 16),
         (4096, 1024, 1), (1024, 4096, 1), (4096, 1024, 8), (1024, 4096, 16)]
props = torch.cuda.get_device_properties(0)
bw = b.copy_bandwidth(0.5, 10)
print(f"{props.name}: copy bandwidth {bw / 1e12:.2f} TB/s")
for n, k, m in cases:
    w = (torch.randn(n, k, device="cuda") * 0.02).bfloat16()
    x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    y = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
    dense = [w] + [w.clone() for _ in range(b.copies_needed(w.numel() * 2, props.L2_cache_size) - 1)]
    t = b.time_per_call([lambda wc=wc: torch.nn.functional.linear(x, wc) for wc in dense], replays=20)
    parts = [f"cuBLAS {t * 1e6:5.1f}"]
    for name in ("nvfp4", "int4-g128"):
        for layout in ("canonical", "prepacked"):
            qw = b.FORMATS[name](w)
            if layout == "prepacked":
                qw = w4a16.prepack(qw)
            copies = b.quantized_copies(qw, props.L2_cache_size)
            tq = b.time_per_call([lambda q=q: w4a16.gemm(x, q, out=y) for q in copies], replays=20)
            floor = (qw.nbytes + m * k * 2 + m * n * 2) / bw
            parts.append(f"{name}/{layout[:4]} {tq * 1e6:5.1f} {100 * floor / tq:3.0f}% {t / tq:4.2f}x")
    print(f"{n}x{k} M={m}: " + " | ".join(parts), flush=True)
