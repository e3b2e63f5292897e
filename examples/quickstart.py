"""Quantize a Pi0.5 MLP weight to each 4-bit format and multiply with it.

On a CUDA GPU (torch with CUDA and a CUDA build of w4a16) it uses the real Pi0.5 gate
projection, W [16384, 2048] in bf16; on the CPU a reduced [2048, 2048] and says so.
For each format it prints the weight error, the gemm error against a float64 reference,
the bytes saved and the time per call.

    python examples/quickstart.py
"""

from __future__ import annotations

import time

import numpy as np

import w4a16

try:
    import torch
except ImportError:  # the CPU path works with numpy alone
    torch = None


def pick_device() -> str:
    if torch is not None and torch.cuda.is_available() and w4a16.build_info()["cuda"]:
        return "cuda"
    return "cpu"


def seconds_per_call(fn, device: str, repeats: int = 20) -> float:
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def to_f64(a) -> np.ndarray:
    if torch is not None and isinstance(a, torch.Tensor):
        return a.detach().double().cpu().numpy()
    return np.asarray(a, np.float64)


def main() -> None:
    device = pick_device()
    n, k = (16384, 2048) if device == "cuda" else (2048, 2048)
    print(w4a16.info.format_info(w4a16.build_info()))
    print(f"\ndevice: {device}; weight [{n}, {k}]"
          + ("" if device == "cuda" else " (reduced from the Pi0.5 gate projection [16384, 2048] on the CPU)"))
    rng = np.random.default_rng(0)
    w_np = (rng.standard_normal((n, k)) * 0.02).astype(np.float32)
    x_np = rng.standard_normal((16, k)).astype(np.float32)
    if torch is not None:
        dtype = torch.bfloat16
        w = torch.from_numpy(w_np).to(device, dtype)
        x = torch.from_numpy(x_np).to(device, dtype)
    else:
        w, x = w_np, x_np
    dense_bytes = n * k * 2
    print(f"\n{'format':10s} {'weight err':>10s} {'gemm err':>9s} {'MiB':>7s} {'saved':>6s} {'M=1 ms':>8s} {'M=16 ms':>8s}")
    for name, make in (("nvfp4", w4a16.quantize_nvfp4), ("mxfp4", w4a16.quantize_mxfp4),
                       ("int4-g128", lambda a: w4a16.pack_int4(a, 128))):
        qw = make(w)
        w_deq = to_f64(qw.dequantize())
        w_err = np.linalg.norm(w_deq - to_f64(w)) / np.linalg.norm(to_f64(w))
        y = w4a16.gemm(x, qw)
        ref = to_f64(x) @ w_deq.T
        y_err = np.linalg.norm(to_f64(y) - ref) / np.linalg.norm(ref)
        t1 = seconds_per_call(lambda: w4a16.gemm(x[:1], qw), device)
        t16 = seconds_per_call(lambda: w4a16.gemm(x, qw), device)
        print(f"{name:10s} {w_err:10.4f} {y_err:9.2e} {qw.nbytes / 2**20:7.2f} {dense_bytes / qw.nbytes:5.2f}x "
              f"{t1 * 1e3:8.3f} {t16 * 1e3:8.3f}")


if __name__ == "__main__":
    main()
