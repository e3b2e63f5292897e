/* cuda_common.cuh — small helpers shared by the CUDA translation units. */
#ifndef W4A16_CUDA_COMMON_CUH
#define W4A16_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- asynchronous copies into shared memory (SM80 on) -------------------------------- */

/* The shared-memory address of a generic pointer into shared memory (what the asm takes). */
static __device__ __forceinline__ uint32_t shared_address(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* The 32-bit word at shared-memory address `addr` + OFFSET (bytes). For addresses built with
 * integer operations a pointer cannot express (an XOR); volatile, so that the compiler keeps
 * each load where it is written (after the barrier wait that made the bytes valid). */
template <int OFFSET = 0> static __device__ __forceinline__ uint32_t load_shared_u32(uint32_t addr)
{
    uint32_t v;
    asm volatile("ld.shared.b32 %0, [%1+%2];\n" : "=r"(v) : "r"(addr), "n"(OFFSET));
    return v;
}

/* 16 bytes global -> shared, bypassing L1; `valid` false zero-fills the destination and
 * reads nothing. Completion: cp_async_commit groups the copies issued so far, and
 * cp_async_wait<N> waits until at most N groups of this thread are still in flight. */
static __device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool valid = true)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(smem)), "l"(gmem),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
static __device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> static __device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* ---- programmatic dependent launch (SM90 on) -------------------------------------------
 * A kernel launched with w4a16_launch_after may be scheduled while the kernel before it on
 * the stream is still draining, which hides the launch gap between kernels (a few µs in
 * a chain of short kernels: the steps of one quantize call, or one layer's GEMM after
 * another's). It must call w4a16_wait_for_prior() before it reads or writes anything the
 * prior kernel may touch -- in registers, shared memory or L1; only w4a16_prefetch_l2 may
 * come before. The compiler may hoist loads it takes for invariant (__ldg, const
 * __restrict__) above the wait when nothing in the source stops it: the kernels put the
 * wait first, read values with w4a16_load_after_wait where that matters, and
 * tests/test_gpu_sass_order.py checks the machine code. A kernel may call
 * w4a16_allow_next() to let the next one be scheduled before its own last block exits:
 * the next one still waits for all of it to finish.
 * Below SM90 these are no-ops and the launch is an ordinary one. */
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

/* A float the prior kernel may have written, read after w4a16_wait_for_prior(). Through a
 * volatile asm load because the compiler moves loads it takes for invariant -- __ldg, and
 * loads through const __restrict__ pointers -- above the wait: the NVFP4 quantizer read a
 * stale global scale that way (tests/test_gpu_sass_order.py checks every kernel). */
static __device__ __forceinline__ float w4a16_load_after_wait(const float *p)
{
    float v;
    asm volatile("ld.global.f32 %0, [%1];" : "=f"(v) : "l"(p) : "memory");
    return v;
}

/* Asks L2 to fetch the bytes [p, p + bytes) (SM90 on: one bulk prefetch; below, nothing).
 * Allowed before w4a16_wait_for_prior even when the prior kernel writes those bytes: every
 * SM's stores land in L2, so a line L2 holds is never stale. The range is widened to whole
 * 16-byte granules, the instruction's unit, which never reaches past the buffer's page. */
static __device__ __forceinline__ void w4a16_prefetch_l2(const void *p, size_t bytes)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const uintptr_t begin = reinterpret_cast<uintptr_t>(p) & ~(uintptr_t)15;
    const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes + 15) & ~(uintptr_t)15;
    if (bytes > 0)
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(begin), "r"((uint32_t)(end - begin)) : "memory");
#endif
}

/* Whether launches on `device` are to be programmatic dependent ones: compute capability
 * 9+, unless the environment says W4A16_PDL=0 (read once: for comparisons, and a way out
 * should a driver misbehave). */
static inline bool w4a16_device_has_pdl(int device)
{
    static const bool allowed = [] {
        const char *v = getenv("W4A16_PDL");
        return !(v && strcmp(v, "0") == 0);
    }();
    if (!allowed) return false;
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess) return false;
    return major >= 9;
}

/* Whether `device` runs the warpgroup (wgmma) kernels: they exist only in an sm_90a build
 * (CMake defines W4A16_HAVE_SM90A) and run only on compute capability 9.0. */
static inline bool w4a16_device_has_wgmma(int device)
{
#ifdef W4A16_HAVE_SM90A
    int major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess)
        return false;
    return major == 9 && minor == 0;
#else
    (void)device;
    return false;
#endif
}

/* kernel<<<grid, block, smem, stream>>>(args...), as a programmatic dependent launch when
 * `pdl` (the device has it, see w4a16_device_has_pdl), with the grid's z dimension in
 * thread-block clusters of `cluster_z` CTAs when that is more than 1 (SM90 on): the
 * hardware runs a cluster's CTAs at once on one GPC, and they can read each other's
 * shared memory (distributed shared memory). */
template <typename... Params, typename... Args>
static cudaError_t w4a16_launch_clusters(bool pdl, unsigned cluster_z, void (*kernel)(Params...), dim3 grid, dim3 block,
                                         size_t smem, cudaStream_t stream, Args... args)
{
    cudaLaunchAttribute attributes[2];
    unsigned count = 0;
    if (pdl) {
        attributes[count].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attributes[count].val.programmaticStreamSerializationAllowed = 1;
        count++;
    }
    if (cluster_z > 1) {
        attributes[count].id = cudaLaunchAttributeClusterDimension;
        attributes[count].val.clusterDim.x = 1;
        attributes[count].val.clusterDim.y = 1;
        attributes[count].val.clusterDim.z = cluster_z;
        count++;
    }
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    config.attrs = attributes;
    config.numAttrs = count;
    return cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...);
}

/* the same without clusters */
template <typename... Params, typename... Args>
static cudaError_t w4a16_launch_after(bool pdl, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                                      cudaStream_t stream, Args... args)
{
    return w4a16_launch_clusters(pdl, 1u, kernel, grid, block, smem, stream, args...);
}

/* CTAs of `kernel` (launched with `threads` threads and `smem` bytes of dynamic shared
 * memory) that fit on one SM, or 1 when the query fails. Kernels beyond 48 KiB of dynamic
 * shared memory are opted in first, as their launch does. Callers ask once per kernel and
 * keep the answer (it depends on the kernel's registers and shared memory and on the
 * architecture; a process that mixes GPU generations gets the first one's answer, which
 * only affects speed). */
template <typename... Params>
static int w4a16_resident_ctas(void (*kernel)(Params...), int threads, size_t smem)
{
    int ctas = 0;
    cudaError_t err = cudaSuccess;
    if (smem > 48 * 1024) err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (err == cudaSuccess) err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&ctas, kernel, threads, smem);
    if (err != cudaSuccess || ctas < 1) {
        (void)cudaGetLastError(); /* a failed query is not the launch's error */
        ctas = 1;
    }
    return ctas;
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
