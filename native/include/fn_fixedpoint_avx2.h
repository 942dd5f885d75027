/* fn_fixedpoint.h on eight int32 lanes (AVX2; include only from *-avx2.c files). Each helper
 * computes, lane by lane, the exact value of its scalar twin, with 64-bit lane products: never
 * floats, never a rounding the scalar code does not do. */
#ifndef FN_FIXEDPOINT_AVX2_H
#define FN_FIXEDPOINT_AVX2_H

#include <immintrin.h>
#include <stdint.h>

/* The bits 31..62 of (int64)a * b + 2^30 per lane: floor((a*b + 2^30) / 2^31) wherever that fits
 * int32, which is fn_srdhm's value (gemmlowp's nudge and truncating division round half up, the
 * same floor). The products of even lanes come from vpmuldq on the low dwords, those of odd
 * lanes from the high dwords moved down; the blend puts both results back in place. */
static inline __m256i fn_srdhm_avx2_unsat(__m256i a, __m256i b) {
    const __m256i half = _mm256_set1_epi64x((int64_t)1 << 30);
    const __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(a, b), half);
    const __m256i po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(b, 32)), half);
    return _mm256_blend_epi32(_mm256_srli_epi64(pe, 31), _mm256_slli_epi64(po, 1), 0xAA);
}

/* fn_srdhm exactly. floor((a*b + 2^30) / 2^31) lies in [-2^31 + 1, 2^31] for all int32 a, b and
 * is 2^31 only for a == b == INT32_MIN; that value reads as INT32_MIN in 32 bits and no other
 * does, so flipping exactly the INT32_MIN lanes gives the scalar INT32_MAX. */
static inline __m256i fn_srdhm_avx2(__m256i a, __m256i b) {
    const __m256i r = fn_srdhm_avx2_unsat(a, b);
    return _mm256_xor_si256(r, _mm256_cmpeq_epi32(r, _mm256_set1_epi32(INT32_MIN)));
}

/* fn_rdbpot(x, e) exactly, with gemmlowp's own steps: (x >> e) + ((x & mask) > (mask >> 1) + (x < 0))
 * for mask = 2^e - 1 and 0 <= e <= 31. The comparison is of two non-negative int32 values. */
typedef struct {
    __m128i e;
    __m256i mask, half;
} fn_rdbpot_avx2_params;

static inline fn_rdbpot_avx2_params fn_rdbpot_avx2_init(int32_t e) {
    const int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    fn_rdbpot_avx2_params p = {_mm_cvtsi32_si128(e), _mm256_set1_epi32(mask), _mm256_set1_epi32(mask >> 1)};
    return p;
}

static inline __m256i fn_rdbpot_avx2(__m256i x, const fn_rdbpot_avx2_params *p) {
    const __m256i rem = _mm256_and_si256(x, p->mask);
    const __m256i thr = _mm256_add_epi32(p->half, _mm256_srli_epi32(x, 31));
    return _mm256_sub_epi32(_mm256_sra_epi32(x, p->e), _mm256_cmpgt_epi32(rem, thr));
}

/* fn_mbqm(x, mult, shl - shr) with shl = max(shift, 0), shr = max(-shift, 0): the wrapping left
 * shift, fn_srdhm, fn_rdbpot. */
typedef struct {
    __m256i mult;
    __m128i shl;
    fn_rdbpot_avx2_params shr;
} fn_mbqm_avx2_params;

static inline fn_mbqm_avx2_params fn_mbqm_avx2_init(int32_t mult, int32_t shl, int32_t shr) {
    fn_mbqm_avx2_params p = {_mm256_set1_epi32(mult), _mm_cvtsi32_si128(shl), fn_rdbpot_avx2_init(shr)};
    return p;
}

static inline __m256i fn_mbqm_avx2(__m256i x, const fn_mbqm_avx2_params *p) {
    return fn_rdbpot_avx2(fn_srdhm_avx2(_mm256_sll_epi32(x, p->shl), p->mult), &p->shr);
}

/* fn_mul_ruy_x86(x, mult, shl - shr): v = ((x << shl) * mult + 2^30) >> 31 and then
 * (v + 2^(shr-1)) >> shr, both floors of int64 values, nest into one floor:
 *   r = ((x << shl) * mult + 2^30 + [shr > 0] 2^(30 + shr)) >> (31 + shr),
 * an int64 below 2^63 in magnitude; fn_mul_ruy_x86 keeps its low 32 bits. AVX2 has no 64-bit
 * arithmetic shift, so the shift is logical on v + 2^63 with 2^(63 - k) taken back after. */
typedef struct {
    __m256i mult, nudge, bias_out;
    __m128i shl, k;
} fn_ruy_avx2_params;

static inline fn_ruy_avx2_params fn_ruy_avx2_init(int32_t mult, int32_t shl, int32_t shr) {
    const int64_t nudge = ((int64_t)1 << 30) + (shr > 0 ? (int64_t)1 << (30 + shr) : 0);
    fn_ruy_avx2_params p = {_mm256_set1_epi32(mult), _mm256_set1_epi64x(nudge),
                            _mm256_set1_epi64x((int64_t)((uint64_t)1 << (63 - (31 + shr)))),
                            _mm_cvtsi32_si128(shl), _mm_cvtsi32_si128(31 + shr)};
    return p;
}

static inline __m256i fn_ruy_avx2(__m256i x, const fn_ruy_avx2_params *p) {
    const __m256i xs = _mm256_sll_epi32(x, p->shl);
    const __m256i sign = _mm256_set1_epi64x(INT64_MIN);
    __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(xs, p->mult), p->nudge);
    __m256i po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(xs, 32), _mm256_srli_epi64(p->mult, 32)), p->nudge);
    pe = _mm256_sub_epi64(_mm256_srl_epi64(_mm256_xor_si256(pe, sign), p->k), p->bias_out);
    po = _mm256_sub_epi64(_mm256_srl_epi64(_mm256_xor_si256(po, sign), p->k), p->bias_out);
    return _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
}

/* (int8) of sixteen int32 lanes r0 (elements 0-7) and r1 (8-15): their low bytes, in order, as C's
 * conversion keeps them (not saturated: a clamp range outside int8 must wrap as it does in C). */
static inline __m128i fn_low_bytes_avx2(__m256i r0, __m256i r1) {
    const __m256i ff = _mm256_set1_epi32(0xFF);
    const __m256i w = _mm256_packus_epi32(_mm256_and_si256(r0, ff), _mm256_and_si256(r1, ff));
    const __m256i q = _mm256_permute4x64_epi64(w, 0xD8);
    return _mm_packus_epi16(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
}

/* Sign-extends bytes 0-7 and 8-15 of v to two vectors of int32. */
static inline __m256i fn_s8lo_to_s32_avx2(__m128i v) { return _mm256_cvtepi8_epi32(v); }
static inline __m256i fn_s8hi_to_s32_avx2(__m128i v) { return _mm256_cvtepi8_epi32(_mm_unpackhi_epi64(v, v)); }

#endif
