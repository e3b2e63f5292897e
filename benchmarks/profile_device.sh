#!/usr/bin/env bash
# Nsight Compute profile of the small-M kernel on the device (build for sm_90 first).
#   bash benchmarks/profile_device.sh [profile_gemv.py arguments]
set -uo pipefail
W4A16_CUDA_ARCHS=90 python3 -m pip install --no-build-isolation --no-deps -q . > /tmp/build.log 2>&1 || { tail -50 /tmp/build.log; exit 1; }
cd /tmp
ncu -k regex:gemv_w4 --launch-skip 2 --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
    --section LaunchStats --section InstructionStats --section MemoryWorkloadAnalysis \
    python3 "$OLDPWD/benchmarks/profile_gemv.py" "$@" 2>&1 | grep -v "^==PROF==" |
    grep -vE "^\s*-+\s*$|^\s*$|OPT |INF |WRN " | sed -n '1,400p'
