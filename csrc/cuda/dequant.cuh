/*
 * dequant.cuh — the device pieces both W4A16 matmul kernels share: 16-bit element traits,
 * the mma.sync m16n8k16 wrapper, E2M1 / INT4 decoding of a word of 8 codes into 4 pairs of
 * 16-bit values, and block scales (loaded raw, resolved through a shared-memory table).
 *
 * The pairs. Nibbles J and J + 4 of a 32-bit word sit 16 bits apart, like the two halves
 * of a 16-bit pair register, so one shift and mask per pair decodes them. In the canonical
 * layout those nibbles are elements (J, J + 4) of the word and the GEMV gathers x into the
 * same pairs; the prepacked layout (w4a16_prepack, codecs.h) stores (k, k + 1) pairs in
 * slot J of the two halves, the ones an mma fragment holds: word t of a 32-element chunk
 * has the pairs at elements 2t + 8j in slots j = 0..3 -- thread t's A fragment of the
 * chunk's two k16 steps (dequant_fragment_word) -- and slot r of the 4 words the pairs of
 * elements 8r .. 8r + 7 in order (dequant_chunk_pairs). A prepacked INT4 slot is a nibble;
 * a prepacked E2M1 slot has its bits where bf16 wants them after a rotation
 * (prepacked_e2m1_pair).
 *
 * Decoding:
 *   E2M1: magnitude bits shifted into the exponent/mantissa field and the sign into
 *         bit 15 give e2m1 * 2^-14 (fp16) or e2m1 * 2^-126 (bf16) exactly;
 *   INT4: the nibble OR-ed into the mantissa of 1024.0 (fp16) / 128.0 (bf16) gives
 *         magic + q exactly, and one subtraction removes magic + zero point.
 * One 16-bit multiply applies the block scale, which a 256-entry shared-memory table holds
 * pre-multiplied by 2^4 (fp16) or 2^116 (bf16), so that e2m1 * scale * 2^-10 is exact in
 * 16 bits; the fp32 epilogue multiplies by 2^10 (EPILOGUE_LOG2), the NVFP4 global scale
 * and alpha.
 */
#ifndef W4A16_DEQUANT_CUH
#define W4A16_DEQUANT_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "../core/codecs.h"
#include "cuda_common.cuh"
#include "w4a16.h"

namespace {

constexpr int SUPER_K = 128;      /* elements of K a quad of threads covers per step */
constexpr int EPILOGUE_LOG2 = 10; /* the 2^-10 folded into the scale table */

/* What both matmul kernels take by value: the validated gemm arguments, flattened, plus
 * the facts derived from them once on the host. */
struct kernel_args {
    const void *x;
    const uint8_t *codes;
    const void *scales;
    const float *global_scale; /* nvfp4 */
    const uint8_t *zero_points;
    const void *bias;
    void *y;
    float *partials;           /* tensor-core split-K: [split][m][n] fp32, else NULL */
    int64_t m, n, k, group;
    uint32_t chunk_shift;      /* int4: log2(group / 32), or 31 when one group spans the row */
    bool other_scale_type;     /* int4 scales in the other 16-bit type than x */
    float alpha;
    uint32_t prefetch;         /* asked of L2 while the prior kernel runs: gemv tiles per CTA; tensor-core: 0 / 1 */
    bool geglu;                /* w4a16_gemm_geglu: y [m, n/2] = gelu_tanh(gate rows) * up rows (geglu_bits) */
};

inline kernel_args make_kernel_args(const w4a16_cuda_gemm_args &args, float *partials)
{
    kernel_args a;
    a.x = args.x;
    a.codes = args.codes;
    a.scales = args.scales;
    a.global_scale = args.global_scale;
    a.zero_points = args.zero_points;
    a.bias = args.bias;
    a.y = args.y;
    a.partials = partials;
    a.m = args.m;
    a.n = args.n;
    a.k = args.k;
    a.group = args.group_size;
    a.chunk_shift = w4a16_int4_chunk_shift(args.group_size, args.k);
    a.other_scale_type = args.format == W4A16_FORMAT_INT4 && args.scale_dtype != args.x_dtype;
    a.alpha = args.alpha;
    a.prefetch = 0;
    a.geglu = args.geglu != 0;
    return a;
}

/* ---- 16-bit element traits ----------------------------------------------------- */

template <typename T> struct bits16;
template <> struct bits16<__half> {
    using pair = __half2;
    static constexpr uint32_t E2M1_MAG_SHIFT = 9;          /* 3 magnitude bits -> 11..9 */
    static constexpr uint32_t E2M1_MAG_MASK = 0x0E000E00u;
    static constexpr uint32_t INT_MAGIC = 0x64006400u;       /* 1024.0 in each half */
    static constexpr float INT_MAGIC_VALUE = 1024.0f;
    static constexpr int SCALE_LOG2 = 4;                     /* 2^-14 * 2^4 = 2^-10 */
    static constexpr bool IS_BF16 = false;
    static __device__ __forceinline__ uint16_t from_float(float f) { return __half_as_ushort(__float2half_rn(f)); }
    static __device__ __forceinline__ float to_float(uint16_t h) { return __half2float(__ushort_as_half(h)); }
    static __device__ __forceinline__ pair low_both(pair p) { return __low2half2(p); }
    static __device__ __forceinline__ pair high_both(pair p) { return __high2half2(p); }
};
template <> struct bits16<__nv_bfloat16> {
    using pair = __nv_bfloat162;
    static constexpr uint32_t E2M1_MAG_SHIFT = 6;           /* 3 magnitude bits -> 8..6 */
    static constexpr uint32_t E2M1_MAG_MASK = 0x01C001C0u;
    static constexpr uint32_t INT_MAGIC = 0x43004300u;       /* 128.0 in each half */
    static constexpr float INT_MAGIC_VALUE = 128.0f;
    static constexpr int SCALE_LOG2 = 116;                   /* 2^-126 * 2^116 = 2^-10 */
    static constexpr bool IS_BF16 = true;
    static __device__ __forceinline__ uint16_t from_float(float f) { return __bfloat16_as_ushort(__float2bfloat16_rn(f)); }
    static __device__ __forceinline__ float to_float(uint16_t h) { return __bfloat162float(__ushort_as_bfloat16(h)); }
    static __device__ __forceinline__ pair low_both(pair p) { return __low2bfloat162(p); }
    static __device__ __forceinline__ pair high_both(pair p) { return __high2bfloat162(p); }
};

/* Two 16-bit values packed in a uint32, multiplied / subtracted as T's pair type. */
template <typename T> __device__ __forceinline__ uint32_t mul2(uint32_t a, uint32_t b)
{
    using P = typename bits16<T>::pair;
    P r = __hmul2(*reinterpret_cast<P *>(&a), *reinterpret_cast<P *>(&b));
    return *reinterpret_cast<uint32_t *>(&r);
}
template <typename T> __device__ __forceinline__ uint32_t sub2(uint32_t a, uint32_t b)
{
    using P = typename bits16<T>::pair;
    P r = __hsub2(*reinterpret_cast<P *>(&a), *reinterpret_cast<P *>(&b));
    return *reinterpret_cast<uint32_t *>(&r);
}

/* d += a (16x16, weights) * b (16x8, x^T), fp32 accumulate */
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], __half)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], __nv_bfloat16)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* ---- one word of 8 codes -> 4 pairs of raw 16-bit values -------------------------
 * out[j] holds nibbles j and j+4 of the word (bits 4j and 4j+16), see the top of the file. */

template <int S> __device__ __forceinline__ uint32_t shift_left(uint32_t v)
{
    return S >= 0 ? v << (S >= 0 ? S : 0) : v >> (S < 0 ? -S : 0);
}

template <int FMT, typename T, int J>
__device__ __forceinline__ uint32_t convert_pair(uint32_t w, uint32_t int_xor)
{
    if (FMT == W4A16_FORMAT_INT4) {
        return ((w >> (4 * J)) & 0x000F000Fu) ^ int_xor; /* magic + q (offset by 8 if symmetric) */
    } else {
        /* magnitude bits into the exponent/mantissa field, sign bit to bit 15 / 31 */
        constexpr int MAG = (int)bits16<T>::E2M1_MAG_SHIFT - 4 * J;
        return (shift_left<MAG>(w) & bits16<T>::E2M1_MAG_MASK) | (shift_left<12 - 4 * J>(w) & 0x80008000u);
    }
}

/* INT4's `int_xor` for convert_pair: the magic number in both halves, and for symmetric
 * codes (no zero points) also bit 3 of each nibble, which turns the signed q into q + 8. */
template <typename T> __device__ __forceinline__ uint32_t int4_xor(bool has_zero_points)
{
    return bits16<T>::INT_MAGIC ^ (has_zero_points ? 0u : 0x00080008u);
}

/* E2M1 into bf16 pairs in 12 integer ops per word instead of 15. Magnitude and sign of a
 * nibble move by different distances (to bits 8..6 and 15); when both are left shifts that
 * do not overlap, one multiply by 2^a + 2^b of the isolated nibbles makes both copies
 * without carries, and one mask keeps the wanted bits. Nibbles 2 and 3 start from w >> 6,
 * which puts nibble 3's magnitude in place and nibble 2 at bits 5..2. (fp16's two
 * distances differ by 3, less than a nibble, so the copies would overlap there.) */
__device__ __forceinline__ void dequant_e2m1_bf16_word(uint32_t w, uint32_t (&out)[4])
{
    constexpr uint32_t PAIR = 0x81C081C0u; /* bits 8..6 and 15 of each half */
    const uint32_t w6 = w >> 6;
    out[0] = ((w & 0x000F000Fu) * ((1u << 6) + (1u << 12))) & PAIR;
    out[1] = ((w & 0x00F000F0u) * ((1u << 2) + (1u << 8))) & PAIR;
    out[2] = ((w6 & 0x003C003Cu) * ((1u << 4) + (1u << 10))) & PAIR;
    out[3] = (w6 & 0x01C001C0u) | (w & 0x80008000u);
}

/* A word of canonical-order codes (nibble J and J + 4 -> pair J). */
template <int FMT, typename T>
__device__ __forceinline__ void dequant_word(uint32_t w, uint32_t int_xor, uint32_t (&out)[4])
{
    if (FMT != W4A16_FORMAT_INT4 && bits16<T>::IS_BF16) {
        dequant_e2m1_bf16_word(w, out);
        return;
    }
    out[0] = convert_pair<FMT, T, 0>(w, int_xor);
    out[1] = convert_pair<FMT, T, 1>(w, int_xor);
    out[2] = convert_pair<FMT, T, 2>(w, int_xor);
    out[3] = convert_pair<FMT, T, 3>(w, int_xor);
}

/* Slot J of a prepacked E2M1 word -> pair J (codecs.h, w4a16_prepacked_bit). Slot 0 holds
 * a code's magnitude at bits 6..8 of its half and its sign at 15, where bf16 wants them,
 * and slots 1 and 2 the same pattern rotated left by 3 and 6 within the 32-bit word (the
 * signs land in the other half), so for bf16 a rotation by 3J and one mask decode slots
 * 0..2 (slot 0: the mask alone). Slot 3 holds magnitude bits 0, 1, 2 at 3, 4, 0 and the
 * sign at 1: a multiply by 2^3 + 2^8 + 2^14 of the isolated bits makes three copies whose
 * bits all differ (3..18 from the low half, 19..31 from the high half), so no carry
 * disturbs the bits the mask keeps. 8 integer operations a word for bf16, against
 * dequant_e2m1_bf16_word's 12. fp16 wants the magnitude 3 bits higher (11..9), so there
 * magnitude and sign move apart. */
template <typename T, int J> __device__ __forceinline__ uint32_t prepacked_e2m1_pair(uint32_t w)
{
    constexpr uint32_t MAG = bits16<T>::E2M1_MAG_MASK, SIGN = 0x80008000u;
    if (J < 3) {
        const uint32_t rotated = J == 0 ? w : __funnelshift_r(w, w, 3 * J); /* sign to bit 15 / 31 */
        if (bits16<T>::IS_BF16) return rotated & (MAG | SIGN);
        /* fp16: magnitude 3 bits up (slot 0), in place (slot 1), 3 down (slot 2: slot 1's
         * rotation, which the caller's inlined slot 1 shares) */
        const uint32_t magnitude = J == 0 ? w << 3 : J == 1 ? w : __funnelshift_r(w, w, 3);
        return (magnitude & MAG) | (rotated & SIGN);
    }
    if (bits16<T>::IS_BF16) return ((w & 0x001B001Bu) * ((1u << 3) + (1u << 8) + (1u << 14))) & (MAG | SIGN);
    /* fp16: bits 3, 4 -> 9, 10; 0 -> 11; 1 -> 15 */
    return ((w << 6) & 0x06000600u) | ((w << 11) & 0x08000800u) | ((w << 14) & SIGN);
}

/* A word of prepacked codes (slot J of both halves -> pair J): INT4's slots are the
 * canonical nibbles, E2M1's are not. */
template <int FMT, typename T>
__device__ __forceinline__ void dequant_prepacked_word(uint32_t w, uint32_t int_xor, uint32_t (&out)[4])
{
    if (FMT == W4A16_FORMAT_INT4) {
        dequant_word<FMT, T>(w, int_xor, out);
        return;
    }
    out[0] = prepacked_e2m1_pair<T, 0>(w);
    out[1] = prepacked_e2m1_pair<T, 1>(w);
    out[2] = prepacked_e2m1_pair<T, 2>(w);
    out[3] = prepacked_e2m1_pair<T, 3>(w);
}

/* Canonical layout: x words X0..X3 hold elements (0,1) (2,3) (4,5) (6,7) of 8; the weight
 * pairs are (0,4) (1,5) (2,6) (3,7): gather x into the same pairs. */
__device__ __forceinline__ void permute_x_word(const uint32_t *x, uint32_t *out)
{
    out[0] = __byte_perm(x[0], x[2], 0x5410);
    out[1] = __byte_perm(x[0], x[2], 0x7632);
    out[2] = __byte_perm(x[1], x[3], 0x5410);
    out[3] = __byte_perm(x[1], x[3], 0x7632);
}

/* The scales of one thread's 32-element chunk of one row, in two steps: `raw` as loaded
 * (two E4M3 bytes for NVFP4, whose blocks are 16 wide; one E8M0 byte; one 16-bit INT4
 * scale and its zero point), then `resolve` turns it into half2 patterns through the
 * shared-memory table. Splitting the two lets the loads go out before the table is
 * filled, so filling it hides under the DRAM latency. */
struct chunk_scale {
    uint32_t s0, s1;   /* half2 patterns; s1 is NVFP4's second block */
    uint32_t offset;   /* int4: half2 of magic + zero point (or + 8) */
};

struct raw_scale {
    uint32_t scale;    /* the loaded scale bits */
    uint32_t zero;     /* int4 asymmetric: the zero point */
};

/* Walks the scales of one weight row along with the thread's chunks: `load(step)` reads
 * those of super-tile `step`. Offsets are 32-bit and relative to a per-row base, so a
 * step costs a few integer ops, not 64-bit index arithmetic. */
template <int FMT, typename T> struct scale_cursor {
    const uint8_t *base;     /* this row's first scale (bytes) */
    const uint8_t *zeros;    /* int4 asymmetric: this row's first zero point */
    uint32_t chunk0;         /* index of the thread's first 32-element chunk in the row */
    uint32_t chunk_shift;    /* int4: log2(group / 32); 31 for one group per row */

    scale_cursor() = default;
    /* row: the weight row; k_offset: where the thread's first 32-element chunk starts */
    __device__ __forceinline__ scale_cursor(const void *scales, const uint8_t *zero_points, int64_t k, int64_t group,
                                            int64_t row, int64_t k_offset, uint32_t chunk_shift_)
    {
        const int64_t groups = k / group;
        const size_t scale_bytes = FMT == W4A16_FORMAT_INT4 ? 2 : 1;
        base = reinterpret_cast<const uint8_t *>(scales) + (size_t)(row * groups) * scale_bytes;
        zeros = zero_points ? zero_points + row * groups : nullptr;
        chunk0 = (uint32_t)(k_offset / 32);
        chunk_shift = chunk_shift_;
    }

    __device__ __forceinline__ raw_scale load(uint32_t step) const { return load_chunk(4 * step); }

    /* those of the chunk `chunks` 32-element chunks past the thread's first */
    __device__ __forceinline__ raw_scale load_chunk(uint32_t chunks) const
    {
        raw_scale r;
        const uint32_t chunk = chunk0 + chunks;
        r.zero = 8;
        if (FMT == W4A16_FORMAT_NVFP4) {
            r.scale = __ldg(reinterpret_cast<const uint16_t *>(base) + chunk); /* blocks 2c, 2c+1 */
        } else if (FMT == W4A16_FORMAT_MXFP4) {
            r.scale = __ldg(base + chunk);
        } else {
            const uint32_t group = chunk >> chunk_shift;
            r.scale = __ldg(reinterpret_cast<const uint16_t *>(base) + group);
            if (zeros) r.zero = __ldg(zeros + group);
        }
        return r;
    }

    static __device__ __forceinline__ chunk_scale resolve(const raw_scale &r, const uint32_t *lut,
                                                          bool other_scale_type)
    {
        chunk_scale cs;
        cs.offset = 0;
        if (FMT == W4A16_FORMAT_NVFP4) {
            cs.s0 = lut[r.scale & 0xFF];
            cs.s1 = lut[r.scale >> 8];
        } else if (FMT == W4A16_FORMAT_MXFP4) {
            cs.s0 = cs.s1 = lut[r.scale];
        } else {
            uint32_t s = r.scale;
            if (other_scale_type) /* INT4 scales in the other 16-bit type than x: convert */
                s = bits16<T>::from_float(bits16<T>::IS_BF16 ? w4a16_f16_to_f32((uint16_t)s) : w4a16_bf16_to_f32((uint16_t)s));
            cs.s0 = cs.s1 = s | (s << 16);
            const uint32_t o = bits16<T>::from_float(bits16<T>::INT_MAGIC_VALUE + (float)r.zero);
            cs.offset = o | (o << 16);
        }
        return cs;
    }
};

/* The chunk_scale of one chunk for two weight rows in the words of one: half h of each
 * word is row h's 16-bit pattern. A quad of the warpgroup kernel shares a chunk's scales
 * with one shuffle per word instead of one per row; unpacking costs nothing, as ptxas
 * folds the half selection (low_both / high_both) into the multiply's and subtraction's
 * operand selector (HMUL2 R, R, R.H0_H0). */
struct chunk_scale_rows {
    uint32_t s0, s1, offset;
};

__device__ __forceinline__ chunk_scale_rows pack_rows(const chunk_scale &row0, const chunk_scale &row1)
{
    return chunk_scale_rows{__byte_perm(row0.s0, row1.s0, 0x5410), __byte_perm(row0.s1, row1.s1, 0x5410),
                            __byte_perm(row0.offset, row1.offset, 0x5410)};
}

/* half h of v in both halves */
template <typename T> __device__ __forceinline__ uint32_t half_in_both(uint32_t v, int h)
{
    using P = typename bits16<T>::pair;
    const P p = *reinterpret_cast<const P *>(&v);
    P r = h ? bits16<T>::high_both(p) : bits16<T>::low_both(p);
    return *reinterpret_cast<uint32_t *>(&r);
}

template <typename T> __device__ __forceinline__ chunk_scale row_of(const chunk_scale_rows &rows, int h)
{
    return chunk_scale{half_in_both<T>(rows.s0, h), half_in_both<T>(rows.s1, h), half_in_both<T>(rows.offset, h)};
}

/* One raw pair scaled: INT4 first loses its magic number and zero point; NVFP4 takes the
 * chunk's second block scale for the pairs of its second 16 elements. */
template <int FMT, typename T>
__device__ __forceinline__ uint32_t scale_pair(uint32_t pair, const chunk_scale &cs, bool second_block)
{
    if (FMT == W4A16_FORMAT_INT4) pair = sub2<T>(pair, cs.offset);
    return mul2<T>(pair, (FMT == W4A16_FORMAT_NVFP4 && second_block) ? cs.s1 : cs.s0);
}

/* The raw pairs of slot r of a prepacked chunk's 4 words: elements 8r .. 8r + 7 of the
 * chunk in pair order (codecs.h). */
template <int FMT, typename T>
__device__ __forceinline__ void dequant_slot(const uint32_t (&words)[4], int r, uint32_t int_xor, uint32_t (&pairs)[4])
{
#pragma unroll
    for (int w = 0; w < 4; w++) {
        uint32_t p[4];
        dequant_prepacked_word<FMT, T>(words[w], int_xor, p);
        pairs[w] = p[r];
    }
}

/* Scaled A-operand pairs of elements 8r .. 8r + 7 of one row chunk (16 bytes of codes),
 * in pair order: the pairs of k-tiles 2r and 2r + 1. In the canonical layout that is word
 * r (pairs (j, j + 4), x gathered alike: permute_x_word); in the prepacked layout slot r
 * of the chunk's 4 words (codecs.h), i.e. the same pairs a canonical-order word would give
 * with (2j, 2j + 1) pairing. Callers unroll over r; decoding one slot of each word costs
 * what decoding one whole word does, and the compiler shares the common shifts. */
template <int FMT, typename T, bool PREPACKED>
__device__ __forceinline__ void dequant_chunk_pairs(const uint4 &q, int r, const chunk_scale &cs, uint32_t int_xor,
                                                    uint32_t (&pairs)[4])
{
    const uint32_t words[4] = {q.x, q.y, q.z, q.w};
    if (PREPACKED) dequant_slot<FMT, T>(words, r, int_xor, pairs);
    else dequant_word<FMT, T>(words[r], int_xor, pairs);
#pragma unroll
    for (int j = 0; j < 4; j++) pairs[j] = scale_pair<FMT, T>(pairs[j], cs, r >= 2); /* elements 8r .. 8r + 7 */
}

/* Scaled pairs of one prepacked word in the fragment order (word w of a 32-element chunk
 * holds the pairs (2w + 8j, 2w + 8j + 1), j = 0..3): pairs 0 and 1 lie in the chunk's first
 * 16 elements, 2 and 3 in its second (NVFP4's two blocks). */
template <int FMT, typename T>
__device__ __forceinline__ void dequant_fragment_word(uint32_t word, const chunk_scale &cs, uint32_t int_xor,
                                                      uint32_t (&pairs)[4])
{
    dequant_prepacked_word<FMT, T>(word, int_xor, pairs);
#pragma unroll
    for (int j = 0; j < 4; j++) pairs[j] = scale_pair<FMT, T>(pairs[j], cs, j >= 2); /* elements 2w + 8j */
}

/* The scale table: code byte -> 16-bit scale * 2^SCALE_LOG2 in both halves (unused
 * for INT4, whose scales are stored 16-bit already). */
template <int FMT, typename T>
__device__ __forceinline__ void fill_scale_lut(uint32_t *lut)
{
    for (int i = threadIdx.x; i < 256; i += blockDim.x) {
        float s = FMT == W4A16_FORMAT_NVFP4 ? w4a16_e4m3_decode((uint8_t)i) : w4a16_e8m0_decode((uint8_t)i);
        const uint32_t h = bits16<T>::from_float(ldexpf(s, bits16<T>::SCALE_LOG2));
        lut[i] = h | (h << 16);
    }
}

/* Bytes of scales per weight row (INT4 zero points, one byte per group, are apart). */
template <int FMT> __host__ __device__ __forceinline__ int64_t scale_row_bytes(int64_t k, int64_t group)
{
    return FMT == W4A16_FORMAT_INT4 ? 2 * (k / group) : k / group;
}

/* The fp32 factor every accumulator is multiplied by: alpha, the 2^10 taken out of the
 * scale table, and the NVFP4 global scale (read after w4a16_wait_for_prior: the kernel
 * before may have written it). */
template <int FMT>
__device__ __forceinline__ float epilogue_factor(float alpha, const float *global_scale)
{
    float f = alpha;
    if (FMT != W4A16_FORMAT_INT4) f *= ldexpf(1.0f, EPILOGUE_LOG2);
    if (FMT == W4A16_FORMAT_NVFP4) f *= w4a16_load_after_wait(global_scale);
    return f;
}

/* One output of y: an fp32 sum times the epilogue factor, plus bias[n] when there is a
 * bias (null: none, and callers pass null for rows past N), rounded to T's 16 bits. The
 * multiply and the add are rounded each, written out: left to the compiler, `sum * factor
 * + b` became one fma in one inlined copy (the warpgroup kernels' K-split reduction for
 * gemm_geglu, SASS) and not in the others, so gemm_geglu and the plain gemm could round a
 * sum an fp32 rounding apart -- now and then one bf16 step of a gate, which gelu's steep
 * relative slope at negative gates made several steps of y. Two roundings because that is
 * what ptxas had compiled everywhere else (H100: the same times as before, within the
 * spread; one fma everywhere moved the schedule of more kernels). */
template <typename T>
__device__ __forceinline__ uint16_t output_bits(float sum, float factor, const void *bias, int64_t n)
{
    float v = __fmul_rn(sum, factor);
    if (bias) v = __fadd_rn(v, bits16<T>::to_float(static_cast<const uint16_t *>(bias)[n]));
    return bits16<T>::from_float(v);
}

/* The weight row of output column `col` of w4a16_gemm_geglu's y [M, N/2]: its gate row (the
 * up row is W4A16_GATED_ROWS further on). */
__device__ __forceinline__ int64_t geglu_gate_row(int64_t col)
{
    return 2 * W4A16_GATED_ROWS * (col / W4A16_GATED_ROWS) + col % W4A16_GATED_ROWS;
}

/* One output of w4a16_gemm_geglu: gelu_tanh(gate) * up of two outputs already rounded to
 * T (as the plain gemm stores them), in fp32, rounded once. Gate row 16j + r pairs with up
 * row 16j + 8 + r: the rows g and g + 8 that one thread of an m16 mma tile holds.
 * gelu_tanh(v) = 0.5 v (1 + tanh(z)) = v / (1 + exp(-2z)), z = sqrt(2/pi) (v + 0.044715 v^3):
 * the second form (also the CPU path's, api.c) has no cancellation where gelu tends to 0,
 * and with the hardware exp2 it is a handful of instructions -- tanhf's expansion in every
 * tensor-core kernel's epilogue moved ptxas's register allocation and made some tiles 4-7%
 * slower on plain gemms (H100). Past z = -44, exp overflows and __fdividef gives -0: the
 * limit. */
template <typename T>
__device__ __forceinline__ uint16_t geglu_bits(uint16_t gate, uint16_t up)
{
    const float v = bits16<T>::to_float(gate);
    const float two_z = 1.5957691216057308f * (v + 0.044715f * v * v * v);
    return bits16<T>::from_float(__fdividef(v, 1.0f + __expf(-two_z)) * bits16<T>::to_float(up));
}

} // namespace

#endif /* W4A16_DEQUANT_CUH */
