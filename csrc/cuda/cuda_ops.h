/*
 * cuda_ops.h — the CUDA entry points the C API dispatches to (compiled only when nvcc
 * is found). Arguments are already validated by csrc/core/api.c: contiguous row-major
 * device pointers, shapes consistent. Each launches on `stream` of device `device_id`
 * and returns without synchronising.
 */
#ifndef W4A16_CUDA_OPS_H
#define W4A16_CUDA_OPS_H

#include <stdint.h>

#include "w4a16.h"

#ifdef __cplusplus
extern "C" {
#endif

w4a16_status w4a16_cuda_quantize_nvfp4(const void *w, w4a16_dtype dtype, int64_t n, int64_t k,
                                       const float *global_scale, uint8_t *codes,
                                       uint8_t *scales, float *global_scale_out, int device_id,
                                       void *stream);

/* Validated arguments of a CUDA gemm: all pointers on one device, row-major. */
typedef struct {
    w4a16_format format;
    int64_t m, n, k, group_size;
    const void *x;            /* [m, k] fp16 or bf16 (x_dtype) */
    w4a16_dtype x_dtype;
    const uint8_t *codes;     /* [n, k/2] */
    const void *scales;       /* [n, k/group] */
    w4a16_dtype scale_dtype;
    const float *global_scale; /* nvfp4, device pointer */
    const uint8_t *zero_points;
    int prepacked;            /* codes in the prepacked layout (w4a16_prepack) */
    const void *bias;         /* [n] x_dtype, or NULL */
    float alpha;
    void *y;                  /* [m, n] x_dtype; [m, n/2] when geglu */
    int geglu;                /* epilogue of w4a16_gemm_geglu: rows paired in blocks of 8 */
} w4a16_cuda_gemm_args;

/* config: W4A16_GEMM_AUTO or an index below w4a16_cuda_gemm_config_count(); workspace
 * (device memory, may be NULL) serves split-K configurations. */
w4a16_status w4a16_cuda_gemm(const w4a16_cuda_gemm_args *args, int config, void *workspace, size_t workspace_bytes,
                             int device_id, void *stream);

/* Resolves W4A16_GEMM_AUTO to the config w4a16_cuda_gemm would run (*chosen) and the
 * workspace bytes that config needs for these arguments; fails for an unsupported config. */
w4a16_status w4a16_cuda_gemm_plan(const w4a16_cuda_gemm_args *args, int config, size_t workspace_bytes,
                                  int device_id, int *chosen, size_t *needed);

int w4a16_cuda_gemm_config_count(void);
const char *w4a16_cuda_gemm_config_name(int config);

/* codes [n, bytes_per_row] -> out, to (to_prepacked) or from the prepacked order of INT4
 * (is_int4) or E2M1 codes. */
w4a16_status w4a16_cuda_prepack(const uint8_t *codes, uint8_t *out, int64_t n, int64_t bytes_per_row,
                                int to_prepacked, int is_int4, int device_id, void *stream);

w4a16_status w4a16_cuda_quantize_mxfp4(const void *w, w4a16_dtype dtype, int64_t n, int64_t k, uint8_t *codes,
                                       uint8_t *scales, int device_id, void *stream);

w4a16_status w4a16_cuda_pack_int4(const void *w, w4a16_dtype dtype, int64_t n, int64_t k, int64_t group,
                                  int symmetric, w4a16_dtype scale_dtype, uint8_t *codes, void *scales,
                                  uint8_t *zero_points, int device_id, void *stream);

/* out [n, k] (fp32/fp16/bf16) = dequant(weight); weight fields as in the gemm args. */
w4a16_status w4a16_cuda_dequantize(const w4a16_cuda_gemm_args *weight, w4a16_dtype out_dtype, void *out,
                                   int device_id, void *stream);

/* Number of CUDA devices the runtime sees; 0 when there is no driver or GPU. */
int w4a16_cuda_device_count(void);

/* Name and compute capability of device `index`; returns 0 on success. */
int w4a16_cuda_device_info(int index, char *name, size_t name_bytes, int *major, int *minor,
                           size_t *total_memory);

/* CUDA runtime version the library was built against (e.g. 13000). */
int w4a16_cuda_runtime_version(void);

#ifdef __cplusplus
}
#endif

#endif /* W4A16_CUDA_OPS_H */
