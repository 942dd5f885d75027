/* The AVX2 output stage shared by the AVX2 microkernels (include only from files built with
 * -mavx2). The requantization parameters of 8 output channels sit in the packed weights as four
 * rows of 8 int32: bias, multiplier M, max(shift, 0) and max(-shift, 0) (fn_ukernels.h,
 * fn_dwconv.h). */
#ifndef FN_REQUANT_AVX2_H
#define FN_REQUANT_AVX2_H

#ifndef __AVX2__
#error "fn_requant_avx2.h needs a translation unit built with -mavx2"
#endif

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

/* fn_mul_ruy_x86(acc + bias, M, shift) + zp on 8 lanes, in one rounding shift per lane. Its two
 * roundings nest exactly:
 *   ((p + 2^30) >> 31 + 2^(rs-1)) >> rs  ==  (p + 2^30 + [rs > 0] 2^(30+rs)) >> (31 + rs)
 * for p = (x << ls) * M (floor divisions by powers of two compose). AVX2 has no 64-bit arithmetic
 * shift, so 2^62 is added too: the sum is then in [0, 2^64) for every int32 x and M, the logical
 * shift by s = 31 + rs gives the result plus 2^(62-s), and that constant (mod 2^32) is taken off
 * together with the zero point. What depends only on the channel is prepared once per block. */
typedef struct {
    __m256i bias, mult_e, mult_o, shl, rnd_e, rnd_o, sh_e, sh_o, zp_c;
} fn_requant8_avx2_consts;

static inline fn_requant8_avx2_consts fn_requant8_avx2_prepare(const int32_t *hdr, int32_t zp_out) {
    fn_requant8_avx2_consts k;
    k.bias = _mm256_loadu_si256((const __m256i *)(const void *)hdr);
    const __m256i mult = _mm256_loadu_si256((const __m256i *)(const void *)(hdr + 8));
    k.shl = _mm256_loadu_si256((const __m256i *)(const void *)(hdr + 16));
    const __m256i shr = _mm256_loadu_si256((const __m256i *)(const void *)(hdr + 24));
    k.mult_e = mult;
    k.mult_o = _mm256_srli_epi64(mult, 32);
    const __m256i lo32 = _mm256_set1_epi64x(0xFFFFFFFF);
    const __m256i rs_e = _mm256_and_si256(shr, lo32), rs_o = _mm256_srli_epi64(shr, 32);
    const __m256i base = _mm256_set1_epi64x(((int64_t)1 << 62) + ((int64_t)1 << 30));
    const __m256i two30 = _mm256_set1_epi64x((int64_t)1 << 30), zero = _mm256_setzero_si256();
    const __m256i t_e = _mm256_andnot_si256(_mm256_cmpeq_epi64(rs_e, zero), _mm256_sllv_epi64(two30, rs_e));
    const __m256i t_o = _mm256_andnot_si256(_mm256_cmpeq_epi64(rs_o, zero), _mm256_sllv_epi64(two30, rs_o));
    k.rnd_e = _mm256_add_epi64(base, t_e);
    k.rnd_o = _mm256_add_epi64(base, t_o);
    const __m256i s31 = _mm256_set1_epi64x(31);
    k.sh_e = _mm256_add_epi64(rs_e, s31);
    k.sh_o = _mm256_add_epi64(rs_o, s31);
    /* 2^(62 - s) = 2^(31 - rs) in each 32-bit lane */
    const __m256i c32 = _mm256_sllv_epi32(_mm256_set1_epi32(1), _mm256_sub_epi32(_mm256_set1_epi32(31), shr));
    k.zp_c = _mm256_sub_epi32(_mm256_set1_epi32(zp_out), c32);
    return k;
}

/* The constants of 8 channels as a block with FN_GEMM_HDR_ROWS_AVX2 rows holds them, prepared at
 * packing (fn_ukernels.h); bias is zero there: the accumulators start from it. */
static inline fn_requant8_avx2_consts fn_requant8_avx2_load(const int32_t *hdr) {
#define FN_RQ_ROW(r) _mm256_loadu_si256((const __m256i *)(const void *)(hdr + 8 * (r)))
    const fn_requant8_avx2_consts k = {_mm256_setzero_si256(), FN_RQ_ROW(1), FN_RQ_ROW(4), FN_RQ_ROW(2),
                                       FN_RQ_ROW(5), FN_RQ_ROW(6), FN_RQ_ROW(7), FN_RQ_ROW(8), FN_RQ_ROW(9)};
#undef FN_RQ_ROW
    return k;
}

/* x (the sum with its bias) through fn_mul_ruy_x86, + zp: int32 lanes, not clamped yet. */
static inline __m256i fn_requant8_avx2_biased(__m256i x0, const fn_requant8_avx2_consts *k) {
    const __m256i x = _mm256_sllv_epi32(x0, k->shl);
    const __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(x, k->mult_e), k->rnd_e);
    const __m256i po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), k->mult_o), k->rnd_o);
    const __m256i qe = _mm256_srlv_epi64(pe, k->sh_e), qo = _mm256_srlv_epi64(po, k->sh_o);
    return _mm256_add_epi32(_mm256_blend_epi32(qe, _mm256_slli_epi64(qo, 32), 0xAA), k->zp_c);
}

/* acc + bias through fn_mul_ruy_x86, + zp: int32 lanes, not clamped yet. */
static inline __m256i fn_requant8_avx2_unclamped(__m256i acc, const fn_requant8_avx2_consts *k) {
    return fn_requant8_avx2_biased(_mm256_add_epi32(acc, k->bias), k);
}

/* As fn_requant8_avx2_unclamped, clamped: int32 lanes in [lo, hi]. */
static inline __m256i fn_requant8_avx2(__m256i acc, const fn_requant8_avx2_consts *k, __m256i lo, __m256i hi) {
    return _mm256_min_epi32(_mm256_max_epi32(fn_requant8_avx2_unclamped(acc, k), lo), hi);
}

/* Stores n <= 8 lanes of r, each already in [-128, 127], as int8 at dst. */
static inline void fn_store_s8x8_avx2(int8_t *dst, __m256i r, size_t n) {
    const __m128i r16 = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    const __m128i r8 = _mm_packs_epi16(r16, r16);
    if (n == 8) {
        _mm_storel_epi64((__m128i *)(void *)dst, r8);
        return;
    }
    int8_t tmp[16];
    _mm_storeu_si128((__m128i *)(void *)tmp, r8);
    for (size_t j = 0; j < n; j++) dst[j] = tmp[j];
}

/* Stores the first n <= 8 bytes of qword i of rows (int8) at dst + i * stride, for rows i < m <= 4. */
static inline void fn_store_s8x8_rows_avx2(int8_t *dst, size_t stride, __m256i rows, size_t m, size_t n) {
    if (n == 8) {
        const __m128i r01 = _mm256_castsi256_si128(rows), r23 = _mm256_extracti128_si256(rows, 1);
        /* _mm_storel_epi64 stores through an unaligned type; movhpd through a double * would
         * be a misaligned access in C's terms wherever stride is not a multiple of 8 */
        _mm_storel_epi64((__m128i *)(void *)dst, r01);
        if (m > 1) _mm_storel_epi64((__m128i *)(void *)(dst + stride), _mm_unpackhi_epi64(r01, r01));
        if (m > 2) _mm_storel_epi64((__m128i *)(void *)(dst + 2 * stride), r23);
        if (m > 3) _mm_storel_epi64((__m128i *)(void *)(dst + 3 * stride), _mm_unpackhi_epi64(r23, r23));
        return;
    }
    int8_t tmp[32];
    _mm256_storeu_si256((__m256i *)(void *)tmp, rows);
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) dst[i * stride + j] = tmp[8 * i + j];
}

#endif
