/*
 * dispatch.cu — picks the kernel of a CUDA gemm: the small-M kernel (gemv.cu) or one of
 * the tensor-core GEMM configurations (gemm_tc.cu), and launches it.
 *
 * Config indices: 0 is the small-M kernel, 1 + i the tensor-core configuration i (a tile
 * shape and a K split). W4A16_GEMM_AUTO asks for the heuristic below; a tuner passes the
 * index it measured fastest.
 *
 * The heuristic (choose_config) encodes what benchmarks/bench_gemm_gpu.py measured on an
 * H100 (benchmarks/sweep_configs.py, benchmarks/RESULTS.md): the small-M kernel up to
 * GEMV_MAX_M rows of x and for the canonical layout; beyond it, the tile whose M extent
 * suits M, with the smallest K split that fills the CTA slots of the GPU. Other GPUs, and
 * shapes where this misses, are what the tuner (python -m w4a16 tune) is for.
 */
#include <cuda_runtime.h>

#include "cuda_common.cuh"
#include "gemm_tc.h"

namespace {

/* Up to this many rows of x the small-M kernel runs; beyond it the tensor-core GEMM
 * (measured on an H100: at M = 16 the GEMM with 16-row tiles is 5-35% faster on the large
 * Pi0.5 shapes, at M = 1 the small-M kernel is 1.2-1.4x faster) -- except for weights of
 * at most GEMV_SMALL_WEIGHT elements (the action expert's 4096x1024 and 1024x4096), where
 * the small-M kernel stays as fast or faster up to M = 16 (M = 16: 4.6 vs 5.5 µs on
 * 4096x1024, 6.8 vs 6.9 µs on 1024x4096). */
#ifndef W4A16_GEMV_MAX_M
#define W4A16_GEMV_MAX_M 8
#endif
constexpr int64_t GEMV_SMALL_WEIGHT = (int64_t)1 << 22;

/* Tiles of gemm_tc.cu (config index = 1 + tile * 4 + split index). */
constexpr int TILE_N128_M64 = 0, TILE_N128_M32 = 2, TILE_N64_M64 = 3, TILE_N64_M32 = 4, TILE_N64_M16 = 5,
              TILE_N128_M64_WIDE = 6, TILE_N128_M128_DECODED = 8, TILE_WG_N128_M128 = 9, TILE_WG_N128_M64 = 10,
              TILE_WG_N128_M256 = 11, TILE_N64_M32_K4 = 12, TILE_WG_N128_M32 = 13, TILE_WG_N128_M32_K256 = 14,
              TILE_WG_N128_M64_K256 = 15;
constexpr int SPLITS_PER_TILE = 4;

struct device_facts {
    w4a16_launch_facts launch;
    size_t max_smem;
    bool wgmma; /* runs the warpgroup kernels */
};

cudaError_t query_device(int device_id, device_facts *facts)
{
    int sms = 0, smem = 0, sm_smem = 0, l2 = 0;
    cudaError_t err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device_id);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device_id);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sm_smem, cudaDevAttrMaxSharedMemoryPerMultiprocessor, device_id);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device_id);
    facts->launch.sms = sms;
    facts->launch.l2_bytes = (size_t)l2;
    facts->launch.sm_smem = (size_t)sm_smem;
    facts->launch.pdl = w4a16_device_has_pdl(device_id);
    facts->max_smem = (size_t)smem;
    facts->wgmma = w4a16_device_has_wgmma(device_id);
    return err;
}

/* The tile with 256-element stages that stands in for warpgroup tile `tile`, or -1. */
int long_stage_tile(int tile)
{
    if (tile == TILE_WG_N128_M32) return TILE_WG_N128_M32_K256;
    if (tile == TILE_WG_N128_M64) return TILE_WG_N128_M64_K256;
    return -1;
}

/* `config` (1 + index), or where it is the 32- or 64-row warpgroup tile, the same tile with
 * 256-element stages when that grid has at most one CTA per SM anyway and every CTA at
 * least 4 such stages: half the stages, each with the same fixed barrier, waits and scale
 * handling (H100, gemm_tc.cu: 16384x2048 M = 32 -6 / -9% nvfp4 / mxfp4, M = 64 -2.0 / -1.5%;
 * two stages a CTA, 1024x4096 M = 50 split 8, +2 / +4%; 32768x2048, whose 128-element tiles
 * run two CTAs per SM, +22% at M = 32 and +20% at M = 64). */
int with_long_stages(const w4a16_cuda_gemm_args &a, int config, const device_facts &dev)
{
    const int index = config - 1, long_tile = long_stage_tile(index / SPLITS_PER_TILE);
    if (long_tile < 0) return config;
    const int long_index = long_tile * SPLITS_PER_TILE + index % SPLITS_PER_TILE;
    w4a16_tc_shape shape;
    if (!w4a16_tc_shape_at(long_index, &shape) || w4a16_tc_unsupported(a, shape, dev.max_smem, dev.wgmma))
        return config;
    const int64_t ctas = w4a16_tc_tiles(a, shape) * shape.split_k;
    const int64_t stages = a.k / shape.split_k / shape.bk;
    return ctas <= dev.launch.sms && stages >= 4 ? 1 + long_index : config;
}

/* The tensor-core config for `a`, or 0 (the small-M kernel) when none fits. */
int choose_config(const w4a16_cuda_gemm_args &a, const device_facts &dev, size_t workspace_bytes)
{
    if (!a.prepacked || a.m <= W4A16_GEMV_MAX_M) return 0;
    if (a.m <= 16 && a.n * a.k <= GEMV_SMALL_WEIGHT) return 0;
    /* preference by M (H100, benchmarks/sweep_configs.py): 16-row tiles up to M = 16,
     * 32-row ones to 32, the wide 64-row tile to 127 (fastest or within 3% at M = 50 and
     * 64 on the large Pi0.5 shapes; the n64_m128 tile was never the fastest). The expert
     * weights (<= GEMV_SMALL_WEIGHT) keep narrower tiles longer, as they give more CTAs:
     * 4096x1024 at M = 32: n64_m16 5.1 µs vs n64_m32 6.4; M = 64: n64_m32 6.5 vs wide 9.7;
     * M = 128: n64_m32 8.1 vs wide 12.1. From M = 128 the decoded-tile kernel leads on
     * the large weights by 5-12% (16384x2048 M = 128: 35.3 vs 38.9 µs; M = 256: 65.7 vs
     * 72.4; M = 968: 252.5 vs 281.0) but not on the expert ones (4096x1024 M = 256: 19.3
     * vs 12.1 wide) */
    int order[3];
    const bool small_weight = a.n * a.k <= GEMV_SMALL_WEIGHT;
    /* SM 9.0 (H100, benchmarks/sweep_configs.py, the TMA-fed kernel): the warpgroup tiles
     * lead on the large weights from M = 64 (16384x2048 M = 64: 18.1 vs 20.7 µs wide; M =
     * 128: 22.8 vs 34.0 decoded; M = 256: m256 30.7 vs 42.3 m128; M = 512: 60.9 vs 83.9;
     * M = 968: 114.2 vs 162.1) and on the expert weights from M = 256 (4096x1024: wg m64
     * 10.7 vs 11.3 wide; M = 512: wg m128 13.1 vs 18.0 m256 and 20.4 m64; M = 968: m256
     * 18.5 vs 25.4 m128), not at M = 128 (n64_m32 7.9 vs wg m64 10.3). Past M = 32 the
     * 64-row warpgroup tile, half empty, still leads on the large weights (M = 50:
     * 16384x2048 17.8 vs 20.5 µs wide, 2048x16384 split 8 20.6 vs 21.9). On the large
     * weights each tile serves M up to its own extent: one more M tile is one more wave
     * of CTAs (one per SM), so M = 100 on 16384x2048 took 33.7 µs with the 64-row tile.
     * The switches at M = 384 and 768 lie between measured points, not on them. */
    if (dev.wgmma && !small_weight && a.m > 128)
        order[0] = TILE_WG_N128_M256, order[1] = TILE_WG_N128_M128, order[2] = TILE_N128_M128_DECODED;
    else if (dev.wgmma && !small_weight && a.m > 64)
        order[0] = TILE_WG_N128_M128, order[1] = TILE_WG_N128_M64, order[2] = TILE_N128_M128_DECODED;
    else if (dev.wgmma && !small_weight && a.m > 32 && a.k <= 1024)
        /* ... but with a short K (the action expert's fused gate and up, 8192x1024) two M
         * tiles of the 32-row one: the 64-row tiles would leave half the SMs idle and a split
         * of 8 stages gains nothing (nvfp4 / int4, M = 50: 7.7 / 7.7 µs vs 8.1 / 8.4 for the
         * 64-row tile unsplit, 8.2 / 8.2 split 2; M = 64: 7.6 / 7.7 vs 8.1 / 8.2). With K >=
         * 2048 they lose (16384x2048 M = 50 18.9 vs 14.9; 2048x16384 split 8 20.9 vs 17.9). */
        order[0] = TILE_WG_N128_M32, order[1] = TILE_WG_N128_M64, order[2] = TILE_N128_M64_WIDE;
    else if (dev.wgmma && !small_weight && a.m > 32)
        order[0] = TILE_WG_N128_M64, order[1] = TILE_N128_M64_WIDE, order[2] = TILE_N128_M64;
    /* ... and the 32-row one from M = 17 where K >= 2048 (nvfp4, M = 24 / 32: 16384x2048 13.1
     * / 13.3 µs vs n64_m32 14.3 / 14.7; 32768x2048 21.2 / 22.1 vs 29.2 / 29.0; 2048x16384
     * split 8 15.1 / 15.2 vs 16.6 / 16.8), not on 8192x1024 (M = 32: 7.0 vs n64_m32 6.1) */
    else if (dev.wgmma && !small_weight && a.m > 16 && a.k >= 2048)
        order[0] = TILE_WG_N128_M32, order[1] = TILE_N64_M32, order[2] = TILE_N128_M32;
    else if (dev.wgmma && small_weight && a.m >= 768)
        order[0] = TILE_WG_N128_M256, order[1] = TILE_WG_N128_M128, order[2] = TILE_N128_M64_WIDE;
    else if (dev.wgmma && small_weight && a.m >= 384)
        order[0] = TILE_WG_N128_M128, order[1] = TILE_WG_N128_M64, order[2] = TILE_N128_M64_WIDE;
    else if (dev.wgmma && small_weight && a.m >= 192)
        order[0] = TILE_WG_N128_M64, order[1] = TILE_N128_M64_WIDE, order[2] = TILE_N128_M64;
    else if (dev.wgmma && small_weight && a.k >= 4096 && a.m > 32 && a.m <= 64)
        /* the expert's down projection at M = 33..64: the 32-row warpgroup tile, two M tiles
         * split 8 ways (H100, nvfp4, 1024x4096 at M = 50 / 64: 6.4 / 6.6 µs vs n64_m32k4 7.2 /
         * 7.2; at M = 32 6.2 vs 5.9) */
        order[0] = TILE_WG_N128_M32, order[1] = TILE_N64_M32_K4, order[2] = TILE_N64_M32;
    else if (small_weight && a.m <= 64 && (a.k >= 4096 || a.m > 32))
        /* the expert's down projection: the 8-warp 32-row tile, split across CTAs (H100, nvfp4,
         * 1024x4096 at M = 32 / 50 / 64: 5.8 / 7.2 / 7.1 µs vs 6.5 / 7.4 / 7.5 with the orders
         * below); with a shorter K only past M = 32, where it leads n64_m32 (H100, 4 alternating
         * passes, nvfp4 / mxfp4 / int4: 4096x1024 at M = 40..64 -3.0 to -3.8 / -6.9 to -7.8 /
         * -4.1 to -6.8%; 2048x2048 M = 50 -9.5 / -6.3 / -14.5%; 1024x1024 M = 50 -3.3 / -5.4 /
         * +1.3%). At M = 32 4096x1024 keeps n64_m16 (5.6 vs 4.6 µs): two 512-element stages
         * are too few there. */
        order[0] = TILE_N64_M32_K4, order[1] = TILE_N64_M32, order[2] = TILE_N64_M16;
    else if (a.m <= 16 || (small_weight && a.m <= 32))
        order[0] = TILE_N64_M16, order[1] = TILE_N64_M32, order[2] = TILE_N64_M64;
    else if (a.m <= 32 || (small_weight && a.m <= 128))
        order[0] = TILE_N64_M32, order[1] = TILE_N128_M32, order[2] = TILE_N64_M64;
    else if (a.m < 128 || small_weight)
        order[0] = TILE_N128_M64_WIDE, order[1] = TILE_N128_M64, order[2] = TILE_N64_M64;
    else
        order[0] = TILE_N128_M128_DECODED, order[1] = TILE_N128_M64_WIDE, order[2] = TILE_N128_M64;
    const int64_t one_per_sm = dev.launch.sms - dev.launch.sms / 10;
    int best = 0;
    int64_t best_ctas = 0;
    for (int o = 0; o < 3; o++) {
        int wave_best = 0;
        double wave_best_cost = 0.0;
        for (int s = 0; s < SPLITS_PER_TILE; s++) {
            const int index = order[o] * SPLITS_PER_TILE + s;
            w4a16_tc_shape shape;
            if (!w4a16_tc_shape_at(index, &shape) || w4a16_tc_unsupported(a, shape, dev.max_smem, dev.wgmma) ||
                w4a16_tc_workspace_bytes(a, shape) > workspace_bytes)
                continue;
            const int64_t tiles = w4a16_tc_tiles(a, shape);
            const int64_t ctas = tiles * shape.split_k;
            if (shape.wgmma) {
                /* one CTA per SM (their shared memory; the 64-row tile takes two where the
                 * grid has more CTAs than SMs, launch_smem). A grid of at least one tile per SM
                 * runs unsplit: the partial sums cost more than the last wave saves
                 * (32768x2048 M = 968: split 8 1142 µs, split 1 240). Below that the time
                 * goes with the waves of CTAs over the SMs over the split; at a tie the
                 * smaller split (2048x16384, m256 tile: M = 768 split 2 113.1 µs vs split 4
                 * 125.3; M = 968 split 2 117.2 vs split 4 127.7; M = 256 split 8 40.3 vs
                 * split 4 60.6) */
                if (shape.split_k > 1 && tiles >= dev.launch.sms) continue;
                const double cost = (double)((ctas + dev.launch.sms - 1) / dev.launch.sms) / shape.split_k;
                if (!wave_best || cost < wave_best_cost) wave_best = 1 + index, wave_best_cost = cost;
                continue;
            }
            /* the smallest split that fills (90% of) the CTA slots of the GPU: the mma.sync
             * tiles keep only STAGES - 1 stages in flight per CTA, so a long K wants two
             * CTAs per SM where they fit (H100, 2048x16384, nvfp4: M = 10 n64_m16 split 8
             * 14.6 µs vs split 4 18.7; M = 32 n64_m32 split 8 16.5 vs split 4 24.7) -- but
             * no split when the tiles alone fill half the SMs and K is short: the partial
             * sums cost more than the idle SMs (4096 x 1024 at M <= 32); with a long K the
             * split wins (2048 x 16384 at M = 256: split 2 73.6 µs, split 1 129.6) */
            const int64_t slots = (int64_t)w4a16_tc_resident_ctas(a, index) * dev.launch.sms;
            const int64_t want = slots - slots / 10;
            if (ctas >= want || (shape.split_k == 1 && 2 * tiles >= one_per_sm && a.k <= 2048)) return 1 + index;
            if (ctas > best_ctas) best = 1 + index, best_ctas = ctas;
        }
        if (wave_best) return with_long_stages(a, wave_best, dev);
    }
    return best;
}

/* Resolves `config` for `a`; on success *chosen is runnable and *needed its workspace. */
w4a16_status plan(const w4a16_cuda_gemm_args &a, int config, size_t workspace_bytes, const device_facts &dev,
                  int *chosen, size_t *needed)
{
    *chosen = 0;
    *needed = 0;
    if (config == W4A16_GEMM_AUTO) config = choose_config(a, dev, workspace_bytes);
    if (config < 0 || config >= w4a16_cuda_gemm_config_count())
        return w4a16_fail(W4A16_ERR_INVALID_ARGUMENT, "config: expected W4A16_GEMM_AUTO (-1) or 0 .. %d, got %d",
                          w4a16_cuda_gemm_config_count() - 1, config);
    if (config > 0) {
        w4a16_tc_shape shape;
        w4a16_tc_shape_at(config - 1, &shape);
        const char *why = w4a16_tc_unsupported(a, shape, dev.max_smem, dev.wgmma);
        if (why) return w4a16_fail(W4A16_ERR_UNSUPPORTED, "config: %s cannot run this gemm: %s", shape.name, why);
        *needed = w4a16_tc_workspace_bytes(a, shape);
    }
    *chosen = config;
    return W4A16_OK;
}

} // namespace

extern "C" int w4a16_cuda_gemm_config_count(void) { return 1 + w4a16_tc_shape_count(); }

extern "C" const char *w4a16_cuda_gemm_config_name(int config)
{
    if (config == 0) return "gemv";
    w4a16_tc_shape shape;
    return w4a16_tc_shape_at(config - 1, &shape) ? shape.name : nullptr;
}

extern "C" w4a16_status w4a16_cuda_gemm_plan(const w4a16_cuda_gemm_args *args, int config, size_t workspace_bytes,
                                             int device_id, int *chosen, size_t *needed)
{
    device_facts dev;
    cudaError_t err = query_device(device_id, &dev);
    if (err != cudaSuccess) return w4a16_cuda_check(err, "gemm (device attributes)");
    return plan(*args, config, workspace_bytes, dev, chosen, needed);
}

extern "C" w4a16_status w4a16_cuda_gemm(const w4a16_cuda_gemm_args *args, int config, void *workspace,
                                        size_t workspace_bytes, int device_id, void *stream_ptr)
{
    w4a16_device_guard guard(device_id);
    if (guard.error != cudaSuccess) return w4a16_cuda_check(guard.error, "gemm (set device)");
    if (args->m == 0) return W4A16_OK;
    device_facts dev;
    cudaError_t err = query_device(device_id, &dev);
    if (err != cudaSuccess) return w4a16_cuda_check(err, "gemm (device attributes)");
    int chosen;
    size_t needed;
    w4a16_status st = plan(*args, config, workspace ? workspace_bytes : 0, dev, &chosen, &needed);
    if (st != W4A16_OK) return st;
    if (needed > 0 && (!workspace || workspace_bytes < needed))
        return w4a16_fail(W4A16_ERR_INVALID_ARGUMENT, "workspace: config %s needs %zu bytes, got %zu",
                          w4a16_cuda_gemm_config_name(chosen), needed, workspace ? workspace_bytes : (size_t)0);
    cudaStream_t stream = static_cast<cudaStream_t>(stream_ptr);
    if (chosen == 0) err = w4a16_gemv_launch(*args, dev.launch, stream);
    else err = w4a16_tc_launch(*args, chosen - 1, needed ? workspace : nullptr, dev.launch, stream);
    return w4a16_cuda_check(err, "gemm (launch)");
}
