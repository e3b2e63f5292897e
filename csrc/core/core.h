/*
 * core.h — internal interface of the portable C core (no Python, no CUDA).
 *
 * The functions ending in _ref are the specification of each format: plain loops over
 * contiguous row-major arrays, written for clarity. Optimised paths (the CPU gemm, the
 * CUDA kernels) are tested against them.
 */
#ifndef W4A16_CORE_H
#define W4A16_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "codecs.h" /* the 16-bit scale decoders of w4a16_cpu_scale */
#include "w4a16.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors (errors.c) ------------------------------------------------------------ */

/* Records a printf-style message in the thread-local error buffer; returns `status`. */
w4a16_status w4a16_fail(w4a16_status status, const char *fmt, ...);
void w4a16_clear_error(void);

/* ---- dtypes and rows (rows.c) ------------------------------------------------------ */

size_t w4a16_dtype_size(w4a16_dtype dtype);
const char *w4a16_dtype_name(w4a16_dtype dtype);

/* Converts `count` elements of a fp32/fp16/bf16 row to fp32, and back. */
void w4a16_load_row_f32(const void *src, w4a16_dtype dtype, int64_t count, float *dst);
void w4a16_store_row_f32(const float *src, w4a16_dtype dtype, int64_t count, void *dst);

/* Index of the first NaN/Inf in row, or -1. */
int64_t w4a16_find_nonfinite(const float *row, int64_t count);

/* ---- reference quantizers (quantize_ref.c) ----------------------------------------- */

/* A quantized weight as raw host pointers: what the CPU code reads. */
typedef struct {
    w4a16_format format;
    int64_t n, k, group_size;
    const uint8_t *codes;     /* [n, k/2] */
    const void *scales;       /* [n, k/group]: bytes (e4m3 / e8m0) or fp16/bf16 */
    w4a16_dtype scale_dtype;
    float global_scale;       /* nvfp4 only */
    const uint8_t *zero_points; /* int4 asymmetric, else NULL */
    int prepacked;            /* codes in the prepacked order (w4a16_prepack) */
    /* decoding tables, filled by w4a16_cpu_weight_tables() */
    float code_values[16];    /* the value of each 4-bit code before scaling */
    float byte_scales[256];   /* nvfp4: e4m3(s) * global_scale; mxfp4: 2^(s - 127) */
} w4a16_cpu_weight;

/* Fills code_values and byte_scales from format, scale_dtype and global_scale. */
void w4a16_cpu_weight_tables(w4a16_cpu_weight *w);

/* All take w [n, k] of dtype fp32/fp16/bf16 and fail with W4A16_ERR_VALUE on NaN/Inf. */
w4a16_status w4a16_quantize_nvfp4_ref(const void *w, w4a16_dtype dtype, int64_t n, int64_t k,
                                      const float *global_scale, uint8_t *codes,
                                      uint8_t *scales, float *global_scale_out);
w4a16_status w4a16_quantize_mxfp4_ref(const void *w, w4a16_dtype dtype, int64_t n, int64_t k,
                                      uint8_t *codes, uint8_t *scales);
w4a16_status w4a16_pack_int4_ref(const void *w, w4a16_dtype dtype, int64_t n, int64_t k,
                                 int64_t group, int symmetric, w4a16_dtype scale_dtype,
                                 uint8_t *codes, void *scales, uint8_t *zero_points);

/* Dequantizes row `row` of the weight into dst[0..k). */
void w4a16_dequantize_row_ref(const w4a16_cpu_weight *w, int64_t row, float *dst);

/* The scale of group `index` (row * groups + group): NVFP4's e4m3 scale times the global
 * scale, MXFP4's power of two, or INT4's fp16/bf16 scale, as fp32. Inline: the CPU gemm
 * calls it once per 16 elements (NVFP4), where a call cost ~7% of its decoding. */
static inline float w4a16_cpu_scale(const w4a16_cpu_weight *w, size_t index)
{
    if (w->format != W4A16_FORMAT_INT4) return w->byte_scales[((const uint8_t *)w->scales)[index]];
    if (w->scale_dtype == W4A16_DTYPE_BFLOAT16) return w4a16_bf16_to_f32(((const uint16_t *)w->scales)[index]);
    return w4a16_f16_to_f32(((const uint16_t *)w->scales)[index]);
}

/* codes [n, bytes_per_row] -> out in the prepacked order (to_prepacked) or back; the order
 * of a slot's bits depends on the format (is_int4: INT4, else E2M1; codecs.h). */
void w4a16_prepack_ref(const uint8_t *codes, uint8_t *out, int64_t n, int64_t bytes_per_row, int to_prepacked,
                       int is_int4);

/* ---- CPU gemm (gemm_cpu.c) ----------------------------------------------------------- */

/* y [m, n] = alpha * x [m, k] @ dequant(w)^T + bias; x, y, bias of dtype `dtype`.
 * Multithreaded (W4A16_NUM_THREADS overrides the core count). */
w4a16_status w4a16_gemm_cpu(const void *x, w4a16_dtype dtype, int64_t m,
                            const w4a16_cpu_weight *w, const void *bias, float alpha, void *y);

#ifdef __cplusplus
}
#endif

#endif /* W4A16_CORE_H */
