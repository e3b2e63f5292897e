#!/usr/bin/env bash
# Quick device check while working on a kernel: build for sm_90, GPU tests, a few timings.
set -uo pipefail
export PYTHONUNBUFFERED=1
W4A16_CUDA_ARCHS=90 python3 -m pip install --no-build-isolation --no-deps -q . > /tmp/build.log 2>&1 || { tail -50 /tmp/build.log; exit 1; }
(cd /tmp && python3 -m pytest -q -x "$OLDPWD/tests" 2>&1 | tail -5)
(cd benchmarks && python3 bench_quick.py)
