/* AVX2 output stages shared by the AVX2 microkernels (include only from files built with -mavx2).
 *
 * Requantization parameters of 8 output channels sit in the packed weights as four rows of 8
 * int32: bias, multiplier M, max(shift, 0) and max(-shift, 0) (fn_ukernels.h, fn_dwconv.h). */
#ifndef FN_REQUANT_AVX2_H
#define FN_REQUANT_AVX2_H

#ifndef __AVX2__
#error "fn_requant_avx2.h needs a translation unit built with -mavx2"
#endif

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

/* fn_mul_ruy_x86(acc + bias, M, shift) + zp, clamped to [lo, hi], on 8 int32 lanes.
 *
 * x = (acc + bias) << shl (wrapping); v = (x*M + 2^30) >> 31; r = (v + 2^(shr-1)) >> shr.
 * x*M + 2^30 fits int64, and v is its bits 31..62: the low dword of a logical shift by 31 (even
 * lanes), the high dword of twice the sum (odd lanes). That is v exactly, except for x = M =
 * INT32_MIN, where v = 2^31 shows as INT32_MIN, a value no other lane takes (|v| < 2^31
 * otherwise). The second rounding is floor(v / 2^shr) plus bit shr-1 of v, which cannot
 * overflow (vpsrlvd by shr-1 = -1 gives 0); for the INT32_MIN lane it gives -2^(31-shr), whose
 * negation (wrapping, for shr = 0) is the answer. */
static inline __m256i fn_requant_ruy8_avx2(__m256i acc, const int32_t *hdr, __m256i zp, __m256i lo, __m256i hi) {
    const __m256i bias = _mm256_loadu_si256((const __m256i *)(const void *)hdr);
    const __m256i mult = _mm256_loadu_si256((const __m256i *)(const void *)(hdr + 8));
    const __m256i shl = _mm256_loadu_si256((const __m256i *)(const void *)(hdr + 16));
    const __m256i shr = _mm256_loadu_si256((const __m256i *)(const void *)(hdr + 24));
    const __m256i half = _mm256_set1_epi64x((int64_t)1 << 30);
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i x = _mm256_sllv_epi32(_mm256_add_epi32(acc, bias), shl);
    const __m256i pe = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epi32(x, mult), half), 31);
    __m256i po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(mult, 32)), half);
    po = _mm256_add_epi64(po, po);
    const __m256i v = _mm256_blend_epi32(pe, po, 0xAA);
    const __m256i bit = _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_sub_epi32(shr, one)), one);
    __m256i r = _mm256_add_epi32(_mm256_srav_epi32(v, shr), bit);
    const __m256i big = _mm256_cmpeq_epi32(v, _mm256_set1_epi32(INT32_MIN));
    r = _mm256_sub_epi32(_mm256_xor_si256(r, big), big);
    r = _mm256_add_epi32(r, zp);
    return _mm256_min_epi32(_mm256_max_epi32(r, lo), hi);
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

#endif
