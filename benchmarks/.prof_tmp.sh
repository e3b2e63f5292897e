set -x
W4A16_CUDA_ARCHS=90 python3 -m pip install --no-build-isolation --no-deps -q . > /dev/null 2>&1 || exit 1
so=$(python3 -c "import w4a16._C as c; print(c.__file__)")
cuobjdump -sass "$so" > $OUT/all.sass 2>&1; ls -la $OUT
for f in nvfp4 int4; do
ncu --clock-control none -k regex:gemv_w4_kernel -c 1 --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats --section MemoryWorkloadAnalysis python3 benchmarks/profile_gemv.py --fmt $f --m 1 2>&1 | grep -v "^==PROF==" | tail -80
done
