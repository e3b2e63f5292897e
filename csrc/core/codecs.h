/*
 * codecs.h — scalar number formats shared by the C reference and the CUDA kernels.
 *
 * Every function is `static inline` and, under nvcc, also __device__, so the CPU
 * reference and the GPU quantizers run the very same arithmetic and produce the same
 * bytes. Rounding is round-to-nearest-even everywhere (nearbyintf under the default
 * rounding mode on the host, rintf semantics on the device).
 */
#ifndef W4A16_CODECS_H
#define W4A16_CODECS_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define W4A16_HD static inline __host__ __device__
#else
#define W4A16_HD static inline
#endif

/* Largest finite E4M3FN value, and the NVFP4 global-scale divisor 6 * 448. */
#define W4A16_E4M3_MAX 448.0f
#define W4A16_E2M1_MAX 6.0f
#define W4A16_NVFP4_GLOBAL_DIVISOR 2688.0f
#define W4A16_E4M3_MIN_SUBNORMAL 0.001953125f /* 2^-9 */
#define W4A16_E4M3_ONE 0x38                    /* the code of 1.0 */
#define W4A16_E8M0_ONE 127                     /* 2^(127 - 127) */

W4A16_HD uint32_t w4a16_f32_bits(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }
W4A16_HD float w4a16_bits_f32(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }

/* ---- 16-bit floats ------------------------------------------------------------ */

W4A16_HD float w4a16_bf16_to_f32(uint16_t h) { return w4a16_bits_f32((uint32_t)h << 16); }

W4A16_HD uint16_t w4a16_f32_to_bf16(float f)
{
    uint32_t x = w4a16_f32_bits(f);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7FFFu + ((x >> 16) & 1u); /* round to nearest even on bit 16 */
    return (uint16_t)(x >> 16);
}

W4A16_HD float w4a16_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    float mag;
    if (exp == 0) mag = ldexpf((float)man, -24);                          /* zero, subnormal */
    else if (exp == 31) mag = w4a16_bits_f32(0x7F800000u | (man << 13));   /* Inf, NaN */
    else mag = w4a16_bits_f32(((exp + 112u) << 23) | (man << 13));
    return w4a16_bits_f32(w4a16_f32_bits(mag) | sign);
}

W4A16_HD uint16_t w4a16_f32_to_f16(float f)
{
    uint32_t x = w4a16_f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) return (uint16_t)(sign | 0x7E00u);  /* NaN */
    if (ax >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); /* >= 65520 rounds to Inf */
    if (ax >= 0x38800000u) {                                 /* normal half: >= 2^-14 */
        /* rebias the exponent by -112 and round to nearest even on bit 13 */
        ax += 0xC8000FFFu + ((ax >> 13) & 1u);
        return (uint16_t)(sign | (ax >> 13));
    }
    /* subnormal half: steps of 2^-24; 1024 steps carry into the smallest normal */
    return (uint16_t)(sign | (uint16_t)nearbyintf(w4a16_bits_f32(ax) * 16777216.0f));
}

/* ---- E2M1 (FP4): magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6; bit 3 is the sign ---------- */

W4A16_HD float w4a16_e2m1_decode(uint8_t code)
{
    uint32_t e = (code >> 1) & 3u, m = code & 1u;
    float mag = e == 0 ? 0.5f * (float)m : ldexpf(1.0f + 0.5f * (float)m, (int)e - 1);
    return (code & 8u) ? -mag : mag;
}

/* Round to nearest even onto the E2M1 grid, saturating at +-6. The sign bit is copied
 * from v, so small negatives (and -0.0) give code 8. NaN gives 0 (callers reject NaN). */
W4A16_HD uint8_t w4a16_e2m1_encode(float v)
{
    float a = fabsf(v);
    uint8_t code;
    if (!(a > 0.25f)) code = 0;   /* ties go to the even code: 0.25 -> 0 */
    else if (a < 0.75f) code = 1; /* 0.75 -> 1.0 */
    else if (a <= 1.25f) code = 2;
    else if (a < 1.75f) code = 3; /* 1.75 -> 2.0 */
    else if (a <= 2.5f) code = 4;
    else if (a < 3.5f) code = 5;  /* 3.5 -> 4.0 */
    else if (a <= 5.0f) code = 6;
    else code = 7;
    return (uint8_t)(code | (signbit(v) ? 8u : 0u));
}

/* ---- the same rounding without a division per element (the GPU NVFP4 quantizer) ----
 * The reference encodes RN(x / d). A quantizer that divides once per block, y = RN(1 / d),
 * and keeps the reciprocal's remainder y_lo = (1 - d y) y (so y + y_lo = 1 / d to about
 * 2^-47), gets the same RN(x / d) from 4 operations per element: q = RN(x y + x y_lo)
 * with the first product exact inside the fused multiply-add is within half an ulp plus
 * 2^-46 relative, hence faithful; then Markstein's correction (premises: y correctly
 * rounded, q faithful; the remainder x - q d is then exact) rounds it correctly. Valid
 * while nothing over- or underflows: d and 1 / d normal, x / d below 2^100, and x / d
 * above 2^-100 or too small to matter. */
W4A16_HD float w4a16_reciprocal_remainder(float d, float y)
{
    return fmaf(-d, y, 1.0f) * y;
}

W4A16_HD float w4a16_div_by_reciprocal(float x, float d, float y, float y_lo)
{
    const float q = fmaf(x, y, x * y_lo); /* faithful */
    return fmaf(fmaf(-q, d, x), y, q);
}

/* The magnitude code c (0..7) of w4a16_e2m1_encode(q) for 0 <= q < 7, branch-free: the
 * grid has steps 0.5 below 2, 1 up to 4 and 2 beyond, and adding to 2^23 rounds to
 * integers with ties to even, so the code is
 *     c = min(RNE(2q), RNE(q) + 2, RNE(q / 2) + 4)
 * (each term is the code on its own range and too large on the ranges above it).
 * Returned biased, as the bits of the float 2^23 + c, i.e. W4A16_E2M1_CODE_BIAS + c: a
 * caller takes the low 3 bits, or sums shifted codes and removes the bias once. Checked
 * against w4a16_e2m1_encode for every float in [0, 7). */
#define W4A16_E2M1_CODE_BIAS 0x4B000000u /* the bits of 2^23 */

W4A16_HD uint32_t w4a16_e2m1_magnitude_biased(float q)
{
    const uint32_t fine = w4a16_f32_bits(fmaf(q, 2.0f, 8388608.0f));   /* 2^23 + RNE(2q) */
    const uint32_t unit = w4a16_f32_bits(q + 8388610.0f);              /* 2^23 + RNE(q) + 2 */
    const uint32_t coarse = w4a16_f32_bits(fmaf(q, 0.5f, 8388612.0f)); /* 2^23 + RNE(q/2) + 4 */
    const uint32_t m = fine < unit ? fine : unit;
    return m < coarse ? m : coarse;
}

/* ---- E4M3FN: bias 7, no Inf, 0x7F/0xFF are NaN, max 448 ------------------------- */

W4A16_HD float w4a16_e4m3_decode(uint8_t code)
{
    const uint32_t c = code & 0x7Fu;
    float mag;
    if (c == 0x7F) mag = NAN;
    else if (c < 8) mag = (float)c * W4A16_E4M3_MIN_SUBNORMAL;      /* subnormal: m * 2^-9 */
    else mag = w4a16_bits_f32((c << 20) + (120u << 23));          /* (1 + m/8) * 2^(e-7) */
    return (code & 0x80u) ? -mag : mag;
}

/* Round to nearest even, saturating at +-448 (no overflow to NaN). NaN -> 0x7F.
 * On the float's bits: the top 3 mantissa bits with the exponent rebased from 127 to 7
 * are the code, so rounding is an add on bit 20 whose carry may move into the exponent. */
W4A16_HD uint8_t w4a16_e4m3_encode(float v)
{
    const uint32_t bits = w4a16_f32_bits(v);
    const uint8_t sign = (uint8_t)((bits >> 24) & 0x80u);
    const uint32_t mag = bits & 0x7FFFFFFFu;
    uint32_t code;
    if (mag > 0x7F800000u) return (uint8_t)(sign | 0x7Fu);
    if (mag >= 0x43E00000u) {            /* >= 448 */
        code = 0x7E;
    } else if (mag < 0x3C800000u) {      /* below 2^-6: subnormal steps of 2^-9, 8 is the smallest normal */
        code = (uint32_t)nearbyintf(w4a16_bits_f32(mag) * 512.0f);
    } else {
        code = ((mag + 0x7FFFFu + ((mag >> 20) & 1u)) >> 20) - (120u << 3);
        if (code > 0x7E) code = 0x7E;    /* [464, 480) would round to 480, past the largest finite */
    }
    return (uint8_t)(code | sign);
}

/* ---- E8M0: 2^(code - 127), 255 is NaN -------------------------------------------- */

W4A16_HD float w4a16_e8m0_decode(uint8_t code)
{
    return code == 255 ? NAN : ldexpf(1.0f, (int)code - 127);
}

/* ---- the value of a 4-bit code before scaling, in every format ------------------- */

/* E2M1 for NVFP4 / MXFP4 (is_int4 == 0); for INT4 the signed nibble q in [-8, 7]
 * (symmetric) or the unsigned q in [0, 15] (with zero points). */
W4A16_HD float w4a16_code_value(uint8_t code, int is_int4, int has_zero_points)
{
    if (!is_int4) return w4a16_e2m1_decode(code);
    if (has_zero_points) return (float)code;
    return (float)(code < 8 ? code : (int)code - 16);
}

/* ---- the prepacked code order ---------------------------------------------------
 * A row of codes is cut into chunks of 32 elements (16 bytes, 4 little-endian 32-bit
 * words); the last chunk of a row may hold W = 1..3 words (K % 8 == 0). Within a chunk the
 * elements pair up as (2p, 2p + 1), and the prepacked layout puts pair p in slot j = p / W
 * of word w = p % W: element 2p in the word's low 16-bit half, 2p + 1 in its high half (like
 * the halves of a 16-bit pair register). In a whole chunk word w therefore holds the pairs
 * at elements 2w + 8j, j = 0..3 -- what thread w of a quad holds of the m16n8k16 (and wgmma)
 * A fragment over the chunk's two k16 steps, so the warpgroup kernel decodes a word straight
 * into its registers -- and slot j of the 4 words holds elements 8j .. 8j + 7 in pair
 * order, which is how the mma.sync kernels read it. Rows, bytes per row and the scales
 * stay as they are.
 *
 * Where a slot's 4 code bits sit depends on the format (w4a16_prepacked_bit). Positions
 * are bits of the 32-bit word for the element in its low half; the element in the high
 * half uses the same positions plus 16, modulo 32 (so E2M1 slot 1's sign, bit 18 for the
 * low-half element, is bit 2 of the high half, and for the high-half element bit 2 of
 * the low half):
 *   INT4: nibble j (bits 4j .. 4j + 3), as the magic-number decode wants them;
 *   E2M1 (NVFP4, MXFP4): slot 0 holds the 3 magnitude bits at 6..8 and the sign at 15,
 *     where a bf16 pair wants them (bits 8..6 and 15 of each half), so one mask decodes
 *     it; slots 1 and 2 hold slot 0's pattern rotated left by 3 and 6 (magnitude at 9..11
 *     and 12..14, sign at 18 and 21, i.e. in the other half), so one 32-bit rotation by
 *     3j and the same mask decode them; slot 3 takes the bits left over: magnitude bits
 *     0, 1, 2 at 3, 4, 0 and the sign at 1 (one mask, one multiply that makes
 *     non-overlapping copies, one mask; dequant.cuh). 8 integer operations a word for bf16
 *     instead of the 12 that nibble-ordered codes need. */

/* Where bit `bit` (0..3; 3 is E2M1's sign) of the code in slot `slot` sits in its 32-bit
 * word, for an element in the word's low half. */
W4A16_HD int w4a16_prepacked_bit(int is_int4, int slot, int bit)
{
    if (is_int4) return 4 * slot + bit;
    if (slot < 3) return (bit < 3 ? 6 + bit : 15) + 3 * slot;
    return bit < 2 ? 3 + bit : bit - 2; /* magnitude bits 0, 1 at 3, 4; bit 2 at 0; sign at 1 */
}

/* The same for the element in half `high_half` (0 or 1) of the word. */
W4A16_HD int w4a16_prepacked_bit_of_half(int is_int4, int slot, int bit, int high_half)
{
    return (w4a16_prepacked_bit(is_int4, slot, bit) + 16 * high_half) & 31;
}

/* The code in slot `slot` of the element in half `high_half` of a 32-bit word, and the word
 * with `code` added there. */
W4A16_HD uint8_t w4a16_slot_code(uint32_t word, int high_half, int is_int4, int slot)
{
    uint32_t code = 0;
    int bit;
    for (bit = 0; bit < 4; bit++)
        code |= (word >> w4a16_prepacked_bit_of_half(is_int4, slot, bit, high_half) & 1u) << bit;
    return (uint8_t)code;
}

W4A16_HD uint32_t w4a16_slot_put(uint32_t word, uint8_t code, int high_half, int is_int4, int slot)
{
    int bit;
    for (bit = 0; bit < 4; bit++)
        word |= ((uint32_t)code >> bit & 1u) << w4a16_prepacked_bit_of_half(is_int4, slot, bit, high_half);
    return word;
}

/* The words of chunk c (16 bytes each) of a row of bytes_per_row bytes (a multiple of 4). */
W4A16_HD int w4a16_prepack_chunk_words(int64_t bytes_per_row, int64_t c)
{
    const int64_t left = bytes_per_row - 16 * c;
    return left >= 16 ? 4 : (int)(left / 4);
}

/* Element e (0 .. 8 words - 1) of a prepacked chunk of `words` words: its word in the chunk
 * (its half is e % 2), and its slot there. */
W4A16_HD int w4a16_prepacked_word(int e, int words)
{
    return (e >> 1) % words;
}

W4A16_HD int w4a16_prepacked_slot_of(int e, int words)
{
    return (e >> 1) / words;
}

/* Little-endian 32-bit word `word` of a chunk. */
W4A16_HD uint32_t w4a16_load_word(const uint8_t *chunk, int word)
{
    const uint8_t *b = chunk + 4 * word;
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* The 4-bit code of element k of a row of codes (row_k elements) in either layout. */
W4A16_HD uint8_t w4a16_code_at(const uint8_t *row, int64_t k, int64_t row_k, int prepacked, int is_int4)
{
    if (prepacked) {
        const int64_t base = k & ~(int64_t)31;
        const int words = w4a16_prepack_chunk_words(row_k / 2, k >> 5), e = (int)(k - base);
        return w4a16_slot_code(w4a16_load_word(row + base / 2, w4a16_prepacked_word(e, words)), e & 1, is_int4,
                               w4a16_prepacked_slot_of(e, words));
    }
    return (uint8_t)((row[k >> 1] >> (4 * (k & 1))) & 0xF);
}

/* One chunk of `words` (1..4) words of codes, canonical -> prepacked (to_prepacked) or
 * back, into dst (4 * words bytes, not overlapping src). */
W4A16_HD void w4a16_prepack_chunk(const uint8_t *src, uint8_t *dst, int words, int to_prepacked, int is_int4)
{
    int e;
    if (to_prepacked) {
        uint32_t packed[4] = {0, 0, 0, 0};
        for (e = 0; e < 8 * words; e++) {
            const int w = w4a16_prepacked_word(e, words);
            const uint8_t code = (uint8_t)((src[e >> 1] >> (4 * (e & 1))) & 0xF);
            packed[w] = w4a16_slot_put(packed[w], code, e & 1, is_int4, w4a16_prepacked_slot_of(e, words));
        }
        for (e = 0; e < 4 * words; e++) dst[e] = (uint8_t)(packed[e >> 2] >> (8 * (e & 3)));
    } else {
        for (e = 0; e < 4 * words; e++) dst[e] = 0;
        for (e = 0; e < 8 * words; e++) {
            const uint8_t code = w4a16_slot_code(w4a16_load_word(src, w4a16_prepacked_word(e, words)), e & 1, is_int4,
                                                 w4a16_prepacked_slot_of(e, words));
            dst[e >> 1] = (uint8_t)(dst[e >> 1] | (code << (4 * (e & 1))));
        }
    }
}

/* ---- per-block scale rules ------------------------------------------------------ */

/* NVFP4 tensor scale: amax / (6 * 448). An all-zero tensor (or one so small that the
 * quotient underflows to zero) gets 1.0, which leaves every block at scale 1, codes 0. */
W4A16_HD float w4a16_nvfp4_global_scale(float amax)
{
    float gs = amax / W4A16_NVFP4_GLOBAL_DIVISOR;
    return gs > 0.0f ? gs : 1.0f;
}

/* NVFP4 block scale: amax_block / (6 * global_scale), clamped below at 2^-9, E4M3 RNE,
 * saturating at 448. An all-zero block gets 1.0. */
W4A16_HD uint8_t w4a16_nvfp4_scale_code(float block_amax, float global_scale)
{
    if (block_amax == 0.0f) return W4A16_E4M3_ONE;
    float s = block_amax / (W4A16_E2M1_MAX * global_scale);
    if (s < W4A16_E4M3_MIN_SUBNORMAL) s = W4A16_E4M3_MIN_SUBNORMAL;
    return w4a16_e4m3_encode(s);
}

/* MXFP4 block scale (OCP MX): exponent floor(log2(amax)) - 2, clamped to [-127, 127],
 * stored with bias 127. frexpf gives floor(log2) exactly, where log2f may round.
 * An all-zero block gets 2^0. */
W4A16_HD uint8_t w4a16_mxfp4_scale_code(float block_amax)
{
    if (block_amax == 0.0f) return W4A16_E8M0_ONE;
    int e2;
    frexpf(block_amax, &e2);
    int e = e2 - 1 - 2;
    if (e < -127) e = -127;
    return (uint8_t)(e + 127);
}

#endif /* W4A16_CODECS_H */
