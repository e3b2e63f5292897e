/*
 * api.c — the public C API (w4a16.h): validates every view, then dispatches to the C
 * reference / CPU gemm or to the CUDA kernels.
 *
 * Validation runs before any work so that a bad call writes nothing. Messages name the
 * argument and say what was expected; the Python layer passes them on unchanged.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#if defined(W4A16_WITH_CUDA)
#include "../cuda/cuda_ops.h"
#endif

#define DTYPE_BIT(d) (1u << (unsigned)(d))
#define FLOAT_DTYPES (DTYPE_BIT(W4A16_DTYPE_FLOAT32) | DTYPE_BIT(W4A16_DTYPE_FLOAT16) | DTYPE_BIT(W4A16_DTYPE_BFLOAT16))
#define HALF_DTYPES (DTYPE_BIT(W4A16_DTYPE_FLOAT16) | DTYPE_BIT(W4A16_DTYPE_BFLOAT16))

#ifndef W4A16_CUDA_ARCH_LIST
#define W4A16_CUDA_ARCH_LIST ""
#endif

const char *w4a16_version(void) { return W4A16_VERSION_STRING; }

int w4a16_has_cuda(void)
{
#if defined(W4A16_WITH_CUDA)
    return 1;
#else
    return 0;
#endif
}

const char *w4a16_cuda_archs(void) { return W4A16_CUDA_ARCH_LIST; }

/* ---- view checks ------------------------------------------------------------------ */

static void format_shape(const int64_t *shape, int ndim, char *buf, size_t size)
{
    size_t used = 0;
    int i;
    used += (size_t)snprintf(buf, size, "[");
    for (i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
}

static void format_dtypes(unsigned mask, char *buf, size_t size)
{
    size_t used = 0;
    int d, first = 1;
    buf[0] = '\0';
    for (d = 0; d <= W4A16_DTYPE_FLOAT8_E8M0 && used < size; d++) {
        if (!(mask & DTYPE_BIT(d))) continue;
        used += (size_t)snprintf(buf + used, size - used, "%s%s", first ? "" : " or ",
                                 w4a16_dtype_name((w4a16_dtype)d));
        first = 0;
    }
}

static int64_t view_numel(const w4a16_view *v)
{
    int64_t count = 1;
    int i;
    for (i = 0; i < v->ndim; i++) count *= v->shape[i];
    return count;
}

static int view_is_contiguous(const w4a16_view *v)
{
    int64_t expected = 1;
    int i;
    if (view_numel(v) == 0) return 1; /* an empty tensor has no layout to get wrong */
    for (i = v->ndim - 1; i >= 0; i--) {
        /* the stride of an extent-1 dimension is meaningless; skip it */
        if (v->shape[i] != 1 && v->strides[i] != expected) return 0;
        expected *= v->shape[i];
    }
    return 1;
}

/* Checks dtype, rank, extents (-1 = any), contiguity. */
static w4a16_status expect_view(const w4a16_view *v, const char *name, unsigned dtypes, int ndim,
                                const int64_t *shape)
{
    char want[96], got[96];
    int i;
    if (!v) return w4a16_fail(W4A16_ERR_INVALID_ARGUMENT, "%s: is NULL", name);
    if ((unsigned)v->dtype > W4A16_DTYPE_FLOAT8_E8M0 || !(dtypes & DTYPE_BIT(v->dtype))) {
        format_dtypes(dtypes, want, sizeof want);
        return w4a16_fail(W4A16_ERR_DTYPE, "%s: expected dtype %s, got %s", name, want,
                          w4a16_dtype_name(v->dtype));
    }
    if (v->ndim != ndim)
        return w4a16_fail(W4A16_ERR_SHAPE, "%s: expected %d dimensions, got %d", name, ndim, v->ndim);
    for (i = 0; i < ndim; i++) {
        if (v->shape[i] < 0 || (shape && shape[i] >= 0 && v->shape[i] != shape[i])) {
            int64_t expected[W4A16_MAX_DIMS];
            int j;
            for (j = 0; j < ndim; j++) expected[j] = shape && shape[j] >= 0 ? shape[j] : v->shape[j];
            format_shape(expected, ndim, want, sizeof want);
            format_shape(v->shape, ndim, got, sizeof got);
            return w4a16_fail(W4A16_ERR_SHAPE, "%s: expected shape %s, got %s", name, want, got);
        }
    }
    if (!view_is_contiguous(v))
        return w4a16_fail(W4A16_ERR_LAYOUT, "%s: must be row-major contiguous", name);
    if (!v->data && view_numel(v) > 0) return w4a16_fail(W4A16_ERR_INVALID_ARGUMENT, "%s: data is NULL", name);
    if (v->device_type != W4A16_DEVICE_CPU && v->device_type != W4A16_DEVICE_CUDA)
        return w4a16_fail(W4A16_ERR_DEVICE, "%s: device type %d is not supported (CPU or CUDA)", name,
                          v->device_type);
    return W4A16_OK;
}

/* A one-element fp32 tensor, shape [] or [1]. */
static w4a16_status expect_scalar_f32(const w4a16_view *v, const char *name)
{
    int64_t one = 1;
    if (v && v->ndim == 0) return expect_view(v, name, DTYPE_BIT(W4A16_DTYPE_FLOAT32), 0, NULL);
    return expect_view(v, name, DTYPE_BIT(W4A16_DTYPE_FLOAT32), 1, &one);
}

static w4a16_status expect_same_device(const w4a16_view *ref, const char *ref_name,
                                       const w4a16_view *v, const char *name)
{
    if (!v || !v->data) return W4A16_OK;
    if (v->device_type != ref->device_type || v->device_id != ref->device_id)
        return w4a16_fail(W4A16_ERR_DEVICE, "%s: is on device %d:%d but %s is on %d:%d", name,
                          v->device_type, v->device_id, ref_name, ref->device_type, ref->device_id);
    return W4A16_OK;
}

static int views_overlap(const w4a16_view *a, const w4a16_view *b)
{
    const char *a0, *b0;
    size_t an, bn;
    if (!a || !b || !a->data || !b->data || a->device_type != b->device_type) return 0;
    a0 = (const char *)a->data;
    b0 = (const char *)b->data;
    an = (size_t)view_numel(a) * w4a16_dtype_size(a->dtype);
    bn = (size_t)view_numel(b) * w4a16_dtype_size(b->dtype);
    return an && bn && a0 < b0 + bn && b0 < a0 + an;
}

static w4a16_status expect_disjoint(const w4a16_view *out, const char *out_name,
                                    const w4a16_view *other, const char *other_name)
{
    if (views_overlap(out, other))
        return w4a16_fail(W4A16_ERR_LAYOUT, "%s: overlaps %s in memory; outputs must not alias", out_name,
                          other_name);
    return W4A16_OK;
}

#if !defined(W4A16_WITH_CUDA)
static w4a16_status cuda_missing(const char *what)
{
    return w4a16_fail(W4A16_ERR_UNSUPPORTED,
                      "%s: the tensors are on a CUDA device but this build of w4a16 has no CUDA "
                      "kernels (rebuild with nvcc on PATH)", what);
}
#endif

/* The first checks of every quantizer: w [N, K] float, K a positive multiple of `block`. */
static w4a16_status expect_weight_input(const w4a16_view *w, int64_t block, const char *format)
{
    w4a16_status st = expect_view(w, "w", FLOAT_DTYPES, 2, NULL);
    if (st != W4A16_OK) return st;
    if (w->shape[0] < 1 || w->shape[1] < 1)
        return w4a16_fail(W4A16_ERR_SHAPE, "w: expected a non-empty [N, K] matrix, got [%lld, %lld]",
                          (long long)w->shape[0], (long long)w->shape[1]);
    if (w->shape[1] % block != 0)
        return w4a16_fail(W4A16_ERR_SHAPE, "w: K = %lld is not a multiple of the %s block size %lld",
                          (long long)w->shape[1], format, (long long)block);
    return W4A16_OK;
}

/* ---- quantizers ------------------------------------------------------------------- */

w4a16_status w4a16_quantize_nvfp4(const w4a16_view *w, const float *global_scale,
                                  w4a16_view *codes, w4a16_view *scales,
                                  w4a16_view *global_scale_out, void *stream)
{
    w4a16_status st;
    int64_t n, k, shape[2];
    w4a16_clear_error();
    if ((st = expect_weight_input(w, 16, "NVFP4")) != W4A16_OK) return st;
    n = w->shape[0];
    k = w->shape[1];
    shape[0] = n;
    shape[1] = k / 2;
    if ((st = expect_view(codes, "codes", DTYPE_BIT(W4A16_DTYPE_UINT8), 2, shape)) != W4A16_OK) return st;
    shape[1] = k / 16;
    if ((st = expect_view(scales, "scales", DTYPE_BIT(W4A16_DTYPE_FLOAT8_E4M3FN) | DTYPE_BIT(W4A16_DTYPE_UINT8), 2,
                          shape)) != W4A16_OK)
        return st;
    if ((st = expect_scalar_f32(global_scale_out, "global_scale_out")) != W4A16_OK) return st;
    if (global_scale && !(isfinite(*global_scale) && *global_scale > 0.0f))
        return w4a16_fail(W4A16_ERR_VALUE, "global_scale: must be a finite positive number, got %g",
                          (double)*global_scale);
    if ((st = expect_same_device(w, "w", codes, "codes")) != W4A16_OK ||
        (st = expect_same_device(w, "w", scales, "scales")) != W4A16_OK ||
        (st = expect_same_device(w, "w", global_scale_out, "global_scale_out")) != W4A16_OK ||
        (st = expect_disjoint(codes, "codes", w, "w")) != W4A16_OK ||
        (st = expect_disjoint(scales, "scales", w, "w")) != W4A16_OK ||
        (st = expect_disjoint(scales, "scales", codes, "codes")) != W4A16_OK ||
        (st = expect_disjoint(global_scale_out, "global_scale_out", w, "w")) != W4A16_OK ||
        (st = expect_disjoint(global_scale_out, "global_scale_out", codes, "codes")) != W4A16_OK ||
        (st = expect_disjoint(global_scale_out, "global_scale_out", scales, "scales")) != W4A16_OK)
        return st;
    if (w->device_type == W4A16_DEVICE_CUDA) {
#if defined(W4A16_WITH_CUDA)
        /* three kernels on `stream`, nothing allocated: codes holds the amax pass's per-CTA
         * maxima before the quantize pass overwrites it */
        return w4a16_cuda_quantize_nvfp4(w->data, w->dtype, n, k, global_scale, (uint8_t *)codes->data,
                                         (uint8_t *)scales->data, (float *)global_scale_out->data,
                                         w->device_id, stream);
#else
        (void)stream;
        return cuda_missing("quantize_nvfp4");
#endif
    }
    return w4a16_quantize_nvfp4_ref(w->data, w->dtype, n, k, global_scale, (uint8_t *)codes->data,
                                    (uint8_t *)scales->data, (float *)global_scale_out->data);
}

w4a16_status w4a16_quantize_mxfp4(const w4a16_view *w, w4a16_view *codes, w4a16_view *scales,
                                  void *stream)
{
    w4a16_status st;
    int64_t n, k, shape[2];
    w4a16_clear_error();
    (void)stream; /* unused in a CPU-only build */
    if ((st = expect_weight_input(w, 32, "MXFP4")) != W4A16_OK) return st;
    n = w->shape[0];
    k = w->shape[1];
    shape[0] = n;
    shape[1] = k / 2;
    if ((st = expect_view(codes, "codes", DTYPE_BIT(W4A16_DTYPE_UINT8), 2, shape)) != W4A16_OK) return st;
    shape[1] = k / 32;
    if ((st = expect_view(scales, "scales", DTYPE_BIT(W4A16_DTYPE_FLOAT8_E8M0) | DTYPE_BIT(W4A16_DTYPE_UINT8), 2,
                          shape)) != W4A16_OK)
        return st;
    if ((st = expect_same_device(w, "w", codes, "codes")) != W4A16_OK ||
        (st = expect_same_device(w, "w", scales, "scales")) != W4A16_OK ||
        (st = expect_disjoint(codes, "codes", w, "w")) != W4A16_OK ||
        (st = expect_disjoint(scales, "scales", w, "w")) != W4A16_OK ||
        (st = expect_disjoint(scales, "scales", codes, "codes")) != W4A16_OK)
        return st;
    if (w->device_type == W4A16_DEVICE_CUDA) {
#if defined(W4A16_WITH_CUDA)
        return w4a16_cuda_quantize_mxfp4(w->data, w->dtype, n, k, (uint8_t *)codes->data, (uint8_t *)scales->data,
                                         w->device_id, stream);
#else
        return cuda_missing("quantize_mxfp4");
#endif
    }
    return w4a16_quantize_mxfp4_ref(w->data, w->dtype, n, k, (uint8_t *)codes->data, (uint8_t *)scales->data);
}

static int valid_int4_group(int64_t group, int64_t k)
{
    return group == 32 || group == 64 || group == 128 || group == k;
}

w4a16_status w4a16_pack_int4(const w4a16_view *w, int64_t group, int symmetric,
                             w4a16_view *codes, w4a16_view *scales, w4a16_view *zero_points,
                             void *stream)
{
    w4a16_status st;
    int64_t n, k, shape[2];
    w4a16_clear_error();
    (void)stream; /* unused in a CPU-only build */
    if ((st = expect_weight_input(w, 2, "INT4 packing")) != W4A16_OK) return st;
    n = w->shape[0];
    k = w->shape[1];
    if (!valid_int4_group(group, k))
        return w4a16_fail(W4A16_ERR_INVALID_ARGUMENT,
                          "group: expected 32, 64, 128 or K (= %lld, per channel), got %lld", (long long)k,
                          (long long)group);
    if (k % group != 0)
        return w4a16_fail(W4A16_ERR_SHAPE, "w: K = %lld is not a multiple of the group size %lld",
                          (long long)k, (long long)group);
    shape[0] = n;
    shape[1] = k / 2;
    if ((st = expect_view(codes, "codes", DTYPE_BIT(W4A16_DTYPE_UINT8), 2, shape)) != W4A16_OK) return st;
    shape[1] = k / group;
    if ((st = expect_view(scales, "scales", HALF_DTYPES, 2, shape)) != W4A16_OK) return st;
    if (!symmetric && (st = expect_view(zero_points, "zero_points", DTYPE_BIT(W4A16_DTYPE_UINT8), 2, shape)) != W4A16_OK)
        return st;
    if ((st = expect_same_device(w, "w", codes, "codes")) != W4A16_OK ||
        (st = expect_same_device(w, "w", scales, "scales")) != W4A16_OK ||
        (!symmetric && (st = expect_same_device(w, "w", zero_points, "zero_points")) != W4A16_OK) ||
        (st = expect_disjoint(codes, "codes", w, "w")) != W4A16_OK ||
        (st = expect_disjoint(scales, "scales", w, "w")) != W4A16_OK ||
        (st = expect_disjoint(scales, "scales", codes, "codes")) != W4A16_OK ||
        (!symmetric && (st = expect_disjoint(zero_points, "zero_points", w, "w")) != W4A16_OK) ||
        (!symmetric && (st = expect_disjoint(zero_points, "zero_points", scales, "scales")) != W4A16_OK) ||
        (!symmetric && (st = expect_disjoint(zero_points, "zero_points", codes, "codes")) != W4A16_OK))
        return st;
    if (w->device_type == W4A16_DEVICE_CUDA) {
#if defined(W4A16_WITH_CUDA)
        return w4a16_cuda_pack_int4(w->data, w->dtype, n, k, group, symmetric, scales->dtype, (uint8_t *)codes->data,
                                    scales->data, symmetric ? NULL : (uint8_t *)zero_points->data, w->device_id,
                                    stream);
#else
        return cuda_missing("pack_int4");
#endif
    }
    return w4a16_pack_int4_ref(w->data, w->dtype, n, k, group, symmetric, scales->dtype, (uint8_t *)codes->data,
                               scales->data, symmetric ? NULL : (uint8_t *)zero_points->data);
}

/* ---- weights, dequantize, gemm ---------------------------------------------------- */

/* Validates a w4a16_weight; sets *n, *k. */
static w4a16_status expect_weight(const w4a16_weight *w, int64_t *n, int64_t *k)
{
    w4a16_status st;
    int64_t shape[2], group;
    unsigned scale_dtypes;
    *n = 0;
    *k = 0;
    if (!w) return w4a16_fail(W4A16_ERR_INVALID_ARGUMENT, "weight: is NULL");
    if ((st = expect_view(&w->codes, "weight.codes", DTYPE_BIT(W4A16_DTYPE_UINT8), 2, NULL)) != W4A16_OK) return st;
    *n = w->codes.shape[0];
    *k = w->codes.shape[1] * 2;
    group = w->group_size;
    if (*n < 1 || *k < 2) return w4a16_fail(W4A16_ERR_SHAPE, "weight.codes: is empty");
    if (w->layout != W4A16_LAYOUT_CANONICAL && w->layout != W4A16_LAYOUT_PREPACKED)
        return w4a16_fail(W4A16_ERR_INVALID_ARGUMENT, "weight.layout: expected W4A16_LAYOUT_CANONICAL (0) or "
                          "W4A16_LAYOUT_PREPACKED (1), got %d", (int)w->layout);
    switch (w->format) {
    case W4A16_FORMAT_NVFP4:
        scale_dtypes = DTYPE_BIT(W4A16_DTYPE_FLOAT8_E4M3FN) | DTYPE_BIT(W4A16_DTYPE_UINT8);
        if (group != 16) return w4a16_fail(W4A16_ERR_INVALID_ARGUMENT, "weight.group_size: NVFP4 uses 16, got %lld", (long long)group);
        break;
    case W4A16_FORMAT_MXFP4:
        scale_dtypes = DTYPE_BIT(W4A16_DTYPE_FLOAT8_E8M0) | DTYPE_BIT(W4A16_DTYPE_UINT8);
        if (group != 32) return w4a16_fail(W4A16_ERR_INVALID_ARGUMENT, "weight.group_size: MXFP4 uses 32, got %lld", (long long)group);
        break;
    case W4A16_FORMAT_INT4:
        scale_dtypes = HALF_DTYPES;
        if (!valid_int4_group(group, *k))
            return w4a16_fail(W4A16_ERR_INVALID_ARGUMENT, "weight.group_size: expected 32, 64, 128 or K, got %lld", (long long)group);
        break;
    default:
        return w4a16_fail(W4A16_ERR_INVALID_ARGUMENT, "weight.format: unknown format %d", (int)w->format);
    }
    if (*k % group != 0)
        return w4a16_fail(W4A16_ERR_SHAPE, "weight: K = %lld is not a multiple of the group size %lld", (long long)*k,
                          (long long)group);
    shape[0] = *n;
    shape[1] = *k / group;
    if ((st = expect_view(&w->scales, "weight.scales", scale_dtypes, 2, shape)) != W4A16_OK) return st;
    if ((st = expect_same_device(&w->codes, "weight.codes", &w->scales, "weight.scales")) != W4A16_OK) return st;
    if (w->format == W4A16_FORMAT_NVFP4) {
        if ((st = expect_scalar_f32(&w->global_scale, "weight.global_scale")) != W4A16_OK) return st;
        if ((st = expect_same_device(&w->codes, "weight.codes", &w->global_scale, "weight.global_scale")) != W4A16_OK)
            return st;
    }
    if (w->zero_points.data) {
        if (w->format != W4A16_FORMAT_INT4)
            return w4a16_fail(W4A16_ERR_INVALID_ARGUMENT, "weight.zero_points: only INT4 has zero points");
        if ((st = expect_view(&w->zero_points, "weight.zero_points", DTYPE_BIT(W4A16_DTYPE_UINT8), 2, shape)) != W4A16_OK)
            return st;
        if ((st = expect_same_device(&w->codes, "weight.codes", &w->zero_points, "weight.zero_points")) != W4A16_OK)
            return st;
    }
    return W4A16_OK;
}

static w4a16_cpu_weight cpu_weight(const w4a16_weight *w, int64_t n, int64_t k)
{
    w4a16_cpu_weight c;
    c.format = w->format;
    c.n = n;
    c.k = k;
    c.group_size = w->group_size;
    c.codes = (const uint8_t *)w->codes.data;
    c.scales = w->scales.data;
    c.scale_dtype = w->scales.dtype;
    c.global_scale = w->format == W4A16_FORMAT_NVFP4 ? *(const float *)w->global_scale.data : 1.0f;
    c.zero_points = (const uint8_t *)w->zero_points.data;
    c.prepacked = w->layout == W4A16_LAYOUT_PREPACKED;
    w4a16_cpu_weight_tables(&c);
    return c;
}

#if defined(W4A16_WITH_CUDA)
/* The CUDA kernels' view of a weight (and, for gemm, of x, bias, y). */
static w4a16_cuda_gemm_args cuda_args(const w4a16_weight *w, int64_t n, int64_t k)
{
    w4a16_cuda_gemm_args a;
    memset(&a, 0, sizeof a);
    a.format = w->format;
    a.n = n;
    a.k = k;
    a.group_size = w->group_size;
    a.codes = (const uint8_t *)w->codes.data;
    a.scales = w->scales.data;
    a.scale_dtype = w->scales.dtype;
    a.global_scale = w->format == W4A16_FORMAT_NVFP4 ? (const float *)w->global_scale.data : NULL;
    a.zero_points = (const uint8_t *)w->zero_points.data;
    a.prepacked = w->layout == W4A16_LAYOUT_PREPACKED;
    a.alpha = 1.0f;
    return a;
}
#endif

static w4a16_status expect_output_apart_from_weight(const w4a16_view *out, const char *name,
                                                    const w4a16_weight *w)
{
    w4a16_status st;
    if ((st = expect_disjoint(out, name, &w->codes, "weight.codes")) != W4A16_OK ||
        (st = expect_disjoint(out, name, &w->scales, "weight.scales")) != W4A16_OK ||
        (st = expect_disjoint(out, name, &w->global_scale, "weight.global_scale")) != W4A16_OK ||
        (st = expect_disjoint(out, name, &w->zero_points, "weight.zero_points")) != W4A16_OK)
        return st;
    return W4A16_OK;
}

w4a16_status w4a16_dequantize(const w4a16_weight *w, w4a16_view *out, void *stream)
{
    w4a16_status st;
    int64_t n, k, shape[2], r;
    w4a16_cpu_weight cw;
    float *row;
    w4a16_clear_error();
    (void)stream; /* unused in a CPU-only build */
    if ((st = expect_weight(w, &n, &k)) != W4A16_OK) return st;
    shape[0] = n;
    shape[1] = k;
    if ((st = expect_view(out, "out", FLOAT_DTYPES, 2, shape)) != W4A16_OK) return st;
    if ((st = expect_same_device(&w->codes, "weight.codes", out, "out")) != W4A16_OK) return st;
    if ((st = expect_output_apart_from_weight(out, "out", w)) != W4A16_OK) return st;
    if (out->device_type == W4A16_DEVICE_CUDA) {
#if defined(W4A16_WITH_CUDA)
        w4a16_cuda_gemm_args a = cuda_args(w, n, k);
        return w4a16_cuda_dequantize(&a, out->dtype, out->data, out->device_id, stream);
#else
        return cuda_missing("dequantize");
#endif
    }
    cw = cpu_weight(w, n, k);
    row = (float *)malloc((size_t)k * sizeof(float));
    if (!row) return w4a16_fail(W4A16_ERR_NO_MEMORY, "dequantize: out of host memory");
    for (r = 0; r < n; r++) {
        w4a16_dequantize_row_ref(&cw, r, row);
        w4a16_store_row_f32(row, out->dtype, k,
                            (char *)out->data + (size_t)(r * k) * w4a16_dtype_size(out->dtype));
    }
    free(row);
    return W4A16_OK;
}

/* ---- prepack ------------------------------------------------------------------------ */

static w4a16_status convert_layout(w4a16_format format, const w4a16_view *codes, w4a16_view *out, int to_prepacked,
                                   void *stream)
{
    w4a16_status st;
    int is_int4;
    w4a16_clear_error();
    (void)stream; /* unused in a CPU-only build */
    if (format != W4A16_FORMAT_NVFP4 && format != W4A16_FORMAT_MXFP4 && format != W4A16_FORMAT_INT4)
        return w4a16_fail(W4A16_ERR_INVALID_ARGUMENT, "format: expected nvfp4, mxfp4 or int4 (0, 1, 2), got %d",
                          (int)format);
    is_int4 = format == W4A16_FORMAT_INT4;
    if ((st = expect_view(codes, "codes", DTYPE_BIT(W4A16_DTYPE_UINT8), 2, NULL)) != W4A16_OK) return st;
    if (codes->shape[1] % 4 != 0)
        return w4a16_fail(W4A16_ERR_SHAPE, "codes: expected [N, K/2] with K a multiple of 8, got K/2 = %lld",
                          (long long)codes->shape[1]);
    if ((st = expect_view(out, "out", DTYPE_BIT(W4A16_DTYPE_UINT8), 2, codes->shape)) != W4A16_OK ||
        (st = expect_same_device(codes, "codes", out, "out")) != W4A16_OK ||
        (st = expect_disjoint(out, "out", codes, "codes")) != W4A16_OK)
        return st;
    if (codes->device_type == W4A16_DEVICE_CUDA) {
#if defined(W4A16_WITH_CUDA)
        return w4a16_cuda_prepack((const uint8_t *)codes->data, (uint8_t *)out->data, codes->shape[0], codes->shape[1],
                                  to_prepacked, is_int4, codes->device_id, stream);
#else
        return cuda_missing(to_prepacked ? "prepack" : "unprepack");
#endif
    }
    w4a16_prepack_ref((const uint8_t *)codes->data, (uint8_t *)out->data, codes->shape[0], codes->shape[1],
                      to_prepacked, is_int4);
    return W4A16_OK;
}

w4a16_status w4a16_prepack(w4a16_format format, const w4a16_view *codes, w4a16_view *out, void *stream)
{
    return convert_layout(format, codes, out, 1, stream);
}

w4a16_status w4a16_unprepack(w4a16_format format, const w4a16_view *codes, w4a16_view *out, void *stream)
{
    return convert_layout(format, codes, out, 0, stream);
}

/* ---- gemm ---------------------------------------------------------------------------- */

int w4a16_gemm_config_count(void)
{
#if defined(W4A16_WITH_CUDA)
    return w4a16_cuda_gemm_config_count();
#else
    return 0;
#endif
}

const char *w4a16_gemm_config_name(int config)
{
#if defined(W4A16_WITH_CUDA)
    return config >= 0 && config < w4a16_cuda_gemm_config_count() ? w4a16_cuda_gemm_config_name(config) : NULL;
#else
    (void)config;
    return NULL;
#endif
}

/* Checks the weight and x of a gemm; sets *m, *n, *k. */
static w4a16_status expect_gemm_operands(const w4a16_view *x, const w4a16_weight *w, int config, int64_t *m,
                                         int64_t *n, int64_t *k)
{
    w4a16_status st;
    if ((st = expect_weight(w, n, k)) != W4A16_OK) return st;
    if ((st = expect_view(x, "x", FLOAT_DTYPES, 2, NULL)) != W4A16_OK) return st;
    if (x->shape[1] != *k)
        return w4a16_fail(W4A16_ERR_SHAPE, "x: has K = %lld but the weight has K = %lld (in_features)",
                          (long long)x->shape[1], (long long)*k);
    *m = x->shape[0];
    if ((st = expect_same_device(&w->codes, "weight.codes", x, "x")) != W4A16_OK) return st;
    if (config < W4A16_GEMM_AUTO)
        return w4a16_fail(W4A16_ERR_INVALID_ARGUMENT, "config: expected W4A16_GEMM_AUTO (-1) or a config index, got %d",
                          config);
    if (x->device_type == W4A16_DEVICE_CUDA && x->dtype == W4A16_DTYPE_FLOAT32)
        return w4a16_fail(W4A16_ERR_DTYPE, "x: expected dtype float16 or bfloat16 on CUDA, got float32");
    return W4A16_OK;
}

w4a16_status w4a16_gemm_workspace(const w4a16_view *x, const w4a16_weight *w, int config, size_t *bytes)
{
    w4a16_status st;
    int64_t m, n, k;
    w4a16_clear_error();
    if (!bytes) return w4a16_fail(W4A16_ERR_INVALID_ARGUMENT, "bytes: is NULL");
    *bytes = 0;
    if ((st = expect_gemm_operands(x, w, config, &m, &n, &k)) != W4A16_OK) return st;
    if (x->device_type == W4A16_DEVICE_CUDA) {
#if defined(W4A16_WITH_CUDA)
        w4a16_cuda_gemm_args a = cuda_args(w, n, k);
        int chosen;
        a.m = m;
        a.x = x->data;
        a.x_dtype = x->dtype;
        a.y = x->data; /* alignment stand-in: y is allocated like x */
        if (m == 0) return W4A16_OK;
        return w4a16_cuda_gemm_plan(&a, config, (size_t)-1, x->device_id, &chosen, bytes);
#else
        return cuda_missing("gemm");
#endif
    }
    return W4A16_OK;
}

#if defined(W4A16_WITH_CUDA)
/* The CUDA gemm's workspace (raw bytes, written by a K split's partial sums): 16-byte
 * aligned, as the partial sums go out in 16-byte stores, and apart from every operand,
 * which the kernels read while they write it. */
static w4a16_status expect_workspace(void *workspace, size_t bytes, const w4a16_view *x, const w4a16_view *bias,
                                     const w4a16_view *y, const w4a16_weight *w)
{
    w4a16_view ws;
    w4a16_status st;
    if (!workspace || bytes == 0) return W4A16_OK;
    if ((uintptr_t)workspace % 16 != 0)
        return w4a16_fail(W4A16_ERR_LAYOUT, "workspace: must be 16-byte aligned, got address %p", workspace);
    memset(&ws, 0, sizeof ws);
    ws.data = workspace;
    ws.dtype = W4A16_DTYPE_UINT8;
    ws.ndim = 1;
    ws.shape[0] = (int64_t)bytes;
    ws.strides[0] = 1;
    ws.device_type = y->device_type;
    ws.device_id = y->device_id;
    if ((st = expect_disjoint(&ws, "workspace", x, "x")) != W4A16_OK ||
        (st = expect_disjoint(&ws, "workspace", y, "y")) != W4A16_OK ||
        (st = expect_disjoint(&ws, "workspace", bias, "bias")) != W4A16_OK ||
        (st = expect_output_apart_from_weight(&ws, "workspace", w)) != W4A16_OK)
        return st;
    return W4A16_OK;
}
#endif

w4a16_status w4a16_gemm(const w4a16_view *x, const w4a16_weight *w, const w4a16_view *bias,
                        float alpha, w4a16_view *y, void *workspace, size_t workspace_bytes,
                        void *stream)
{
    return w4a16_gemm_config(x, w, bias, alpha, y, W4A16_GEMM_AUTO, workspace, workspace_bytes, stream);
}

/* gelu_tanh(gate) * up over the row pairs of h [m, n] (blocks of W4A16_GATED_ROWS) -> y
 * [m, n/2], both of `dtype`; fp32 math, one rounding (w4a16_gemm_geglu). */
static w4a16_status geglu_rows_cpu(const void *h, w4a16_dtype dtype, int64_t m, int64_t n, void *y)
{
    const size_t elem = w4a16_dtype_size(dtype);
    float *row = (float *)malloc((size_t)n * sizeof(float) + (size_t)(n / 2) * sizeof(float));
    float *out;
    int64_t r, c;
    if (!row) return w4a16_fail(W4A16_ERR_NO_MEMORY, "gemm_geglu: out of host memory");
    out = row + n;
    for (r = 0; r < m; r++) {
        w4a16_load_row_f32((const char *)h + (size_t)(r * n) * elem, dtype, n, row);
        for (c = 0; c < n / 2; c++) {
            const int64_t gate = 2 * W4A16_GATED_ROWS * (c / W4A16_GATED_ROWS) + c % W4A16_GATED_ROWS;
            /* 0.5 v (1 + tanh(z)) written as v / (1 + exp(-2z)): no cancellation near 0 */
            const float v = row[gate];
            const float act = v / (1.0f + expf(-1.5957691216057308f * (v + 0.044715f * v * v * v)));
            out[c] = act * row[gate + W4A16_GATED_ROWS];
        }
        w4a16_store_row_f32(out, dtype, n / 2, (char *)y + (size_t)(r * (n / 2)) * elem);
    }
    free(row);
    return W4A16_OK;
}

/* w4a16_gemm_config (geglu 0) and w4a16_gemm_geglu (1): y [m, n] or [m, n / 2]. */
static w4a16_status gemm_any(const w4a16_view *x, const w4a16_weight *w, const w4a16_view *bias, float alpha,
                             w4a16_view *y, int geglu, int config, void *workspace, size_t workspace_bytes,
                             void *stream)
{
    w4a16_status st;
    int64_t n, k, m, shape[2];
    w4a16_cpu_weight cw;
    void *h;
    w4a16_clear_error();
    (void)workspace;
    (void)workspace_bytes;
    (void)stream; /* unused in a CPU-only build */
    if ((st = expect_gemm_operands(x, w, config, &m, &n, &k)) != W4A16_OK) return st;
    if (geglu && n % (2 * W4A16_GATED_ROWS) != 0)
        return w4a16_fail(W4A16_ERR_SHAPE,
                          "weight: gemm_geglu expects N a multiple of %d (gate and up rows interleaved in blocks of %d), got N = %lld",
                          2 * W4A16_GATED_ROWS, W4A16_GATED_ROWS, (long long)n);
    shape[0] = m;
    shape[1] = geglu ? n / 2 : n;
    if ((st = expect_view(y, "y", DTYPE_BIT(x->dtype), 2, shape)) != W4A16_OK) return st;
    if (bias && bias->data) {
        shape[0] = n;
        if ((st = expect_view(bias, "bias", DTYPE_BIT(x->dtype), 1, shape)) != W4A16_OK) return st;
    }
    if (!isfinite(alpha)) return w4a16_fail(W4A16_ERR_VALUE, "alpha: must be finite, got %g", (double)alpha);
    if ((st = expect_same_device(&w->codes, "weight.codes", y, "y")) != W4A16_OK ||
        (st = expect_same_device(&w->codes, "weight.codes", bias, "bias")) != W4A16_OK ||
        (st = expect_disjoint(y, "y", x, "x")) != W4A16_OK ||
        (st = expect_disjoint(y, "y", bias, "bias")) != W4A16_OK ||
        (st = expect_output_apart_from_weight(y, "y", w)) != W4A16_OK)
        return st;
    if (y->device_type == W4A16_DEVICE_CUDA) {
#if defined(W4A16_WITH_CUDA)
        w4a16_cuda_gemm_args a = cuda_args(w, n, k);
        if ((st = expect_workspace(workspace, workspace_bytes, x, bias, y, w)) != W4A16_OK) return st;
        a.m = m;
        a.x = x->data;
        a.x_dtype = x->dtype;
        a.bias = bias && bias->data ? bias->data : NULL;
        a.alpha = alpha;
        a.y = y->data;
        a.geglu = geglu;
        return w4a16_cuda_gemm(&a, config, workspace, workspace_bytes, y->device_id, stream);
#else
        return cuda_missing(geglu ? "gemm_geglu" : "gemm");
#endif
    }
    cw = cpu_weight(w, n, k);
    if (!geglu) return w4a16_gemm_cpu(x->data, x->dtype, m, &cw, bias && bias->data ? bias->data : NULL, alpha, y->data);
    /* h in x's dtype, as the gemm would write it, then the pairs */
    h = malloc((size_t)(m * n) * w4a16_dtype_size(x->dtype) + 1);
    if (!h) return w4a16_fail(W4A16_ERR_NO_MEMORY, "gemm_geglu: out of host memory");
    st = w4a16_gemm_cpu(x->data, x->dtype, m, &cw, bias && bias->data ? bias->data : NULL, alpha, h);
    if (st == W4A16_OK) st = geglu_rows_cpu(h, x->dtype, m, n, y->data);
    free(h);
    return st;
}

w4a16_status w4a16_gemm_config(const w4a16_view *x, const w4a16_weight *w, const w4a16_view *bias,
                               float alpha, w4a16_view *y, int config, void *workspace,
                               size_t workspace_bytes, void *stream)
{
    return gemm_any(x, w, bias, alpha, y, 0, config, workspace, workspace_bytes, stream);
}

w4a16_status w4a16_gemm_geglu(const w4a16_view *x, const w4a16_weight *w, const w4a16_view *bias,
                              float alpha, w4a16_view *y, int config, void *workspace,
                              size_t workspace_bytes, void *stream)
{
    return gemm_any(x, w, bias, alpha, y, 1, config, workspace, workspace_bytes, stream);
}
