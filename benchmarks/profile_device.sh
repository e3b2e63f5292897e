#!/usr/bin/env bash
# Nsight Compute profile of one w4a16 kernel on the device (builds for sm_90 first).
#   [KERNEL=regex:gemm_tc] bash benchmarks/profile_device.sh [profile_gemv.py arguments]
# KERNEL picks the kernel by name (default: the small-M kernel); STALLS=1 prints the stall
# reasons per issued instruction, the pipe mix and the shared-memory wavefronts and bank
# conflicts of loads and stores instead of the sections; SASS=1 samples stalls per SASS
# instruction and prints them through sass_stalls.py (the CSV goes to $OUT, or /tmp);
# SKIPBUILD=1 profiles the build installed by an earlier call. ncu leaves the clocks as it
# finds them (--clock-control none).
set -uo pipefail
[ -n "${SKIPBUILD:-}" ] || W4A16_CUDA_ARCHS=90 python3 -m pip install --no-build-isolation --no-deps -q . > /tmp/build.log 2>&1 ||
    { tail -50 /tmp/build.log; exit 1; }
cd /tmp
if [ -n "${SASS:-}" ]; then
    out=${OUT:-/tmp}
    ncu --clock-control none -k "${KERNEL:-regex:gemv_w4}" --launch-skip 2 --launch-count 1 --section SourceCounters \
        -f -o /tmp/w4a16-sass python3 "$OLDPWD/benchmarks/profile_gemv.py" "$@" > /tmp/w4a16-sass.log 2>&1 ||
        { tail -20 /tmp/w4a16-sass.log; exit 1; }
    ncu -i /tmp/w4a16-sass.ncu-rep --page source --csv --print-source sass > "$out/sass_stalls.csv" || exit 1
    python3 "$OLDPWD/benchmarks/sass_stalls.py" "$out/sass_stalls.csv"
    exit 0
fi
if [ -n "${STALLS:-}" ]; then
    S=smsp__average_warps_issue_stalled
    metrics=""
    for r in long_scoreboard short_scoreboard wait math_pipe_throttle mio_throttle lg_throttle barrier \
             not_selected selected dispatch_stall no_instruction branch_resolving; do
        metrics="$metrics,${S}_${r}_per_issue_active.ratio"
    done
    metrics="${metrics#,},smsp__inst_executed.sum,smsp__inst_executed_pipe_tensor.sum,smsp__inst_executed_pipe_alu.sum"
    metrics="$metrics,smsp__inst_executed_pipe_fma.sum,smsp__inst_executed_pipe_lsu.sum,sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active"
    metrics="$metrics,sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active,sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active"
    metrics="$metrics,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum"
    metrics="$metrics,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum"
    metrics="$metrics,smsp__cycles_active.avg,gpu__time_duration.sum"
    ncu --clock-control none -k "${KERNEL:-regex:gemv_w4}" --launch-skip 2 --launch-count 1 --metrics "$metrics" \
        python3 "$OLDPWD/benchmarks/profile_gemv.py" "$@" 2>&1 | grep -E "^\s+(smsp|sm__|l1tex|gpu__)|gemm_tc|gemm_wgmma|gemv_w4"
    exit 0
fi
ncu --clock-control none -k "${KERNEL:-regex:gemv_w4}" --launch-skip 2 --launch-count 1 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
    --section LaunchStats --section InstructionStats --section MemoryWorkloadAnalysis \
    --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables \
    python3 "$OLDPWD/benchmarks/profile_gemv.py" "$@" 2>&1 | grep -v "^==PROF==" |
    grep -vE "^\s*-+\s*$|^\s*$|OPT |INF |WRN " | sed -n '1,400p'
