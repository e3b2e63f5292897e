/*
 * gemm_tc.cu — W4A16 GEMM on tensor cores for M beyond the small-M kernel, reading the
 * prepacked layout (w4a16_prepack).
 *
 *   y [M, N] = alpha * x [M, K] @ dequant(W [N, K])^T + bias
 *
 * Stage 1 — tiles. A CTA computes a BN x BM tile of y^T (BN weight rows, BM rows of x).
 *   Its warps form a WN x WM x WK grid: each warp owns 32 weight rows (two mma row
 *   tiles) by 8*FM rows of x, and the WK warps of one (wn, wm) split each pipeline stage
 *   along K and add their sums at the end. blockIdx.x walks the M tiles (the warpgroup
 *   kernel: all tiles, M first, and its CTAs may take several), so the CTAs
 *   that share a weight tile run together and read it from DRAM once; blockIdx.z splits
 *   K across CTAs when the grid would otherwise leave SMs idle (fp32 partial sums in the
 *   caller's workspace, added by reduce_split_k; the warpgroup kernel's split 2 adds up
 *   in a thread-block cluster instead, reduce_tile_in_cluster).
 *
 * Stage 2 — the pipeline. STAGES shared-memory buffers, each holding the weight tile
 *   [BN rows][BK/2 bytes] and the x tile [BM rows][BK], filled by 16-byte cp.async
 *   (rows past N or M are zero-filled) STAGES - 1 stages ahead of the math. The x tile
 *   is XOR-swizzled by 16-byte chunk so that the fragment reads below hit 8 distinct
 *   bank groups per quarter warp; the weight tile is swizzled when its rows are 128 B+.
 *
 * Stage 3 — operands. Weights are the mma's A operand (rows = n), x is B (columns = m),
 *   exactly as in gemv.cu: in each 128-element super-tile, thread t of a quad owns the
 *   32 elements [32t, 32t + 32) of its rows g and g + 8, and mma k-tile i takes elements
 *   32t + 4i + {0, 1, 2, 3} of them. The prepacked layout stores those as (k, k+1) pairs
 *   in the two halves of the chunk's words (slot i / 2 of its 4 words, codecs.h), so
 *   one 16-byte shared load per row gives the codes of 8 k-tiles, and one 16-byte load
 *   per 8 rows of x gives the matching B fragments of 2 k-tiles, with no shuffles. Block
 *   scales (32-element chunks: 2 NVFP4 blocks, 1 MXFP4 block, part of an INT4 group) are
 *   read from global memory one super-tile ahead (three in the 16-row tile).
 *
 * Stage 4 — dequantization and math: dequant.cuh turns each word into 4 scaled pairs
 *   (one shift/mask and one 16-bit multiply per pair) that feed 2 * FM mma.sync m16n8k16
 *   per row tile, with fp32 accumulators.
 *
 * Beyond M = 128 a second kernel (gemm_tc_decoded_kernel, further down) replaces stages
 * 3-4: the CTA decodes each stage's weight tile once into shared memory, in mma fragment
 * order, and all its warps read A fragments from there. On SM 9.0 a third
 * (gemm_wgmma_kernel, sm_90a builds) does the same for Hopper's warpgroup MMA.
 *
 * Stage 5 — epilogue. The WK warps reduce through shared memory; the result times alpha,
 *   2^10 and the NVFP4 global scale, plus bias, is rounded to 16 bits, staged in shared
 *   memory as y rows, and written with 16-byte stores. With split-K, fp32 partials are
 *   staged and stored instead and reduce_split_k finishes.
 */
#include <cudaTypedefs.h> /* PFN_cuTensorMapEncodeTiled_v12000 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include <type_traits>

#include "cuda_common.cuh"
#include "dequant.cuh"
#include "gemm_tc.h"
#include "wgmma.cuh"

namespace {

using tc_args = kernel_args;

/* Swizzled 16-byte chunk of the x tile: a quarter warp reads chunk 4t + r of rows g and
 * g + 1 (t = 0..3); bit 3 of the chunk folded into bit 1 and the row parity into bit 0
 * give those 8 reads 8 different bank groups. */
__device__ __forceinline__ int x_chunk(int row, int col) { return col ^ (((col >> 3) & 1) << 1) ^ (row & 1); }

/* Where the mma.sync kernels keep 16-byte chunk `col` of row `row` of an x tile with rows
 * of `row_bytes` bytes. */
__device__ __forceinline__ int x_offset_swizzled(int row, int col, int row_bytes)
{
    return row * row_bytes + x_chunk(row, col) * 16;
}

template <int WN_, int WM_, int WK_, int FM_, int KSUPER_, int STAGES_>
struct tile {
    static constexpr int WN = WN_, WM = WM_, WK = WK_, FM = FM_, KSUPER = KSUPER_, STAGES = STAGES_;
    static constexpr int FN = 2; /* mma row tiles (16 weight rows) per warp */
    static constexpr bool DECODED = false, WGMMA = false;
    static constexpr int WARPS = WN * WM * WK, THREADS = 32 * WARPS;
    static constexpr int BN = 32 * WN, BM = 8 * FM * WM, BK = SUPER_K * KSUPER;
    static constexpr int W_ROW_BYTES = BK / 2, X_ROW_BYTES = BK * 2;
    static constexpr int W_STAGE = BN * W_ROW_BYTES, X_STAGE = BM * X_ROW_BYTES;
    static constexpr int STAGE_BYTES = W_STAGE + X_STAGE;
    static constexpr int ACC = 2 * FM * 4; /* fp32 accumulators per thread */
    /* super-tiles whose scales are in registers at once: the 16-row tile (one super-tile per
     * warp and stage, registers to spare) reads them 3 steps ahead, since one step does not
     * hide an L2 round trip there (H100, nvfp4 / mxfp4 / int4, 2048x16384 M = 10: 14.6 /
     * 13.6 / 13.8 µs vs 15.2 / 14.4 / 14.1 one step ahead); the wider tiles lose more to
     * the registers than they gain (32768x2048 M = 32, int4: 27.5 vs 26.5) */
    static constexpr int SCALE_AHEAD = FM <= 2 ? 3 : 1;
    static constexpr int RED_BYTES = (WK - 1) * WN * WM * ACC * 32 * 4;
    static constexpr int OUT_PITCH = BN + 8; /* elements per staged output row */
    static constexpr int OUT_BYTES = BM * OUT_PITCH * 4; /* fp32 partials or 16-bit y */
    static constexpr int W_CHUNKS = BN * W_ROW_BYTES / 16, X_CHUNKS = BM * X_ROW_BYTES / 16;
    static constexpr int PIPE_BYTES = STAGES * STAGE_BYTES;
    static constexpr int SMEM = PIPE_BYTES > RED_BYTES + OUT_BYTES ? PIPE_BYTES : RED_BYTES + OUT_BYTES;
    static_assert(KSUPER % WK == 0, "the k-warps of a stage take whole super-tiles");
    static_assert(STAGES >= 2, "a pipeline needs two buffers");
    static_assert(W_CHUNKS % THREADS == 0 && X_CHUNKS % THREADS == 0, "every thread copies the same count");
};

/* Swizzled 16-byte chunk of the weight tile: rows of 128 B or more put odd rows' quads
 * on the other half of the banks (a quarter warp reads rows g and g + 1). */
template <class C> __device__ __forceinline__ int w_chunk(int row, int col)
{
    return C::KSUPER >= 2 ? col ^ ((row & 1) << 2) : col;
}

/* Where one thread's cp.async copies of a stage come from and go to. Every thread copies
 * the same 16-byte column of rows row0, row0 + ROWS_PER_PASS, ... of each tile, so the
 * sources of a stage are one pointer plus multiples of a row stride; rows past N (or M)
 * are zero-filled. Computed once per CTA: a stage then costs one add per copy. */
template <class C> struct stage_copier {
    static constexpr int W_CHUNKS_ROW = C::W_ROW_BYTES / 16, X_CHUNKS_ROW = C::X_ROW_BYTES / 16;
    static constexpr int W_ROWS_PER_PASS = C::THREADS / W_CHUNKS_ROW, X_ROWS_PER_PASS = C::THREADS / X_CHUNKS_ROW;
    static_assert(C::THREADS % W_CHUNKS_ROW == 0 && C::THREADS % X_CHUNKS_ROW == 0, "whole rows per pass");
    static_assert(W_ROWS_PER_PASS % 2 == 0 && X_ROWS_PER_PASS % 2 == 0, "the swizzles repeat every 2 rows");

    const uint8_t *w_src, *x_src; /* row0's bytes at the CTA's first stage */
    int64_t w_pitch, x_pitch;     /* bytes per row of codes / of x */
    int w_rows, x_rows;           /* rows of the tile that exist (the rest zero-fill) */
    int w_dst, x_dst;             /* row0's chunk within a stage */

    __device__ __forceinline__ stage_copier(const tc_args &a, int64_t n0, int64_t m0, int64_t k_begin)
    {
        const int w_row0 = threadIdx.x / W_CHUNKS_ROW, w_col = threadIdx.x % W_CHUNKS_ROW;
        const int x_row0 = threadIdx.x / X_CHUNKS_ROW, x_col = threadIdx.x % X_CHUNKS_ROW;
        w_pitch = a.k / 2;
        x_pitch = a.k * 2;
        w_rows = (int)min(a.n - n0, (int64_t)C::BN);
        x_rows = (int)min(a.m - m0, (int64_t)C::BM);
        w_src = a.codes + (n0 + w_row0) * w_pitch + k_begin / 2 + w_col * 16;
        x_src = static_cast<const uint8_t *>(a.x) + (m0 + x_row0) * x_pitch + k_begin * 2 + x_col * 16;
        /* every row a thread copies has row0's swizzle (see the static_assert) */
        w_dst = w_row0 * C::W_ROW_BYTES + w_chunk<C>(w_row0, w_col) * 16;
        x_dst = C::W_STAGE + x_offset_swizzled(x_row0, x_col, C::X_ROW_BYTES);
    }

    /* stage s of the CTA (K offset s * BK) into the buffer at `stage` */
    __device__ __forceinline__ void copy(const tc_args &a, uint8_t *stage, int s) const
    {
        const int w_row0 = threadIdx.x / W_CHUNKS_ROW, x_row0 = threadIdx.x / X_CHUNKS_ROW;
        const uint8_t *w = w_src + (int64_t)s * (C::BK / 2);
        const uint8_t *x = x_src + (int64_t)s * (C::BK * 2);
#pragma unroll
        for (int i = 0; i < C::W_CHUNKS / C::THREADS; i++) {
            const bool valid = w_row0 + i * W_ROWS_PER_PASS < w_rows;
            cp_async16(stage + w_dst + i * W_ROWS_PER_PASS * C::W_ROW_BYTES,
                       valid ? w + i * W_ROWS_PER_PASS * w_pitch : a.codes, valid);
        }
#pragma unroll
        for (int i = 0; i < C::X_CHUNKS / C::THREADS; i++) {
            const bool valid = x_row0 + i * X_ROWS_PER_PASS < x_rows;
            cp_async16(stage + x_dst + i * X_ROWS_PER_PASS * C::X_ROW_BYTES,
                       valid ? x + i * X_ROWS_PER_PASS * x_pitch : static_cast<const uint8_t *>(a.x), valid);
        }
    }

    /* stage s into pipeline buffer s % STAGES as one commit group; past the CTA's last
     * stage the group is empty, so that the kernels' wait counts hold to the end */
    __device__ __forceinline__ void issue(const tc_args &a, uint8_t *smem, int s, int stages_total) const
    {
        if (s < stages_total) copy(a, smem + (s % C::STAGES) * C::STAGE_BYTES, s);
        cp_async_commit();
    }
};

/* Where a CTA's output tile starts: row m0 of x (and y), weight row n0. */
struct tile_origin {
    int64_t m0, n0;
};

/* The mma.sync kernels' tile: blockIdx.x walks the M tiles, blockIdx.y the N tiles. */
template <class C> __device__ __forceinline__ tile_origin grid_tile()
{
    return tile_origin{(int64_t)blockIdx.x * C::BM, (int64_t)blockIdx.y * C::BN};
}

/* Stage 5, the output of a CTA (every kernel), in two steps. First the accumulators
 * acc[f][jm] of warp (wn, wm) go to shared memory as rows of the tile [BM][OUT_PITCH]:
 * times alpha, 2^10 and the NVFP4 global scale, plus bias, rounded to 16 bits -- or, as
 * `sums` (a K split), the fp32 sums as they are. */
template <int FMT, typename T, class C>
__device__ __forceinline__ void stage_tile(const tc_args &a, const float (&acc)[C::FN][C::FM][4], uint8_t *out, int wn,
                                           int wm, bool sums, tile_origin at)
{
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int64_t n0 = at.n0;
    const float factor = sums ? 1.0f : epilogue_factor<FMT>(a.alpha, a.global_scale);
#pragma unroll
    for (int f = 0; f < C::FN; f++)
#pragma unroll
        for (int jm = 0; jm < C::FM; jm++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                /* accumulator e: row g (+8 for e >= 2) of tile f, column 2t + (e & 1) of block jm */
                const int nl = wn * 16 * C::FN + 16 * f + g + 8 * (e >> 1);
                const int ml = wm * C::FM * 8 + 8 * jm + 2 * t + (e & 1);
                if (sums)
                    reinterpret_cast<float *>(out)[ml * C::OUT_PITCH + nl] = acc[f][jm][e];
                else
                    reinterpret_cast<uint16_t *>(out)[ml * C::OUT_PITCH + nl] =
                        output_bits<T>(acc[f][jm][e], factor, n0 + nl < a.n ? a.bias : nullptr, n0 + nl);
            }
}

/* 16 bytes of a staged row (`src`) to global memory: one 16-byte store when `whole` (the
 * caller's destination is 16-byte aligned and its rows a multiple of 16 bytes), else
 * element by element, `left` of them at most (those before the row's end). */
template <typename E>
__device__ __forceinline__ void store_16_bytes(E *dst, const E *src, int64_t left, bool whole)
{
    constexpr int ELEMS = 16 / sizeof(E);
    if (whole) *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
    else
        for (int e = 0; e < ELEMS && e < left; e++) dst[e] = src[e];
}

/* w4a16_gemm_geglu's store of a staged tile: each 16 staged columns (8 gate rows, then
 * their 8 up rows; tiles start on multiples of 16 rows and N % 16 == 0, so none is cut)
 * give 8 outputs of y [M, N/2], one 16-byte store. */
template <typename T, class C>
__device__ __forceinline__ void store_geglu_tile(const tc_args &a, const uint8_t *out, tile_origin at)
{
    constexpr int UNITS_ROW = C::BN / 16;
    static_assert(C::BN % 16 == 0, "whole gate/up units per tile");
    for (int c = threadIdx.x; c < C::BM * UNITS_ROW; c += C::THREADS) {
        const int row = c / UNITS_ROW, col = (c % UNITS_ROW) * 16;
        const int64_t m = at.m0 + row, n = at.n0 + col;
        if (m >= a.m || n >= a.n) continue;
        const uint16_t *src = reinterpret_cast<const uint16_t *>(out) + row * C::OUT_PITCH + col;
        uint16_t h[8];
#pragma unroll
        for (int e = 0; e < 8; e++) h[e] = geglu_bits<T>(src[e], src[e + 8]);
        store_16_bytes(static_cast<uint16_t *>(a.y) + m * (a.n / 2) + n / 2, h, 8, true);
    }
}

/* Then the staged tile goes out with 16-byte stores of whole rows: to y, or with a K
 * split to the caller's workspace, fp32 partial sums that reduce_split_k adds. Only the
 * `owner` warps stage (the k-warps that added theirs into them do not). `geglu` (a.geglu,
 * or a template constant: see gemm_tc_kernel) stores through store_geglu_tile. */
template <int FMT, typename T, class C>
__device__ __forceinline__ void store_tile(const tc_args &a, const float (&acc)[C::FN][C::FM][4], uint8_t *out, int wn,
                                           int wm, bool owner, tile_origin at, bool geglu)
{
    const bool split = gridDim.z > 1;
    const int64_t m0 = at.m0, n0 = at.n0;
    if (owner) stage_tile<FMT, T, C>(a, acc, out, wn, wm, split, at);
    __syncthreads();
    if (!split && geglu) {
        store_geglu_tile<T, C>(a, out, at);
        return;
    }
    /* 16-byte stores of whole rows of the tile */
    const int elems = split ? 4 : 8; /* per 16-byte chunk */
    const int chunks_row = C::BN / elems;
    const bool vector = a.n % elems == 0;
    for (int c = threadIdx.x; c < C::BM * chunks_row; c += C::THREADS) {
        const int row = c / chunks_row, col = (c % chunks_row) * elems;
        const int64_t m = m0 + row, n = n0 + col;
        if (m >= a.m || n >= a.n) continue;
        if (split)
            store_16_bytes(a.partials + ((int64_t)blockIdx.z * a.m + m) * a.n + n,
                           reinterpret_cast<const float *>(out) + row * C::OUT_PITCH + col, a.n - n, vector);
        else
            store_16_bytes(static_cast<uint16_t *>(a.y) + m * a.n + n,
                           reinterpret_cast<const uint16_t *>(out) + row * C::OUT_PITCH + col, a.n - n, vector);
    }
}

/* ---- the kernel ---------------------------------------------------------------------- */

/* This CTA's K stages: split z of gridDim.z takes an equal share of K, from stage
 * blockIdx.z * cta_stages on. */
template <class C> __device__ __forceinline__ int cta_stages(int64_t k) { return (int)(k / C::BK) / (int)gridDim.z; }

/* Every kernel starts here, before it reads anything. Until the prior kernel on the stream
 * has finished (programmatic dependent launch, SM90 on) a CTA only asks L2 for the codes
 * of its first STAGES - 1 stages, a weight row per thread -- when a.prefetch is set, and
 * only the CTAs whose first tile is the first x tile (at.m0 == 0), so that no line is asked
 * for twice. Then it lets the next kernel be scheduled, which in turn waits for this one
 * to finish. */
template <class C>
__device__ __forceinline__ void wait_for_prior_kernel(const tc_args &a, tile_origin at, int64_t k_begin, int stages_total)
{
    static_assert(C::THREADS >= C::BN, "a thread per weight row");
    const int64_t row = at.n0 + threadIdx.x;
    if (a.prefetch && at.m0 == 0 && threadIdx.x < C::BN && row < a.n)
        w4a16_prefetch_l2(a.codes + row * (a.k / 2) + k_begin / 2, (size_t)min(C::STAGES - 1, stages_total) * (C::BK / 2));
    w4a16_wait_for_prior();
    w4a16_allow_next();
}

/* The mma.sync kernels' start: the CTA's copier, with the first STAGES - 1 stages issued. */
template <class C>
__device__ __forceinline__ stage_copier<C> start_pipeline(const tc_args &a, uint8_t *smem, tile_origin at,
                                                          int64_t k_begin, int stages_total)
{
    wait_for_prior_kernel<C>(a, at, k_begin, stages_total);
    const stage_copier<C> copier(a, at.n0, at.m0, k_begin);
#pragma unroll
    for (int s = 0; s < C::STAGES - 1; s++) copier.issue(a, smem, s, stages_total);
    return copier;
}

/* GEGLU: the epilogue of w4a16_gemm_geglu, as a template flag: with a run-time branch its
 * code moved ptxas's register allocation of the plain kernels (some tiles 135 -> 166
 * registers) and made them up to 7% slower (H100, 4096x1024 M = 50). The warpgroup kernel
 * keeps the run-time flag (its registers moved by one at most). */
template <int FMT, typename T, class C, bool GEGLU>
__global__ void __launch_bounds__(C::THREADS) gemm_tc_kernel(tc_args a)
{
    extern __shared__ __align__(16) uint8_t smem[];
    __shared__ uint32_t lut[256];

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wk = warp % C::WK, wm = (warp / C::WK) % C::WM, wn = warp / (C::WK * C::WM);
    const tile_origin at = grid_tile<C>();
    const int64_t n0 = at.n0;
    const int stages_total = cta_stages<C>(a.k);
    const int64_t k_begin = (int64_t)blockIdx.z * stages_total * C::BK;

    const stage_copier<C> copier = start_pipeline<C>(a, smem, at, k_begin, stages_total);

    /* scales of the thread's 4 weight rows (tile f, half h): rows past N read row N - 1 */
    scale_cursor<FMT, T> scales[2][2];
#pragma unroll
    for (int f = 0; f < 2; f++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int64_t row = min(n0 + wn * 32 + 16 * f + 8 * h + g, a.n - 1);
            scales[f][h] = scale_cursor<FMT, T>(a.scales, a.zero_points, a.k, a.group, row,
                                                k_begin + wk * SUPER_K + 32 * t, a.chunk_shift);
        }
    /* super-tile i of this warp is global step i * WK from its first one */
    constexpr int PER_STAGE = C::KSUPER / C::WK;
    const uint32_t my_steps = (uint32_t)stages_total * PER_STAGE;
    /* the raw scales of this step and the next AHEAD - 1 ones */
    constexpr int AHEAD = C::SCALE_AHEAD;
    raw_scale ahead[AHEAD][2][2];
#pragma unroll
    for (int i = 0; i < AHEAD; i++)
#pragma unroll
        for (int f = 0; f < 2; f++)
#pragma unroll
            for (int h = 0; h < 2; h++)
                if (i < (int)my_steps) ahead[i][f][h] = scales[f][h].load(i * C::WK);

    if (FMT != W4A16_FORMAT_INT4) fill_scale_lut<FMT, T>(lut);
    const uint32_t int_xor = int4_xor<T>(a.zero_points != nullptr);

    float acc[C::FN][C::FM][4];
#pragma unroll
    for (int f = 0; f < C::FN; f++)
#pragma unroll
        for (int j = 0; j < C::FM; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[f][j][e] = 0.0f;

    uint32_t step = 0;
    for (int kt = 0; kt < stages_total; kt++) {
        cp_async_wait<C::STAGES - 2>();
        __syncthreads(); /* stage kt landed for every thread; stage kt - 1 is free */
        copier.issue(a, smem, kt + C::STAGES - 1, stages_total);

        const uint8_t *ws = smem + (kt % C::STAGES) * C::STAGE_BYTES;
        const uint8_t *xs = ws + C::W_STAGE;
#pragma unroll
        for (int j = 0; j < PER_STAGE; j++, step++) {
            const int s = wk + j * C::WK; /* super-tile within the stage */
            raw_scale nxt[2][2];
            const bool more = step + AHEAD < my_steps;
#pragma unroll
            for (int f = 0; f < 2; f++)
#pragma unroll
                for (int h = 0; h < 2; h++)
                    if (more) nxt[f][h] = scales[f][h].load((step + AHEAD) * C::WK);

            uint4 q[2][2];
            chunk_scale cs[2][2];
#pragma unroll
            for (int f = 0; f < 2; f++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int row = wn * 32 + 16 * f + 8 * h + g;
                    q[f][h] = *reinterpret_cast<const uint4 *>(ws + row * C::W_ROW_BYTES + w_chunk<C>(row, 4 * s + t) * 16);
                    cs[f][h] = scale_cursor<FMT, T>::resolve(ahead[0][f][h], lut, a.other_scale_type);
                }
#pragma unroll
            for (int r = 0; r < 4; r++) {
                /* word r of each row: elements 32t + 8r .. + 8, k-tiles 2r and 2r + 1; the A
                 * fragments of both k-tiles and both row tiles, then one x load per m8-block
                 * feeds 4 mma (loading x per block keeps 4, not 4 * FM, x registers live) */
                uint32_t afrag[2][2][4]; /* [row tile f][k-tile kk] */
#pragma unroll
                for (int f = 0; f < 2; f++) {
                    uint32_t p[2][4];
                    dequant_chunk_pairs<FMT, T, true>(q[f][0], r, cs[f][0], int_xor, p[0]);
                    dequant_chunk_pairs<FMT, T, true>(q[f][1], r, cs[f][1], int_xor, p[1]);
#pragma unroll
                    for (int kk = 0; kk < 2; kk++) {
                        afrag[f][kk][0] = p[0][2 * kk];
                        afrag[f][kk][1] = p[1][2 * kk];
                        afrag[f][kk][2] = p[0][2 * kk + 1];
                        afrag[f][kk][3] = p[1][2 * kk + 1];
                    }
                }
#pragma unroll
                for (int jm = 0; jm < C::FM; jm++) {
                    const int row = wm * C::FM * 8 + 8 * jm + g;
                    const uint4 v = *reinterpret_cast<const uint4 *>(xs + row * C::X_ROW_BYTES + x_chunk(row, 16 * s + 4 * t + r) * 16);
                    const uint32_t b0[2] = {v.x, v.y}, b1[2] = {v.z, v.w};
                    /* the two k-tiles of one accumulator are not issued back to back */
                    mma_16816(acc[0][jm], afrag[0][0], b0, T());
                    mma_16816(acc[1][jm], afrag[1][0], b0, T());
                    mma_16816(acc[0][jm], afrag[0][1], b1, T());
                    mma_16816(acc[1][jm], afrag[1][1], b1, T());
                }
            }
#pragma unroll
            for (int f = 0; f < 2; f++)
#pragma unroll
                for (int h = 0; h < 2; h++) {
#pragma unroll
                    for (int i = 0; i + 1 < AHEAD; i++) ahead[i][f][h] = ahead[i + 1][f][h];
                    if (more) ahead[AHEAD - 1][f][h] = nxt[f][h];
                }
        }
    }

    /* ---- epilogue ---- */
    cp_async_wait<0>();
    __syncthreads(); /* the pipeline buffers become the reduction and output staging area */
    float *red = reinterpret_cast<float *>(smem);
    const int warp_tile = wn * C::WM + wm;
    if (C::WK > 1) {
        if (wk > 0) {
            float *dst = red + ((wk - 1) * C::WN * C::WM + warp_tile) * C::ACC * 32 + lane;
#pragma unroll
            for (int f = 0; f < 2; f++)
#pragma unroll
                for (int jm = 0; jm < C::FM; jm++)
#pragma unroll
                    for (int e = 0; e < 4; e++) dst[((f * C::FM + jm) * 4 + e) * 32] = acc[f][jm][e];
        }
        __syncthreads();
        if (wk == 0) {
#pragma unroll
            for (int w = 1; w < C::WK; w++) {
                const float *src = red + ((w - 1) * C::WN * C::WM + warp_tile) * C::ACC * 32 + lane;
#pragma unroll
                for (int f = 0; f < 2; f++)
#pragma unroll
                    for (int jm = 0; jm < C::FM; jm++)
#pragma unroll
                        for (int e = 0; e < 4; e++) acc[f][jm][e] += src[((f * C::FM + jm) * 4 + e) * 32];
            }
        }
    }
    store_tile<FMT, T, C>(a, acc, smem + C::RED_BYTES, wn, wm, wk == 0, at, GEGLU);
}

/* ---- the decoded-tile kernel (large M) -------------------------------------------------
 *
 * The kernel above decodes every weight fragment in the registers of each warp that uses
 * it, i.e. once per 64 rows of x at best (6+ instructions per mma at M >= 128). Here the
 * CTA decodes each stage's weight tile once into shared memory as scaled 16-bit values in
 * mma fragment order (decoded_unit), and every warp reads each A operand with one 16-byte
 * load: the decode is shared by all BM rows (4.5 instructions per mma). Measured 3-8%
 * faster at M >= 256 on the large Pi0.5 weights; both kernels stop near 40% of what
 * mma.sync can issue on an H100 (benchmarks/NOTES.md).
 *
 * Pipeline per stage kt (one barrier): wait for stage kt + 1's copy, start the copy of
 * stage kt + STAGES - 1, decode stage kt + 1 into decoded buffer (kt + 1) & 1, and run the
 * mma of stage kt from buffer kt & 1; the decode (ALU) and the mma (tensor pipe) of
 * different warps overlap. Tile: WN x WM warps, each FN row tiles (16 weight rows) by FM
 * m8-blocks; K per stage one super-tile (128). */
template <int WN_, int WM_, int FN_, int FM_, int STAGES_>
struct decoded_tile {
    static constexpr int WN = WN_, WM = WM_, WK = 1, FN = FN_, FM = FM_, KSUPER = 1, STAGES = STAGES_;
    static constexpr bool DECODED = true, WGMMA = false;
    static constexpr int WARPS = WN * WM, THREADS = 32 * WARPS;
    static constexpr int BN = 16 * FN * WN, BM = 8 * FM * WM, BK = SUPER_K;
    static constexpr int W_ROW_BYTES = BK / 2, X_ROW_BYTES = BK * 2;
    static constexpr int W_STAGE = BN * W_ROW_BYTES, X_STAGE = BM * X_ROW_BYTES;
    static constexpr int STAGE_BYTES = W_STAGE + X_STAGE;
    static constexpr int DECODED_BYTES = BN * BK * 2; /* one decoded weight tile, 16-bit */
    static constexpr int RED_BYTES = 0;
    static constexpr int OUT_PITCH = BN + 8;
    static constexpr int OUT_BYTES = BM * OUT_PITCH * 4;
    static constexpr int W_CHUNKS = BN * W_ROW_BYTES / 16, X_CHUNKS = BM * X_ROW_BYTES / 16;
    static constexpr int CHUNKS_ROW = W_ROW_BYTES / 16;        /* 16-byte code chunks per weight row */
    static constexpr int TILES_PER_PASS = THREADS / (8 * CHUNKS_ROW); /* 16-row tiles one decode pass covers */
    static constexpr int DECODE_PASSES = BN / 16 / TILES_PER_PASS;
    static constexpr int PIPE_BYTES = STAGES * STAGE_BYTES + 2 * DECODED_BYTES;
    static constexpr int SMEM = PIPE_BYTES > OUT_BYTES ? PIPE_BYTES : OUT_BYTES;
    static_assert(STAGES >= 3, "stage kt + 1 is decoded while stage kt + STAGES - 1 loads");
    static_assert(W_CHUNKS % THREADS == 0 && X_CHUNKS % THREADS == 0, "every thread copies the same count");
    static_assert(THREADS % (8 * CHUNKS_ROW) == 0 && (BN / 16) % TILES_PER_PASS == 0, "whole decode passes");
};

/* Byte offset of one 16-byte unit of the decoded tile: the A fragment of mma k-tile kk of
 * word c (elements 8c .. 8c + 7 of the super-tile, c = 4t + r) for lane group g of row
 * tile `tile`, i.e. {pair 2kk of row g, of row g + 8, pair 2kk + 1 of row g, of row g + 8}
 * of the rows 16 tile + g / + 8. A warp's 16-byte load returns the mma operand as is (no
 * register moves); g ^ 2t spreads a quarter warp (g = 0, 1; t = 0..3) over 8 bank groups,
 * and likewise the decoder's stores (two g, t = col = 0..3). */
template <class C> __device__ __forceinline__ int decoded_unit(int tile, int c, int kk, int g)
{
    return ((((tile * (C::BK / 8) + c) * 2 + kk) * 8) + (g ^ ((c >> 2) << 1))) * 16;
}

template <int FMT, typename T, class C, bool GEGLU>
__global__ void __launch_bounds__(C::THREADS) gemm_tc_decoded_kernel(tc_args a)
{
    extern __shared__ __align__(16) uint8_t smem[];
    __shared__ uint32_t lut[256];

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wm = warp % C::WM, wn = warp / C::WM;
    const tile_origin at = grid_tile<C>();
    const int64_t n0 = at.n0;
    const int stages_total = cta_stages<C>(a.k);
    const int64_t k_begin = (int64_t)blockIdx.z * stages_total * C::BK;
    uint8_t *decoded = smem + C::STAGES * C::STAGE_BYTES;

    const stage_copier<C> copier = start_pipeline<C>(a, smem, at, k_begin, stages_total);

    /* the decode: per pass, thread (tile, g, col) takes code chunk col (elements 32 col ..
     * + 32) of weight rows 16 tile + g and 16 tile + g + 8, so that it holds whole A
     * fragments (see decoded_unit); rows past N read row N - 1's scales (their codes are 0).
     * col varies fastest: a quarter warp reads 2 whole 64-byte rows (8 bank groups) */
    const int d_col = threadIdx.x % C::CHUNKS_ROW, d_g = (threadIdx.x / C::CHUNKS_ROW) & 7;
    const int d_tile0 = threadIdx.x / (8 * C::CHUNKS_ROW);
    scale_cursor<FMT, T> scales[C::DECODE_PASSES][2];
    raw_scale cur[C::DECODE_PASSES][2];
#pragma unroll
    for (int j = 0; j < C::DECODE_PASSES; j++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int64_t row = min(n0 + 16 * (d_tile0 + j * C::TILES_PER_PASS) + d_g + 8 * h, a.n - 1);
            scales[j][h] = scale_cursor<FMT, T>(a.scales, a.zero_points, a.k, a.group, row, k_begin + 32 * d_col,
                                                a.chunk_shift);
            cur[j][h] = scales[j][h].load(0);
        }
    if (FMT != W4A16_FORMAT_INT4) fill_scale_lut<FMT, T>(lut);
    const uint32_t int_xor = int4_xor<T>(a.zero_points != nullptr);

    /* stage s (in pipeline buffer s % STAGES) -> decoded buffer s & 1 */
    auto decode_stage = [&](int s) {
        const uint8_t *ws = smem + (s % C::STAGES) * C::STAGE_BYTES;
        uint8_t *dst = decoded + (s & 1) * C::DECODED_BYTES;
        const bool more = s + 1 < stages_total;
#pragma unroll
        for (int j = 0; j < C::DECODE_PASSES; j++) {
            const int tile = d_tile0 + j * C::TILES_PER_PASS, row = 16 * tile + d_g;
            chunk_scale cs[2];
#pragma unroll
            for (int h = 0; h < 2; h++) {
                cs[h] = scale_cursor<FMT, T>::resolve(cur[j][h], lut, a.other_scale_type);
                if (more) cur[j][h] = scales[j][h].load((uint32_t)s + 1);
            }
            const uint4 qg = *reinterpret_cast<const uint4 *>(ws + row * C::W_ROW_BYTES + d_col * 16);
            const uint4 qh = *reinterpret_cast<const uint4 *>(ws + (row + 8) * C::W_ROW_BYTES + d_col * 16);
#pragma unroll
            for (int r = 0; r < 4; r++) {
                uint32_t pg[4], ph[4]; /* elements 32 col + 8r .. + 8 in order: the layout is prepacked */
                dequant_chunk_pairs<FMT, T, true>(qg, r, cs[0], int_xor, pg);
                dequant_chunk_pairs<FMT, T, true>(qh, r, cs[1], int_xor, ph);
                const int c = 4 * d_col + r;
                *reinterpret_cast<uint4 *>(dst + decoded_unit<C>(tile, c, 0, d_g)) = make_uint4(pg[0], ph[0], pg[1], ph[1]);
                *reinterpret_cast<uint4 *>(dst + decoded_unit<C>(tile, c, 1, d_g)) = make_uint4(pg[2], ph[2], pg[3], ph[3]);
            }
        }
    };

    float acc[C::FN][C::FM][4];
#pragma unroll
    for (int f = 0; f < C::FN; f++)
#pragma unroll
        for (int j = 0; j < C::FM; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[f][j][e] = 0.0f;

    cp_async_wait<C::STAGES - 2>();
    __syncthreads(); /* stage 0 landed, the scale table is filled */
    if (stages_total > 0) decode_stage(0);

    for (int kt = 0; kt < stages_total; kt++) {
        cp_async_wait<C::STAGES - 3>();
        __syncthreads(); /* stage kt + 1 landed; decoded tile kt is complete; iteration kt - 1 is done */
        copier.issue(a, smem, kt + C::STAGES - 1, stages_total);
        if (kt + 1 < stages_total) decode_stage(kt + 1);

        const uint8_t *ws = decoded + (kt & 1) * C::DECODED_BYTES;
        const uint8_t *xs = smem + (kt % C::STAGES) * C::STAGE_BYTES + C::W_STAGE;
#pragma unroll
        for (int r = 0; r < 4; r++) {
            /* k-tiles 2r and 2r + 1: elements 32t + 8r .. + 8 of the rows, as in gemm_tc_kernel */
            uint32_t afrag[C::FN][2][4]; /* one 16-byte load each, already in fragment order */
#pragma unroll
            for (int f = 0; f < C::FN; f++)
#pragma unroll
                for (int kk = 0; kk < 2; kk++) {
                    const uint4 v = *reinterpret_cast<const uint4 *>(ws + decoded_unit<C>(wn * C::FN + f, 4 * t + r, kk, g));
                    afrag[f][kk][0] = v.x, afrag[f][kk][1] = v.y, afrag[f][kk][2] = v.z, afrag[f][kk][3] = v.w;
                }
#pragma unroll
            for (int jm = 0; jm < C::FM; jm++) {
                const int row = wm * C::FM * 8 + 8 * jm + g;
                const uint4 v = *reinterpret_cast<const uint4 *>(xs + row * C::X_ROW_BYTES + x_chunk(row, 4 * t + r) * 16);
                const uint32_t b0[2] = {v.x, v.y}, b1[2] = {v.z, v.w};
#pragma unroll
                for (int f = 0; f < C::FN; f++) mma_16816(acc[f][jm], afrag[f][0], b0, T());
#pragma unroll
                for (int f = 0; f < C::FN; f++) mma_16816(acc[f][jm], afrag[f][1], b1, T());
            }
        }
    }

    cp_async_wait<0>();
    __syncthreads(); /* the pipeline buffers become the output staging area */
    store_tile<FMT, T, C>(a, acc, smem, wn, wm, true, at, GEGLU);
}

/* ---- the warpgroup kernel (Hopper, sm_90a; large M) -------------------------------------
 *
 * Hopper's asynchronous warpgroup MMA (wgmma.cuh): one wgmma m64nBMk16 runs BM / 2 of
 * mma.sync's 16x8x16 products without the warps' issue slots (mma.sync stopped near 40% of
 * its ceiling here, NOTES.md). The weights are wgmma's A operand *in registers*, x its B
 * operand in shared memory.
 *
 * Copies: the tensor memory accelerator. One thread issues a stage's two copies -- the codes
 * tile [BN rows][BK / 2 bytes] with the 128-, 64- or 32-byte swizzle (BK = 256, 128, 64),
 * and x's BK / 64 column blocks of [BM rows][64 elements] with the 128-byte swizzle wgmma
 * reads, one 3-D box -- and they complete on the stage's mbarrier; rows past N or M arrive
 * as zeros. The other warps spend no instructions on copies (cp.async took a quarter of
 * their issue slots here).
 *
 * Decode: the A fragment of warp w is weight rows 16w + g and + 8 (g = lane / 4), and for
 * each k16 step the pairs at elements 2t and 2t + 8 (t = lane % 4) -- in the prepacked
 * layout (codecs.h) exactly word t of each 32-element chunk, whose 4 slots are the pairs of
 * the chunk's two k16 steps. So a thread reads one 32-bit word per chunk and row (the
 * swizzle spreads the 8 rows of a warp's read over distinct banks) and decodes it straight
 * into fragment registers: no decoded tile in shared memory, no stores, no wgmma A reads.
 * The 4 threads of a quad need the same block scales; each loads and resolves a quarter
 * of them and the quad shares them by shuffles. (H100, against decoding each stage once
 * into a shared-memory A tile: 1.00-1.16x at M = 64..968 on the Pi0.5 shapes, bitwise the
 * same results; NOTES.md, fifteenth session.)
 *
 * Tile: BN = 128 weight rows (two warpgroups of 64, one wgmma M each) by BM rows of x
 * (the wgmma N), BK (64 or 128) of K per stage. Per stage kt (one barrier): issue the
 * BK / 16 wgmma of stage kt from fragment set kt & 1 (they run asynchronously), wait for
 * those of stage kt - 1 (their set and x buffer are free then), issue the copies of stage
 * kt + STAGES - 1 into that buffer, wait for stage kt + 1's copies and decode it into the
 * other set. Epilogue as in the mma.sync kernels: the fragment of a warp's 16 rows is the
 * m16n8 accumulator layout.
 *
 * Tiles per CTA: the output tiles are numbered along blockIdx.x (wgmma_tile_at). When
 * there are more of them than SMs, the tiles of 128 and 256 rows of x (PERSISTENT) run one
 * CTA per SM, each walking tiles blockIdx.x, + gridDim.x, ... through one pipeline
 * (the kernel's WALK): stages are numbered across the CTA's tiles, so the copies and
 * scales of the next tile's first stages are on their way while the current one finishes,
 * and y goes through a staging area of its own. Against waves of one-tile CTAs (H100,
 * nvfp4): 16384x2048 M = 968 110.5 -> 103.0 µs; 32768x2048 M = 128 39.1 -> 38.3, M = 256
 * 59.2 -> 56.3, M = 968 228.9 -> 207.4 (NOTES.md, seventeenth session). The 64- and
 * 32-row tiles fit twice on an SM instead and keep one tile per CTA, as do K splits. */
template <int BM_, int BK_, int STAGES_>
struct wgmma_tile {
    static constexpr int FN = 1, FM = BM_ / 8, STAGES = STAGES_; /* a warp's 16 rows x BM: store_tile's view */
    static constexpr bool DECODED = false, WGMMA = true;
    static constexpr int WARPS = 8, THREADS = 256;
    static constexpr int BN = 128, BM = BM_, BK = BK_;
    static constexpr int W_ROW_BYTES = BK / 2;
    static constexpr int W_STAGE = BN * W_ROW_BYTES, X_STAGE = BM * BK * 2;
    static constexpr int STAGE_BYTES = W_STAGE + X_STAGE;                /* also the bytes a stage's copies bring */
    static constexpr int X_BOX_BYTES = BM * 128;                         /* x: one 64-element column block */
    static constexpr bool PERSISTENT = BM >= 128;
    static constexpr int OUT_PITCH = BN + 8;
    static constexpr int OUT_BYTES = BM * OUT_PITCH * 4;                /* fp32 sums: in the drained pipeline */
    static constexpr int Y_BYTES = PERSISTENT ? BM * OUT_PITCH * 2 : 0; /* 16-bit y: after the pipeline */
    static constexpr int CHUNKS_ROW = W_ROW_BYTES / 16;                /* 32-element code chunks per row */
    static constexpr int STEPS = BK / 16;                              /* wgmma k16 steps per stage */
    static constexpr int PIPE_BYTES = STAGES * STAGE_BYTES;
    /* + alignment slack: the swizzle atoms start on 1024-byte boundaries */
    static constexpr int SMEM =
        (PIPE_BYTES + Y_BYTES > OUT_BYTES ? PIPE_BYTES + Y_BYTES : OUT_BYTES) + WGMMA_ATOM_BYTES;
    static_assert(STAGES >= 3, "stage kt + 1 is decoded while stage kt + STAGES - 1 loads");
    static_assert(BM == 32 || BM == 64 || BM == 128 || BM == 256, "the wgmma N sizes of wgmma.cuh");
    static_assert(BK == 64 || BK == 128 || BK == 256,
                  "whole 64-element column blocks; a code row of at most 128 bytes (the widest TMA swizzle)");
    static_assert(STAGE_BYTES % WGMMA_ATOM_BYTES == 0 && W_STAGE % WGMMA_ATOM_BYTES == 0, "atoms stay aligned");
};

/* Byte offset of 16-byte chunk `chunk` of code row `row` in a stage as the TMA swizzle
 * leaves it: bits 4 .. 4 + log2(CHUNKS_ROW) of the address XOR its bits 7 .. (the 128-,
 * 64- and 32-byte modes), so that rows g = 0..7 of a warp's read land on 8 distinct
 * 16-byte bank groups. */
template <class C> __host__ __device__ constexpr int codes_offset_swizzled(int row, int chunk)
{
    const int linear = row * C::W_ROW_BYTES + chunk * 16;
    return linear ^ (((linear >> 7) & (C::CHUNKS_ROW - 1)) << 4);
}

/* The swizzle XORs a key taken from the row alone: chunk c of a row lies at chunk 0's offset
 * ^ 16 c, and row + 8 has row's key (gemm_wgmma_kernel's word_offset relies on both). */
template <class C> __host__ __device__ constexpr bool swizzle_key_is_per_row()
{
    for (int row = 0; row < C::BN - 8; row++)
        for (int chunk = 0; chunk < C::CHUNKS_ROW; chunk++)
            if (codes_offset_swizzled<C>(row, chunk) != (codes_offset_swizzled<C>(row, 0) ^ (16 * chunk)) ||
                codes_offset_swizzled<C>(row + 8, chunk) != codes_offset_swizzled<C>(row, chunk) + 8 * C::W_ROW_BYTES)
                return false;
    return true;
}

/* Output tiles of the warpgroup kernel, in launch order: tile t is x tile t % tiles_m of
 * weight tile t / tiles_m, so that the CTAs sharing a weight tile run side by side and read
 * it from DRAM once. */
template <class C> __host__ __device__ __forceinline__ int64_t wgmma_tile_count(int64_t m, int64_t n)
{
    return ((m + C::BM - 1) / C::BM) * ((n + C::BN - 1) / C::BN);
}
template <class C> __device__ __forceinline__ tile_origin wgmma_tile_at(const tc_args &a, int t)
{
    const int tiles_m = (int)((a.m + C::BM - 1) / C::BM); /* 32-bit: w4a16_tc_unsupported */
    return tile_origin{(int64_t)(t % tiles_m) * C::BM, (int64_t)(t / tiles_m) * C::BN};
}

#if W4A16_HAVE_WGMMA
/* v[e] = the sum over the cluster's CTAs of their staged fp32 src[e], e < 8 */
__device__ __forceinline__ void add_cluster_sums(const float *src, uint32_t splits, float (&v)[8])
{
#pragma unroll
    for (int e = 0; e < 8; e++) v[e] = 0.0f;
    for (uint32_t z = 0; z < splits; z++) {
        const float4 lo = load_cluster_float4(src, z), hi = load_cluster_float4(src + 4, z);
        v[0] += lo.x, v[1] += lo.y, v[2] += lo.z, v[3] += lo.w;
        v[4] += hi.x, v[5] += hi.y, v[6] += hi.z, v[7] += hi.w;
    }
}

/* reduce_tile_in_cluster for w4a16_gemm_geglu: units of 16 staged columns (8 gate rows,
 * then their up rows) give 8 outputs of y [M, N/2] */
template <typename T, class C>
__device__ __forceinline__ void reduce_geglu_units_in_cluster(const tc_args &a, const uint8_t *out, tile_origin at,
                                                              float factor)
{
    constexpr int UNITS_ROW = C::BN / 16;
    const uint32_t splits = gridDim.z, rank = cluster_rank();
    for (int u = (int)rank * C::THREADS + threadIdx.x; u < C::BM * UNITS_ROW; u += (int)splits * C::THREADS) {
        const int row = u / UNITS_ROW, col = (u % UNITS_ROW) * 16;
        const int64_t m = at.m0 + row, n = at.n0 + col;
        if (m >= a.m || n >= a.n) continue;
        const float *src = reinterpret_cast<const float *>(out) + row * C::OUT_PITCH + col;
        float gate[8], up[8];
        add_cluster_sums(src, splits, gate);
        add_cluster_sums(src + 8, splits, up);
        uint16_t h[8];
#pragma unroll
        for (int e = 0; e < 8; e++)
            h[e] = geglu_bits<T>(output_bits<T>(gate[e], factor, a.bias, n + e),
                                 output_bits<T>(up[e], factor, a.bias, n + 8 + e));
        store_16_bytes(static_cast<uint16_t *>(a.y) + m * (a.n / 2) + n / 2, h, 8, true);
    }
}

/* The warpgroup kernel's K split: the gridDim.z CTAs of one output tile run as a
 * thread-block cluster. Each stages its fp32 sums in its own shared memory; after the
 * cluster barrier CTA r adds up the r-th share of the tile's rows of 8 outputs from all of
 * them (distributed shared memory, 16-byte loads), applies the epilogue factor and bias
 * and writes those outputs of y; the second barrier keeps every CTA's shared memory
 * alive until the others have read it. The partial sums never leave the GPC: the
 * workspace round trip and the second kernel of reduce_split_k (10 µs of 120 on
 * 2048x16384 at M = 968, H100) are gone. Used for split 2 (splits_in_cluster). */
template <int FMT, typename T, class C>
__device__ __forceinline__ void reduce_tile_in_cluster(const tc_args &a, const float (&acc)[C::FN][C::FM][4],
                                                       uint8_t *out, int wn, tile_origin at)
{
    stage_tile<FMT, T, C>(a, acc, out, wn, 0, true, at);
    cluster_sync();
    const int64_t m0 = at.m0, n0 = at.n0;
    const uint32_t splits = gridDim.z, rank = cluster_rank();
    const float factor = epilogue_factor<FMT>(a.alpha, a.global_scale);
    const bool vector = a.n % 8 == 0;
    if (a.geglu) {
        reduce_geglu_units_in_cluster<T, C>(a, out, at, factor);
    } else {
        constexpr int UNITS_ROW = C::BN / 8;
        /* CTA r takes units r * THREADS + i + j * splits * THREADS: 4 KiB runs of y per CTA */
        for (int u = (int)rank * C::THREADS + threadIdx.x; u < C::BM * UNITS_ROW; u += (int)splits * C::THREADS) {
            const int row = u / UNITS_ROW, col = (u % UNITS_ROW) * 8;
            const int64_t m = m0 + row, n = n0 + col;
            if (m >= a.m || n >= a.n) continue;
            float v[8];
            add_cluster_sums(reinterpret_cast<const float *>(out) + row * C::OUT_PITCH + col, splits, v);
            uint16_t h[8];
#pragma unroll
            for (int e = 0; e < 8; e++) h[e] = output_bits<T>(v[e], factor, n + e < a.n ? a.bias : nullptr, n + e);
            store_16_bytes(static_cast<uint16_t *>(a.y) + m * a.n + n, h, a.n - n, vector);
        }
    }
    cluster_sync();
}
#endif

template <int FMT, typename T, class C, bool WALK>
__global__ void __launch_bounds__(C::THREADS) gemm_wgmma_kernel(tc_args a, const __grid_constant__ wgmma_maps maps)
{
#if W4A16_HAVE_WGMMA
    extern __shared__ __align__(16) uint8_t smem_raw[];
    __shared__ uint32_t lut[256];
    __shared__ uint64_t landed[C::STAGES]; /* buffer b: the copies of its current stage have arrived */
    const uint32_t misalign = shared_address(smem_raw) & (WGMMA_ATOM_BYTES - 1);
    uint8_t *smem = smem_raw + ((WGMMA_ATOM_BYTES - misalign) & (WGMMA_ATOM_BYTES - 1));
    static_assert(!WALK || C::PERSISTENT, "only the PERSISTENT tiles stage y apart from the pipeline");

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    /* WALK: the CTA's tiles are blockIdx.x, + gridDim.x, ... (no K split; tile_stages is
     * even, tile_grid), its stages numbered 0 .. stages_total - 1 across them. Otherwise a
     * CTA computes tile blockIdx.x, split blockIdx.z. */
    const int tile_stages = cta_stages<C>(a.k);
    const int cta_tiles = WALK ? ((int)wgmma_tile_count<C>(a.m, a.n) - 1 - (int)blockIdx.x) / (int)gridDim.x + 1 : 1;
    const int stages_total = cta_tiles * tile_stages;
    const int64_t k_begin = (int64_t)blockIdx.z * tile_stages * C::BK;
    constexpr int CHUNKS = C::CHUNKS_ROW, STEPS = C::STEPS;

    const tile_origin first = wgmma_tile_at<C>(a, blockIdx.x); /* the CTA's (first) tile */
    /* where thread 0 copies to next (WALK): stage copy_kt of tile copy_tile */
    int copy_kt = 0, copy_tile = blockIdx.x;
    tile_origin copy_at = first;
    /* stage s into buffer s % STAGES (thread 0 only, for s = 0, 1, 2, ... in turn): the codes,
     * and x's BK / 64 column blocks as one 3-D box; nothing past the CTA's last stage.
     * Coordinates are elements of K (x) or bytes (codes) and rows: w4a16_tc_unsupported keeps
     * them within int32. */
    auto copy_stage = [&](int s) {
        if (s >= stages_total) return;
        uint8_t *buffer = smem + (s % C::STAGES) * C::STAGE_BYTES;
        uint64_t *bar = &landed[s % C::STAGES];
        const int64_t k = k_begin + (int64_t)(WALK ? copy_kt : s) * C::BK;
        mbarrier_arrive_expect_tx(bar, C::STAGE_BYTES);
        tma_load_2d(buffer, &maps.codes, bar, (int32_t)(k / 2), (int32_t)copy_at.n0);
        tma_load_3d(buffer + C::W_STAGE, &maps.x, bar, 0, (int32_t)copy_at.m0, (int32_t)(k / 64));
        if (WALK && ++copy_kt == tile_stages) {
            copy_kt = 0, copy_tile += gridDim.x;
            copy_at = wgmma_tile_at<C>(a, copy_tile);
        }
    };
    /* every thread, before it reads stage s: the lap's parity */
    auto wait_stage = [&](int s) { mbarrier_wait(&landed[s % C::STAGES], (uint32_t)(s / C::STAGES) & 1); };

    if (threadIdx.x == 0) {
#pragma unroll
        for (int b = 0; b < C::STAGES; b++) mbarrier_init(&landed[b], 1);
        fence_mbarrier_init();
    }
    wait_for_prior_kernel<C>(a, first, k_begin, tile_stages);
    if (threadIdx.x == 0)
        for (int s = 0; s < C::STAGES - 1; s++) copy_stage(s);

    /* rows 16 warp + g and + 8 of the tile; rows past N read row N - 1's scales. The 4
     * threads of a quad need the same scales (their rows and chunks are the same): thread
     * t loads and resolves those of chunk t % CHUNKS and the quad shares them by shuffles
     * (one per scale word for both rows, chunk_scale_rows), a quarter of the loads and table
     * lookups of each thread doing all of them. `own` holds the raw scales of the next stage
     * to decode, of tile scale_tile. */
    const int rows[2] = {16 * warp + g, 16 * warp + g + 8};
    /* thread t of a quad owns chunks t, t + 4, ... of a stage's row (BK = 64: t % 2) */
    constexpr int OWN = CHUNKS > 4 ? CHUNKS / 4 : 1;
    const int own_chunk = t % CHUNKS;
    scale_cursor<FMT, T> scales[2];
    /* own[f]: the raw scales of the next stage to be decoded into fragment set f. Without
     * WALK they are read two stages ahead (stage s + 2's while stage s is decoded): read one
     * stage ahead, ptxas sank the loads below the next stage's first wgmma, and warps
     * waited on them after the barrier (Nsight Compute's stall samples, 16384x2048 M = 32:
     * ~3% of all of them on the first use). Measured (H100, A/B, four passes): 16384x2048 at
     * M = 50 / 64 nvfp4 -2 to -5%, mxfp4 -2 to -5% on the large shapes; 8192x1024 at M = 50
     * nvfp4 +1.3% (its 8 stages pay the second load before the first decode). WALK reads one
     * ahead into own[0]: a tile's last stage starts the next tile's cursors. */
    raw_scale own[2][2][OWN];
    int scale_tile = blockIdx.x;
    auto start_scales = [&]() { /* the cursors at stage 0 of scale_tile */
        const int64_t n0 = wgmma_tile_at<C>(a, scale_tile).n0;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            scales[h] = scale_cursor<FMT, T>(a.scales, a.zero_points, a.k, a.group, min(n0 + rows[h], a.n - 1),
                                             k_begin, a.chunk_shift);
#pragma unroll
            for (int o = 0; o < OWN; o++) {
                own[0][h][o] = scales[h].load_chunk((uint32_t)(own_chunk + 4 * o));
                if (!WALK && stages_total > 1)
                    own[1][h][o] = scales[h].load_chunk((uint32_t)(CHUNKS + own_chunk + 4 * o));
            }
        }
    };
    start_scales();
    if (FMT != W4A16_FORMAT_INT4) fill_scale_lut<FMT, T>(lut);
    const uint32_t int_xor = int4_xor<T>(a.zero_points != nullptr);

    /* Where word t of chunk c of row rows[0] lies in a stage: word_offset ^ 16 c, one
     * integer op (codes_offset_swizzled's key does not depend on the chunk; as written there,
     * ptxas rebuilt the swizzle for each word of each stage, ~4 ops a word). Row rows[1] =
     * rows[0] + 8 has the same key, 8 rows further on. Stages start on WGMMA_ATOM_BYTES
     * boundaries, so the XOR can take the stage's address + word_offset: one add a stage. */
    static_assert(swizzle_key_is_per_row<C>(), "word_offset ^ 16 c is chunk c, row + 8 is 8 rows on");
    static_assert(C::STAGE_BYTES % WGMMA_ATOM_BYTES == 0 && WGMMA_ATOM_BYTES >= 16 * CHUNKS,
                  "a stage's address (smem is WGMMA_ATOM_BYTES-aligned) leaves the XOR's bits alone");
    const uint32_t word_offset = (uint32_t)codes_offset_swizzled<C>(rows[0], 0) + 4 * t;

    uint32_t frag[2][STEPS][4]; /* [set][k16 step]: the A fragment {row g, row g + 8} x {2t, 2t + 8} */
    /* stage s (stage s_kt of its tile) -> fragment set `set`: word t of chunk c of row h
     * gives k16 steps 2c and 2c + 1 */
    auto decode_stage = [&](int s, int s_kt, auto set_tag) {
        constexpr int set = decltype(set_tag)::value;
        const uint32_t row_words = shared_address(smem + (s % C::STAGES) * C::STAGE_BYTES) + word_offset;
        chunk_scale_rows mine[OWN]; /* chunks own_chunk + 4 o of both rows */
        constexpr int slot = WALK ? 0 : set;
#pragma unroll
        for (int o = 0; o < OWN; o++)
            mine[o] = pack_rows(scale_cursor<FMT, T>::resolve(own[slot][0][o], lut, a.other_scale_type),
                                scale_cursor<FMT, T>::resolve(own[slot][1][o], lut, a.other_scale_type));
        if (!WALK) {
            if (s + 2 < stages_total)
#pragma unroll
                for (int h = 0; h < 2; h++)
#pragma unroll
                    for (int o = 0; o < OWN; o++)
                        own[slot][h][o] = scales[h].load_chunk((uint32_t)(s_kt + 2) * CHUNKS + own_chunk + 4 * o);
        } else if (s_kt + 1 < tile_stages) {
            if (s + 1 < stages_total)
#pragma unroll
                for (int h = 0; h < 2; h++)
#pragma unroll
                    for (int o = 0; o < OWN; o++)
                        own[0][h][o] = scales[h].load_chunk((uint32_t)(s_kt + 1) * CHUNKS + own_chunk + 4 * o);
        } else if (s + 1 < stages_total) {
            scale_tile += gridDim.x; /* stage s + 1 starts the CTA's next tile */
            start_scales();
        }
#pragma unroll
        for (int c = 0; c < CHUNKS; c++) {
            /* from thread c % 4 of the quad (width 4: a constant lane, no index arithmetic) */
            const chunk_scale_rows &held = mine[c / 4];
            chunk_scale_rows shared;
            shared.s0 = __shfl_sync(0xffffffffu, held.s0, c % 4, 4);
            shared.s1 = FMT == W4A16_FORMAT_NVFP4 ? __shfl_sync(0xffffffffu, held.s1, c % 4, 4) : shared.s0;
            shared.offset = FMT == W4A16_FORMAT_INT4 ? __shfl_sync(0xffffffffu, held.offset, c % 4, 4) : 0u;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const uint32_t at = row_words ^ (16 * c);
                const uint32_t word = h ? load_shared_u32<8 * C::W_ROW_BYTES>(at) : load_shared_u32(at);
                uint32_t p[4];
                dequant_fragment_word<FMT, T>(word, row_of<T>(shared, h), int_xor, p);
                frag[set][2 * c][h] = p[0];
                frag[set][2 * c][2 + h] = p[1];
                frag[set][2 * c + 1][h] = p[2];
                frag[set][2 * c + 1][2 + h] = p[3];
            }
        }
    };

    float acc[C::FN][C::FM][4]; /* = the wgmma fragment d[BM / 2]: d[4j + e] is acc[0][j][e] */
    float(&d)[C::BM / 2] = *reinterpret_cast<float(*)[C::BM / 2]>(&acc[0][0][0]);
    if (!WALK)
#pragma unroll
        for (int i = 0; i < C::BM / 2; i++) d[i] = 0.0f;

    __syncthreads(); /* the barriers are initialised, the scale table is filled */
    if (stages_total > 0) {
        wait_stage(0);
        decode_stage(0, 0, std::integral_constant<int, 0>());
    }

    /* stage s, stage kt of its tile, with fragment set `set` (a constant: the loops below
     * are unrolled by two) */
    auto step = [&](int s, int kt, auto set_tag) {
        constexpr int set = decltype(set_tag)::value;
        const uint32_t b_low = sw128_descriptor_low(smem + (s % C::STAGES) * C::STAGE_BYTES + C::W_STAGE);
        wgmma_fence();
#pragma unroll
        for (int j = 0; j < STEPS; j++)
            wgmma_op<C::BM, T>::run(d, frag[set][j], sw128_descriptor(b_low, (j >> 2) * C::X_BOX_BYTES + (j & 3) * 32));
        wgmma_commit();
        wgmma_wait<1>(); /* wgmma s - 1 is done: the other set and buffer (s - 1) % STAGES are free */
        __syncthreads();
        if (threadIdx.x == 0) copy_stage(s + C::STAGES - 1);
        if (s + 1 < stages_total) {
            wait_stage(s + 1);
            decode_stage(s + 1, WALK && kt + 1 == tile_stages ? 0 : kt + 1, std::integral_constant<int, set ^ 1>());
        }
    };
    /* A finished tile's y. A walking CTA's pipeline already holds stages of its next tile,
     * so y is staged in a region of its own after the pipeline (the barriers of the next
     * tile's stages keep its reads apart from the next tile's writes); with one tile per CTA
     * every copy has been waited for, and the pipeline buffers stage y -- or a K split's fp32
     * sums. Walking grids have no K split, but the test is
     * made at run time all the same: with both ways compiled in, ptxas gives the walking
     * kernel ~250 registers instead of ~205, and it runs 2-9% faster (H100, nvfp4, the same
     * loop otherwise: 16384x2048 M = 968 113.0 -> 103.0 µs, 32768x2048 M = 968 227.0 ->
     * 207.4; NOTES.md, seventeenth session). */
    auto finish_tile = [&](tile_origin at) {
        wgmma_wait<0>();
        if (WALK && gridDim.z == 1) {
            store_tile<FMT, T, C>(a, acc, smem + C::PIPE_BYTES, warp, 0, true, at, a.geglu);
        } else {
            __syncthreads();
            if (gridDim.z > 1 && a.partials == nullptr) reduce_tile_in_cluster<FMT, T, C>(a, acc, smem, warp, at);
            else store_tile<FMT, T, C>(a, acc, smem, warp, 0, true, at, a.geglu);
        }
    };
    if constexpr (WALK) {
        int s = 0;
        for (int i = 0; i < cta_tiles; i++) {
            const tile_origin at = wgmma_tile_at<C>(a, (int)blockIdx.x + i * (int)gridDim.x);
#pragma unroll
            for (int e = 0; e < C::BM / 2; e++) d[e] = 0.0f;
            for (int kt = 0; kt < tile_stages; kt += 2, s += 2) {
                step(s, kt, std::integral_constant<int, 0>());
                if (kt + 1 < tile_stages) step(s + 1, kt + 1, std::integral_constant<int, 1>());
            }
            finish_tile(at);
        }
    } else {
        for (int kt = 0; kt < stages_total; kt += 2) {
            step(kt, kt, std::integral_constant<int, 0>());
            if (kt + 1 < stages_total) step(kt + 1, kt + 1, std::integral_constant<int, 1>());
        }
        finish_tile(first);
    }
#else
    (void)maps;
    __trap(); /* not built for sm_90a: the host never launches it (w4a16_tc_unsupported) */
#endif
}

/* y = factor * sum over splits of partials + bias; one thread per element of y (GEGLU:
 * per output, from gate row n and up row n + 8 of the partials). GEGLU is a template flag
 * so that the plain kernel stays as it was: a first build with a run-time flag here (and
 * in the other epilogues) made the split rows 0.3-1.3 µs slower (H100; not isolated). */
template <int FMT, typename T, bool GEGLU>
__global__ void reduce_split_k(tc_args a, int splits)
{
    w4a16_wait_for_prior(); /* the partial sums */
    w4a16_allow_next();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const float factor = epilogue_factor<FMT>(a.alpha, a.global_scale);
    if (!GEGLU) {
        if (i >= a.m * a.n) return;
        float v = 0.0f;
        for (int z = 0; z < splits; z++) v += a.partials[z * a.m * a.n + i];
        static_cast<uint16_t *>(a.y)[i] = output_bits<T>(v, factor, a.bias, i % a.n);
        return;
    }
    const int64_t cols = a.n / 2;
    if (i >= a.m * cols) return;
    const int64_t m = i / cols, col = i % cols, n = geglu_gate_row(col);
    const float *sums = a.partials + m * a.n + n;
    float gate = 0.0f, up = 0.0f;
    for (int z = 0; z < splits; z++) {
        gate += sums[z * a.m * a.n];
        up += sums[z * a.m * a.n + 8];
    }
    static_cast<uint16_t *>(a.y)[i] =
        geglu_bits<T>(output_bits<T>(gate, factor, a.bias, n), output_bits<T>(up, factor, a.bias, n + 8));
}

/* ---- the tile shapes ------------------------------------------------------------------ */

/* WN, WM, WK, FM, KSUPER, STAGES: see `tile`. Chosen for the Pi0.5 shapes (N x K of
 * 16384 x 2048, 2048 x 16384, 4096 x 1024, 1024 x 4096 at M = 17 .. 1024) with at most
 * ~100 KiB of shared memory, so that SM86/89/120 parts can run all but the largest. */
using tile_n128_m64 = tile<4, 2, 1, 4, 1, 4>; /* 8 warps, 96 KiB */
using tile_n64_m128 = tile<2, 4, 1, 4, 1, 3>; /* 8 warps, 108 KiB */
using tile_n128_m32 = tile<4, 1, 2, 4, 2, 3>; /* 8 warps, K split over 2 warps, 96 KiB */
using tile_n64_m64 = tile<2, 2, 1, 4, 1, 4>;  /* 4 warps, 80 KiB */
using tile_n64_m32 = tile<2, 1, 2, 4, 2, 4>;  /* 4 warps, K split over 2 warps, 96 KiB */
using tile_n64_m16 = tile<2, 1, 4, 2, 4, 3>;  /* 8 warps, K split over 4 warps, 96 KiB */
/* n64_m32 with twice the warps, each a quarter of a 512-element stage: with the K split
 * across CTAs on the expert's down projection, 1024x4096 at M = 32 / 50 / 64 (H100, nvfp4,
 * benchmarks/sweep_configs.py): 5.8 / 7.2 / 7.1 µs against 6.2 / 7.6 / 7.7+ for the 4-warp
 * tile's best split */
using tile_n64_m32_k4 = tile<2, 1, 4, 4, 4, 2>; /* 8 warps, K split over 4 warps, 96 KiB */
/* one warp across all 64 rows of x: each dequantized weight fragment feeds 8 mma instead
 * of 4 (144 / 160 KiB of shared memory: SM80, SM90, SM100 class parts) */
using tile_n128_m64_wide = tile<4, 1, 2, 8, 2, 3>; /* 8 warps, K split over 2 warps */
using tile_n64_m64_wide = tile<2, 1, 2, 8, 2, 4>;  /* 4 warps, K split over 2 warps */
/* the decoded-tile kernel, 8 warps of 64 x 32 (184 KiB of shared memory: SM90 and SM100
 * class parts). 4 stages (224 KiB) measured the same; a 128 x 64 decoded tile was never
 * the fastest (H100, benchmarks/RESULTS.md). */
using tile_n128_m128_decoded = decoded_tile<2, 4, 4, 4, 3>;
/* the warpgroup kernel (SM90 with an sm_90a build only): 161 / 97 / 145 / 65 / 97 / 145
 * KiB. 5 stages for the 128-row tile measured the same (H100, M = 64 and 128 on the large
 * Pi0.5 shapes). The 32-row tile (~120 registers, so two CTAs fit on an SM) against the
 * best mma.sync config at M = 17..32 (H100, nvfp4, benchmarks/sweep_configs.py): 16384x2048
 * M = 32 14.7 -> 13.3 µs, 32768x2048 29.0 -> 22.1, 2048x16384 (split 8) 16.8 -> 15.2. A
 * 16-row one (M = 16: 12.7 vs 11.8 on 16384x2048, 21.8 vs 23.7 on 32768x2048) and a 32-row
 * one with 64-element stages (17.5 at M = 32 on 16384x2048) are not kept. */
using tile_wg_n128_m128 = wgmma_tile<128, 128, 4>;
using tile_wg_n128_m64 = wgmma_tile<64, 128, 4>;
using tile_wg_n128_m256 = wgmma_tile<256, 64, 4>;
using tile_wg_n128_m32 = wgmma_tile<32, 128, 4>;
/* The 32-row tile with 256-element stages, 3 deep: half the stages, so half the per-stage
 * barrier, waits and scale handling, for ~190 registers (one CTA per SM). Where the grid
 * has at most one CTA per SM anyway and a CTA at least 4 such stages (H100, A/B, 3 passes,
 * against the 128-element tile; nvfp4 / mxfp4): 16384x2048 M = 32 -5.9 / -8.8%, 2048x16384
 * M = 32 split 8 -4.8 / -3.0%, 8192x1024 M = 50 (two M tiles) -5.5 / -7.7%; with 2 stages a
 * CTA (1024x4096 M = 50, split 8) +1.9 / +3.5%, and 32768x2048 M = 32, which runs two
 * 128-element-stage CTAs per SM, +22%. 4 deep: -2.6 / -4.3% on 16384x2048 M = 32. */
using tile_wg_n128_m32_k256 = wgmma_tile<32, 256, 3>;
/* The 64-row tile likewise (145 KiB, 205-241 registers), where its grid has one CTA per SM
 * and a CTA at least 4 stages (H100, A/B against the 128-element tile, 3 passes, nvfp4 /
 * mxfp4 / int4): 16384x2048 M = 64 -2.0 / -1.5 / -4.5%, M = 50 -1.7 / -1.8 / -5.1%,
 * 2048x16384 M = 64 split 8 -4.1 / +1.1 / -3.5% (an earlier A/B, nvfp4 / mxfp4: -1.3 / -0.7%
 * and -3.8 / -1.1%). Decoding its stages as two 128-element fragment sets (~125 registers,
 * the same barriers and copies) gained less: -0.6 / -0.4 / -0.7% on the gate at M = 64. */
using tile_wg_n128_m64_k256 = wgmma_tile<64, 256, 3>;

/* config names: tile name + K split */
#define W4A16_TILE_NAMES(t) t "_split1", t "_split2", t "_split4", t "_split8"
const char *const CONFIG_NAMES[] = {
    W4A16_TILE_NAMES("tc_n128_m64"), W4A16_TILE_NAMES("tc_n64_m128"), W4A16_TILE_NAMES("tc_n128_m32"),
    W4A16_TILE_NAMES("tc_n64_m64"),  W4A16_TILE_NAMES("tc_n64_m32"),  W4A16_TILE_NAMES("tc_n64_m16"),
    W4A16_TILE_NAMES("tc_n128_m64w"), W4A16_TILE_NAMES("tc_n64_m64w"),
    W4A16_TILE_NAMES("tc_n128_m128d"), W4A16_TILE_NAMES("tc_wg_n128_m128"), W4A16_TILE_NAMES("tc_wg_n128_m64"),
    W4A16_TILE_NAMES("tc_wg_n128_m256"), W4A16_TILE_NAMES("tc_n64_m32k4"), W4A16_TILE_NAMES("tc_wg_n128_m32"),
    W4A16_TILE_NAMES("tc_wg_n128_m32k256"), W4A16_TILE_NAMES("tc_wg_n128_m64k256"),
};
#undef W4A16_TILE_NAMES

template <class C> w4a16_tc_shape describe(const char *name)
{
    return w4a16_tc_shape{name, C::BN, C::BM, C::BK, C::WARPS, C::STAGES, 1, (size_t)C::SMEM, C::WGMMA};
}

const w4a16_tc_shape TILES[] = {
    describe<tile_n128_m64>(nullptr), describe<tile_n64_m128>(nullptr), describe<tile_n128_m32>(nullptr),
    describe<tile_n64_m64>(nullptr),  describe<tile_n64_m32>(nullptr),  describe<tile_n64_m16>(nullptr),
    describe<tile_n128_m64_wide>(nullptr), describe<tile_n64_m64_wide>(nullptr),
    describe<tile_n128_m128_decoded>(nullptr), describe<tile_wg_n128_m128>(nullptr), describe<tile_wg_n128_m64>(nullptr),
    describe<tile_wg_n128_m256>(nullptr), describe<tile_n64_m32_k4>(nullptr), describe<tile_wg_n128_m32>(nullptr),
    describe<tile_wg_n128_m32_k256>(nullptr), describe<tile_wg_n128_m64_k256>(nullptr),
};
constexpr int TILE_COUNT = (int)(sizeof TILES / sizeof TILES[0]);
/* every tile runs with each of these K splits across CTAs: config = tile * 4 + split index */
constexpr int SPLITS[] = {1, 2, 4, 8};
constexpr int SPLIT_COUNT = 4;
static_assert(sizeof CONFIG_NAMES / sizeof CONFIG_NAMES[0] == TILE_COUNT * SPLIT_COUNT, "one name per config");

/* cuTensorMapEncodeTiled, looked up once through the runtime (a process-wide constant;
 * null where the driver lacks it, and then the warpgroup launches fail cleanly). */
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder()
{
    static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
        void *fn = nullptr;
        cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found) !=
                cudaSuccess ||
            found != cudaDriverEntryPointSuccess)
            fn = nullptr;
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
    }();
    return encode;
}

/* A tensor of RANK dimensions, dims[0] contiguous elements and dims[d] (d > 0) strides[d - 1]
 * bytes apart, copied in boxes of box[0] x .. x box[RANK - 1] elements (laid out in shared
 * memory with box[0] innermost); elements outside it arrive as zeros. */
template <int RANK>
bool encode_map(CUtensorMap *map, CUtensorMapDataType type, const void *base, const cuuint64_t (&dims)[RANK],
                const cuuint64_t (&strides)[RANK - 1], const cuuint32_t (&box)[RANK], CUtensorMapSwizzle swizzle)
{
    const PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder();
    if (!encode) return false;
    cuuint32_t element_strides[RANK];
    for (int d = 0; d < RANK; d++) element_strides[d] = 1;
    return encode(map, type, RANK, const_cast<void *>(base), dims, strides, box, element_strides,
                  CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_128B,
                  CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

/* The warpgroup kernel's maps (see wgmma_maps): the codes as bytes, x as T. */
template <typename T, class C> cudaError_t make_wgmma_maps(const tc_args &a, wgmma_maps *maps)
{
    const uint64_t k = (uint64_t)a.k, n = (uint64_t)a.n, m = (uint64_t)a.m;
    const CUtensorMapDataType x_type = bits16<T>::IS_BF16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
    /* the codes with the swizzle codes_offset_swizzled undoes, x with wgmma's */
    const CUtensorMapSwizzle codes_swizzle = C::BK == 256   ? CU_TENSOR_MAP_SWIZZLE_128B
                                             : C::BK == 128 ? CU_TENSOR_MAP_SWIZZLE_64B
                                                            : CU_TENSOR_MAP_SWIZZLE_32B;
    /* x as [K / 64][M][64] (K is a multiple of BK: w4a16_tc_unsupported): a stage's BK / 64
     * column blocks of [BM rows][64 elements], one after the other as wgmma reads them, in one
     * box (one copy to issue instead of BK / 64) */
    const cuuint32_t bn = C::BN, bm = C::BM, bk = C::BK;
    const bool ok = encode_map<2>(&maps->codes, CU_TENSOR_MAP_DATA_TYPE_UINT8, a.codes, {k / 2, n}, {k / 2},
                                  {bk / 2, bn}, codes_swizzle) &&
                    encode_map<3>(&maps->x, x_type, a.x, {64, m, k / 64}, {2 * k, 128}, {64, bm, bk / 64},
                                  CU_TENSOR_MAP_SWIZZLE_128B);
    return ok ? cudaSuccess : cudaErrorNotSupported;
}

/* One tile kernel's launch with `smem` (>= C::SMEM) bytes of dynamic shared memory: beyond
 * 48 KiB that is opt-in per kernel, and setting it is a cheap host call. */
template <class C, typename... Params, typename... Args>
cudaError_t launch_with_smem(void (*kernel)(Params...), size_t smem, dim3 grid, unsigned cluster_z, bool pdl,
                             cudaStream_t stream, Args... args)
{
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (err == cudaSuccess)
        err = w4a16_launch_clusters(pdl, cluster_z, kernel, grid, dim3(C::THREADS), smem, stream, args...);
    return err;
}

/* The kernel that runs tile C: the warpgroup (its CTAs walking several tiles or not), the
 * decoded-tile or the mma.sync one; GEGLU picks the latter two's geglu epilogue (the
 * warpgroup kernel reads a.geglu). */
template <int FMT, typename T, class C, bool WALK = false, bool GEGLU = false> auto tile_kernel()
{
    if constexpr (C::WGMMA) return gemm_wgmma_kernel<FMT, T, C, WALK>;
    else if constexpr (C::DECODED) return gemm_tc_decoded_kernel<FMT, T, C, GEGLU>;
    else return gemm_tc_kernel<FMT, T, C, GEGLU>;
}

/* Whether a K split of `splits` adds up in a thread-block cluster (reduce_tile_in_cluster)
 * rather than through partial sums in the workspace and reduce_split_k: the warpgroup
 * kernel's split 2. Its CTAs take one SM each, and clusters of 4 or 8 such CTAs do not all
 * find their SMs at once (H100, 2048x16384 nvfp4, split 4 in clusters vs partial sums:
 * M = 256 m128 tile 72.4 vs 40.8 µs, M = 968 m256 tile 174.1 vs 124.6; split 8: M = 128
 * 49.7 vs 24.7), while pairs do: M = 968 m256 split 2 116.0 -> 103.8 µs. */
bool splits_in_cluster(bool wgmma, int splits) { return wgmma && splits == 2; }

/* The dynamic shared memory of a launch of tile C. The 64- and 32-row warpgroup tiles fit
 * twice on an SM, which pays when the grid has more CTAs than SMs (H100, nvfp4, 32768x2048 at
 * M = 64: 26.5 µs against 31.7 one per SM) but not below that: the CTA scheduler then puts
 * pairs on some SMs while others idle (2048x16384 at M = 64, split 8, 128 CTAs: 24.3 µs
 * against 18.3). Such grids ask for more than half an SM's shared memory, one CTA each. */
template <class C> size_t launch_smem(int64_t ctas, const w4a16_launch_facts &dev)
{
    const size_t half_sm = dev.sm_smem / 2 + 1;
    if (C::WGMMA && ctas <= dev.sms && (size_t)C::SMEM < half_sm) return half_sm;
    return C::SMEM;
}

/* Whether the warpgroup kernel's CTAs walk several tiles each (gemm_wgmma_kernel's WALK):
 * PERSISTENT tiles, no K split, more tiles than SMs, and an even count of stages per tile
 * (the kernel's loop is unrolled by two). */
template <class C> bool walks_tiles(const tc_args &a, int splits, const w4a16_launch_facts &dev)
{
    return C::PERSISTENT && splits == 1 && (a.k / C::BK) % 2 == 0 && wgmma_tile_count<C>(a.m, a.n) > dev.sms;
}

/* The grid of tile C: the mma.sync kernels take a CTA per tile, M tiles along x and N tiles
 * along y; the warpgroup kernel numbers its tiles along x (wgmma_tile_at), a CTA per SM
 * when they walk (`walk`, walks_tiles). */
template <class C> dim3 tile_grid(const tc_args &a, int splits, bool walk, const w4a16_launch_facts &dev)
{
    if constexpr (C::WGMMA) {
        const int64_t ctas = walk ? dev.sms : wgmma_tile_count<C>(a.m, a.n);
        return dim3((unsigned)ctas, 1, (unsigned)splits);
    } else {
        return dim3(w4a16_ceil_div(a.m, C::BM), w4a16_ceil_div(a.n, C::BN), (unsigned)splits);
    }
}

template <int FMT, typename T, class C>
cudaError_t launch_tile(const tc_args &a, int splits, const w4a16_launch_facts &dev, cudaStream_t stream)
{
    bool walk = false;
    if constexpr (C::WGMMA) walk = walks_tiles<C>(a, splits, dev);
    const dim3 grid = tile_grid<C>(a, splits, walk, dev);
    const bool cluster = splits_in_cluster(C::WGMMA, splits);
    const size_t smem = launch_smem<C>((int64_t)grid.x * grid.y * grid.z, dev);
    tc_args args = a;
    if (cluster) args.partials = nullptr; /* what tells the kernel to add up in its cluster */
    cudaError_t err;
    if constexpr (C::WGMMA) {
        wgmma_maps maps;
        err = make_wgmma_maps<T, C>(args, &maps);
        if (err == cudaSuccess && walk)
            err = launch_with_smem<C>(tile_kernel<FMT, T, C, C::PERSISTENT>(), smem, grid, 1u, dev.pdl, stream, args,
                                      maps);
        else if (err == cudaSuccess)
            err = launch_with_smem<C>(tile_kernel<FMT, T, C>(), smem, grid, cluster ? (unsigned)splits : 1u, dev.pdl,
                                      stream, args, maps);
    } else if (a.geglu) {
        err = launch_with_smem<C>(tile_kernel<FMT, T, C, false, true>(), smem, grid, 1u, dev.pdl, stream, args);
    } else {
        err = launch_with_smem<C>(tile_kernel<FMT, T, C>(), smem, grid, 1u, dev.pdl, stream, args);
    }
    if (err == cudaSuccess && splits > 1 && !cluster)
        err = w4a16_launch_after(dev.pdl, a.geglu ? reduce_split_k<FMT, T, true> : reduce_split_k<FMT, T, false>,
                                 w4a16_ceil_div(a.m * a.n, 256), 256, 0, stream, a, splits);
    return err;
}

/* f(C()) for the tile type C of `tile_index` (the order of TILES) */
template <typename F> auto with_tile(int tile_index, F &&f)
{
    switch (tile_index) {
    case 0: return f(tile_n128_m64());
    case 1: return f(tile_n64_m128());
    case 2: return f(tile_n128_m32());
    case 3: return f(tile_n64_m64());
    case 4: return f(tile_n64_m32());
    case 5: return f(tile_n64_m16());
    case 6: return f(tile_n128_m64_wide());
    case 7: return f(tile_n64_m64_wide());
    case 8: return f(tile_n128_m128_decoded());
    case 9: return f(tile_wg_n128_m128());
    case 10: return f(tile_wg_n128_m64());
    case 11: return f(tile_wg_n128_m256());
    case 12: return f(tile_n64_m32_k4());
    case 13: return f(tile_wg_n128_m32());
    case 14: return f(tile_wg_n128_m32_k256());
    default: return f(tile_wg_n128_m64_k256());
    }
}

/* CTAs of tile C's kernel that fit on one SM, asked once per kernel */
template <int FMT, typename T, class C> int tile_resident_ctas()
{
    static const int per_sm = w4a16_resident_ctas(tile_kernel<FMT, T, C>(), C::THREADS, C::SMEM);
    return per_sm;
}

template <int FMT, typename T>
cudaError_t launch_shape(const tc_args &a, int tile_index, int splits, const w4a16_launch_facts &dev,
                         cudaStream_t stream)
{
    return with_tile(tile_index, [&](auto tile) { return launch_tile<FMT, T, decltype(tile)>(a, splits, dev, stream); });
}

template <typename T>
cudaError_t launch_format(const tc_args &a, int format, int tile_index, int splits, const w4a16_launch_facts &dev,
                          cudaStream_t stream)
{
    if (format == W4A16_FORMAT_NVFP4) return launch_shape<W4A16_FORMAT_NVFP4, T>(a, tile_index, splits, dev, stream);
    if (format == W4A16_FORMAT_MXFP4) return launch_shape<W4A16_FORMAT_MXFP4, T>(a, tile_index, splits, dev, stream);
    return launch_shape<W4A16_FORMAT_INT4, T>(a, tile_index, splits, dev, stream);
}

template <int FMT, typename T> int resident_shape(int tile_index)
{
    return with_tile(tile_index, [](auto tile) { return tile_resident_ctas<FMT, T, decltype(tile)>(); });
}

template <typename T> int resident_format(int format, int tile_index)
{
    if (format == W4A16_FORMAT_NVFP4) return resident_shape<W4A16_FORMAT_NVFP4, T>(tile_index);
    if (format == W4A16_FORMAT_MXFP4) return resident_shape<W4A16_FORMAT_MXFP4, T>(tile_index);
    return resident_shape<W4A16_FORMAT_INT4, T>(tile_index);
}

bool aligned(const void *p, uintptr_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

} // namespace

int w4a16_tc_shape_count(void) { return TILE_COUNT * SPLIT_COUNT; }

bool w4a16_tc_shape_at(int index, w4a16_tc_shape *shape)
{
    if (index < 0 || index >= TILE_COUNT * SPLIT_COUNT) return false;
    *shape = TILES[index / SPLIT_COUNT];
    shape->name = CONFIG_NAMES[index];
    shape->split_k = SPLITS[index % SPLIT_COUNT];
    return true;
}

const char *w4a16_tc_unsupported(const w4a16_cuda_gemm_args &a, const w4a16_tc_shape &shape, size_t max_smem,
                                 bool has_wgmma)
{
    if (shape.wgmma && !has_wgmma)
        return "the warpgroup (wgmma) kernels need an SM 9.0 GPU (H100, H200) and a build for sm_90a";
    if (shape.wgmma && (a.m > INT32_MAX || a.n > INT32_MAX || a.k > INT32_MAX))
        return "the warpgroup kernels' copies address M, N and K as 32-bit coordinates";
    if (shape.wgmma && w4a16_tc_tiles(a, shape) * (a.k / shape.bk) > INT32_MAX)
        return "the warpgroup kernels count their tiles' stages with 32-bit integers";
    if (!a.prepacked) return "the tensor-core GEMM reads prepacked weights (w4a16_prepack)";
    if (a.k % ((int64_t)shape.bk * shape.split_k) != 0) return "K is not a multiple of the tile's K per stage times its split";
    if (!aligned(a.x, 16) || !aligned(a.codes, 16)) return "x and the codes must be 16-byte aligned";
    if (a.format != W4A16_FORMAT_MXFP4 && !aligned(a.scales, 2)) return "the scales must be 2-byte aligned";
    if (!aligned(a.y, 16)) return "y must be 16-byte aligned";
    if (shape.smem > max_smem) return "the tile needs more shared memory than this GPU has per block";
    return nullptr;
}

size_t w4a16_tc_workspace_bytes(const w4a16_cuda_gemm_args &a, const w4a16_tc_shape &shape)
{
    const bool partials = shape.split_k > 1 && !splits_in_cluster(shape.wgmma, shape.split_k);
    return partials ? (size_t)shape.split_k * (size_t)a.m * (size_t)a.n * sizeof(float) : 0;
}

cudaError_t w4a16_tc_launch(const w4a16_cuda_gemm_args &args, int index, void *workspace, const w4a16_launch_facts &dev,
                            cudaStream_t stream)
{
    tc_args a = make_kernel_args(args, static_cast<float *>(workspace));
    const int tile_index = index / SPLIT_COUNT, splits = SPLITS[index % SPLIT_COUNT];
    /* the L2 prefetch of start_pipeline, measured back to back on an H100: 1-7% faster
     * without a K split (16384x2048 M = 16: 12.3 -> 11.5 µs; 32768x2048 M = 32: 29.7 ->
     * 29.0), no gain or a loss with one (1024x4096 M = 50, split 8: 8.5 -> 9.1) */
    a.prefetch = dev.pdl && splits == 1;
    if (args.x_dtype == W4A16_DTYPE_BFLOAT16)
        return launch_format<__nv_bfloat16>(a, args.format, tile_index, splits, dev, stream);
    return launch_format<__half>(a, args.format, tile_index, splits, dev, stream);
}

int w4a16_tc_resident_ctas(const w4a16_cuda_gemm_args &args, int index)
{
    const int tile_index = index / SPLIT_COUNT;
    if (args.x_dtype == W4A16_DTYPE_BFLOAT16) return resident_format<__nv_bfloat16>(args.format, tile_index);
    return resident_format<__half>(args.format, tile_index);
}
