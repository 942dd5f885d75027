/* qs8-vmul for AVX2: sixteen elements a step; the product of two int8 differences (at most
 * 255 * 255 in magnitude) is exact in vpmulld, then fn_qs8_vmul_out's MBQM on int32 lanes. */
#include <immintrin.h>
#include <string.h>

#include "fn_fixedpoint_avx2.h"
#include "fn_vbinary_avx2.h"
#include "fn_ukernels_eltwise.h"

typedef struct {
    __m256i a_zp, b_zp, bc;
    fn_mbqm_avx2_params m;
    __m256i zp, lo, hi;
} consts;

static consts consts_init(const fn_qs8_vmul_params *p, int32_t bc) {
    consts c = {_mm256_set1_epi32(p->a_zp), _mm256_set1_epi32(p->b_zp), _mm256_set1_epi32(bc),
                fn_mbqm_avx2_init(p->mult, p->shl, p->shr), _mm256_set1_epi32(p->out_zp),
                _mm256_set1_epi32(p->lo), _mm256_set1_epi32(p->hi)};
    return c;
}

static inline __m256i out8(__m256i prod, const consts *c) {
    const __m256i r = _mm256_add_epi32(fn_mbqm_avx2(prod, &c->m), c->zp);
    return _mm256_min_epi32(_mm256_max_epi32(r, c->lo), c->hi);
}

static inline __attribute__((always_inline)) __m128i step16(int bconst, __m128i va, __m128i vb, const consts *c) {
    const __m256i a0 = _mm256_sub_epi32(fn_s8lo_to_s32_avx2(va), c->a_zp);
    const __m256i a1 = _mm256_sub_epi32(fn_s8hi_to_s32_avx2(va), c->a_zp);
    const __m256i b0 = bconst ? c->bc : _mm256_sub_epi32(fn_s8lo_to_s32_avx2(vb), c->b_zp);
    const __m256i b1 = bconst ? c->bc : _mm256_sub_epi32(fn_s8hi_to_s32_avx2(vb), c->b_zp);
    return fn_low_bytes_avx2(out8(_mm256_mullo_epi32(a0, b0), c), out8(_mm256_mullo_epi32(a1, b1), c));
}

static inline __attribute__((always_inline)) void run(int bconst, size_t n, const int8_t *a, const int8_t *b,
                                                      int8_t *y, const consts *c) {
    FN_S8_BINARY_LOOP_AVX2(n, a, b, y, bconst, step16(bconst, va, vb, c));
}

void fn_qs8_vmul_ukernel__avx2(size_t n, const int8_t *a, const int8_t *b, int8_t *y, const fn_qs8_vmul_params *p) {
    const consts c = consts_init(p, 0);
    run(0, n, a, b, y, &c);
}

void fn_qs8_vmulc_ukernel__avx2(size_t n, const int8_t *a, int32_t b, int8_t *y, const fn_qs8_vmul_params *p) {
    const consts c = consts_init(p, b);
    run(1, n, a, NULL, y, &c);
}
