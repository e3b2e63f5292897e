/* rows.c — dtype facts and row conversions between storage dtypes and fp32. */
#include <math.h>

#include "codecs.h"
#include "core.h"

size_t w4a16_dtype_size(w4a16_dtype dtype)
{
    switch (dtype) {
    case W4A16_DTYPE_FLOAT32: return 4;
    case W4A16_DTYPE_FLOAT16:
    case W4A16_DTYPE_BFLOAT16: return 2;
    case W4A16_DTYPE_UINT8:
    case W4A16_DTYPE_FLOAT8_E4M3FN:
    case W4A16_DTYPE_FLOAT8_E8M0: return 1;
    default: return 0;
    }
}

const char *w4a16_dtype_name(w4a16_dtype dtype)
{
    switch (dtype) {
    case W4A16_DTYPE_FLOAT32: return "float32";
    case W4A16_DTYPE_FLOAT16: return "float16";
    case W4A16_DTYPE_BFLOAT16: return "bfloat16";
    case W4A16_DTYPE_UINT8: return "uint8";
    case W4A16_DTYPE_FLOAT8_E4M3FN: return "float8_e4m3fn";
    case W4A16_DTYPE_FLOAT8_E8M0: return "float8_e8m0fnu";
    default: return "unsupported";
    }
}

void w4a16_load_row_f32(const void *src, w4a16_dtype dtype, int64_t count, float *dst)
{
    int64_t i;
    if (dtype == W4A16_DTYPE_FLOAT32) {
        memcpy(dst, src, (size_t)count * sizeof(float));
    } else if (dtype == W4A16_DTYPE_BFLOAT16) {
        const uint16_t *h = (const uint16_t *)src;
        for (i = 0; i < count; i++) dst[i] = w4a16_bf16_to_f32(h[i]);
    } else {
        const uint16_t *h = (const uint16_t *)src;
        for (i = 0; i < count; i++) dst[i] = w4a16_f16_to_f32(h[i]);
    }
}

void w4a16_store_row_f32(const float *src, w4a16_dtype dtype, int64_t count, void *dst)
{
    int64_t i;
    if (dtype == W4A16_DTYPE_FLOAT32) {
        memcpy(dst, src, (size_t)count * sizeof(float));
    } else if (dtype == W4A16_DTYPE_BFLOAT16) {
        uint16_t *h = (uint16_t *)dst;
        for (i = 0; i < count; i++) h[i] = w4a16_f32_to_bf16(src[i]);
    } else {
        uint16_t *h = (uint16_t *)dst;
        for (i = 0; i < count; i++) h[i] = w4a16_f32_to_f16(src[i]);
    }
}

int64_t w4a16_find_nonfinite(const float *row, int64_t count)
{
    int64_t i;
    for (i = 0; i < count; i++)
        if (!isfinite(row[i])) return i;
    return -1;
}
