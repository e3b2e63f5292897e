for v in "4 4" "2 5" "4 3" "2 6"; do set -- $v
  CUDAFLAGS="-DW4A16_GEMV_BATCH=$1 -DW4A16_GEMV_MIN_CTAS_4WARPS=$2" W4A16_CUDA_ARCHS=90 python3 -m pip install --no-build-isolation --no-deps -q --config-settings=build-dir=build/exp$1$2 . > /tmp/b.log 2>&1 || { tail -20 /tmp/b.log; exit 1; }
  echo "== BATCH=$1 MIN_CTAS=$2"; (cd benchmarks && python3 bench_quick.py)
done
