#!/usr/bin/env bash
# The device run: build for sm_90, run the GPU tests and the benchmarks, leave logs in $OUT.
# Used through the device tool:  bash benchmarks/run_device.sh [--quick]
set -uo pipefail
OUT="${OUT:-/tmp/w4a16-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/device.txt"
W4A16_CUDA_ARCHS=90 python3 -m pip install --no-build-isolation --no-deps -q . > "$OUT/build.log" 2>&1 || { tail -50 "$OUT/build.log"; exit 1; }
rm -f "$OUT/build.log"  # the device tool returns at most 8 files
cd /tmp  # import the installed package, not the source tree
python3 -m w4a16 info | tee -a "$OUT/device.txt"
python3 -m pytest -q -x -rs "$OLDPWD/tests" 2>&1 | tail -25 | tee "$OUT/tests.log"
python3 "$OLDPWD/benchmarks/bench_gemm_gpu.py" --out "$OUT" "$@" 2>&1 | tail -80  # table: gemm_results.md
# the gate/up projections with gelu_tanh(gate) * up in the epilogue (w4a16.gemm_geglu): geglu.md
(cd "$OLDPWD/benchmarks" && python3 bench_geglu.py --out "$OUT") 2>&1 | tail -14
# where the torch op leaves the kernels for dequantize + cuBLAS (LARGE_M_PREPACKED*)
(cd "$OLDPWD/benchmarks" && python3 bench_large_m.py --shapes 16384x2048,32768x2048,2048x16384 --ms 256,512,768,968,1536) \
    2>&1 | tee "$OUT/large_m.txt"
# programmatic dependent launch on / off: single ops back to back, and Pi0.5's MLP stacks
python3 "$OLDPWD/benchmarks/bench_pdl.py" --out "$OUT" 2>&1
(echo "## PDL on (default)"; python3 "$OLDPWD/examples/pi05_mlp.py"
 echo "## W4A16_PDL=0"; W4A16_PDL=0 python3 "$OLDPWD/examples/pi05_mlp.py") 2>&1 | tee "$OUT/pi05_mlp.log"
# what a kernel that only reads the same bytes achieves (calibrates the % of roofline column)
nvcc -O3 -arch=sm_90 -o /tmp/read_floor "$OLDPWD/benchmarks/bench_read_floor.cu" && /tmp/read_floor | tee "$OUT/read_floor.txt"
# whether the decode hides under the warpgroup MMA, without memory traffic (sm_90a only)
nvcc -O3 -std=c++17 -gencode arch=compute_90a,code=sm_90a -I"$OLDPWD/csrc/include" -I"$OLDPWD/csrc" \
    -o /tmp/wgmma_overlap "$OLDPWD/benchmarks/bench_wgmma_overlap.cu" > /dev/null 2>&1 &&
    /tmp/wgmma_overlap | tee "$OUT/wgmma_overlap.txt"
