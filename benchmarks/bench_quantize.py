"""NVFP4 quantizer timing alone (the benchmark table's last line), for work on the quantizer.
Run on the GPU from benchmarks/:  python3 bench_quantize.py [repeats]"""

import sys

import bench_gemm_gpu as bench

if __name__ == "__main__":
    bandwidth = bench.copy_bandwidth()
    print(f"copy rate {bandwidth / 1e12:.2f} TB/s")
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3):
        bench.bench_quantize(bandwidth)
