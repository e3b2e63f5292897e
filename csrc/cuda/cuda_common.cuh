/* cuda_common.cuh — small helpers shared by the CUDA translation units. */
#ifndef W4A16_CUDA_COMMON_CUH
#define W4A16_CUDA_COMMON_CUH

#include <cuda_runtime.h>

#include "../core/core.h"

/* Makes `device_id` current for the lifetime of the guard and restores the caller's
 * device afterwards, so a launch never changes the caller's CUDA context. */
struct w4a16_device_guard {
    int previous;
    bool switched;
    cudaError_t error;
    explicit w4a16_device_guard(int device_id) : previous(-1), switched(false), error(cudaSuccess)
    {
        error = cudaGetDevice(&previous);
        if (error == cudaSuccess && previous != device_id) {
            error = cudaSetDevice(device_id);
            switched = error == cudaSuccess;
        }
    }
    ~w4a16_device_guard()
    {
        if (switched) cudaSetDevice(previous);
    }
};

static inline w4a16_status w4a16_cuda_check(cudaError_t err, const char *what)
{
    if (err == cudaSuccess) return W4A16_OK;
    return w4a16_fail(W4A16_ERR_CUDA, "%s: CUDA error %s (%s)", what, cudaGetErrorName(err),
                      cudaGetErrorString(err));
}

static inline unsigned w4a16_ceil_div(int64_t a, int64_t b) { return (unsigned)((a + b - 1) / b); }

#endif /* W4A16_CUDA_COMMON_CUH */
