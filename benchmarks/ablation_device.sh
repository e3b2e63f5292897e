#!/usr/bin/env bash
# Floors of the matmul kernels, measured by taking their work away (device; results are
# wrong, only the times count): builds the working tree as it is and three patched copies --
#   nodecode: ablation_no_decode.patch, every kernel feeds the raw code words to its MMA
#             (no E2M1 / INT4 decode, no block scales: dequant.cuh);
#   nomma:    ablation_no_mma.patch, the warpgroup kernel issues no wgmma (its decode is
#             kept live by a store that no run takes);
#   neither:  both, i.e. the warpgroup kernel's copies, barriers and epilogue alone --
# and times them side by side with ab_device.sh (alternating passes; its options pass
# through). What a row cannot drop below with its decode (or its MMA) taken away says which
# targets a faster decode (or MMA) could still reach. NOTES.md, thirty-eighth session.
#   bash benchmarks/ablation_device.sh [--passes N] [--rows issue,...] [--formats nvfp4,...]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
no_decode="$here/ablation_no_decode.patch" no_mma="$here/ablation_no_mma.patch"
bash "$here/ab_device.sh" "$@" head="$repo" nodecode="$repo:$no_decode" nomma="$repo:$no_mma" \
    neither="$repo:$no_decode:$no_mma"
