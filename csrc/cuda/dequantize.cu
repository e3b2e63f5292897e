/*
 * dequantize.cu — W [N, K] in any format and layout back to fp32 / fp16 / bf16 on the GPU.
 *
 * The torch op's large-M path (dequantize, then a cuBLAS GEMM) runs this once per call, so
 * it must cost little next to the GEMM: the word kernel decodes a 32-bit word of 8 codes
 * with the pair trick of dequant.cuh (nibbles J and J + 4 in one shift and mask), turns
 * each pair into two exact fp32 values, and applies the scale with the reference's
 * arithmetic, so its values equal w4a16_dequantize_row_ref's bit for bit:
 *   E2M1:  the bf16 pair holds e2m1 * 2^-126 exactly; * 2^126 (exact) gives e2m1, then
 *          * s, where s = E4M3 scale * global scale (NVFP4) or 2^e (MXFP4) in fp32;
 *   INT4:  the bf16 pair holds 128 + q exactly (q XOR 8 when symmetric, which is the signed
 *          q + 8); minus 128 + zero point (or + 8), exact in fp32, then * s.
 * The 16-bit outputs round once, to nearest even, like w4a16_f32_to_bf16 / _f16.
 * Weights whose K is not a multiple of 8 (prepacked: 32) or whose pointers are not aligned
 * take the per-byte kernel, which calls the scalar codecs directly.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "../core/codecs.h"
#include "cuda_common.cuh"
#include "cuda_ops.h"
#include "dequant.cuh"

namespace {

constexpr int WORD_THREADS = 256;
constexpr int64_t WORD_CTAS_MAX = 2048; /* CTAs walk the words; more would only refill the table */

/* ---- the general kernel: one thread per byte (two elements) --------------------------- */

__global__ void dequantize_bytes_kernel(w4a16_cuda_gemm_args wt, w4a16_dtype out_dtype, void *out)
{
    const int64_t byte = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (byte >= wt.n * wt.k / 2) return;
    const int64_t row = byte / (wt.k / 2), k = 2 * (byte % (wt.k / 2));
    const int64_t gi = row * (wt.k / wt.group_size) + k / wt.group_size;
    float z;
    const float s = w4a16_group_scale(wt, gi, &z);
    for (int e = 0; e < 2; e++) {
        const uint8_t q = w4a16_code_at(wt.codes + row * (wt.k / 2), k + e, wt.k, wt.prepacked,
                                        wt.format == W4A16_FORMAT_INT4);
        const float r = (w4a16_code_value(q, wt.format == W4A16_FORMAT_INT4, wt.zero_points != NULL) - z) * s;
        const int64_t i = row * wt.k + k + e;
        if (out_dtype == W4A16_DTYPE_FLOAT32) reinterpret_cast<float *>(out)[i] = r;
        else if (out_dtype == W4A16_DTYPE_BFLOAT16) reinterpret_cast<uint16_t *>(out)[i] = w4a16_f32_to_bf16(r);
        else reinterpret_cast<uint16_t *>(out)[i] = w4a16_f32_to_f16(r);
    }
}

/* ---- the word kernel ------------------------------------------------------------------ */

/* The two fp32 values of a decoded bf16 pair (low half first). */
__device__ __forceinline__ float2 pair_to_float2(uint32_t p)
{
    return make_float2(__uint_as_float(p << 16), __uint_as_float(p & 0xFFFF0000u));
}

/* 8 codes decoded into 4 bf16 pairs (dequant_word) times their scale s, as 8 fp32 values
 * in element order: pair j holds elements (2j, 2j + 1) in PAIR_ORDER (the prepacked
 * layout's slots), (j, j + 4) otherwise (a canonical word). `offset` is INT4's 128 + zero
 * point (or + 8), see the top of the file. */
template <int FMT, bool PAIR_ORDER>
__device__ __forceinline__ void dequantize_pairs(const uint32_t (&pairs)[4], float s, float offset, float (&v)[8])
{
#pragma unroll
    for (int j = 0; j < 4; j++) {
        float2 f = pair_to_float2(pairs[j]);
        if (FMT == W4A16_FORMAT_INT4) {
            f.x = (f.x - offset) * s;
            f.y = (f.y - offset) * s;
        } else {
            f.x = (f.x * 0x1p126f) * s;
            f.y = (f.y * 0x1p126f) * s;
        }
        v[PAIR_ORDER ? 2 * j : j] = f.x;
        v[PAIR_ORDER ? 2 * j + 1 : j + 4] = f.y;
    }
}

template <int OUT> __device__ __forceinline__ void store_word(void *out, int64_t e0, const float (&v)[8])
{
    if (OUT == W4A16_DTYPE_FLOAT32) {
        float4 *o = reinterpret_cast<float4 *>(static_cast<float *>(out) + e0);
        o[0] = make_float4(v[0], v[1], v[2], v[3]);
        o[1] = make_float4(v[4], v[5], v[6], v[7]);
    } else {
        uint32_t h[4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            if (OUT == W4A16_DTYPE_BFLOAT16) {
                const __nv_bfloat162 b = __floats2bfloat162_rn(v[2 * j], v[2 * j + 1]);
                h[j] = *reinterpret_cast<const uint32_t *>(&b);
            } else {
                const __half2 b = __floats2half2_rn(v[2 * j], v[2 * j + 1]);
                h[j] = *reinterpret_cast<const uint32_t *>(&b);
            }
        }
        *reinterpret_cast<uint4 *>(static_cast<uint16_t *>(out) + e0) = make_uint4(h[0], h[1], h[2], h[3]);
    }
}

/* The scale of flat word w (elements 8w .. 8w + 7 of the row-major weight) and, for INT4,
 * the offset to subtract. Scales and zero points are row-major [N, K / group] with group
 * dividing K, so the flat group index is 8w / group: no row arithmetic. */
template <int FMT>
__device__ __forceinline__ float word_scale(const w4a16_cuda_gemm_args &wt, const float *lut, int64_t w,
                                            int group_shift, float *offset)
{
    *offset = 0.0f;
    if (FMT == W4A16_FORMAT_NVFP4) return lut[__ldg(static_cast<const uint8_t *>(wt.scales) + (w >> 1))];
    if (FMT == W4A16_FORMAT_MXFP4) return lut[__ldg(static_cast<const uint8_t *>(wt.scales) + (w >> 2))];
    const int64_t g = group_shift >= 0 ? w >> group_shift : w / (wt.group_size / 8);
    const uint16_t bits = __ldg(static_cast<const uint16_t *>(wt.scales) + g);
    *offset = 128.0f + (wt.zero_points ? (float)__ldg(wt.zero_points + g) : 8.0f);
    return wt.scale_dtype == W4A16_DTYPE_BFLOAT16 ? __uint_as_float((uint32_t)bits << 16)
                                                  : __half2float(__ushort_as_half(bits));
}

/* A warp takes 128 consecutive 32-bit words of codes (1024 elements) at a time. Canonical:
 * lane t the words t, t + 32, t + 64, t + 96, each 8 consecutive elements -- four 4-byte
 * loads in flight per thread, every load and 16-byte store of the warp contiguous.
 * Prepacked: lane t the 16-byte chunk t (words 4t .. 4t + 3, one load), whose slot r
 * holds elements 8r .. 8r + 7 (codecs.h). Grid-stride over the N * K / 8 words. */
template <int FMT, int OUT, bool PREPACKED>
__global__ void __launch_bounds__(WORD_THREADS) dequantize_words_kernel(w4a16_cuda_gemm_args wt, int group_shift,
                                                                        void *out)
{
    __shared__ float lut[256]; /* scale code -> fp32 scale (NVFP4: times the global scale) */
    if (FMT != W4A16_FORMAT_INT4) {
        const float global = FMT == W4A16_FORMAT_NVFP4 ? __ldg(wt.global_scale) : 1.0f;
        for (int i = threadIdx.x; i < 256; i += blockDim.x)
            lut[i] = FMT == W4A16_FORMAT_NVFP4 ? w4a16_e4m3_decode((uint8_t)i) * global : w4a16_e8m0_decode((uint8_t)i);
        __syncthreads();
    }
    const int64_t words = wt.n * wt.k / 8;
    const uint32_t int_xor = int4_xor<__nv_bfloat16>(wt.zero_points != nullptr);
    const uint32_t *codes = reinterpret_cast<const uint32_t *>(wt.codes);
    const int lane = threadIdx.x & 31;
    const int64_t warps = (int64_t)gridDim.x * (WORD_THREADS / 32);
    /* flat word r of the lane's four (elements 8w .. 8w + 7 of the row-major weight) */
    auto word_index = [&](int64_t span, int r) {
        return PREPACKED ? span * 128 + 4 * lane + r : span * 128 + 32 * r + lane;
    };
    for (int64_t span = blockIdx.x * (WORD_THREADS / 32) + threadIdx.x / 32; span * 128 < words; span += warps) {
        uint32_t q[4];
        if (PREPACKED) {
            const int64_t w0 = word_index(span, 0); /* words % 4 == 0: whole chunks */
            const uint4 c =
                w0 < words ? __ldg(reinterpret_cast<const uint4 *>(codes + w0)) : make_uint4(0u, 0u, 0u, 0u);
            q[0] = c.x, q[1] = c.y, q[2] = c.z, q[3] = c.w;
        } else {
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const int64_t w = word_index(span, r);
                q[r] = w < words ? __ldg(codes + w) : 0u;
            }
        }
#pragma unroll
        for (int r = 0; r < 4; r++) {
            const int64_t w = word_index(span, r);
            if (w >= words) break;
            uint32_t pairs[4];
            if (PREPACKED) dequant_slot<FMT, __nv_bfloat16>(q, r, int_xor, pairs);
            else dequant_word<FMT, __nv_bfloat16>(q[r], int_xor, pairs);
            float offset, v[8];
            const float s = word_scale<FMT>(wt, lut, w, group_shift, &offset);
            dequantize_pairs<FMT, PREPACKED>(pairs, s, offset, v);
            store_word<OUT>(out, 8 * w, v);
        }
    }
}

template <int FMT, int OUT>
void launch_words(const w4a16_cuda_gemm_args &wt, void *out, cudaStream_t stream)
{
    const int64_t spans = w4a16_ceil_div(wt.n * wt.k / 8, 128);
    const int64_t ctas = w4a16_ceil_div(spans, WORD_THREADS / 32);
    const unsigned grid = (unsigned)(ctas < WORD_CTAS_MAX ? ctas : WORD_CTAS_MAX);
    const int64_t group_words = wt.group_size / 8;
    int group_shift = -1; /* INT4: log2(group / 8) when a power of two, else divide */
    for (int sh = 0; sh < 62; sh++)
        if (group_words == (int64_t)1 << sh) group_shift = sh;
    if (wt.prepacked)
        dequantize_words_kernel<FMT, OUT, true><<<grid, WORD_THREADS, 0, stream>>>(wt, group_shift, out);
    else
        dequantize_words_kernel<FMT, OUT, false><<<grid, WORD_THREADS, 0, stream>>>(wt, group_shift, out);
}

template <int FMT>
void launch_words(const w4a16_cuda_gemm_args &wt, w4a16_dtype out_dtype, void *out, cudaStream_t stream)
{
    if (out_dtype == W4A16_DTYPE_FLOAT32) launch_words<FMT, W4A16_DTYPE_FLOAT32>(wt, out, stream);
    else if (out_dtype == W4A16_DTYPE_BFLOAT16) launch_words<FMT, W4A16_DTYPE_BFLOAT16>(wt, out, stream);
    else launch_words<FMT, W4A16_DTYPE_FLOAT16>(wt, out, stream);
}

} // namespace

extern "C" w4a16_status w4a16_cuda_dequantize(const w4a16_cuda_gemm_args *weight, w4a16_dtype out_dtype, void *out,
                                              int device_id, void *stream)
{
    w4a16_device_guard guard(device_id);
    if (guard.error != cudaSuccess) return w4a16_cuda_check(guard.error, "dequantize (set device)");
    if (weight->n == 0 || weight->k == 0) return W4A16_OK;
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    /* the word kernel: whole 32-bit words of codes (K % 8 == 0), 16-byte aligned output;
     * prepacked codes in whole 16-byte chunks (K % 32 == 0), 16-byte aligned */
    const uintptr_t codes_at = reinterpret_cast<uintptr_t>(weight->codes);
    const bool words = weight->k % 8 == 0 && codes_at % 4 == 0 && reinterpret_cast<uintptr_t>(weight->scales) % 2 == 0 &&
                       reinterpret_cast<uintptr_t>(out) % 16 == 0 &&
                       (!weight->prepacked || (weight->k % 32 == 0 && codes_at % 16 == 0));
    if (words) {
        if (weight->format == W4A16_FORMAT_NVFP4) launch_words<W4A16_FORMAT_NVFP4>(*weight, out_dtype, out, s);
        else if (weight->format == W4A16_FORMAT_MXFP4) launch_words<W4A16_FORMAT_MXFP4>(*weight, out_dtype, out, s);
        else launch_words<W4A16_FORMAT_INT4>(*weight, out_dtype, out, s);
    } else {
        const int64_t bytes = weight->n * weight->k / 2;
        dequantize_bytes_kernel<<<w4a16_ceil_div(bytes, 256), 256, 0, s>>>(*weight, out_dtype, out);
    }
    return w4a16_cuda_check(cudaGetLastError(), "dequantize (launch)");
}
