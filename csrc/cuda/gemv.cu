/*
 * gemv.cu — W4A16 GEMM for small M on tensor cores, reading the canonical or the
 * prepacked layout.
 *
 *   y [M, N] = alpha * x [M, K] @ dequant(W [N, K])^T + bias
 *
 * At M <= 16 the work is bound by reading the 4-bit weights, so the kernel is built
 * around streaming them: 16-byte loads, several in flight per thread, dequantization in
 * registers, and the multiply on tensor cores (mma.sync m16n8k16, SM80 .. SM120) so that
 * the arithmetic per weight stays a handful of integer ops whatever M is.
 *
 * Stage 1 — tiles. A CTA owns a tile of 16 weight rows (or 8 rows x 2 halves of K when
 *   N is small: "split2", a split-K that needs no second pass because both halves land
 *   in the same mma tile). Its WARPS warps split K between them; blockIdx.x walks
 *   16-row chunks of x, so CTAs sharing a weight tile run together and share it in L2.
 *
 * Stage 2 — the operand mapping. Weights are the mma's A operand (rows = n), x is B
 *   (columns = m). A k-step of 128 elements ("super-tile") is covered by the 4 threads
 *   of a quad: thread t of quad g loads bytes [16t, 16t + 16) of weight rows g and g+8,
 *   i.e. 32 consecutive elements each. The 8 mma k-tiles of the super-tile take 4 of
 *   those elements per thread; since a dot product does not care about the order of k,
 *   x is loaded with the same permutation (thread t reads x[m, 32t .. 32t + 32)) and no
 *   data is reshuffled between threads.
 *
 * Stage 3 — dequantization (dequant.cuh): nibbles j and j+4 of a 32-bit word decode as
 *   one 16-bit pair. In the canonical layout they are elements (j, j+4), and x is gathered
 *   into the same pairs with byte permutes; in the prepacked layout they are (2j, 2j+1)
 *   and x is used as loaded. One 16-bit multiply per pair applies the block scale.
 *
 * Stage 4 — epilogue. Warps reduce their fp32 accumulators through shared memory;
 *   warp 0 adds bias, rounds to the output dtype and stores.
 *
 * Shapes the fast kernel does not take (K % 128 != 0, misaligned pointers) go to
 * gemm_w4_generic, a plain fp32 SIMT kernel that reads one code at a time.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "../core/codecs.h"
#include "cuda_common.cuh"
#include "cuda_ops.h"
#include "dequant.cuh"
#include "gemm_tc.h"

namespace {
/* Super-tiles whose weight loads a warp issues at once, and the CTAs per SM the
 * register allocation must allow (overridable for tuning experiments). */
#ifndef W4A16_GEMV_BATCH
#define W4A16_GEMV_BATCH 2
#endif
#ifndef W4A16_GEMV_MIN_CTAS_4WARPS
#define W4A16_GEMV_MIN_CTAS_4WARPS 4
#endif
#ifndef W4A16_GEMV_SPLIT2_BELOW_CTAS_PER_SM /* split2 when 16-row tiles give fewer CTAs per SM */
#define W4A16_GEMV_SPLIT2_BELOW_CTAS_PER_SM 2
#endif
#ifndef W4A16_GEMV_8WARPS_FROM_STEPS /* 8 warps per CTA from this many super-tiles on */
#define W4A16_GEMV_8WARPS_FROM_STEPS 16
#endif
constexpr int BATCH = W4A16_GEMV_BATCH;

using gemv_args = kernel_args;

/* ---- the kernel ---------------------------------------------------------------------- */

template <int FMT, typename T, int MB, bool SPLIT2, int WARPS, bool PREPACKED>
__global__ void __launch_bounds__(WARPS * 32, WARPS == 4 ? W4A16_GEMV_MIN_CTAS_4WARPS : W4A16_GEMV_MIN_CTAS_4WARPS / 2)
gemv_w4_kernel(gemv_args a)
{
    __shared__ uint32_t lut[256];
    __shared__ float partial[WARPS][MB][4][32];

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    constexpr int ROWS = SPLIT2 ? 8 : 16;
    const int64_t n0 = (int64_t)blockIdx.y * ROWS;
    const int64_t m0 = (int64_t)blockIdx.x * (MB * 8);

    /* the two A rows of this thread: rows g and g+8, or row g over two halves of K */
    const int64_t k_span = SPLIT2 ? a.k / 2 : a.k;
    const int64_t row_g = min(n0 + g, a.n - 1); /* rows past N read row N-1, never stored */
    const int64_t row_h = SPLIT2 ? row_g : min(n0 + g + 8, a.n - 1);
    const int64_t k_h = SPLIT2 ? k_span : 0; /* K offset of the second A row */

    /* per-thread cursors, advanced by 32-bit offsets: super-tile s of this warp is global
     * step warp + s * WARPS; its chunk starts 32t elements in */
    const uint8_t *codes_g = a.codes + row_g * (a.k / 2) + (warp * SUPER_K + 32 * t) / 2;
    const uint8_t *codes_h = a.codes + row_h * (a.k / 2) + (k_h + warp * SUPER_K + 32 * t) / 2;
    const scale_cursor<FMT, T> scale_g(a.scales, a.zero_points, a.k, a.group, row_g, warp * SUPER_K + 32 * t,
                                       a.chunk_shift);
    const scale_cursor<FMT, T> scale_h(a.scales, a.zero_points, a.k, a.group, row_h,
                                       k_h + warp * SUPER_K + 32 * t, a.chunk_shift);
    const T *x_rows[MB];
    bool x_valid[MB];
#pragma unroll
    for (int b = 0; b < MB; b++) {
        const int64_t m = m0 + 8 * b + g;
        x_valid[b] = m < a.m;
        x_rows[b] = reinterpret_cast<const T *>(a.x) + (x_valid[b] ? m : 0) * a.k + warp * SUPER_K + 32 * t;
    }
    const uint32_t int_xor = bits16<T>::INT_MAGIC ^ (a.zero_points ? 0u : 0x00080008u);

    float acc[MB][4];
#pragma unroll
    for (int b = 0; b < MB; b++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[b][j] = 0.0f;

    /* This warp's super-tiles, in batches of BATCH: all weight loads of a batch are
     * issued before any is used, so each thread keeps BATCH * 32 bytes of DRAM reads in
     * flight instead of waiting once per super-tile. */
    const int64_t steps_total = k_span / SUPER_K;
    const uint32_t my_steps = warp < steps_total ? (uint32_t)((steps_total - warp + WARPS - 1) / WARPS) : 0;
    uint4 qg[BATCH], qh[BATCH];
    raw_scale sg[BATCH], sh[BATCH];
    auto load_batch = [&](uint32_t first) {
#pragma unroll
        for (int u = 0; u < BATCH; u++) {
            const uint32_t s = first + u;
            if (s < my_steps) {
                const uint32_t byte_offset = s * (WARPS * SUPER_K / 2);
                qg[u] = __ldcs(reinterpret_cast<const uint4 *>(codes_g + byte_offset));
                qh[u] = __ldcs(reinterpret_cast<const uint4 *>(codes_h + byte_offset));
                sg[u] = scale_g.load(s * WARPS);
                sh[u] = scale_h.load(s * WARPS);
            }
        }
    };
    /* the first batch goes out before the scale table is filled: the fill hides under it */
    load_batch(0);
    if (FMT != W4A16_FORMAT_INT4) fill_scale_lut<FMT, T>(lut);
    __syncthreads();
    for (uint32_t first = 0; first < my_steps; first += BATCH) {
        if (first > 0) load_batch(first);
#pragma unroll
        for (int u = 0; u < BATCH; u++) {
            const uint32_t s = first + u;
            if (s >= my_steps) break;
            const uint32_t x_offset = s * (WARPS * SUPER_K);
            /* x (small, reused by every CTA) comes from L1/L2 */
            uint4 xv[MB][2][4];
#pragma unroll
            for (int b = 0; b < MB; b++) {
#pragma unroll
                for (int half = 0; half < (SPLIT2 ? 2 : 1); half++) {
                    const uint4 *src = reinterpret_cast<const uint4 *>(x_rows[b] + x_offset + (half ? k_h : 0));
#pragma unroll
                    for (int j = 0; j < 4; j++) xv[b][half][j] = x_valid[b] ? __ldg(src + j) : make_uint4(0, 0, 0, 0);
                }
            }
            uint32_t xp[MB][2][16];
#pragma unroll
            for (int b = 0; b < MB; b++)
#pragma unroll
                for (int half = 0; half < (SPLIT2 ? 2 : 1); half++)
#pragma unroll
                    for (int r = 0; r < 4; r++) {
                        const uint32_t *words = reinterpret_cast<const uint32_t *>(&xv[b][half][0]) + 4 * r;
                        if (PREPACKED) { /* the weight pairs are already (k, k+1) pairs */
#pragma unroll
                            for (int j = 0; j < 4; j++) xp[b][half][4 * r + j] = words[j];
                        } else {
                            permute_x_word(words, &xp[b][half][4 * r]);
                        }
                    }
            uint32_t pg[16], ph[16];
            dequant_chunk<FMT, T>(qg[u], scale_cursor<FMT, T>::resolve(sg[u], lut, a.other_scale_type), int_xor, pg);
            dequant_chunk<FMT, T>(qh[u], scale_cursor<FMT, T>::resolve(sh[u], lut, a.other_scale_type), int_xor, ph);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                /* k-tile i: pairs 2i, 2i+1 of the chunk (elements {0,4,1,5} or {2,6,3,7}
                 * of word i/2), and the x pairs gathered the same way */
                const uint32_t afrag[4] = {pg[2 * i], ph[2 * i], pg[2 * i + 1], ph[2 * i + 1]};
#pragma unroll
                for (int b = 0; b < MB; b++) {
                    const uint32_t bg[2] = {xp[b][0][2 * i], xp[b][0][2 * i + 1]};
                    if (SPLIT2) {
                        /* rows g and g+8 hold two K halves of one weight row, but an mma
                         * multiplies all 16 A rows by one B: each half gets its own mma
                         * with the other half's A registers zeroed, and the epilogue adds
                         * rows g and g+8. Twice the mma, no cross-CTA reduction. */
                        const uint32_t bh[2] = {xp[b][1][2 * i], xp[b][1][2 * i + 1]};
                        const uint32_t ag[4] = {afrag[0], 0u, afrag[2], 0u};
                        const uint32_t ah[4] = {0u, afrag[1], 0u, afrag[3]};
                        mma_16816(acc[b], ag, bg, T());
                        mma_16816(acc[b], ah, bh, T());
                    } else {
                        mma_16816(acc[b], afrag, bg, T());
                    }
                }
            }
        }
    }

    /* stage 4: reduce over warps, then warp 0 writes */
#pragma unroll
    for (int b = 0; b < MB; b++)
#pragma unroll
        for (int j = 0; j < 4; j++) partial[warp][b][j][lane] = acc[b][j];
    __syncthreads();
    if (warp != 0) return;
#pragma unroll
    for (int b = 0; b < MB; b++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            float s = 0.0f;
#pragma unroll
            for (int w = 0; w < WARPS; w++) s += partial[w][b][j][lane];
            acc[b][j] = s;
        }

    const float epilogue = epilogue_factor<FMT>(a.alpha, a.global_scale);
    const T *bias = reinterpret_cast<const T *>(a.bias);
    uint16_t *y = reinterpret_cast<uint16_t *>(a.y);
#pragma unroll
    for (int b = 0; b < MB; b++) {
        /* accumulator: c0, c1 = (row g, cols 2t, 2t+1); c2, c3 = (row g+8, same cols) */
#pragma unroll
        for (int rr = 0; rr < (SPLIT2 ? 1 : 2); rr++) {
            const int64_t n = n0 + g + 8 * rr;
#pragma unroll
            for (int c = 0; c < 2; c++) {
                const int64_t m = m0 + 8 * b + 2 * t + c;
                float v = SPLIT2 ? acc[b][c] + acc[b][c + 2] : acc[b][2 * rr + c];
                if (n < a.n && m < a.m) {
                    v *= epilogue;
                    if (bias) v += bits16<T>::to_float(reinterpret_cast<const uint16_t *>(bias)[n]);
                    y[m * a.n + n] = bits16<T>::from_float(v);
                }
            }
        }
    }
}

/* ---- generic fallback: any K multiple of the block, any alignment ------------------------ */

template <typename T>
__global__ void gemm_w4_generic(w4a16_cuda_gemm_args a)
{
    const int lane = threadIdx.x & 31;
    const int64_t n = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
    const int64_t m_begin = (int64_t)blockIdx.y * 16;
    if (n >= a.n) return;
    const int64_t groups = a.k / a.group_size;
    const uint8_t *codes = a.codes + n * (a.k / 2);
    const uint16_t *x = static_cast<const uint16_t *>(a.x);
    float acc[16];
#pragma unroll
    for (int i = 0; i < 16; i++) acc[i] = 0.0f;
    for (int64_t k = 2 * lane; k < a.k; k += 64) {
        float z;
        const float s = w4a16_group_scale(a, n * groups + k / a.group_size, &z);
        float w[2];
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const uint8_t q = w4a16_code_at(codes, k + e, a.prepacked);
            w[e] = (w4a16_code_value(q, a.format == W4A16_FORMAT_INT4, a.zero_points != nullptr) - z) * s;
        }
#pragma unroll
        for (int i = 0; i < 16; i++) {
            const int64_t m = m_begin + i;
            if (m < a.m)
                acc[i] += w[0] * bits16<T>::to_float(x[m * a.k + k]) + w[1] * bits16<T>::to_float(x[m * a.k + k + 1]);
        }
    }
#pragma unroll
    for (int i = 0; i < 16; i++) {
        float v = acc[i];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
        const int64_t m = m_begin + i;
        if (lane == 0 && m < a.m) {
            v *= a.alpha;
            if (a.bias) v += bits16<T>::to_float(static_cast<const uint16_t *>(a.bias)[n]);
            static_cast<uint16_t *>(a.y)[m * a.n + n] = bits16<T>::from_float(v);
        }
    }
}

/* ---- dispatch ------------------------------------------------------------------------ */

bool aligned16(const void *p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <int FMT, typename T, int MB, bool SPLIT2, bool PREPACKED>
void launch_fast(const gemv_args &a, cudaStream_t stream, int warps)
{
    constexpr int ROWS = SPLIT2 ? 8 : 16;
    const dim3 grid(w4a16_ceil_div(a.m, MB * 8), w4a16_ceil_div(a.n, ROWS));
    if (warps >= 8) gemv_w4_kernel<FMT, T, MB, SPLIT2, 8, PREPACKED><<<grid, 8 * 32, 0, stream>>>(a);
    else gemv_w4_kernel<FMT, T, MB, SPLIT2, 4, PREPACKED><<<grid, 4 * 32, 0, stream>>>(a);
}

template <int FMT, typename T, bool PREPACKED>
void launch_fast_format(const gemv_args &a, cudaStream_t stream, bool split2, int warps)
{
    const bool small_m = a.m <= 8;
    if (split2) {
        if (small_m) launch_fast<FMT, T, 1, true, PREPACKED>(a, stream, warps);
        else launch_fast<FMT, T, 2, true, PREPACKED>(a, stream, warps);
    } else {
        if (small_m) launch_fast<FMT, T, 1, false, PREPACKED>(a, stream, warps);
        else launch_fast<FMT, T, 2, false, PREPACKED>(a, stream, warps);
    }
}

template <typename T, bool PREPACKED>
void launch_fast_dtype(int format, const gemv_args &a, cudaStream_t stream, bool split2, int warps)
{
    if (format == W4A16_FORMAT_NVFP4) launch_fast_format<W4A16_FORMAT_NVFP4, T, PREPACKED>(a, stream, split2, warps);
    else if (format == W4A16_FORMAT_MXFP4) launch_fast_format<W4A16_FORMAT_MXFP4, T, PREPACKED>(a, stream, split2, warps);
    else launch_fast_format<W4A16_FORMAT_INT4, T, PREPACKED>(a, stream, split2, warps);
}

template <bool PREPACKED>
void launch_fast_layout(bool bf16, int format, const gemv_args &a, cudaStream_t stream, bool split2, int warps)
{
    if (bf16) launch_fast_dtype<__nv_bfloat16, PREPACKED>(format, a, stream, split2, warps);
    else launch_fast_dtype<__half, PREPACKED>(format, a, stream, split2, warps);
}

} // namespace

cudaError_t w4a16_gemv_launch(const w4a16_cuda_gemm_args &args, int sms, cudaStream_t stream)
{
    const gemv_args a = make_kernel_args(args, nullptr);
    const bool bf16 = args.x_dtype == W4A16_DTYPE_BFLOAT16;

    /* split2 doubles the CTAs when 16-row tiles alone would leave SMs idle */
    const int64_t ctas16 = ((a.n + 15) / 16) * ((a.m + 15) / 16);
    const bool split2 = ctas16 < W4A16_GEMV_SPLIT2_BELOW_CTAS_PER_SM * (int64_t)(sms > 0 ? sms : 132) &&
                        a.k % (2 * SUPER_K) == 0;
    const int64_t steps = (split2 ? a.k / 2 : a.k) / SUPER_K;
    const int warps = steps >= W4A16_GEMV_8WARPS_FROM_STEPS ? 8 : 4;
    const bool fast = a.k % SUPER_K == 0 && aligned16(a.x) && aligned16(a.codes) &&
                      (args.format != W4A16_FORMAT_NVFP4 || reinterpret_cast<uintptr_t>(a.scales) % 2 == 0) &&
                      (args.format != W4A16_FORMAT_INT4 || reinterpret_cast<uintptr_t>(a.scales) % 2 == 0);
    if (fast) {
        if (args.prepacked) launch_fast_layout<true>(bf16, args.format, a, stream, split2, warps);
        else launch_fast_layout<false>(bf16, args.format, a, stream, split2, warps);
    } else {
        const dim3 grid(w4a16_ceil_div(a.n, 8), w4a16_ceil_div(a.m, 16));
        if (bf16) gemm_w4_generic<__nv_bfloat16><<<grid, 256, 0, stream>>>(args);
        else gemm_w4_generic<__half><<<grid, 256, 0, stream>>>(args);
    }
    return cudaGetLastError();
}
