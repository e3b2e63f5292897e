/*
 * gemm_tc.h — the internal interface between the CUDA matmul kernels and their dispatch
 * (dispatch.cu). C++ only; nothing here is public.
 *
 * A "config" is one kernel choice for w4a16_cuda_gemm: index 0 is the small-M kernel of
 * gemv.cu, indices 1.. are the tile shapes of the tensor-core GEMM in gemm_tc.cu. The
 * public C API exposes the indices and names so that a tuner can time them.
 */
#ifndef W4A16_GEMM_TC_H
#define W4A16_GEMM_TC_H

#include <cuda_runtime.h>
#include <stddef.h>

#include "cuda_ops.h"

/* What a launch needs to know of the device (dispatch.cu asks once per gemm call). */
struct w4a16_launch_facts {
    int sms;          /* streaming multiprocessors */
    size_t l2_bytes;  /* L2 cache size */
    size_t sm_smem;   /* shared memory per SM */
    bool pdl;         /* launch as programmatic dependents (SM90 on; W4A16_PDL=0 turns it off) */
};

/* One tile shape of the tensor-core GEMM. */
struct w4a16_tc_shape {
    const char *name;
    int bn, bm, bk;   /* CTA tile: weight rows, x rows, K per pipeline stage */
    int warps;
    int stages;
    int split_k;      /* CTAs along K (1: none; >1 may need a workspace, see w4a16_tc_workspace_bytes) */
    size_t smem;      /* dynamic shared memory per CTA */
    bool wgmma;       /* Hopper's warpgroup MMA: SM 9.0 and an sm_90a build only */
};

/* Output tiles of `shape` for `a`: x tiles times weight tiles (a K split multiplies the
 * CTAs, not the tiles). */
static inline int64_t w4a16_tc_tiles(const w4a16_cuda_gemm_args &a, const w4a16_tc_shape &shape)
{
    return ((a.m + shape.bm - 1) / shape.bm) * ((a.n + shape.bn - 1) / shape.bn);
}

/* The tensor-core configurations (tile shape x K split), indexed from 0 (= config index
 * - 1); w4a16_tc_shape_at fills *shape and returns false past the end. */
int w4a16_tc_shape_count(void);
bool w4a16_tc_shape_at(int index, w4a16_tc_shape *shape);

/* Why `shape` cannot run `a` (static text), or NULL when it can; has_wgmma: the device
 * and the build can run the warpgroup kernels (w4a16_device_has_wgmma). */
const char *w4a16_tc_unsupported(const w4a16_cuda_gemm_args &a, const w4a16_tc_shape &shape, size_t max_smem,
                                 bool has_wgmma);

/* Bytes of workspace the shape needs for `a`: the fp32 partial sums of a K split, except
 * where the split adds up in a thread-block cluster (0). */
size_t w4a16_tc_workspace_bytes(const w4a16_cuda_gemm_args &a, const w4a16_tc_shape &shape);

/* CTAs of configuration `index`'s kernel for a's format and x dtype that fit on one SM of
 * the current device (1 when the query fails); the occupancy query runs once per kernel. */
int w4a16_tc_resident_ctas(const w4a16_cuda_gemm_args &a, int index);

/* Launches the tensor-core GEMM with tile shape `index`; the caller has checked support. */
cudaError_t w4a16_tc_launch(const w4a16_cuda_gemm_args &a, int index, void *workspace, const w4a16_launch_facts &dev,
                            cudaStream_t stream);

/* Launches the small-M kernel (any layout; the generic SIMT kernel where it must). */
cudaError_t w4a16_gemv_launch(const w4a16_cuda_gemm_args &a, const w4a16_launch_facts &dev, cudaStream_t stream);

#endif /* W4A16_GEMM_TC_H */
