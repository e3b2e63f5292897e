#!/usr/bin/env bash
# Quick device check while working on a kernel: build for sm_90, GPU tests, a few timings.
#   bash benchmarks/run_device_quick.sh [pytest -k expression]
set -uo pipefail
export PYTHONUNBUFFERED=1
start=$(date +%s)
W4A16_CUDA_ARCHS=90 python3 -m pip install --no-build-isolation --no-deps -q . > /tmp/build.log 2>&1 || { tail -50 /tmp/build.log; exit 1; }
echo "build: $(( $(date +%s) - start )) s"
(cd /tmp && python3 -m pytest -q -x "$OLDPWD/tests" ${1:+-k "$1"} 2>&1 | tail -5)
(cd benchmarks && python3 bench_quick.py)
