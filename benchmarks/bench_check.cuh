// bench_check.cuh — CHECK(call) for the standalone CUDA benchmarks of this folder: a failed
// runtime call prints where and why, and ends the program.
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#define CHECK(call)                                                                              \
    do {                                                                                         \
        cudaError_t err_ = (call);                                                               \
        if (err_ != cudaSuccess) {                                                               \
            std::fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(err_));   \
            std::exit(1);                                                                        \
        }                                                                                        \
    } while (0)
