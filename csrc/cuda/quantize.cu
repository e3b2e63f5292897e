/*
 * quantize.cu — GPU quantizers. They run the scalar rules of core/codecs.h, the same
 * code as the C reference, or (NVFP4) division-free forms of them that codecs.h proves
 * equal, so their bytes are identical to it (tests check this).
 *
 * NVFP4 in three launches on the caller's stream, no host synchronisation, no allocation:
 *   1. amax_kernel      max |w| of each CTA's share, as float bits (non-negative floats
 *                       order like their bit patterns; NaN > Inf > finite, so a non-finite
 *                       w shows up here), one word per CTA written into the codes buffer,
 *                       which the quantize pass overwrites later (so nothing to zero first)
 *   2. finalize_kernel  one CTA: the maximum of those words, then the global scale, or NaN
 *                       if w had a non-finite value (the caller's cue that w was invalid)
 *   3. nvfp4_kernel     a 16-element block per thread at a time, last block first: block
 *                       amax, E4M3 scale, codes
 * 2 and 3 are programmatic dependent launches (cuda_common.cuh) from SM90 on.
 */
#include <algorithm>
#include <cstring>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "../core/codecs.h"
#include "cuda_common.cuh"
#include "cuda_ops.h"

#define NVFP4_BLOCK 16
#define THREADS 256
/* The amax pass marks the tensor's last (L2 size x this fraction) bytes evict-last: the
 * quantize pass then finds them in L2 (H100, 16384x2048 bf16: 0.25-0.35 best, 54-55 µs;
 * 0 gives 60 µs, 0.5-0.85 57-58 µs: keeping more crowds out the quantize pass's own lines). */
#define NVFP4_L2_KEEP_FRACTION 0.3

/* A 16-byte load with an L2 eviction priority. The amax pass marks the tensor's tail
 * (the part the quantize pass, which runs backwards, reads first) evict-last and the rest
 * evict-first; the quantize pass reads each byte for the last time (evict-first), and its
 * stores are evict-first too, so that L2 keeps as much of that tail as it can. */
enum load_policy { LOAD_EVICT_FIRST, LOAD_EVICT_LAST };

template <int POLICY, typename V> __device__ __forceinline__ V load16(const V *p)
{
    if (POLICY == LOAD_EVICT_FIRST) return __ldcs(p);
    static_assert(sizeof(V) == 16, "16-byte loads");
    uint64_t policy;
    asm("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(policy));
    uint4 u;
    asm volatile("ld.global.nc.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
                 : "=r"(u.x), "=r"(u.y), "=r"(u.z), "=r"(u.w) : "l"(p), "l"(policy));
    V v;
    memcpy(&v, &u, sizeof v);
    return v;
}

/* Loads 16 consecutive elements starting at element `i` as fp32. VEC: 16-byte loads. */
template <typename T, bool VEC, int POLICY> struct block_loader;

template <bool VEC, int POLICY> struct block_loader<float, VEC, POLICY> {
    static __device__ __forceinline__ void load(const float *p, int64_t i, float out[16])
    {
        if (VEC) {
            const float4 *v = reinterpret_cast<const float4 *>(p + i);
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float4 f = load16<POLICY>(v + j);
                out[4 * j] = f.x; out[4 * j + 1] = f.y; out[4 * j + 2] = f.z; out[4 * j + 3] = f.w;
            }
        } else {
#pragma unroll
            for (int j = 0; j < 16; j++) out[j] = p[i + j];
        }
    }
};

/* 16-bit inputs as raw bits; `IS_BF16` picks the conversion (both exact). */
template <bool IS_BF16> __device__ __forceinline__ float half_bits_to_float(uint16_t h)
{
    if (IS_BF16) return __uint_as_float((uint32_t)h << 16);
    return __half2float(__ushort_as_half(h));
}

template <bool IS_BF16, bool VEC, int POLICY> struct half_block_loader {
    static __device__ __forceinline__ void load(const uint16_t *p, int64_t i, float out[16])
    {
        if (VEC) {
            const uint4 *v = reinterpret_cast<const uint4 *>(p + i);
#pragma unroll
            for (int j = 0; j < 2; j++) {
                uint4 u = load16<POLICY>(v + j);
                uint32_t words[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    out[8 * j + 2 * q] = half_bits_to_float<IS_BF16>((uint16_t)(words[q] & 0xFFFFu));
                    out[8 * j + 2 * q + 1] = half_bits_to_float<IS_BF16>((uint16_t)(words[q] >> 16));
                }
            }
        } else {
#pragma unroll
            for (int j = 0; j < 16; j++) out[j] = half_bits_to_float<IS_BF16>(p[i + j]);
        }
    }
};

template <typename T, int KIND, bool VEC, int POLICY> struct loader_for;
template <bool VEC, int POLICY> struct loader_for<float, 0, VEC, POLICY> : block_loader<float, VEC, POLICY> {};
template <bool VEC, int POLICY> struct loader_for<uint16_t, 1, VEC, POLICY> : half_block_loader<false, VEC, POLICY> {};
template <bool VEC, int POLICY> struct loader_for<uint16_t, 2, VEC, POLICY> : half_block_loader<true, VEC, POLICY> {};

/* The maximum of `m` over the CTA (THREADS threads), valid in thread 0. */
__device__ __forceinline__ unsigned int cta_max_of(unsigned int m)
{
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) m = max(m, __shfl_xor_sync(0xFFFFFFFFu, m, offset));
    __shared__ unsigned int warp_max[THREADS / 32];
    if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x == 0)
        for (int i = 0; i < THREADS / 32; i++) m = max(m, warp_max[i]);
    return m;
}

/* KIND: 0 fp32, 1 fp16, 2 bf16 (the w4a16_dtype values). Blocks from `keep_from` on are
 * loaded evict-last (see NVFP4_L2_KEEP_FRACTION). */
template <typename T, int KIND, bool VEC>
__global__ void amax_kernel(const T *__restrict__ w, int64_t blocks, int64_t keep_from, unsigned int *__restrict__ cta_max)
{
    w4a16_allow_next(); /* the finalize CTA may take a slot as soon as one frees */
    unsigned int local = 0;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; b < blocks; b += stride) {
        float x[16];
        if (b >= keep_from) loader_for<T, KIND, VEC, LOAD_EVICT_LAST>::load(w, b * NVFP4_BLOCK, x);
        else loader_for<T, KIND, VEC, LOAD_EVICT_FIRST>::load(w, b * NVFP4_BLOCK, x);
#pragma unroll /* |x| as float bits */
        for (int j = 0; j < 16; j++) local = max(local, __float_as_uint(x[j]) & 0x7FFFFFFFu);
    }
    local = cta_max_of(local);
    if (threadIdx.x == 0) cta_max[blockIdx.x] = local;
}

/* ---- NVFP4 codes with one division per scale value -------------------------------------
 * The reference encodes x / d per element: an IEEE division and a chain of 7 comparisons
 * (47 instructions per element in all, which left the pass bound by issue, not memory).
 * Here d = E4M3(scale code) * global scale takes at most 256 values, so each CTA first
 * tabulates d, y = 1 / d and the reciprocal's remainder y_lo for every scale code; each
 * element then gets the same correctly rounded quotient from 4 multiply-adds
 * (w4a16_div_by_reciprocal) and its code from 3 more and a minimum
 * (w4a16_e2m1_magnitude_biased): exact, ties included, without branches. Codes outside
 * that range (d or 1 / d not normal: y is tabulated as NaN) and blocks with a quotient of
 * 7 or more (only a caller's global scale that saturates the block scale gives one) take
 * the reference's division. The block scale's own division, amax / (6 * global scale),
 * goes through the same reciprocal trick with a per-thread constant. */
/* Whether w4a16_div_by_reciprocal holds for divisor d: d and 1 / d normal (false for NaN). */
__device__ __forceinline__ bool reciprocal_in_range(float d) { return d >= 0x1p-100f && d <= 0x1p100f; }

struct nvfp4_scale_table {
    float d[256], y[256], y_lo[256];
};

/* Entry `code` of the table; out-of-range entries get y = NaN, which fails every test. */
__device__ __forceinline__ void nvfp4_fill_table(nvfp4_scale_table &t, int code, float gs)
{
    const float d = w4a16_e4m3_decode((uint8_t)code) * gs;
    const float y = 1.0f / d;
    t.d[code] = d;
    t.y[code] = reciprocal_in_range(d) ? y : __uint_as_float(0x7FC00000u);
    t.y_lo[code] = w4a16_reciprocal_remainder(d, y);
}

/* The E4M3 code of s >= 2^-9 (or NaN), as w4a16_e4m3_encode gives it: from SM89 on the
 * hardware conversion (round to nearest even, saturating; tests/cuda/check_e4m3_cvt.cu
 * compares the two for every float), before it the C rule. */
__device__ __forceinline__ uint8_t e4m3_encode_scale(float s)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    uint16_t pair;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(pair) : "f"(0.0f), "f"(s));
    return (uint8_t)(pair & 0xFFu);
#else
    return w4a16_e4m3_encode(s);
#endif
}

/* w4a16_nvfp4_scale_code(amax, gs), with D = 6 * gs, y_D = 1 / D and its remainder fixed
 * per thread (`fast`: D and 1 / D normal). */
__device__ __forceinline__ uint8_t nvfp4_scale_code(float amax, float D, float y_D, float y_D_lo, bool fast)
{
    if (amax == 0.0f) return W4A16_E4M3_ONE;
    float s = fast && amax < 0x1p100f ? w4a16_div_by_reciprocal(amax, D, y_D, y_D_lo) : amax / D;
    if (s < W4A16_E4M3_MIN_SUBNORMAL) s = W4A16_E4M3_MIN_SUBNORMAL;
    return e4m3_encode_scale(s);
}

/* The 16 codes of a block with scale code `sc`, packed into two words of 8 nibbles. */
__device__ __forceinline__ void nvfp4_block_codes(const float x[16], float amax, uint8_t sc,
                                                  const nvfp4_scale_table &t, uint32_t packed[2])
{
    const float d = t.d[sc], y = t.y[sc], y_lo = t.y_lo[sc];
    if (amax * y < 6.5f) { /* false for NaN */
        /* Each term is (bias + code | sign) << 4j; the sum of the shifted biases is
         * removed once per word (it wraps modulo 2^32 like the sum, so the difference
         * is exact): one shift-add per code instead of mask, shift and or. */
        const uint32_t bias_sum = W4A16_E2M1_CODE_BIAS + (W4A16_E2M1_CODE_BIAS << 4); /* shifts >= 8 drop it */
        uint32_t sum[2] = {0u - bias_sum, 0u - bias_sum};
#pragma unroll
        for (int j = 0; j < 16; j++) {
            const uint32_t code = w4a16_e2m1_magnitude_biased(w4a16_div_by_reciprocal(fabsf(x[j]), d, y, y_lo));
            const uint32_t sign = (__float_as_uint(x[j]) >> 28) & 8u; /* as signbit(x / d) */
            sum[j >> 3] += (code | sign) << (4 * (j & 7));
        }
        packed[0] = sum[0];
        packed[1] = sum[1];
    } else {
        packed[0] = packed[1] = 0u;
#pragma unroll /* x[] stays in registers */
        for (int j = 0; j < 16; j++) packed[j >> 3] |= (uint32_t)w4a16_e2m1_encode(x[j] / d) << (4 * (j & 7));
    }
}

/* A grid of a few CTAs per SM (launch_nvfp4), each thread taking blocks a grid apart, so
 * that a CTA builds its table once for many blocks. */
template <typename T, int KIND, bool VEC>
__global__ void __launch_bounds__(THREADS, 6) nvfp4_kernel(const T *__restrict__ w, int64_t blocks,
                                                        const float *global_scale,
                                                        uint8_t *__restrict__ codes, bool codes_aligned,
                                                        uint8_t *__restrict__ scales)
{
    static_assert(THREADS == 256, "one table entry per thread");
    __shared__ nvfp4_scale_table table;
    /* last block first: the amax pass just streamed the tensor in ascending order, so its
     * tail is still in L2 when this pass starts */
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    float x[16];
    /* w is the caller's input, which the prior kernels only read: its first block may be
     * loaded while they finish */
    if (i < blocks) loader_for<T, KIND, VEC, LOAD_EVICT_FIRST>::load(w, (blocks - 1 - i) * NVFP4_BLOCK, x);
    w4a16_wait_for_prior(); /* the global scale, and the codes buffer free to overwrite */
    const float gs = w4a16_load_after_wait(global_scale); /* NaN if w had NaN/Inf: then the codes do not matter */
    nvfp4_fill_table(table, threadIdx.x, gs);
    const float D = W4A16_E2M1_MAX * gs, y_D = 1.0f / D, y_D_lo = w4a16_reciprocal_remainder(D, y_D);
    const bool fast_D = reciprocal_in_range(D);
    __syncthreads();

    for (; i < blocks; i += stride) {
        const int64_t b = blocks - 1 - i;
        float amax = 0.0f;
#pragma unroll
        for (int j = 0; j < 16; j++) amax = fmaxf(amax, fabsf(x[j]));
        const uint8_t sc = nvfp4_scale_code(amax, D, y_D, y_D_lo, fast_D);
        uint32_t packed[2] = {0u, 0u};
        if (amax != 0.0f) nvfp4_block_codes(x, amax, sc, table, packed);
        /* 16 codes = 8 bytes at byte offset 8 * b: one 8-byte store where aligned */
        if (codes_aligned) {
            __stcs(reinterpret_cast<uint2 *>(codes) + b, make_uint2(packed[0], packed[1]));
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++) codes[8 * b + j] = (uint8_t)(packed[j >> 2] >> (8 * (j & 3)));
        }
        __stcs(reinterpret_cast<char *>(scales) + b, (char)sc);
        if (i + stride < blocks) loader_for<T, KIND, VEC, LOAD_EVICT_FIRST>::load(w, (b - stride) * NVFP4_BLOCK, x);
    }
}

__global__ void nvfp4_finalize_kernel(const unsigned int *cta_max, int ctas, float *global_scale_out,
                                      float given_scale, bool has_given)
{
    w4a16_wait_for_prior();
    w4a16_allow_next();
    unsigned int m = 0;
    for (int i = threadIdx.x; i < ctas; i += THREADS) m = max(m, cta_max[i]);
    m = cta_max_of(m);
    if (threadIdx.x == 0) {
        float result;
        if (m >= 0x7F800000u) result = __uint_as_float(0x7FC00000u); /* w had NaN/Inf */
        else result = has_given ? given_scale : w4a16_nvfp4_global_scale(__uint_as_float(m));
        *global_scale_out = result;
    }
}

/* The first block the amax pass loads evict-last: the last NVFP4_L2_KEEP_FRACTION of L2. */
static int64_t l2_keep_from(int64_t blocks, int64_t block_bytes, int device)
{
    int l2_bytes = 0;
    if (cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device) != cudaSuccess) return blocks;
    const int64_t keep_blocks = (int64_t)(NVFP4_L2_KEEP_FRACTION * l2_bytes) / block_bytes;
    return std::max<int64_t>(0, blocks - keep_blocks);
}

template <typename T, int KIND>
static w4a16_status launch_nvfp4(const T *w, int64_t n, int64_t k, const float *global_scale, uint8_t *codes,
                                 uint8_t *scales, float *gs_out, cudaStream_t stream)
{
    const int64_t blocks = n * k / NVFP4_BLOCK;
    const bool vec = (reinterpret_cast<uintptr_t>(w) % 16 == 0);
    const bool codes_aligned = (reinterpret_cast<uintptr_t>(codes) % 8 == 0);
    const bool has_given = global_scale != NULL;
    const float given = has_given ? *global_scale : 0.0f;
    /* the per-CTA maxima go into the codes buffer's first aligned words (k >= 16, so it
     * has at least 8 bytes and one aligned word) */
    const uintptr_t start = (reinterpret_cast<uintptr_t>(codes) + 3u) & ~(uintptr_t)3u;
    const int64_t words = (int64_t)((reinterpret_cast<uintptr_t>(codes) + (uintptr_t)(n * k / 2) - start) / 4u);
    unsigned int *cta_max = reinterpret_cast<unsigned int *>(start);
    int sms = 0, device = 0;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    const bool pdl = w4a16_device_has_pdl(device);
    const int64_t per_thread_grid = w4a16_ceil_div(blocks, THREADS);
    const int64_t amax_grid = std::min<int64_t>(std::min<int64_t>(per_thread_grid, sms > 0 ? sms * 8 : 1024), words);
    /* the quantize pass: two full waves of CTAs (each CTA builds its table once; the
     * second wave evens out the finish; H100: 54 µs against 57-60 with one wave, 62 with
     * a CTA per 256 blocks) */
    int resident = 0;
    if (vec) cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, nvfp4_kernel<T, KIND, true>, THREADS, 0);
    else cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, nvfp4_kernel<T, KIND, false>, THREADS, 0);
    const unsigned grid = (unsigned)std::min<int64_t>(per_thread_grid, sms > 0 && resident > 0 ? 2 * (int64_t)sms * resident : 1024);

    const int64_t keep_from = l2_keep_from(blocks, NVFP4_BLOCK * (int64_t)sizeof(T), device);
    if (vec) amax_kernel<T, KIND, true><<<(unsigned)amax_grid, THREADS, 0, stream>>>(w, blocks, keep_from, cta_max);
    else amax_kernel<T, KIND, false><<<(unsigned)amax_grid, THREADS, 0, stream>>>(w, blocks, keep_from, cta_max);
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess)
        err = w4a16_launch_after(pdl, nvfp4_finalize_kernel, 1, THREADS, 0, stream, cta_max, (int)amax_grid, gs_out,
                                 given, has_given);
    if (err == cudaSuccess)
        err = vec ? w4a16_launch_after(pdl, nvfp4_kernel<T, KIND, true>, grid, THREADS, 0, stream, w, blocks,
                                       (const float *)gs_out, codes, codes_aligned, scales)
                  : w4a16_launch_after(pdl, nvfp4_kernel<T, KIND, false>, grid, THREADS, 0, stream, w, blocks,
                                       (const float *)gs_out, codes, codes_aligned, scales);
    return w4a16_cuda_check(err, "quantize_nvfp4 (launch)");
}

extern "C" w4a16_status w4a16_cuda_quantize_nvfp4(const void *w, w4a16_dtype dtype, int64_t n, int64_t k,
                                                  const float *global_scale, uint8_t *codes, uint8_t *scales,
                                                  float *global_scale_out, int device_id, void *stream)
{
    w4a16_device_guard guard(device_id);
    if (guard.error != cudaSuccess) return w4a16_cuda_check(guard.error, "quantize_nvfp4 (set device)");
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    switch (dtype) {
    case W4A16_DTYPE_FLOAT32:
        return launch_nvfp4<float, 0>(static_cast<const float *>(w), n, k, global_scale, codes, scales, global_scale_out, s);
    case W4A16_DTYPE_FLOAT16:
        return launch_nvfp4<uint16_t, 1>(static_cast<const uint16_t *>(w), n, k, global_scale, codes, scales, global_scale_out, s);
    default:
        return launch_nvfp4<uint16_t, 2>(static_cast<const uint16_t *>(w), n, k, global_scale, codes, scales, global_scale_out, s);
    }
}

/* ---- MXFP4 and INT4: one thread per block / group ------------------------------------
 * A block or group with NaN/Inf cannot raise an error without a host synchronisation, so
 * it is marked in its scale instead: E8M0 0xFF (NaN) for MXFP4, a NaN 16-bit scale for
 * INT4 (also used when the scale overflows the scale dtype). The Python layer checks. */

template <int KIND> __device__ __forceinline__ float load_element(const void *w, int64_t i)
{
    if (KIND == 0) return reinterpret_cast<const float *>(w)[i];
    const uint16_t h = reinterpret_cast<const uint16_t *>(w)[i];
    return KIND == 1 ? half_bits_to_float<false>(h) : half_bits_to_float<true>(h);
}

template <int KIND>
__global__ void mxfp4_kernel(const void *__restrict__ w, int64_t blocks, uint8_t *__restrict__ codes,
                             uint8_t *__restrict__ scales)
{
    const int64_t b = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (b >= blocks) return;
    float x[32], amax = 0.0f;
    bool finite = true;
#pragma unroll
    for (int j = 0; j < 32; j++) {
        x[j] = load_element<KIND>(w, b * 32 + j);
        finite = finite && isfinite(x[j]);
        amax = fmaxf(amax, fabsf(x[j]));
    }
    const uint8_t sc = finite ? w4a16_mxfp4_scale_code(amax) : 0xFF;
    uint32_t packed[4] = {0u, 0u, 0u, 0u};
    if (finite) {
#pragma unroll
        for (int j = 0; j < 32; j++)
            packed[j >> 3] |= (uint32_t)w4a16_e2m1_encode(ldexpf(x[j], W4A16_E8M0_ONE - (int)sc)) << (4 * (j & 7));
    }
#pragma unroll
    for (int j = 0; j < 16; j++) codes[16 * b + j] = (uint8_t)(packed[j >> 2] >> (8 * (j & 3)));
    scales[b] = sc;
}

/* The same rules as pack_int4_ref (quantize_ref.c), one group per thread. */
template <int KIND>
__global__ void int4_kernel(const void *__restrict__ w, int64_t groups_total, int64_t group, int symmetric,
                            int scale_bf16, uint8_t *__restrict__ codes, uint16_t *__restrict__ scales,
                            uint8_t *__restrict__ zero_points)
{
    const int64_t gi = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (gi >= groups_total) return;
    const int64_t base = gi * group;
    float lo = 0.0f, hi = 0.0f;
    bool finite = true;
    for (int64_t i = 0; i < group; i++) {
        const float v = load_element<KIND>(w, base + i);
        finite = finite && isfinite(v);
        lo = fminf(lo, v);
        hi = fmaxf(hi, v);
    }
    float s = symmetric ? fmaxf(hi, -lo) / 7.0f : (hi - lo) / 15.0f;
    if (s == 0.0f) s = 1.0f;
    const uint16_t bits = scale_bf16 ? w4a16_f32_to_bf16(s) : w4a16_f32_to_f16(s);
    const float sd = scale_bf16 ? w4a16_bf16_to_f32(bits) : w4a16_f16_to_f32(bits);
    const bool ok = finite && !isinf(sd);
    scales[gi] = ok ? bits : (scale_bf16 ? 0x7FC0 : 0x7E00);
    int z = 0;
    if (!symmetric && sd > 0.0f && ok) z = min(max((int)nearbyintf(-lo / sd), 0), 15);
    if (zero_points) zero_points[gi] = (uint8_t)z;
    for (int64_t i = 0; i < group; i += 2) {
        uint8_t byte = 0;
        for (int e = 0; e < 2; e++) {
            const float v = load_element<KIND>(w, base + i + e);
            int q = (sd > 0.0f && ok) ? (int)nearbyintf(v / sd) : 0;
            q = symmetric ? min(max(q, -8), 7) : min(max(q + z, 0), 15);
            byte |= (uint8_t)((q & 0xF) << (4 * e));
        }
        codes[(base + i) / 2] = byte;
    }
}

extern "C" w4a16_status w4a16_cuda_quantize_mxfp4(const void *w, w4a16_dtype dtype, int64_t n, int64_t k,
                                                  uint8_t *codes, uint8_t *scales, int device_id, void *stream)
{
    w4a16_device_guard guard(device_id);
    if (guard.error != cudaSuccess) return w4a16_cuda_check(guard.error, "quantize_mxfp4 (set device)");
    const int64_t blocks = n * k / 32;
    const unsigned grid = w4a16_ceil_div(blocks, THREADS);
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (dtype == W4A16_DTYPE_FLOAT32) mxfp4_kernel<0><<<grid, THREADS, 0, s>>>(w, blocks, codes, scales);
    else if (dtype == W4A16_DTYPE_FLOAT16) mxfp4_kernel<1><<<grid, THREADS, 0, s>>>(w, blocks, codes, scales);
    else mxfp4_kernel<2><<<grid, THREADS, 0, s>>>(w, blocks, codes, scales);
    return w4a16_cuda_check(cudaGetLastError(), "quantize_mxfp4 (launch)");
}

extern "C" w4a16_status w4a16_cuda_pack_int4(const void *w, w4a16_dtype dtype, int64_t n, int64_t k, int64_t group,
                                             int symmetric, w4a16_dtype scale_dtype, uint8_t *codes, void *scales,
                                             uint8_t *zero_points, int device_id, void *stream)
{
    w4a16_device_guard guard(device_id);
    if (guard.error != cudaSuccess) return w4a16_cuda_check(guard.error, "pack_int4 (set device)");
    const int64_t groups = n * (k / group);
    const unsigned grid = w4a16_ceil_div(groups, 128);
    const int bf16 = scale_dtype == W4A16_DTYPE_BFLOAT16;
    uint16_t *sc = static_cast<uint16_t *>(scales);
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (dtype == W4A16_DTYPE_FLOAT32)
        int4_kernel<0><<<grid, 128, 0, s>>>(w, groups, group, symmetric, bf16, codes, sc, zero_points);
    else if (dtype == W4A16_DTYPE_FLOAT16)
        int4_kernel<1><<<grid, 128, 0, s>>>(w, groups, group, symmetric, bf16, codes, sc, zero_points);
    else
        int4_kernel<2><<<grid, 128, 0, s>>>(w, groups, group, symmetric, bf16, codes, sc, zero_points);
    return w4a16_cuda_check(cudaGetLastError(), "pack_int4 (launch)");
}

/* ---- prepack: a permutation of the code bits inside each 16-byte chunk of a row -------- */

__global__ void prepack_kernel(const uint8_t *codes, uint8_t *out, int64_t n, int64_t bytes_per_row, int to_prepacked,
                               int is_int4)
{
    const int64_t chunks_row = (bytes_per_row + 15) / 16;
    const int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (i >= n * chunks_row) return;
    const int64_t row = i / chunks_row, c = i % chunks_row, at = row * bytes_per_row + 16 * c;
    /* byte by byte: views need not be aligned */
    w4a16_prepack_chunk(codes + at, out + at, w4a16_prepack_chunk_words(bytes_per_row, c), to_prepacked, is_int4);
}

extern "C" w4a16_status w4a16_cuda_prepack(const uint8_t *codes, uint8_t *out, int64_t n, int64_t bytes_per_row,
                                           int to_prepacked, int is_int4, int device_id, void *stream)
{
    w4a16_device_guard guard(device_id);
    if (guard.error != cudaSuccess) return w4a16_cuda_check(guard.error, "prepack (set device)");
    const int64_t chunks = n * w4a16_ceil_div(bytes_per_row, 16);
    if (chunks == 0) return W4A16_OK;
    prepack_kernel<<<w4a16_ceil_div(chunks, THREADS), THREADS, 0, static_cast<cudaStream_t>(stream)>>>(
        codes, out, n, bytes_per_row, to_prepacked, is_int4);
    return w4a16_cuda_check(cudaGetLastError(), "prepack (launch)");
}
