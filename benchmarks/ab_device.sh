#!/usr/bin/env bash
# A/B of kernel changes in one device call: build each source tree for sm_90 side by side,
# then alternate passes of ab_times.py over the builds (the spread between passes is
# +-2-4% on an H100, so only alternating passes in one run compare fairly).
#
#   bash benchmarks/ab_device.sh [--passes N] [--rows issue,focus,gemv,large] [--formats nvfp4,...]
#       [--dtypes bfloat16,float16] NAME=TREE[:PATCH[:PATCH...]] ...
#
# TREE is a source tree on the device (`.` for the working tree the device tool copies; an
# older commit as `git archive REV | tar -x -C .out/base` made beforehand and carried with
# carry: [".out"]); each PATCH, a `git diff` applied in turn to a copy of TREE. Leaves
# $OUT/ab.txt (the raw lines) and prints ab_table.py's summary, changes against the first
# build.
set -uo pipefail
passes=3 rows=issue formats=nvfp4,mxfp4 dtypes=bfloat16
builds=()
while [ $# -gt 0 ]; do
    case "$1" in
        --passes) passes="$2"; shift 2 ;;
        --rows) rows="$2"; shift 2 ;;
        --formats) formats="$2"; shift 2 ;;
        --dtypes) dtypes="$2"; shift 2 ;;
        *=*) builds+=("$1"); shift ;;
        *) echo "ab_device.sh: unexpected argument '$1' (expected NAME=TREE[:PATCH])" >&2; exit 2 ;;
    esac
done
[ ${#builds[@]} -ge 2 ] || { echo "ab_device.sh: give at least two builds, NAME=TREE[:PATCH]" >&2; exit 2; }
OUT="${OUT:-/tmp/w4a16-out}"
here=$(cd "$(dirname "$0")" && pwd)
work=/tmp/w4a16-ab
rm -rf "$work" && mkdir -p "$work" "$OUT"
export W4A16_CUDA_ARCHS=90 PYTHONUNBUFFERED=1
names=()
for spec in "${builds[@]}"; do
    name=${spec%%=*} tree_patch=${spec#*=}
    tree=${tree_patch%%:*} patches=()
    [ "$tree" != "$tree_patch" ] && IFS=: read -r -a patches <<< "${tree_patch#*:}"
    mkdir -p "$work/src-$name"
    tar -C "$tree" --exclude=./build --exclude=./.out --exclude=./.git -cf - . | tar -xf - -C "$work/src-$name" || exit 1
    for patch in "${patches[@]}"; do
        (cd "$work/src-$name" && patch -s -p1) < "$patch" || { echo "ab_device.sh: $patch does not apply to $tree" >&2; exit 1; }
    done
    names+=("$name")
done
for name in "${names[@]}"; do
    (cd "$work/src-$name" && python3 -m pip install --no-build-isolation --no-deps -q --target "$work/lib-$name" . \
        > "$work/build-$name.log" 2>&1 || { echo "build $name failed:"; tail -30 "$work/build-$name.log"; }) &
done
wait
for name in "${names[@]}"; do  # a failed build must not time whatever w4a16 is installed
    [ -d "$work/lib-$name/w4a16" ] || { echo "ab_device.sh: build $name failed" >&2; exit 1; }
done
echo "built in ${SECONDS}s"
cd /tmp  # each build's w4a16, not the source tree's
for pass in $(seq "$passes"); do
    for name in "${names[@]}"; do
        for dtype in ${dtypes//,/ }; do
            PYTHONPATH="$work/lib-$name" timeout 120 python3 "$here/ab_times.py" "$name" --rows "$rows" \
                --formats "$formats" --dtype "$dtype" >> "$OUT/ab.txt" 2>&1
        done
    done
    echo "pass $pass done at ${SECONDS}s"
done
python3 "$here/ab_table.py" "$OUT/ab.txt"
