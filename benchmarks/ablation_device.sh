#!/usr/bin/env bash
# Floors of the matmul kernels, measured by taking their work away (device; results are
# wrong, only the times count): builds the working tree as it is and three copies --
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
work=/tmp/w4a16-ablation
rm -rf "$work" && mkdir -p "$work"
make_tree() { # NAME PATCH...: a copy of the working tree with the patches applied
    local name=$1
    shift
    mkdir -p "$work/$name"
    tar -C "$repo" --exclude=./build --exclude=./.out --exclude=./.git -cf - . | tar -xf - -C "$work/$name" || return 1
    for p in "$@"; do
        (cd "$work/$name" && patch -s -p1 < "$here/$p") || { echo "ablation_device.sh: $p does not apply" >&2; return 1; }
    done
}
make_tree nodecode ablation_no_decode.patch || exit 1
make_tree nomma ablation_no_mma.patch || exit 1
make_tree neither ablation_no_decode.patch ablation_no_mma.patch || exit 1
bash "$here/ab_device.sh" "$@" head="$repo" nodecode="$work/nodecode" nomma="$work/nomma" neither="$work/neither"
