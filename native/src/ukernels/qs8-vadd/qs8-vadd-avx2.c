/* qs8-vadd for AVX2: sixteen elements a step, as two vectors of eight int32 lanes through
 * fn_qs8_vadd_in and fn_qs8_vadd_out's integer steps (fn_fixedpoint_avx2.h). A tail shorter than
 * sixteen goes through the same step from a zero-padded copy. */
#include <immintrin.h>
#include <string.h>

#include "fn_fixedpoint_avx2.h"
#include "fn_vbinary_avx2.h"
#include "fn_ukernels_eltwise.h"

typedef struct {
    __m256i zp, mult;
    __m128i ls;
    fn_rdbpot_avx2_params shr;
} in_consts;

typedef struct {
    in_consts a, b;
    __m256i bc; /* b' of the broadcast input (vaddc) */
    fn_mbqm_avx2_params out;
    __m256i zp, lo, hi;
} consts;

static consts consts_init(const fn_qs8_vadd_params *p, int32_t bc) {
    consts c;
    c.a.zp = _mm256_set1_epi32(p->a.zp);
    c.a.mult = _mm256_set1_epi32(p->a.mult);
    c.a.ls = _mm_cvtsi32_si128(p->ls);
    c.a.shr = fn_rdbpot_avx2_init(p->a.shr);
    c.b.zp = _mm256_set1_epi32(p->b.zp);
    c.b.mult = _mm256_set1_epi32(p->b.mult);
    c.b.ls = c.a.ls;
    c.b.shr = fn_rdbpot_avx2_init(p->b.shr);
    c.bc = _mm256_set1_epi32(bc);
    c.out = fn_mbqm_avx2_init(p->out_mult, p->out_shl, p->out_shr);
    c.zp = _mm256_set1_epi32(p->out_zp);
    c.lo = _mm256_set1_epi32(p->lo);
    c.hi = _mm256_set1_epi32(p->hi);
    return c;
}

/* fn_qs8_vadd_in: |(x - zp) << ls| < 2^28 (int8 x, zp and ls <= 20 as the check admits), so
 * fn_srdhm's saturating case (both operands INT32_MIN) cannot occur. */
static inline __m256i in8(__m256i x, const in_consts *c) {
    const __m256i v = _mm256_sll_epi32(_mm256_sub_epi32(x, c->zp), c->ls);
    return fn_rdbpot_avx2(fn_srdhm_avx2_unsat(v, c->mult), &c->shr);
}

/* fn_qs8_vadd_out: the raw value in wrapping int32 lanes; (a' - b')^2 mod 2^32 is the low half of
 * the square of (a' - b') mod 2^32, so vpmulld of the wrapped difference is exact. */
static inline __attribute__((always_inline)) __m256i out8(int kind, __m256i a, __m256i b, const consts *c) {
    __m256i raw;
    switch (kind) {
    case FN_VADD_ADD: raw = _mm256_add_epi32(a, b); break;
    case FN_VADD_SUB: raw = _mm256_sub_epi32(a, b); break;
    case FN_VADD_RSUB: raw = _mm256_sub_epi32(b, a); break;
    default: { const __m256i d = _mm256_sub_epi32(a, b); raw = _mm256_mullo_epi32(d, d); } break;
    }
    const __m256i r = _mm256_add_epi32(fn_mbqm_avx2(raw, &c->out), c->zp);
    return _mm256_min_epi32(_mm256_max_epi32(r, c->lo), c->hi);
}

static inline __attribute__((always_inline)) __m128i step16(int kind, int bconst, __m128i va, __m128i vb,
                                                            const consts *c) {
    const __m256i a0 = in8(fn_s8lo_to_s32_avx2(va), &c->a), a1 = in8(fn_s8hi_to_s32_avx2(va), &c->a);
    const __m256i b0 = bconst ? c->bc : in8(fn_s8lo_to_s32_avx2(vb), &c->b);
    const __m256i b1 = bconst ? c->bc : in8(fn_s8hi_to_s32_avx2(vb), &c->b);
    return fn_low_bytes_avx2(out8(kind, a0, b0, c), out8(kind, a1, b1, c));
}

static inline __attribute__((always_inline)) void run(int kind, int bconst, size_t n, const int8_t *a,
                                                      const int8_t *b, int8_t *y, const consts *c) {
    FN_S8_BINARY_LOOP_AVX2(n, a, b, y, bconst, step16(kind, bconst, va, vb, c));
}

void fn_qs8_vadd_ukernel__avx2(size_t n, const int8_t *a, const int8_t *b, int8_t *y, const fn_qs8_vadd_params *p) {
    const consts c = consts_init(p, 0);
    switch (p->kind) {
    case FN_VADD_ADD: run(FN_VADD_ADD, 0, n, a, b, y, &c); break;
    case FN_VADD_SUB: run(FN_VADD_SUB, 0, n, a, b, y, &c); break;
    case FN_VADD_RSUB: run(FN_VADD_RSUB, 0, n, a, b, y, &c); break;
    default: run(FN_VADD_SQDIFF, 0, n, a, b, y, &c); break;
    }
}

void fn_qs8_vaddc_ukernel__avx2(size_t n, const int8_t *a, int32_t b, int8_t *y, const fn_qs8_vadd_params *p) {
    const consts c = consts_init(p, b);
    switch (p->kind) {
    case FN_VADD_ADD: run(FN_VADD_ADD, 1, n, a, NULL, y, &c); break;
    case FN_VADD_SUB: run(FN_VADD_SUB, 1, n, a, NULL, y, &c); break;
    case FN_VADD_RSUB: run(FN_VADD_RSUB, 1, n, a, NULL, y, &c); break;
    default: run(FN_VADD_SQDIFF, 1, n, a, NULL, y, &c); break;
    }
}
