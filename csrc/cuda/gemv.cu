/*
 * gemv.cu — W4A16 GEMM for small M on tensor cores, reading the canonical or the
 * prepacked layout.
 *
 *   y [M, N] = alpha * x [M, K] @ dequant(W [N, K])^T + bias
 *
 * At M <= 16 the work should be bound by reading the 4-bit weights, so the kernel is
 * built around keeping DRAM busy: 16-byte streaming loads issued several steps ahead of
 * their use, a persistent grid so that no SM waits on a CTA launch or drain,
 * dequantization in registers, and the multiply on tensor cores (mma.sync m16n8k16,
 * SM80 .. SM120) so that the arithmetic per weight stays a handful of integer ops
 * whatever M is. On an H100 it still reaches only 48-65% of the copy-rate roofline at
 * M = 1: without the decode and mma it runs near a bare read, and with them the warps
 * wait mostly on their own dependent instruction chains (issue slots ~40% busy, DRAM
 * ~36%); more warps, more loads in flight, or a producer warp feeding the warps by bulk
 * copies all measured slower (benchmarks/NOTES.md).
 *
 * Stage 0 — overlap with the kernel before (SM90 on: programmatic dependent launch). A CTA
 *   may start while the prior kernel on the stream drains; until that one has finished it
 *   only asks L2 for the weights of its first tiles (where they fit, see prefetch_tiles).
 *
 * Stage 1 — tiles. A tile is 16 weight rows (or 8 rows x 2 halves of K when N is small:
 *   "split2", a split-K that needs no second pass because both halves land in the same
 *   mma tile). The grid is persistent: about as many CTAs as fit on the GPU at once, CTA
 *   c taking tiles c, c + gridDim.y, ...; blockIdx.x walks 16-row chunks of x. Inside a
 *   CTA the WARPS warps split K: warp w takes steps w, w + WARPS, ..., the same number for
 *   every warp so that all warps finish a tile together. A step is one super-tile (128
 *   elements of K), or two adjacent ones at M <= 4 where K gives every warp a step of
 *   two: half the per-step work (ring bookkeeping, waits, scale resolution) per byte, and
 *   two independent decode + mma chains for the compiler to interleave (H100, M = 1,
 *   16384x2048: 11.2 / 10.6 / 11.0 -> 10.9 / 10.0 / 10.3 µs nvfp4 / mxfp4 / int4; at
 *   M = 8 it lost up to 4%, the x loads of 8 rows competing in L1).
 *
 * Stage 2 — the load ring. A warp's work is one flat sequence of (tile, step) pairs, of
 *   which RING are in flight: the step RING ahead is issued as soon as a slot is
 *   consumed, across tile boundaries, so the loads of the next tile are in flight while
 *   this one is reduced and stored. With 16-row tiles each thread copies its 32 bytes of
 *   codes per super-tile into its own part of a shared-memory slot (cp.async, one group
 *   per slot), so the bytes in flight do not cost registers; the scales, 2 bytes a row and
 *   super-tile, go to registers.
 *
 * Stage 3 — the operand mapping. Weights are the mma's A operand (rows = n), x is B
 *   (columns = m). A super-tile is covered by the 4 threads of a quad: thread t of quad g
 *   loads bytes [16t, 16t + 16) of weight rows g and g+8, i.e. 32 consecutive elements
 *   each. The 8 mma k-tiles of the super-tile take 4 of those elements per thread; since
 *   a dot product does not care about the order of k, x is loaded with the same
 *   permutation (thread t reads x[m, 32t .. 32t + 32)) and no data moves between threads.
 *
 * Stage 4 — dequantization (dequant.cuh): two codes 16 bits apart in a 32-bit word decode
 *   as one 16-bit pair. In the canonical layout they are nibbles j and j+4, elements (j,
 *   j+4), and x is gathered into the same pairs with byte permutes; in the prepacked layout
 *   slot r of a chunk's 4 words holds the pairs of elements 8r .. 8r + 7 (codecs.h, with
 *   E2M1 bits placed for a cheaper decode) and x is used as loaded.
 *   One 16-bit multiply per pair applies the block scale.
 *
 * Stage 5 — epilogue, once per tile. Warps put their fp32 accumulators in shared memory
 *   (two buffers, so one barrier per tile suffices), and every thread sums one output
 *   over the warps, adds bias, rounds to the output dtype and stores.
 *
 * Shapes the fast kernel does not take (K % 128 != 0, misaligned pointers) go to
 * gemm_w4_generic, a plain fp32 SIMT kernel that reads one code at a time.
 */
#include <algorithm>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "../core/codecs.h"
#include "cuda_common.cuh"
#include "cuda_ops.h"
#include "dequant.cuh"
#include "gemm_tc.h"

namespace {
/* The CTAs per SM the register allocation must allow (overridable for tuning experiments). */
#ifndef W4A16_GEMV_MIN_CTAS_4WARPS
#define W4A16_GEMV_MIN_CTAS_4WARPS 4
#endif

using gemv_args = kernel_args;

/* Independent accumulator sets per output (overridable for tuning experiments): the mma of
 * a step would otherwise form one chain of dependent tensor-core ops, 8 a step (16 for split2).
 * H100, against one set: 2 sets 2-7% faster on 32768x2048, 2048x16384 and 1024x4096 at
 * M = 1..8, no change on 16384x2048; 4 sets no better than 2, and more registers. */
#ifndef W4A16_GEMV_CHAINS
#define W4A16_GEMV_CHAINS 2
#endif

/* Where one thread's two A rows of a tile start: codes and scales. */
template <int FMT, typename T> struct tile_rows {
    const uint8_t *codes_g, *codes_h;
    scale_cursor<FMT, T> scale_g, scale_h;
};

/* Asks L2 for the codes, scales and zero points of weight rows [tile * rows, + rows). */
template <int FMT>
__device__ __forceinline__ void prefetch_tile(const gemv_args &a, int64_t tile, int rows)
{
    const int64_t row0 = tile * rows;
    if (row0 >= a.n) return;
    const int64_t count = min((int64_t)rows, a.n - row0);
    const int64_t scale_bytes = scale_row_bytes<FMT>(a.k, a.group);
    w4a16_prefetch_l2(a.codes + row0 * (a.k / 2), (size_t)(count * (a.k / 2)));
    w4a16_prefetch_l2(static_cast<const uint8_t *>(a.scales) + row0 * scale_bytes, (size_t)(count * scale_bytes));
    if (a.zero_points) w4a16_prefetch_l2(a.zero_points + row0 * (a.k / a.group), (size_t)(count * (a.k / a.group)));
}

/* ---- the kernel ---------------------------------------------------------------------- */

template <int FMT, typename T, int MB, bool SPLIT2, int WARPS, bool PREPACKED, int SUB>
__global__ void __launch_bounds__(WARPS * 32, WARPS == 4 ? W4A16_GEMV_MIN_CTAS_4WARPS : W4A16_GEMV_MIN_CTAS_4WARPS / 2)
gemv_w4_kernel(gemv_args a)
{
    constexpr int ROWS = SPLIT2 ? 8 : 16;      /* weight rows per tile */
    constexpr int OUT_J = SPLIT2 ? 2 : 4;      /* accumulator registers that are outputs */
    /* stage 2's ring: the codes of RING steps in flight per warp. 16-row tiles keep them in
     * shared memory (cp.async), so the ring can be deep without registers: 4 steps, 3 for 8
     * warps with two 8-row blocks of x (48 KiB of static shared memory). Split2 tiles, about
     * one per CTA, gain nothing from depth and keep 2 steps in registers (H100: 2048x16384
     * M = 4..8 5% slower through shared memory; 32768x2048 M = 1 12% faster). Steps of two
     * super-tiles keep 2 in flight, the same bytes as 4 single ones (3 or 4 of them: 0-8%
     * slower on 32768x2048 at M = 1..8). */
    static_assert(SUB == 1 || (SUB == 2 && !SPLIT2), "steps of two super-tiles: 16-row tiles only");
    constexpr bool RING_IN_SMEM = !SPLIT2;
    constexpr int RING = !RING_IN_SMEM ? 2 : SUB == 2 ? 2 : WARPS == 8 && MB == 2 ? 3 : 4;
    constexpr int STEP_K = SUB * SUPER_K; /* elements of K per warp and step */
    __shared__ uint32_t lut[256];
    __shared__ float partial[2][WARPS][MB * 4][32];
    __shared__ uint4 ring[RING_IN_SMEM ? RING : 1][2 * SUB][WARPS * 32];

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

    /* stage 0: until the prior kernel on the stream has finished (programmatic dependent
     * launch, SM90 on), the CTA only asks L2 for the weights of its first tiles and does
     * the index arithmetic below, which reads no memory (tests/test_gpu_sass_order.py) */
    if (blockIdx.x == 0 && warp == 0 && (uint32_t)lane < a.prefetch)
        prefetch_tile<FMT>(a, blockIdx.y + (int64_t)lane * gridDim.y, ROWS);

    const int g = lane >> 2, t = lane & 3;
    const int64_t tiles = (a.n + ROWS - 1) / ROWS;
    const int64_t m0 = (int64_t)blockIdx.x * (MB * 8);
    const int64_t k_span = SPLIT2 ? a.k / 2 : a.k;
    const int64_t k_h = SPLIT2 ? k_span : 0; /* K offset of the second A row */
    const uint32_t steps_total = (uint32_t)(k_span / STEP_K);
    const uint32_t steps = (steps_total + WARPS - 1) / WARPS; /* per warp and tile, all warps alike */
    const uint32_t items = (uint32_t)((tiles - blockIdx.y + gridDim.y - 1) / gridDim.y) * steps;
    const int64_t k_first = warp * STEP_K + 32 * t; /* this thread's first element of a row */

    /* the two A rows of this thread in `tile`: rows g and g+8, or row g over two halves
     * of K; rows past N read row N-1 and are never stored */
    auto rows_of = [&](int64_t tile) {
        const int64_t row_g = min(tile * ROWS + g, a.n - 1);
        const int64_t row_h = SPLIT2 ? row_g : min(tile * ROWS + g + 8, a.n - 1);
        tile_rows<FMT, T> r;
        r.codes_g = a.codes + row_g * (a.k / 2) + k_first / 2;
        r.codes_h = a.codes + row_h * (a.k / 2) + (k_h + k_first) / 2;
        r.scale_g = scale_cursor<FMT, T>(a.scales, a.zero_points, a.k, a.group, row_g, k_first, a.chunk_shift);
        r.scale_h = scale_cursor<FMT, T>(a.scales, a.zero_points, a.k, a.group, row_h, k_h + k_first, a.chunk_shift);
        return r;
    };

    /* stage 2: the ring. Slot u holds steps u, u + RING, ...; `issue` loads the next
     * step of the sequence into slot u. Warp-uniform branches only. */
    uint4 qg[RING_IN_SMEM ? 1 : RING], qh[RING_IN_SMEM ? 1 : RING];
    raw_scale sg[RING][SUB], sh[RING][SUB];
    int64_t load_tile = blockIdx.y;
    uint32_t load_step = 0, issued = 0;
    tile_rows<FMT, T> load_rows = rows_of(load_tile);
    auto issue = [&](int u) {
        if (issued < items) {
            if (warp + load_step * WARPS < steps_total) {
#pragma unroll
                for (int c = 0; c < SUB; c++) {
                    const uint32_t byte_offset = load_step * (WARPS * STEP_K / 2) + c * (SUPER_K / 2);
                    if (RING_IN_SMEM) {
                        cp_async16(&ring[u][2 * c][threadIdx.x], load_rows.codes_g + byte_offset);
                        cp_async16(&ring[u][2 * c + 1][threadIdx.x], load_rows.codes_h + byte_offset);
                    } else {
                        qg[u] = __ldcs(reinterpret_cast<const uint4 *>(load_rows.codes_g + byte_offset));
                        qh[u] = __ldcs(reinterpret_cast<const uint4 *>(load_rows.codes_h + byte_offset));
                    }
                    sg[u][c] = load_rows.scale_g.load(load_step * WARPS * SUB + c);
                    sh[u][c] = load_rows.scale_h.load(load_step * WARPS * SUB + c);
                }
            }
            issued++;
            if (++load_step == steps) {
                load_step = 0;
                load_tile += gridDim.y;
                if (issued < items) load_rows = rows_of(load_tile);
            }
        }
        if (RING_IN_SMEM) cp_async_commit(); /* also when empty: the oldest group is always slot u's */
    };

    /* x rows past M read row M - 1: their columns of the product are never stored, and an
     * unconditional load needs no zeroing of the registers on every step */
    const T *x_rows[MB];
#pragma unroll
    for (int b = 0; b < MB; b++) {
        const int64_t m = min(m0 + 8 * b + g, a.m - 1);
        x_rows[b] = reinterpret_cast<const T *>(a.x) + m * a.k + k_first;
    }
    const uint32_t int_xor = int4_xor<T>(a.zero_points != nullptr);
    float epilogue = 0.0f; /* read after the wait, below */
    const T *bias = reinterpret_cast<const T *>(a.bias);
    uint16_t *y = reinterpret_cast<uint16_t *>(a.y);

    /* CHAINS accumulator sets, summed once per tile: k-tiles alternate between them (split2:
     * one set per K half), so that consecutive mma do not wait on each other */
    constexpr int CHAINS = W4A16_GEMV_CHAINS;
    float acc[CHAINS][MB][4];
#pragma unroll
    for (int c = 0; c < CHAINS; c++)
#pragma unroll
        for (int b = 0; b < MB; b++)
#pragma unroll
            for (int j = 0; j < 4; j++) acc[c][b][j] = 0.0f;

    /* one step: x from L1/L2 (small, reused by every CTA), weights from slot u; word by
     * word of the 16-byte chunks, so that few x and weight pairs are live at once */
    auto compute = [&](int u, uint32_t step) {
        if (RING_IN_SMEM) cp_async_wait<RING - 1>(); /* slot u's group, the oldest of RING in flight */
#pragma unroll
        for (int c = 0; c < SUB; c++) {
            const uint32_t x_offset = step * (WARPS * STEP_K) + c * SUPER_K;
            const chunk_scale cs_g = scale_cursor<FMT, T>::resolve(sg[u][c], lut, a.other_scale_type);
            const chunk_scale cs_h = scale_cursor<FMT, T>::resolve(sh[u][c], lut, a.other_scale_type);
            uint4 codes_g, codes_h;
            if (RING_IN_SMEM) {
                codes_g = ring[u][2 * c][threadIdx.x];
                codes_h = ring[u][2 * c + 1][threadIdx.x];
            } else {
                codes_g = qg[u];
                codes_h = qh[u];
            }
#pragma unroll
            for (int r = 0; r < 4; r++) {
                uint32_t xp[MB][2][4]; /* x pairs of elements 8r .. 8r + 7 of the thread's chunk */
#pragma unroll
                for (int b = 0; b < MB; b++)
#pragma unroll
                    for (int half = 0; half < (SPLIT2 ? 2 : 1); half++) {
                        const uint4 *src = reinterpret_cast<const uint4 *>(x_rows[b] + x_offset + (half ? k_h : 0));
                        const uint4 v = __ldg(src + r);
                        const uint32_t words[4] = {v.x, v.y, v.z, v.w};
                        if (PREPACKED) { /* the weight pairs are already (k, k+1) pairs */
#pragma unroll
                            for (int j = 0; j < 4; j++) xp[b][half][j] = words[j];
                        } else {
                            permute_x_word(words, xp[b][half]);
                        }
                    }
                uint32_t pg[4], ph[4];
                dequant_chunk_pairs<FMT, T, PREPACKED>(codes_g, r, cs_g, int_xor, pg);
                dequant_chunk_pairs<FMT, T, PREPACKED>(codes_h, r, cs_h, int_xor, ph);
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    /* k-tile 2r + i: pairs 2i, 2i+1 of the word (elements {0,4,1,5} or {2,6,3,7}
                     * in the canonical layout, {0..3} or {4..7} prepacked), x gathered alike */
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
                            mma_16816(acc[0][b], ag, bg, T());
                            mma_16816(acc[CHAINS - 1][b], ah, bh, T());
                        } else {
                            mma_16816(acc[(2 * r + i) % CHAINS][b], afrag, bg, T());
                        }
                    }
                }
            }
        }
    };

    /* stage 5: the accumulators of `tile` -> y. Accumulator j of lane l: c0, c1 = (row
     * l/4, cols 2(l%4), +1), c2, c3 = row + 8; split2 adds the two K halves held as rows
     * l/4 and l/4 + 8. */
    auto store = [&](int64_t tile, int b, int j, int l, float v) {
        const int64_t n = tile * ROWS + l / 4 + (SPLIT2 ? 0 : 8 * (j / 2));
        const int64_t m = m0 + 8 * b + 2 * (l % 4) + (j % 2);
        if (n >= a.n || m >= a.m) return;
        y[m * a.n + n] = output_bits<T>(v, epilogue, bias, n);
    };
    /* w4a16_gemm_geglu (never split2): gate row l/4 and up row l/4 + 8 of the tile give
     * column 8 tile + l/4 of y [M, N/2] */
    auto store_geglu = [&](int64_t tile, int b, int j, int l, float gate, float up) {
        const int64_t n = tile * ROWS + l / 4;
        const int64_t m = m0 + 8 * b + 2 * (l % 4) + (j % 2);
        if (n >= a.n || m >= a.m) return;
        y[m * (a.n / 2) + tile * (ROWS / 2) + l / 4] =
            geglu_bits<T>(output_bits<T>(gate, epilogue, bias, n), output_bits<T>(up, epilogue, bias, n + 8));
    };
    /* warps put their sums in shared memory (the buffers alternate, so one barrier per
     * tile suffices) and every thread reduces one output over the warps */
    auto finish_tile = [&](int64_t tile, int buffer) {
#pragma unroll
        for (int b = 0; b < MB; b++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                float v = 0.0f;
#pragma unroll
                for (int c = 0; c < CHAINS; c++) {
                    v += acc[c][b][j];
                    acc[c][b][j] = 0.0f;
                }
                partial[buffer][warp][4 * b + j][lane] = v;
            }
        __syncthreads();
        /* (the two loops stay apart, each with a constant bound: a first build with one loop
         * of run-time bound was 5-8% slower at M = 1 on plain gemms, H100) */
        if (!SPLIT2 && a.geglu) {
            for (int idx = threadIdx.x; idx < MB * 2 * 32; idx += WARPS * 32) {
                const int b = idx / 64, j = (idx / 32) % 2, l = idx % 32;
                float gate = 0.0f, up = 0.0f; /* rows l/4 and l/4 + 8 */
#pragma unroll
                for (int w = 0; w < WARPS; w++) {
                    gate += partial[buffer][w][4 * b + j][l];
                    up += partial[buffer][w][4 * b + j + 2][l];
                }
                store_geglu(tile, b, j, l, gate, up);
            }
            return;
        }
        for (int idx = threadIdx.x; idx < MB * OUT_J * 32; idx += WARPS * 32) {
            const int b = idx / (OUT_J * 32), j = (idx / 32) % OUT_J, l = idx % 32;
            float v = 0.0f;
#pragma unroll
            for (int w = 0; w < WARPS; w++) {
                v += partial[buffer][w][4 * b + j][l];
                if (SPLIT2) v += partial[buffer][w][4 * b + j + 2][l];
            }
            store(tile, b, j, l, v);
        }
    };

    /* end of stage 0: wait for the prior kernel, then let the next one be scheduled (it
     * in turn waits for this one to finish) */
    w4a16_wait_for_prior();
    w4a16_allow_next();
    epilogue = epilogue_factor<FMT>(a.alpha, a.global_scale);

    /* the first steps go out before the scale table is filled: the fill hides under them */
#pragma unroll
    for (int u = 0; u < RING; u++) issue(u);
    if (FMT != W4A16_FORMAT_INT4) fill_scale_lut<FMT, T>(lut);
    __syncthreads();

    int64_t tile = blockIdx.y;
    uint32_t step = 0;
    int buffer = 0;
    for (uint32_t first = 0; first < items; first += RING) {
#pragma unroll
        for (int u = 0; u < RING; u++) {
            if (first + u >= items) break;
            if (warp + step * WARPS < steps_total) compute(u, step);
            issue(u);
            if (++step == steps) {
                finish_tile(tile, buffer);
                buffer ^= 1;
                step = 0;
                tile += gridDim.y;
            }
        }
    }
}

/* ---- generic fallback: any K multiple of the block, any alignment ------------------------ */

/* Sums of weight row n with x rows m_begin .. m_begin + 15 (one warp), in every lane. */
template <typename T>
__device__ __forceinline__ void generic_row_sums(const w4a16_cuda_gemm_args &a, int64_t n, int64_t m_begin, int lane,
                                                 float (&acc)[16])
{
    const int64_t groups = a.k / a.group_size;
    const uint8_t *codes = a.codes + n * (a.k / 2);
    const uint16_t *x = static_cast<const uint16_t *>(a.x);
#pragma unroll
    for (int i = 0; i < 16; i++) acc[i] = 0.0f;
    for (int64_t k = 2 * lane; k < a.k; k += 64) {
        float z;
        const float s = w4a16_group_scale(a, n * groups + k / a.group_size, &z);
        float w[2];
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const uint8_t q = w4a16_code_at(codes, k + e, a.k, a.prepacked, a.format == W4A16_FORMAT_INT4);
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
    for (int i = 0; i < 16; i++)
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) acc[i] += __shfl_xor_sync(0xFFFFFFFFu, acc[i], o);
}

/* One warp per column of y (a weight row, or with geglu a gate row and its up row) and 16
 * rows of x. */
template <typename T>
__global__ void gemm_w4_generic(w4a16_cuda_gemm_args a)
{
    const int lane = threadIdx.x & 31;
    const int64_t col = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
    const int64_t m_begin = (int64_t)blockIdx.y * 16;
    const int64_t cols = a.geglu ? a.n / 2 : a.n;
    if (col >= cols) return;
    const int64_t n = a.geglu ? geglu_gate_row(col) : col;
    uint16_t *y = static_cast<uint16_t *>(a.y);
    float acc[16], up[16];
    generic_row_sums<T>(a, n, m_begin, lane, acc);
    if (a.geglu) generic_row_sums<T>(a, n + 8, m_begin, lane, up);
#pragma unroll
    for (int i = 0; i < 16; i++) {
        const int64_t m = m_begin + i;
        if (lane != 0 || m >= a.m) continue;
        uint16_t bits = output_bits<T>(acc[i], a.alpha, a.bias, n);
        if (a.geglu) bits = geglu_bits<T>(bits, output_bits<T>(up[i], a.alpha, a.bias, n + 8));
        y[m * cols + col] = bits;
    }
}

/* ---- dispatch ------------------------------------------------------------------------ */

bool aligned16(const void *p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

/* The host-side choices of a launch (w4a16_gemv_launch). */
struct launch_shape {
    int m_blocks; /* MB: 8-row blocks of x per CTA, 1 up to M = 8, else 2 */
    bool split2;  /* 8-row tiles over two K halves */
    int warps;    /* 4 or 8 per CTA */
    int sub;      /* super-tiles per warp and step: 1 or 2 */
    const w4a16_launch_facts *dev;
};

/* Tiles each CTA asks L2 for before the prior kernel ends: as many rounds of one tile per
 * CTA as fit in an eighth of L2, none when one round does not. H100, back to back: the
 * expert weights (2.4 MB a round) gain up to 7% (1024x4096 M = 1: 3.40 -> 3.17 µs), while
 * prefetching the large weights (9-19 MB a round) costs 5-7% (16384x2048 M = 1: 11.7 ->
 * 12.3 µs): more than the overlap window can absorb, and later loads meet lines still
 * in flight. */
uint32_t prefetch_tiles(const gemv_args &a, int64_t ctas, int64_t rows, size_t l2_bytes)
{
    const int64_t tile_bytes = rows * (a.k / 2 + a.k / a.group * 3); /* codes + at most 3 bytes of scale data per group */
    const int64_t tiles = (a.n + rows - 1) / rows;
    const int64_t per_cta = (tiles + ctas - 1) / ctas;
    const int64_t rounds = (int64_t)(l2_bytes / 8) / std::max<int64_t>(1, ctas * tile_bytes);
    return (uint32_t)std::min<int64_t>(std::min<int64_t>(per_cta, rounds), 32);
}

template <int FMT, typename T, int MB, bool SPLIT2, int WARPS, bool PREPACKED, int SUB>
cudaError_t launch_persistent(gemv_args a, cudaStream_t stream, const w4a16_launch_facts &dev)
{
    constexpr int ROWS = SPLIT2 ? 8 : 16;
    const auto kernel = gemv_w4_kernel<FMT, T, MB, SPLIT2, WARPS, PREPACKED, SUB>;
    static const int per_sm = w4a16_resident_ctas(kernel, WARPS * 32, 0);
    const int64_t tiles = (a.n + ROWS - 1) / ROWS;
    const int64_t chunks = w4a16_ceil_div(a.m, MB * 8);
    const int64_t resident = (int64_t)per_sm * dev.sms;
    const int64_t ctas = std::max<int64_t>(1, std::min<int64_t>(tiles, resident / chunks));
    a.prefetch = dev.pdl ? prefetch_tiles(a, ctas, ROWS, dev.l2_bytes) : 0;
    /* x chunks along x (2^31 - 1 of them), so that CTAs sharing a weight tile run together
     * and share it in L2; the persistent CTAs (at most the resident ones) along y */
    return w4a16_launch_after(dev.pdl, kernel, dim3((unsigned)chunks, (unsigned)ctas), dim3(WARPS * 32), 0, stream, a);
}

template <int FMT, typename T, int MB, bool SPLIT2, bool PREPACKED>
cudaError_t launch_fast(const gemv_args &a, cudaStream_t stream, const launch_shape &ls)
{
    if constexpr (!SPLIT2 && MB == 1) {
        if (ls.sub == 2 && ls.warps >= 8) return launch_persistent<FMT, T, MB, SPLIT2, 8, PREPACKED, 2>(a, stream, *ls.dev);
        if (ls.sub == 2) return launch_persistent<FMT, T, MB, SPLIT2, 4, PREPACKED, 2>(a, stream, *ls.dev);
    }
    if (ls.warps >= 8) return launch_persistent<FMT, T, MB, SPLIT2, 8, PREPACKED, 1>(a, stream, *ls.dev);
    return launch_persistent<FMT, T, MB, SPLIT2, 4, PREPACKED, 1>(a, stream, *ls.dev);
}

template <int FMT, typename T, bool PREPACKED>
cudaError_t launch_fast_format(const gemv_args &a, cudaStream_t stream, const launch_shape &ls)
{
    const bool small_m = ls.m_blocks == 1;
    if (ls.split2) {
        if (small_m) return launch_fast<FMT, T, 1, true, PREPACKED>(a, stream, ls);
        return launch_fast<FMT, T, 2, true, PREPACKED>(a, stream, ls);
    }
    if (small_m) return launch_fast<FMT, T, 1, false, PREPACKED>(a, stream, ls);
    return launch_fast<FMT, T, 2, false, PREPACKED>(a, stream, ls);
}

template <typename T, bool PREPACKED>
cudaError_t launch_fast_dtype(int format, const gemv_args &a, cudaStream_t stream, const launch_shape &ls)
{
    if (format == W4A16_FORMAT_NVFP4) return launch_fast_format<W4A16_FORMAT_NVFP4, T, PREPACKED>(a, stream, ls);
    if (format == W4A16_FORMAT_MXFP4) return launch_fast_format<W4A16_FORMAT_MXFP4, T, PREPACKED>(a, stream, ls);
    return launch_fast_format<W4A16_FORMAT_INT4, T, PREPACKED>(a, stream, ls);
}

template <bool PREPACKED>
cudaError_t launch_fast_layout(bool bf16, int format, const gemv_args &a, cudaStream_t stream, const launch_shape &ls)
{
    if (bf16) return launch_fast_dtype<__nv_bfloat16, PREPACKED>(format, a, stream, ls);
    return launch_fast_dtype<__half, PREPACKED>(format, a, stream, ls);
}

/* Tiles and warps for a launch, from a sweep on an H100 (benchmarks/RESULTS.md): split2
 * when 16-row tiles cannot give every SM one CTA (2048x16384, 1024x4096); 8 warps per CTA
 * while there are fewer than 8 tiles per SM, 4 (and more resident CTAs) beyond. */
launch_shape choose_shape(const gemv_args &a, const w4a16_launch_facts &dev)
{
    const int sms = dev.sms;
    launch_shape ls;
    ls.dev = &dev;
    ls.m_blocks = a.m <= 8 ? 1 : 2;
    const int64_t chunks = w4a16_ceil_div(a.m, 8 * ls.m_blocks);
    const int64_t tiles16 = ((a.n + 15) / 16) * chunks;
    ls.split2 = a.k % (2 * SUPER_K) == 0 && tiles16 < sms && !a.geglu; /* geglu pairs rows g and g + 8 */
    ls.warps = (ls.split2 ? 2 * tiles16 : tiles16) < 8 * (int64_t)sms ? 8 : 4;
    ls.sub = !ls.split2 && a.m <= 4 && a.k % (2 * SUPER_K) == 0 && a.k / (2 * SUPER_K) >= ls.warps ? 2 : 1;
    return ls;
}

} // namespace

cudaError_t w4a16_gemv_launch(const w4a16_cuda_gemm_args &args, const w4a16_launch_facts &dev, cudaStream_t stream)
{
    const gemv_args a = make_kernel_args(args, nullptr);
    const bool bf16 = args.x_dtype == W4A16_DTYPE_BFLOAT16;

    const launch_shape ls = choose_shape(a, dev);
    const bool fast = a.k % SUPER_K == 0 && aligned16(a.x) && aligned16(a.codes) &&
                      (args.format != W4A16_FORMAT_NVFP4 || reinterpret_cast<uintptr_t>(a.scales) % 2 == 0) &&
                      (args.format != W4A16_FORMAT_INT4 || reinterpret_cast<uintptr_t>(a.scales) % 2 == 0);
    if (fast) return args.prepacked ? launch_fast_layout<true>(bf16, args.format, a, stream, ls)
                                    : launch_fast_layout<false>(bf16, args.format, a, stream, ls);
    const dim3 grid(w4a16_ceil_div(a.n, 8), w4a16_ceil_div(a.m, 16));
    if (bf16) gemm_w4_generic<__nv_bfloat16><<<grid, 256, 0, stream>>>(args);
    else gemm_w4_generic<__half><<<grid, 256, 0, stream>>>(args);
    return cudaGetLastError();
}
