/*
 * gemm_cpu.c — y = alpha * x @ dequant(W)^T + bias on the CPU.
 *
 * Decoding (row_decoder): 16 elements of a row of W at a time, 8 per fp32 vector. The 4-bit
 *   fields of 8 codes go to eight 32-bit lanes by shifts (canonical_codes; a whole prepacked
 *   chunk by one byte shuffle, chunk_lanes, or for INT4 one widening load, chunk_halves, and
 *   a shift a slot, prepacked_codes, so the modules' prepacked weights are read in place), a
 *   variable permute of two 8-entry tables gives their values (code_values8: AVX2 vpermps)
 *   and each becomes (value - zero) * scale, bit for bit what w4a16_dequantize_row_ref gives.
 *
 * The N rows of W are split into contiguous ranges, one per thread, and every thread takes
 * one of two plans, by M:
 *
 * Small M (at most FUSED_MAX_M rows of x): decoding is the work, so each row of W is decoded
 *   once and its vectors multiplied straight into every row of x (fused_rows).
 *
 * Larger M: the multiply is the work. A panel of PANEL_ROWS rows of W is decoded to fp32,
 *   KC elements of K at a time, and a register tile of 6 rows of W by 16 rows of x
 *   (12 accumulators of 8 lanes) runs over it, x packed as [M / 16][K][16]
 *   (load_x_packed): per k two vector loads of x, six broadcasts of W and twelve FMAs, the
 *   shape of BLIS's micro-kernels. A panel's sums stay in `tile_sums` between its K
 *   slices, and a slice of x (16 x KC floats) stays in L1 while the tile walks the panel.
 *
 * Accumulation is fp32; the epilogue applies alpha and bias and rounds to x's dtype. On
 * x86-64 the loops have an AVX2/FMA clone, selected at load time where the CPU has it.
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

/* __builtin_shufflevector with a result wider than its inputs: Clang, GCC 12 on */
#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define W4A16_HAVE_SHUFFLEVECTOR 1
#endif
#endif

#define FUSED_MAX_M 12 /* the small-M plan up to this M (measured: benchmarks/RESULTS.md, CPU) */
#define PANEL_ROWS 48  /* rows of W per panel: a multiple of TILE_N */
#define TILE_N 6       /* rows of W in the register tile */
#define TILE_M 16      /* rows of x in the register tile: two 8-lane vectors */
#define KC 256         /* elements of K per decoded slice of a panel: a multiple of 16 */
#define MAX_THREADS 256
/* Below this much work per thread (multiply-adds, plus decoding counted as 8 rows of x),
 * another thread costs more than it saves: a 16-core Xeon ran 2048x2048 nvfp4 at M = 1 in
 * 0.91 / 0.55 / 0.69 ms on 4 / 8 / 16 threads (this bound gives it 9). */
#define MIN_WORK_PER_THREAD (1 << 22)

/* 8 floats in one value; GCC/Clang lower it to one AVX register in the x86-64-v3 clone
 * (two SSE registers otherwise, NEON on Arm). */
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8si __attribute__((vector_size(32)));
typedef uint32_t v8su __attribute__((vector_size(32)));
typedef uint16_t v8hu __attribute__((vector_size(16)));
typedef uint8_t v16qu __attribute__((vector_size(16)));

/* The 16 code values as two tables of 8, for a variable permute of 8 lanes. Plain floats:
 * a v8f member would ask for 32-byte alignment, which malloc does not give. */
typedef struct {
    float low[8], high[8]; /* codes 0..7, 8..15 */
} code_tables;

typedef struct {
    const float *x;            /* m <= FUSED_MAX_M: [m, k]; else [m / 16][k][16] */
    int64_t m;
    const w4a16_cpu_weight *w;
    const code_tables *tables; /* of w's format */
    const float *bias;         /* [n] fp32 or NULL */
    float alpha;
    w4a16_dtype dtype;
    void *y;
    int64_t n_begin, n_end;
    w4a16_status status;
} gemm_task;

static inline __attribute__((always_inline)) v8f load8(const float *p)
{
    v8f v;
    memcpy(&v, p, sizeof v); /* unaligned load */
    return v;
}

static inline __attribute__((always_inline)) void store8(float *p, v8f v)
{
    memcpy(p, &v, sizeof v);
}

static inline __attribute__((always_inline)) float sum8(v8f v)
{
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

static void store_output(const gemm_task *t, int64_t row, int64_t col, float acc)
{
    float v = t->alpha * acc + (t->bias ? t->bias[col] : 0.0f);
    int64_t n = t->w->n;
    if (t->dtype == W4A16_DTYPE_FLOAT32) ((float *)t->y)[row * n + col] = v;
    else if (t->dtype == W4A16_DTYPE_BFLOAT16) ((uint16_t *)t->y)[row * n + col] = w4a16_f32_to_bf16(v);
    else ((uint16_t *)t->y)[row * n + col] = w4a16_f32_to_f16(v);
}

/* ---- decoding a row of W ------------------------------------------------------------------ */

static void fill_code_tables(const w4a16_cpu_weight *w, code_tables *tables)
{
    int i;
    for (i = 0; i < 8; i++) {
        tables->low[i] = w->code_values[i];
        tables->high[i] = w->code_values[8 + i];
    }
}

/* The 8 codes of elements 8v .. 8v + 7 of a canonical chunk (32 elements, 16 bytes): word
 * v, code i at bits 4i (element 2j is the low nibble of byte j). */
static inline __attribute__((always_inline)) v8su canonical_codes(const uint8_t *chunk, int v)
{
    const uint8_t *q = chunk + 4 * v;
    const uint32_t u = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
    const v8su shifts = {0, 4, 8, 12, 16, 20, 24, 28};
    return (u + (v8su){0}) >> shifts & 15;
}

/* The 16-bit halves of a whole prepacked chunk, one per lane. Element 8v + i of the chunk
 * is in slot v of half i (codecs.h: pair p in slot p / 4 of the halves of word p % 4), so
 * elements 8v .. 8v + 7 are slot v of every lane (prepacked_codes). */
static inline __attribute__((always_inline)) v8su chunk_halves(const uint8_t *chunk)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v8hu h;
    memcpy(&h, chunk, sizeof h);
    return __builtin_convertvector(h, v8su);
#else
    v8su h;
    int i;
    for (i = 0; i < 8; i++) h[i] = (uint32_t)chunk[2 * i] | (uint32_t)chunk[2 * i + 1] << 8;
    return h;
#endif
}

/* Each lane's word as its element sees it: the lane's half in bits 0..15 and the other half
 * of its word in bits 16..31 (lane 2w holds word w, lane 2w + 1 word w rotated by 16). A
 * code's bit at position p of codecs.h's w4a16_prepacked_bit is then bit p of its lane in
 * either half, the E2M1 signs that sit in the other half included. One byte shuffle of the
 * 16 bytes (x86-64-v3: a 128-bit load, vperm2i128 and vpshufb). */
static inline __attribute__((always_inline)) v8su chunk_lanes(const uint8_t *chunk)
{
#if defined(W4A16_HAVE_SHUFFLEVECTOR) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v16qu b;
    memcpy(&b, chunk, sizeof b);
    return (v8su)__builtin_shufflevector(b, b, 0, 1, 2, 3, 2, 3, 0, 1, 4, 5, 6, 7, 6, 7, 4, 5, 8, 9, 10, 11, 10, 11, 8,
                                         9, 12, 13, 14, 15, 14, 15, 12, 13);
#else
    const v8su halves = chunk_halves(chunk);
    v8su lanes;
    int i;
    for (i = 0; i < 8; i++) lanes[i] = halves[i] | halves[i ^ 1] << 16;
    return lanes;
#endif
}

/* One slot of the 8 lanes of a prepacked chunk (chunk_lanes; INT4's slots, which stay in
 * their half, read chunk_halves) as code_values8 takes codes: the code's bits 0..2 at the
 * bottom of each lane and its bit 3 at bit *high_bit. Where the slot keeps bits 0..2
 * together (INT4, E2M1 slots 0..2) that is one shift: code_values8 ignores the other bits.
 * E2M1's slot 3 is gathered into a plain code, a run of neighbouring bits at a time. Called
 * with constant arguments (prepacked_codes), so the positions fold into immediate shifts. */
static inline __attribute__((always_inline)) v8su prepacked_slot_codes(v8su lanes, int is_int4, int slot,
                                                                       int *high_bit)
{
    const int low = w4a16_prepacked_bit(is_int4, slot, 0);
    v8su codes = lanes - lanes;
    int bit, run;
    if (w4a16_prepacked_bit(is_int4, slot, 1) == low + 1 && w4a16_prepacked_bit(is_int4, slot, 2) == low + 2) {
        *high_bit = w4a16_prepacked_bit(is_int4, slot, 3) - low;
        return lanes >> low;
    }
    *high_bit = 3;
    for (bit = 0; bit < 4; bit += run) {
        const int at = w4a16_prepacked_bit(is_int4, slot, bit);
        run = 1;
        while (bit + run < 4 && w4a16_prepacked_bit(is_int4, slot, bit + run) == at + run) run++;
        codes |= (lanes >> at & ((1u << run) - 1)) << bit;
    }
    return codes;
}

/* Slots v and v + 1 (v = 0 or 2: elements 8v .. 8v + 15) of a whole prepacked chunk. */
static inline __attribute__((always_inline)) void prepacked_codes(v8su lanes, int is_int4, int v, v8su codes[2],
                                                                  int high_bit[2])
{
    if (is_int4 && v == 0) {
        codes[0] = prepacked_slot_codes(lanes, 1, 0, &high_bit[0]);
        codes[1] = prepacked_slot_codes(lanes, 1, 1, &high_bit[1]);
    } else if (is_int4) {
        codes[0] = prepacked_slot_codes(lanes, 1, 2, &high_bit[0]);
        codes[1] = prepacked_slot_codes(lanes, 1, 3, &high_bit[1]);
    } else if (v == 0) {
        codes[0] = prepacked_slot_codes(lanes, 0, 0, &high_bit[0]);
        codes[1] = prepacked_slot_codes(lanes, 0, 1, &high_bit[1]);
    } else {
        codes[0] = prepacked_slot_codes(lanes, 0, 2, &high_bit[0]);
        codes[1] = prepacked_slot_codes(lanes, 0, 3, &high_bit[1]);
    }
}

/* The values of 8 codes (before scaling): bits 0..2 of each lane index a table, bit
 * `high_bit` (3 for a plain code) picks the table of codes 8..15, other bits are ignored. */
static inline __attribute__((always_inline)) v8f code_values8(v8su codes, int high_bit, const code_tables *tables)
{
#if defined(__GNUC__) && !defined(__clang__)
    /* __builtin_shuffle takes each index modulo 8: the low 3 bits */
    const v8si low = (v8si)__builtin_shuffle(load8(tables->low), (v8si)codes);
    const v8si high = (v8si)__builtin_shuffle(load8(tables->high), (v8si)codes);
    const v8si pick_high = (v8si)(codes << (31 - high_bit)) >> 31;
    return (v8f)((low & ~pick_high) | (high & pick_high));
#else
    v8f v;
    int i;
    for (i = 0; i < 8; i++) v[i] = (codes[i] >> high_bit & 1 ? tables->high : tables->low)[codes[i] & 7];
    return v;
#endif
}

/* Reads one row of W from element `e` on, 16 at a time (row_decoder_next16) while whole
 * steps of 16 remain, then one at a time (row_decoder_value: the tail of up to 14 elements
 * that only per-channel INT4 can have). A step never straddles two blocks: blocks are
 * multiples of 16 elements, or span the row. Prepacked codes are read in place; only a
 * row's short last chunk (fewer than 4 words) is put back in canonical order, in `last`. */
typedef struct {
    const w4a16_cpu_weight *w;
    const code_tables *tables;
    const uint8_t *q;  /* the row's codes */
    uint8_t *last;     /* prepacked rows: the short last chunk, canonical (16 bytes, the
                        * caller's: an array here would keep the struct out of registers) */
    int64_t e;         /* the next element */
    int64_t block_end; /* the first element of the next block */
    size_t block;      /* index of the current block's scale */
    float s, z;        /* its scale and zero point */
} row_decoder;

static inline __attribute__((always_inline)) void row_decoder_block(row_decoder *d)
{
    d->s = w4a16_cpu_scale(d->w, d->block);
    d->z = d->w->zero_points ? (float)d->w->zero_points[d->block] : 0.0f;
}

/* Starts at element e (a multiple of 16) of row `row`, to read up to element `end`. */
static inline __attribute__((always_inline)) void row_decoder_start(row_decoder *d, const w4a16_cpu_weight *w,
                                                                    const code_tables *tables, int64_t row,
                                                                    int64_t e, int64_t end, uint8_t last[16])
{
    const int64_t bytes = w->k / 2, whole_chunks = bytes / 16;
    d->w = w;
    d->tables = tables;
    d->q = w->codes + (size_t)row * (size_t)bytes;
    d->last = last;
    d->e = e;
    d->block_end = (e / w->group_size + 1) * w->group_size;
    d->block = (size_t)row * (size_t)(w->k / w->group_size) + (size_t)(e / w->group_size);
    row_decoder_block(d);
    if (w->prepacked && bytes % 16 && end > 32 * whole_chunks)
        w4a16_prepack_chunk(d->q + 16 * whole_chunks, d->last, w4a16_prepack_chunk_words(bytes, whole_chunks), 0,
                            w->format == W4A16_FORMAT_INT4);
}

/* Elements e .. e + 15 as (value - zero) * scale, the reference's arithmetic. */
static inline __attribute__((always_inline)) void row_decoder_next16(row_decoder *d, v8f *lo, v8f *hi)
{
    const int64_t c = d->e / 32;
    const int v = (int)(d->e / 8 % 4); /* 0 or 2 */
    v8su codes[2];
    int high_bit[2] = {3, 3}; /* where bit 3 of each code sits (code_values8) */
    if (d->e == d->block_end) {
        d->block++;
        d->block_end += d->w->group_size;
        row_decoder_block(d);
    }
    if (!d->w->prepacked) {
        codes[0] = canonical_codes(d->q + 16 * c, v);
        codes[1] = canonical_codes(d->q + 16 * c, v + 1);
    } else if (16 * (c + 1) <= d->w->k / 2) {
        const int is_int4 = d->w->format == W4A16_FORMAT_INT4; /* INT4 slots stay within their half */
        prepacked_codes(is_int4 ? chunk_halves(d->q + 16 * c) : chunk_lanes(d->q + 16 * c), is_int4, v, codes,
                        high_bit);
    } else {
        codes[0] = canonical_codes(d->last, v);
        codes[1] = canonical_codes(d->last, v + 1);
    }
    *lo = (code_values8(codes[0], high_bit[0], d->tables) - d->z) * d->s;
    *hi = (code_values8(codes[1], high_bit[1], d->tables) - d->z) * d->s;
    d->e += 16;
}

/* Element e of the tail (in the row's last block). */
static inline __attribute__((always_inline)) float row_decoder_value(const row_decoder *d, int64_t e)
{
    return (d->w->code_values[w4a16_code_at(d->q, e, d->w->k, d->w->prepacked, d->w->format == W4A16_FORMAT_INT4)] -
            d->z) * d->s;
}

/* ---- small M: decode and multiply in one pass ------------------------------------------- */

/* Rows [n_begin, n_end) of y for the first m rows of x (m a constant once inlined): every
 * decoded vector of W is multiplied into all m rows of x; up to m = 4 two accumulators per
 * row of x, so that successive FMAs do not wait on each other. */
static inline __attribute__((always_inline)) void fused_rows(const gemm_task *t, const int m)
{
    const w4a16_cpu_weight *w = t->w;
    const int64_t k = w->k, whole = k / 16 * 16;
    const float *x = t->x;
    int64_t row, e;
    int i;
    for (row = t->n_begin; row < t->n_end; row++) {
        row_decoder d;
        uint8_t last[16];
        v8f acc0[FUSED_MAX_M], acc1[FUSED_MAX_M];
        float out[FUSED_MAX_M];
        row_decoder_start(&d, w, t->tables, row, 0, k, last);
        for (i = 0; i < m; i++) acc0[i] = acc1[i] = (v8f){0};
        for (e = 0; e < whole; e += 16) {
            v8f w0, w1;
            row_decoder_next16(&d, &w0, &w1);
            for (i = 0; i < m; i++) {
                acc0[i] += load8(x + i * k + e) * w0;
                if (m <= 4) acc1[i] += load8(x + i * k + e + 8) * w1;
                else acc0[i] += load8(x + i * k + e + 8) * w1; /* m chains are enough, 2m spill */
            }
        }
        for (i = 0; i < m; i++) out[i] = sum8(acc0[i] + acc1[i]);
        for (e = whole; e < k; e++) {
            const float value = row_decoder_value(&d, e);
            for (i = 0; i < m; i++) out[i] += x[i * k + e] * value;
        }
        for (i = 0; i < m; i++) store_output(t, i, row, out[i]);
    }
}

/* One instance of fused_rows per m, so that its accumulators are registers. */
W4A16_SIMD_CLONES
static void fused_range(const gemm_task *t)
{
    switch (t->m) {
    case 1: fused_rows(t, 1); break;
    case 2: fused_rows(t, 2); break;
    case 3: fused_rows(t, 3); break;
    case 4: fused_rows(t, 4); break;
    case 5: fused_rows(t, 5); break;
    case 6: fused_rows(t, 6); break;
    case 7: fused_rows(t, 7); break;
    case 8: fused_rows(t, 8); break;
    case 9: fused_rows(t, 9); break;
    case 10: fused_rows(t, 10); break;
    case 11: fused_rows(t, 11); break;
    default: fused_rows(t, 12); break;
    }
}

/* x [m, k] as fp32 [m, k]. */
static void load_x_rows(const void *x, w4a16_dtype dtype, int64_t m, int64_t k, float *dst)
{
    const size_t esize = w4a16_dtype_size(dtype);
    int64_t i;
    for (i = 0; i < m; i++) w4a16_load_row_f32((const char *)x + (size_t)(i * k) * esize, dtype, k, dst + i * k);
}

/* ---- larger M: decoded panels and a 6 x 16 register tile -------------------------------- */

/* x [m, k] as fp32 in blocks of TILE_M rows, each stored k-major: dst[(b * k + kk) * 16 + i]
 * = x[16 b + i, kk], rows past m zero. */
static void load_x_packed(const void *x, w4a16_dtype dtype, int64_t m, int64_t k, float *row, float *dst)
{
    const size_t esize = w4a16_dtype_size(dtype);
    const int64_t blocks = (m + TILE_M - 1) / TILE_M;
    int64_t i, kk;
    memset(dst, 0, (size_t)(blocks * TILE_M) * (size_t)k * sizeof(float));
    for (i = 0; i < m; i++) {
        float *d = dst + (i / TILE_M) * k * TILE_M + i % TILE_M;
        w4a16_load_row_f32((const char *)x + (size_t)(i * k) * esize, dtype, k, row);
        for (kk = 0; kk < k; kk++) d[kk * TILE_M] = row[kk];
    }
}

/* Elements [k0, k1) of row `row` of W in fp32 into dst (k0 a multiple of 16). */
W4A16_SIMD_CLONES
static void dequantize_slice(const gemm_task *t, int64_t row, int64_t k0, int64_t k1, float *dst)
{
    const int64_t whole = t->w->k / 16 * 16;
    row_decoder d;
    uint8_t last[16];
    int64_t e;
    row_decoder_start(&d, t->w, t->tables, row, k0, k1, last);
    for (e = k0; e < k1 && e < whole; e += 16) {
        v8f lo, hi;
        row_decoder_next16(&d, &lo, &hi);
        store8(dst + e - k0, lo);
        store8(dst + e - k0 + 8, hi);
    }
    for (; e < k1; e++) dst[e - k0] = row_decoder_value(&d, e);
}

/* sums [6][16] += w [6 rows, stride KC][kc] times x [kc][16]: 12 accumulators of 8 lanes. */
static inline __attribute__((always_inline)) void tile_6x16(const float *w, const float *x, int64_t kc, float *sums)
{
    v8f a[TILE_N][2];
    int64_t kk;
    int j;
    for (j = 0; j < TILE_N; j++) {
        a[j][0] = load8(sums + j * TILE_M);
        a[j][1] = load8(sums + j * TILE_M + 8);
    }
    for (kk = 0; kk < kc; kk++) {
        const v8f x0 = load8(x + kk * TILE_M), x1 = load8(x + kk * TILE_M + 8);
#pragma GCC unroll 6
        for (j = 0; j < TILE_N; j++) {
            const float b = w[j * KC + kk]; /* a scalar operand: GCC broadcasts it (vbroadcastss) */
            a[j][0] += x0 * b;
            a[j][1] += x1 * b;
        }
    }
    for (j = 0; j < TILE_N; j++) {
        store8(sums + j * TILE_M, a[j][0]);
        store8(sums + j * TILE_M + 8, a[j][1]);
    }
}

/* The multiply of one decoded slice: every block of x against every tile of the panel. */
W4A16_SIMD_CLONES
static void multiply_slice(const float *panel, int64_t panel_rows, const float *x, int64_t k, int64_t blocks,
                           int64_t k0, int64_t kc, float *tile_sums)
{
    int64_t b, j0;
    for (b = 0; b < blocks; b++)
        for (j0 = 0; j0 < panel_rows; j0 += TILE_N)
            tile_6x16(panel + j0 * KC, x + (b * k + k0) * TILE_M, kc, tile_sums + (b * PANEL_ROWS + j0) * TILE_M);
}

/* Rows [n_begin, n_end) of y by panels; panel [PANEL_ROWS][KC], tile_sums
 * [blocks][PANEL_ROWS][16]. */
static void tiled_range(const gemm_task *t, float *panel, float *tile_sums)
{
    const int64_t k = t->w->k, blocks = (t->m + TILE_M - 1) / TILE_M;
    int64_t n0, k0, j, b, i;
    for (n0 = t->n_begin; n0 < t->n_end; n0 += PANEL_ROWS) {
        const int64_t rows = t->n_end - n0 < PANEL_ROWS ? t->n_end - n0 : PANEL_ROWS;
        const int64_t tiled_rows = (rows + TILE_N - 1) / TILE_N * TILE_N;
        memset(tile_sums, 0, (size_t)(blocks * PANEL_ROWS * TILE_M) * sizeof(float));
        for (k0 = 0; k0 < k; k0 += KC) {
            const int64_t kc = k - k0 < KC ? k - k0 : KC;
            for (j = 0; j < rows; j++) dequantize_slice(t, n0 + j, k0, k0 + kc, panel + j * KC);
            /* zero rows pad the panel to whole tiles; their sums are never stored */
            for (j = rows; j < tiled_rows; j++) memset(panel + j * KC, 0, (size_t)kc * sizeof(float));
            multiply_slice(panel, tiled_rows, t->x, k, blocks, k0, kc, tile_sums);
        }
        for (b = 0; b < blocks; b++)
            for (j = 0; j < rows; j++)
                for (i = 0; i < TILE_M && b * TILE_M + i < t->m; i++)
                    store_output(t, b * TILE_M + i, n0 + j, tile_sums[(b * PANEL_ROWS + j) * TILE_M + i]);
    }
}

/* ---- threads ---------------------------------------------------------------------------- */

static void *gemm_range(void *arg)
{
    gemm_task *t = (gemm_task *)arg;
    const int64_t blocks = (t->m + TILE_M - 1) / TILE_M;
    float *panel = NULL, *tile_sums = NULL;
    if (t->m <= FUSED_MAX_M) {
        fused_range(t); /* needs no memory of its own */
    } else {
        panel = (float *)malloc((size_t)PANEL_ROWS * KC * sizeof(float));
        tile_sums = (float *)malloc((size_t)(blocks * PANEL_ROWS * TILE_M) * sizeof(float));
        if (!panel || !tile_sums) t->status = W4A16_ERR_NO_MEMORY;
        else tiled_range(t, panel, tile_sums);
    }
    free(panel);
    free(tile_sums);
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
    if (threads > n / TILE_N) threads = n / TILE_N;
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
    const int64_t n = w->n, k = w->k, blocks = (m + TILE_M - 1) / TILE_M;
    const int fused = m <= FUSED_MAX_M;
    int64_t threads, per_thread, i;
    float *xf = NULL, *row = NULL, *bf = NULL;
    code_tables tables; /* read by the tasks, which end before this function returns */
    gemm_task *tasks = NULL;

    if (m == 0) return W4A16_OK;
    threads = thread_count(m, n, k);
    /* x in the layout of the plan: [m, k], or [blocks][k][16] */
    xf = (float *)malloc((size_t)(fused ? m : blocks * TILE_M) * (size_t)k * sizeof(float));
    row = fused ? NULL : (float *)malloc((size_t)k * sizeof(float)); /* load_x_packed's staging row */
    bf = bias ? (float *)malloc((size_t)n * sizeof(float)) : NULL;
    tasks = (gemm_task *)calloc((size_t)threads, sizeof(gemm_task));
    if (!xf || (!fused && !row) || (bias && !bf) || !tasks) {
        st = W4A16_ERR_NO_MEMORY;
        goto done;
    }
    if (fused) load_x_rows(x, dtype, m, k, xf);
    else load_x_packed(x, dtype, m, k, row, xf);
    if (bias) w4a16_load_row_f32(bias, dtype, n, bf);
    fill_code_tables(w, &tables);

    /* split N into ranges of whole register tiles */
    per_thread = ((n + threads - 1) / threads + TILE_N - 1) / TILE_N * TILE_N;
    for (i = 0; i < threads; i++) {
        gemm_task *t = &tasks[i];
        t->x = xf;
        t->m = m;
        t->w = w;
        t->tables = &tables;
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
    free(row);
    free(bf);
    free(tasks);
    if (st == W4A16_ERR_NO_MEMORY) return w4a16_fail(st, "gemm: out of host memory");
    return st;
}
