/*
 * gemm_cpu.c — y = alpha * x @ dequant(W)^T + bias on the CPU.
 *
 * Plan: the N rows of W are split into contiguous ranges, one per thread. Each thread
 * dequantizes a panel of PANEL_ROWS rows of W into fp32 (dequantize_row: the reference
 * row decoder's arithmetic, a byte of codes at a time) and multiplies it with all rows of
 * x, converted to fp32 once up front. The inner product runs on a 2 x 4 register
 * tile (2 rows of x, 4 rows of W), 8 lanes along K, which compilers turn into SIMD FMAs;
 * on x86-64 an AVX2/FMA clone is selected at load time where the CPU has it.
 * Accumulation is fp32; the epilogue applies alpha and bias and rounds to x's dtype.
 */
#include <stdlib.h>
#include <string.h>

#include "codecs.h"
#include "core.h"

#if !defined(_WIN32)
#include <pthread.h>
#include <unistd.h>
#define W4A16_HAVE_PTHREADS 1
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define W4A16_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define W4A16_SIMD_CLONES
#endif

#define PANEL_ROWS 64
#define LANES 8
#define MAX_THREADS 256
/* Below this much work per thread (multiply-adds, plus decoding counted as 8 rows of x),
 * another thread costs more than it saves. */
#define MIN_WORK_PER_THREAD (1 << 21)

/* The values of a byte's two codes before scaling: element 2j (low nibble), then 2j + 1. */
typedef float code_pair_values[256][2];

typedef struct {
    const float *x;              /* [m, k] fp32 */
    int64_t m;
    const w4a16_cpu_weight *w;
    const code_pair_values *pairs; /* of w's format */
    const float *bias;           /* [n] fp32 or NULL */
    float alpha;
    w4a16_dtype dtype;
    void *y;
    int64_t n_begin, n_end;
    w4a16_status status;
} gemm_task;

/* 8 floats in one value; GCC/Clang lower it to one AVX register in the x86-64-v3 clone
 * (two SSE registers otherwise, NEON on Arm). */
typedef float v8f __attribute__((vector_size(32)));

typedef float v2f __attribute__((vector_size(8)));

static inline __attribute__((always_inline)) v8f load8(const float *p)
{
    v8f v;
    memcpy(&v, p, sizeof v); /* unaligned load */
    return v;
}

static inline __attribute__((always_inline)) float sum8(v8f v)
{
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

/* Dot products of rows x0, x1 (x1 may equal x0) with 4 consecutive rows of w [4, k]:
 * 8 accumulators held in registers, one pass over K. */
W4A16_SIMD_CLONES
static void dot_2x4(const float *x0, const float *x1, const float *w, int64_t k, float out[2][4])
{
    const v8f zero = {0};
    v8f a00 = zero, a01 = zero, a02 = zero, a03 = zero, a10 = zero, a11 = zero, a12 = zero, a13 = zero;
    int64_t kk;
    int i, j;
    for (kk = 0; kk + LANES <= k; kk += LANES) {
        const v8f u = load8(x0 + kk), v = load8(x1 + kk);
        const v8f w0 = load8(w + kk), w1 = load8(w + k + kk), w2 = load8(w + 2 * k + kk), w3 = load8(w + 3 * k + kk);
        a00 += u * w0; a01 += u * w1; a02 += u * w2; a03 += u * w3;
        a10 += v * w0; a11 += v * w1; a12 += v * w2; a13 += v * w3;
    }
    out[0][0] = sum8(a00); out[0][1] = sum8(a01); out[0][2] = sum8(a02); out[0][3] = sum8(a03);
    out[1][0] = sum8(a10); out[1][1] = sum8(a11); out[1][2] = sum8(a12); out[1][3] = sum8(a13);
    for (; kk < k; kk++) /* K tail (K is even but need not be a multiple of 8) */
        for (j = 0; j < 4; j++)
            for (i = 0; i < 2; i++) out[i][j] += (i ? x1 : x0)[kk] * w[j * k + kk];
}

static void fill_code_pairs(const w4a16_cpu_weight *w, code_pair_values pairs)
{
    int b;
    for (b = 0; b < 256; b++) {
        pairs[b][0] = w->code_values[b & 0xF];
        pairs[b][1] = w->code_values[b >> 4];
    }
}

/* A whole prepacked chunk (4 words, 32 codes) back in canonical order: word w holds pair
 * p = 4j + w (elements 2p, 2p + 1) in nibbles j and j + 4 (codecs.h), which become byte p.
 * The same as w4a16_prepack_chunk(src, dst, 4, 0), with shifts instead of a walk over
 * nibble indices (that walk cost more than the rest of the row's decoding). */
static void unprepack_whole_chunk(const uint8_t *src, uint8_t *dst)
{
    int w, j;
    for (w = 0; w < 4; w++) {
        const uint32_t u = (uint32_t)src[4 * w] | (uint32_t)src[4 * w + 1] << 8 | (uint32_t)src[4 * w + 2] << 16 |
                           (uint32_t)src[4 * w + 3] << 24; /* little-endian, whatever the host */
        for (j = 0; j < 4; j++) dst[4 * j + w] = (uint8_t)(((u >> (4 * j)) & 0x0Fu) | ((u >> (4 * j + 12)) & 0xF0u));
    }
}

/* Row `row` of W in fp32: the values w4a16_dequantize_row_ref gives, bit for bit (the same
 * (value - zero) * scale per element), with one table lookup per byte of codes. A
 * prepacked row is first put back in canonical order, chunk by chunk, into `canonical`
 * (k / 2 bytes), rather than each code being looked for in its chunk: that made the
 * modules' weights (prepacked) 4x slower to multiply on the CPU than canonical ones. */
static void dequantize_row(const w4a16_cpu_weight *w, const code_pair_values pairs, int64_t row, uint8_t *canonical,
                           float *dst)
{
    const int64_t bytes = w->k / 2, groups = w->k / w->group_size, half = w->group_size / 2;
    const uint8_t *q = w->codes + (size_t)row * (size_t)bytes;
    int64_t c, g, j;
    if (w->prepacked) {
        for (c = 0; 16 * c < bytes; c++) {
            const int words = w4a16_prepack_chunk_words(bytes, c);
            if (words == 4) unprepack_whole_chunk(q + 16 * c, canonical + 16 * c);
            else w4a16_prepack_chunk(q + 16 * c, canonical + 16 * c, words, 0); /* a row's short last chunk */
        }
        q = canonical;
    }
    for (g = 0; g < groups; g++) {
        const size_t index = (size_t)row * (size_t)groups + (size_t)g;
        const float s = w4a16_cpu_scale(w, index);
        const float z = w->zero_points ? (float)w->zero_points[index] : 0.0f;
        const v2f z2 = {z, z}, s2 = {s, s};
        const uint8_t *qg = q + g * half;
        float *d = dst + g * w->group_size;
        for (j = 0; j < half; j++) {
            v2f v;
            memcpy(&v, pairs[qg[j]], sizeof v); /* both codes of the byte in one load */
            v = (v - z2) * s2;
            memcpy(d + 2 * j, &v, sizeof v);
        }
    }
}

static void store_output(const gemm_task *t, int64_t row, int64_t col, float acc)
{
    float v = t->alpha * acc + (t->bias ? t->bias[col] : 0.0f);
    int64_t n = t->w->n;
    if (t->dtype == W4A16_DTYPE_FLOAT32) ((float *)t->y)[row * n + col] = v;
    else if (t->dtype == W4A16_DTYPE_BFLOAT16) ((uint16_t *)t->y)[row * n + col] = w4a16_f32_to_bf16(v);
    else ((uint16_t *)t->y)[row * n + col] = w4a16_f32_to_f16(v);
}

static void *gemm_range(void *arg)
{
    gemm_task *t = (gemm_task *)arg;
    int64_t k = t->w->k, n0, m0, j0, j;
    float *panel = (float *)malloc((size_t)PANEL_ROWS * (size_t)k * sizeof(float));
    uint8_t *canonical = (uint8_t *)malloc((size_t)k / 2);
    if (!panel || !canonical) {
        t->status = W4A16_ERR_NO_MEMORY;
        goto done;
    }
    for (n0 = t->n_begin; n0 < t->n_end; n0 += PANEL_ROWS) {
        int64_t rows = t->n_end - n0 < PANEL_ROWS ? t->n_end - n0 : PANEL_ROWS;
        for (j = 0; j < rows; j++) dequantize_row(t->w, *t->pairs, n0 + j, canonical, panel + j * k);
        /* pad the panel to a multiple of 4 rows with zeros so the tile never reads past it */
        for (j = rows; j < ((rows + 3) & ~(int64_t)3); j++) memset(panel + j * k, 0, (size_t)k * sizeof(float));
        for (m0 = 0; m0 < t->m; m0 += 2) {
            const float *x0 = t->x + m0 * k;
            const float *x1 = m0 + 1 < t->m ? x0 + k : x0;
            for (j0 = 0; j0 < rows; j0 += 4) {
                float out[2][4];
                int jj;
                dot_2x4(x0, x1, panel + j0 * k, k, out);
                for (jj = 0; jj < 4 && j0 + jj < rows; jj++) {
                    store_output(t, m0, n0 + j0 + jj, out[0][jj]);
                    if (m0 + 1 < t->m) store_output(t, m0 + 1, n0 + j0 + jj, out[1][jj]);
                }
            }
        }
    }
done:
    free(panel);
    free(canonical);
    return NULL;
}

static int64_t thread_count(int64_t m, int64_t n, int64_t k)
{
    int64_t threads = 1, by_work;
    const char *env = getenv("W4A16_NUM_THREADS");
#if W4A16_HAVE_PTHREADS
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    threads = cores > 0 ? cores : 1;
#endif
    if (env && atoi(env) > 0) threads = atoi(env);
    by_work = (m + 8) * n * k / MIN_WORK_PER_THREAD;
    if (threads > by_work) threads = by_work;
    if (threads > n / 4) threads = n / 4;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    return threads < 1 ? 1 : threads;
}

static w4a16_status run_tasks(gemm_task *tasks, int64_t count)
{
    w4a16_status st = W4A16_OK;
    int64_t i;
#if W4A16_HAVE_PTHREADS
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    /* task 0 runs on the calling thread; the others on new threads (or inline if
     * a thread cannot be created: slower, still correct) */
    for (i = 1; i < count; i++)
        started[i] = pthread_create(&ids[i], NULL, gemm_range, &tasks[i]) == 0;
    gemm_range(&tasks[0]);
    for (i = 1; i < count; i++) {
        if (started[i]) pthread_join(ids[i], NULL);
        else gemm_range(&tasks[i]);
    }
#else
    for (i = 0; i < count; i++) gemm_range(&tasks[i]);
#endif
    for (i = 0; i < count; i++)
        if (tasks[i].status != W4A16_OK) st = tasks[i].status;
    return st;
}

w4a16_status w4a16_gemm_cpu(const void *x, w4a16_dtype dtype, int64_t m,
                            const w4a16_cpu_weight *w, const void *bias, float alpha, void *y)
{
    w4a16_status st = W4A16_OK;
    int64_t n = w->n, k = w->k, threads, per_thread, i;
    size_t esize = w4a16_dtype_size(dtype);
    float *xf = NULL, *bf = NULL;
    code_pair_values *pairs = NULL;
    gemm_task *tasks = NULL;

    if (m == 0) return W4A16_OK;
    threads = thread_count(m, n, k);
    xf = (float *)malloc((size_t)m * (size_t)k * sizeof(float));
    bf = bias ? (float *)malloc((size_t)n * sizeof(float)) : NULL;
    pairs = (code_pair_values *)malloc(sizeof(code_pair_values));
    tasks = (gemm_task *)calloc((size_t)threads, sizeof(gemm_task));
    if (!xf || (bias && !bf) || !pairs || !tasks) {
        st = w4a16_fail(W4A16_ERR_NO_MEMORY, "gemm: out of host memory");
        goto done;
    }
    for (i = 0; i < m; i++) w4a16_load_row_f32((const char *)x + (size_t)(i * k) * esize, dtype, k, xf + i * k);
    if (bias) w4a16_load_row_f32(bias, dtype, n, bf);
    fill_code_pairs(w, *pairs);

    /* split N into ranges that are multiples of 4 rows (the register tile) */
    per_thread = ((n + threads - 1) / threads + 3) & ~(int64_t)3;
    for (i = 0; i < threads; i++) {
        gemm_task *t = &tasks[i];
        t->x = xf;
        t->m = m;
        t->w = w;
        t->pairs = pairs;
        t->bias = bf;
        t->alpha = alpha;
        t->dtype = dtype;
        t->y = y;
        t->n_begin = i * per_thread < n ? i * per_thread : n;
        t->n_end = (i + 1) * per_thread < n ? (i + 1) * per_thread : n;
        t->status = W4A16_OK;
    }
    st = run_tasks(tasks, threads);
done:
    free(xf);
    free(bf);
    free(pairs);
    free(tasks);
    if (st == W4A16_ERR_NO_MEMORY) return w4a16_fail(st, "gemm: out of host memory");
    return st;
}
