#!/usr/bin/env bash
# Per-CTA timelines of the tensor-core GEMM on the device: applies kernel_timeline.patch
# (globaltimer / clock64 stamps in gemm_tc.cu) to a copy of the source, builds that copy
# for sm_90 into /tmp/w4a16-timeline (the installed package is not touched) and runs
# kernel_timeline.py. The stamps add ~0.3 µs to a call; compare segments, not totals.
#   [CASES=NxKxM,...] bash benchmarks/kernel_timeline.sh
set -uo pipefail
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
tar --exclude=./build --exclude=./.out --exclude=./.git -cf - . | tar -xf - -C "$src"
if command -v patch > /dev/null; then (cd "$src" && patch -s -p1 < benchmarks/kernel_timeline.patch) || exit 1
else (cd "$src" && git apply benchmarks/kernel_timeline.patch) || exit 1; fi
rm -rf /tmp/w4a16-timeline
(cd "$src" && W4A16_CUDA_ARCHS=90 python3 -m pip install --no-build-isolation --no-deps -q --target /tmp/w4a16-timeline . \
    > /tmp/timeline-build.log 2>&1) || { tail -30 /tmp/timeline-build.log; exit 1; }
cd benchmarks && PYTHONPATH=/tmp/w4a16-timeline python3 kernel_timeline.py
