/*
 * quantize_ref.c — reference quantizers and dequantizer: the specification of each
 * format (DESIGN.md, "Formats"). Plain loops, one row at a time, fp32 arithmetic.
 *
 * Each quantizer loads a row into an fp32 buffer, rejects NaN/Inf, then walks the row
 * block by block: block amax -> block scale (stored in its own format) -> codes computed
 * against the *stored* scale, so dequantization reproduces exactly what was rounded.
 */
#include <math.h>
#include <stdlib.h>

#include "codecs.h"
#include "core.h"

#define NVFP4_BLOCK 16
#define MXFP4_BLOCK 32

static float block_amax(const float *x, int64_t count)
{
    float amax = 0.0f;
    int64_t i;
    for (i = 0; i < count; i++) {
        float a = fabsf(x[i]);
        if (a > amax) amax = a;
    }
    return amax;
}

/* Loads row `row` of w into buf and fails on the first NaN/Inf. */
static w4a16_status load_finite_row(const void *w, w4a16_dtype dtype, int64_t k, int64_t row,
                                    float *buf)
{
    const char *base = (const char *)w + (size_t)row * (size_t)k * w4a16_dtype_size(dtype);
    int64_t bad;
    w4a16_load_row_f32(base, dtype, k, buf);
    bad = w4a16_find_nonfinite(buf, k);
    if (bad >= 0)
        return w4a16_fail(W4A16_ERR_VALUE, "w: contains %s at [%lld, %lld]; weights must be finite",
                          isnan(buf[bad]) ? "NaN" : "Inf", (long long)row, (long long)bad);
    return W4A16_OK;
}

static void pack_pair(uint8_t *dst, int64_t i, uint8_t q)
{
    /* element 2j in the low nibble of byte j */
    if (i & 1) dst[i >> 1] = (uint8_t)(dst[i >> 1] | (q << 4));
    else dst[i >> 1] = (uint8_t)(q & 0xF);
}

w4a16_status w4a16_quantize_nvfp4_ref(const void *w, w4a16_dtype dtype, int64_t n, int64_t k,
                                      const float *global_scale, uint8_t *codes,
                                      uint8_t *scales, float *global_scale_out)
{
    w4a16_status st = W4A16_OK;
    float *row = (float *)malloc((size_t)k * sizeof(float));
    float gs, amax = 0.0f;
    int64_t r, b, i;

    if (!row) return w4a16_fail(W4A16_ERR_NO_MEMORY, "quantize_nvfp4: out of host memory");

    /* pass 1: the whole-tensor amax (also the NaN/Inf check) */
    for (r = 0; r < n && st == W4A16_OK; r++) {
        st = load_finite_row(w, dtype, k, r, row);
        if (st == W4A16_OK) {
            float a = block_amax(row, k);
            if (a > amax) amax = a;
        }
    }
    if (st != W4A16_OK) goto done;
    gs = global_scale ? *global_scale : w4a16_nvfp4_global_scale(amax);
    *global_scale_out = gs;

    /* pass 2: block scales, then codes against the stored (decoded) scale */
    for (r = 0; r < n; r++) {
        uint8_t *qrow = codes + (size_t)r * (size_t)(k / 2);
        uint8_t *srow = scales + (size_t)r * (size_t)(k / NVFP4_BLOCK);
        w4a16_load_row_f32((const char *)w + (size_t)r * (size_t)k * w4a16_dtype_size(dtype),
                           dtype, k, row);
        for (b = 0; b < k / NVFP4_BLOCK; b++) {
            const float *x = row + b * NVFP4_BLOCK;
            float ba = block_amax(x, NVFP4_BLOCK);
            uint8_t sc = w4a16_nvfp4_scale_code(ba, gs);
            float denom = w4a16_e4m3_decode(sc) * gs;
            srow[b] = sc;
            for (i = 0; i < NVFP4_BLOCK; i++) {
                uint8_t q = ba == 0.0f ? 0 : w4a16_e2m1_encode(x[i] / denom);
                pack_pair(qrow, b * NVFP4_BLOCK + i, q);
            }
        }
    }
done:
    free(row);
    return st;
}

w4a16_status w4a16_quantize_mxfp4_ref(const void *w, w4a16_dtype dtype, int64_t n, int64_t k,
                                      uint8_t *codes, uint8_t *scales)
{
    w4a16_status st = W4A16_OK;
    float *row = (float *)malloc((size_t)k * sizeof(float));
    int64_t r, b, i;

    if (!row) return w4a16_fail(W4A16_ERR_NO_MEMORY, "quantize_mxfp4: out of host memory");
    for (r = 0; r < n && st == W4A16_OK; r++) {
        uint8_t *qrow = codes + (size_t)r * (size_t)(k / 2);
        uint8_t *srow = scales + (size_t)r * (size_t)(k / MXFP4_BLOCK);
        st = load_finite_row(w, dtype, k, r, row);
        for (b = 0; st == W4A16_OK && b < k / MXFP4_BLOCK; b++) {
            const float *x = row + b * MXFP4_BLOCK;
            uint8_t sc = w4a16_mxfp4_scale_code(block_amax(x, MXFP4_BLOCK));
            srow[b] = sc;
            for (i = 0; i < MXFP4_BLOCK; i++)
                pack_pair(qrow, b * MXFP4_BLOCK + i,
                          w4a16_e2m1_encode(ldexpf(x[i], W4A16_E8M0_ONE - (int)sc)));
        }
    }
    free(row);
    return st;
}

/* Rounds a scale to its storage dtype; returns the stored bits and the decoded value. */
static uint16_t store_scale(float s, w4a16_dtype scale_dtype, float *decoded)
{
    uint16_t bits;
    if (scale_dtype == W4A16_DTYPE_BFLOAT16) {
        bits = w4a16_f32_to_bf16(s);
        *decoded = w4a16_bf16_to_f32(bits);
    } else {
        bits = w4a16_f32_to_f16(s);
        *decoded = w4a16_f16_to_f32(bits);
    }
    return bits;
}

static int clamp_int(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

/*
 * INT4 scale rules (DESIGN.md):
 *   symmetric   s = amax / 7 (so -8 stays unused), q = clamp(rne(x / s), -8, 7)
 *   asymmetric  range widened to include 0: lo = min(min, 0), hi = max(max, 0);
 *               s = (hi - lo) / 15, z = clamp(rne(-lo / s), 0, 15),
 *               q = clamp(rne(x / s) + z, 0, 15)
 * An all-zero group stores s = 1 (z = 0, codes 0). A scale that underflows the storage
 * dtype to 0 stores 0 and codes that dequantize to 0; one that overflows it is an error.
 */
w4a16_status w4a16_pack_int4_ref(const void *w, w4a16_dtype dtype, int64_t n, int64_t k,
                                 int64_t group, int symmetric, w4a16_dtype scale_dtype,
                                 uint8_t *codes, void *scales, uint8_t *zero_points)
{
    w4a16_status st = W4A16_OK;
    float *row = (float *)malloc((size_t)k * sizeof(float));
    int64_t groups = k / group, r, g, i;

    if (!row) return w4a16_fail(W4A16_ERR_NO_MEMORY, "pack_int4: out of host memory");
    for (r = 0; r < n && st == W4A16_OK; r++) {
        uint8_t *qrow = codes + (size_t)r * (size_t)(k / 2);
        uint16_t *srow = (uint16_t *)scales + (size_t)r * (size_t)groups;
        st = load_finite_row(w, dtype, k, r, row);
        for (g = 0; st == W4A16_OK && g < groups; g++) {
            const float *x = row + g * group;
            float lo = 0.0f, hi = 0.0f, s, sd;
            int z = 0;
            for (i = 0; i < group; i++) {
                if (x[i] < lo) lo = x[i];
                if (x[i] > hi) hi = x[i];
            }
            if (symmetric) s = fmaxf(hi, -lo) / 7.0f;
            else s = (hi - lo) / 15.0f;
            if (s == 0.0f) s = 1.0f;
            srow[g] = store_scale(s, scale_dtype, &sd);
            if (isinf(sd)) {
                st = w4a16_fail(W4A16_ERR_VALUE,
                                "w: group [%lld, %lld:%lld] needs scale %g, beyond %s; "
                                "use bfloat16 scales",
                                (long long)r, (long long)(g * group), (long long)((g + 1) * group),
                                (double)s, w4a16_dtype_name(scale_dtype));
                break;
            }
            if (!symmetric && sd > 0.0f) z = clamp_int((int)nearbyintf(-lo / sd), 0, 15);
            if (zero_points) zero_points[(size_t)r * (size_t)groups + (size_t)g] = (uint8_t)z;
            for (i = 0; i < group; i++) {
                int q = sd > 0.0f ? (int)nearbyintf(x[i] / sd) : 0;
                q = symmetric ? clamp_int(q, -8, 7) : clamp_int(q + z, 0, 15);
                pack_pair(qrow, g * group + i, (uint8_t)(q & 0xF));
            }
        }
    }
    free(row);
    return st;
}

void w4a16_cpu_weight_tables(w4a16_cpu_weight *w)
{
    int i;
    for (i = 0; i < 16; i++)
        w->code_values[i] = w4a16_code_value((uint8_t)i, w->format == W4A16_FORMAT_INT4, w->zero_points != NULL);
    for (i = 0; i < 256; i++) {
        if (w->format == W4A16_FORMAT_NVFP4)
            w->byte_scales[i] = w4a16_e4m3_decode((uint8_t)i) * w->global_scale;
        else if (w->format == W4A16_FORMAT_MXFP4)
            w->byte_scales[i] = w4a16_e8m0_decode((uint8_t)i);
        else
            w->byte_scales[i] = 0.0f; /* int4 scales are 16-bit floats, decoded directly */
    }
}

/* value = (code_value - zero_point) * scale; NVFP4's scale is e4m3(s) * global_scale,
 * rounded to fp32 once (the order an ONNX double DequantizeLinear uses). */
void w4a16_dequantize_row_ref(const w4a16_cpu_weight *w, int64_t row, float *dst)
{
    const uint8_t *q = w->codes + (size_t)row * (size_t)(w->k / 2);
    const float *values = w->code_values;
    const int is_int4 = w->format == W4A16_FORMAT_INT4;
    int64_t groups = w->k / w->group_size, half = w->group_size / 2, g, j;

    for (g = 0; g < groups; g++) {
        size_t index = (size_t)row * (size_t)groups + (size_t)g;
        const float s = w4a16_cpu_scale(w, index);
        const float z = w->zero_points ? (float)w->zero_points[index] : 0.0f;
        const uint8_t *qg = q + g * half;
        float *d = dst + g * w->group_size;
        if (w->prepacked) {
            for (j = 0; j < w->group_size; j++)
                d[j] = (values[w4a16_code_at(q, g * w->group_size + j, w->k, 1, is_int4)] - z) * s;
            continue;
        }
        for (j = 0; j < half; j++) {
            const uint8_t b = qg[j];
            d[2 * j] = (values[b & 0xF] - z) * s;     /* element 2j: low nibble */
            d[2 * j + 1] = (values[b >> 4] - z) * s;
        }
    }
}

void w4a16_prepack_ref(const uint8_t *codes, uint8_t *out, int64_t n, int64_t bytes_per_row, int to_prepacked,
                       int is_int4)
{
    const int64_t chunks = (bytes_per_row + 15) / 16;
    int64_t row, c;
    for (row = 0; row < n; row++)
        for (c = 0; c < chunks; c++) {
            const size_t at = (size_t)row * (size_t)bytes_per_row + 16 * (size_t)c;
            w4a16_prepack_chunk(codes + at, out + at, w4a16_prepack_chunk_words(bytes_per_row, c), to_prepacked,
                                is_int4);
        }
}
