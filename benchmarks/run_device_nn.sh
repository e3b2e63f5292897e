#!/usr/bin/env bash
# Device run for the drop-in modules: GPU tests of tests/test_gpu_nn.py, the Pi0.5 MLP
# example at real sizes, and the eager call overhead.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/w4a16-out}"
W4A16_CUDA_ARCHS=90 python3 -m pip install --no-build-isolation --no-deps -q . > /tmp/build.log 2>&1 || { tail -50 /tmp/build.log; exit 1; }
(cd /tmp && python3 -m pytest -q -s "$OLDPWD/tests/test_gpu_nn.py" "$OLDPWD/tests/test_nn.py" 2>&1 | tail -15) | tee "$OUT/nn_tests.log"
python3 benchmarks/bench_overhead.py 2>&1 | tee "$OUT/overhead.log"
python3 examples/pi05_mlp.py 2>&1 | tee "$OUT/pi05_mlp.log"
