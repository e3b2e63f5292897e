/* cuda_common.cuh — small helpers shared by the CUDA translation units. */
#ifndef W4A16_CUDA_COMMON_CUH
#define W4A16_CUDA_COMMON_CUH

#include <cuda_runtime.h>

#include "../core/codecs.h"
#include "../core/core.h"
#include "cuda_ops.h"

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

/* ---- programmatic dependent launch (SM90 on) -------------------------------------------
 * A kernel launched with w4a16_launch_after may be scheduled while the kernel before it on
 * the stream is still draining, which hides the launch gap between the steps of one
 * operation (a few µs in a chain of short kernels). It must call w4a16_wait_for_prior()
 * before it reads or writes anything the prior kernel touches; a prior kernel may call
 * w4a16_allow_next() to let it be scheduled before the prior kernel's last block exits.
 * Below SM90 both are no-ops and the launch is an ordinary one. */
static __device__ __forceinline__ void w4a16_wait_for_prior()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

static __device__ __forceinline__ void w4a16_allow_next()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* Whether `device` takes programmatic dependent launches (compute capability 9+). */
static inline bool w4a16_device_has_pdl(int device)
{
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) return false;
    return major >= 9;
}

template <typename... Params, typename... Args>
static cudaError_t w4a16_launch_after(bool pdl, void (*kernel)(Params...), unsigned grid, unsigned block,
                                      cudaStream_t stream, Args... args)
{
    cudaLaunchAttribute attribute;
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(grid);
    config.blockDim = dim3(block);
    config.stream = stream;
    config.attrs = &attribute;
    config.numAttrs = pdl ? 1 : 0;
    return cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...);
}

/* INT4 groups per 32-element chunk, as a shift: log2(group / 32), or 31 when one group
 * spans the row (the chunk index shifted by 31 is group 0). */
static inline uint32_t w4a16_int4_chunk_shift(int64_t group, int64_t k)
{
    for (uint32_t shift = 0; shift < 3; shift++)
        if (group == (int64_t)32 << shift && group != k) return shift;
    return 31;
}

/* Scale and zero point of group `gi` of a weight, by the rules of the C reference
 * (w4a16_dequantize_row_ref): the slow, any-layout kernels share this one decoder. */
static __device__ __forceinline__ float w4a16_group_scale(const w4a16_cuda_gemm_args &w, int64_t gi, float *zero)
{
    *zero = 0.0f;
    if (w.format == W4A16_FORMAT_NVFP4) return w4a16_e4m3_decode(static_cast<const uint8_t *>(w.scales)[gi]) * *w.global_scale;
    if (w.format == W4A16_FORMAT_MXFP4) return w4a16_e8m0_decode(static_cast<const uint8_t *>(w.scales)[gi]);
    const uint16_t bits = static_cast<const uint16_t *>(w.scales)[gi];
    if (w.zero_points) *zero = (float)w.zero_points[gi];
    return w.scale_dtype == W4A16_DTYPE_BFLOAT16 ? w4a16_bf16_to_f32(bits) : w4a16_f16_to_f32(bits);
}

#endif /* W4A16_CUDA_COMMON_CUH */
