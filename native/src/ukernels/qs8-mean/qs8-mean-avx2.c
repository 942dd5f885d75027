/* MEAN's microkernels for AVX2. Sums wrap as the scalar uint32 sums do: addition mod 2^32 is
 * the same in any order and at any width that is later truncated to 32 bits. */
#include <immintrin.h>
#include <string.h>

#include "fn_fixedpoint_avx2.h"
#include "fn_ukernels_eltwise.h"

/* vpsadbw sums 8 unsigned bytes into each 64-bit lane; x ^ 0x80 = x + 128 as unsigned, so the
 * signed sum is that total minus 128 n. */
void fn_s8_rsum_ukernel__avx2(size_t n, const int8_t *x, uint32_t *acc) {
    const __m256i flip = _mm256_set1_epi8((char)0x80), zero = _mm256_setzero_si256();
    __m256i s = zero;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256i v = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(x + i)), flip);
        s = _mm256_add_epi64(s, _mm256_sad_epu8(v, zero));
    }
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)(void *)lanes, s);
    uint32_t total = (uint32_t)(lanes[0] + lanes[1] + lanes[2] + lanes[3]) - (uint32_t)(128u * (uint32_t)i);
    for (; i < n; i++) total += (uint32_t)(int32_t)x[i];
    *acc += total;
}

void fn_s8_vacc_ukernel__avx2(size_t n, const int8_t *x, uint32_t *acc) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(x + i));
        __m256i *a0 = (__m256i *)(void *)(acc + i), *a1 = (__m256i *)(void *)(acc + i + 8);
        _mm256_storeu_si256(a0, _mm256_add_epi32(_mm256_loadu_si256(a0), fn_s8lo_to_s32_avx2(v)));
        _mm256_storeu_si256(a1, _mm256_add_epi32(_mm256_loadu_si256(a1), fn_s8hi_to_s32_avx2(v)));
    }
    for (; i < n; i++) acc[i] += (uint32_t)(int32_t)x[i];
}

static inline __attribute__((always_inline)) __m128i requant16(int ruy, const uint32_t *acc, const __m256i add,
                                                               const fn_mbqm_avx2_params *m,
                                                               const fn_ruy_avx2_params *r, __m256i zp) {
    const __m256i lo = _mm256_set1_epi32(-128), hi = _mm256_set1_epi32(127);
    __m256i v[2];
    for (int h = 0; h < 2; h++) {
        const __m256i s = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(acc + 8 * h)), add);
        const __m256i q = _mm256_add_epi32(ruy ? fn_ruy_avx2(s, r) : fn_mbqm_avx2(s, m), zp);
        v[h] = _mm256_min_epi32(_mm256_max_epi32(q, lo), hi);
    }
    return fn_low_bytes_avx2(v[0], v[1]);
}

static inline __attribute__((always_inline)) void requant(int ruy, size_t n, const uint32_t *acc, int8_t *y,
                                                          const fn_qs8_requant_params *p) {
    const __m256i add = _mm256_set1_epi32(p->add), zp = _mm256_set1_epi32(p->zp);
    const fn_mbqm_avx2_params m = fn_mbqm_avx2_init(p->mult, p->shl, p->shr);
    const fn_ruy_avx2_params r = fn_ruy_avx2_init(p->mult, p->shl, p->shr);
    for (; n >= 16; n -= 16, acc += 16, y += 16)
        _mm_storeu_si128((__m128i *)(void *)y, requant16(ruy, acc, add, &m, &r, zp));
    if (n > 0) {
        uint32_t ta[16] = {0};
        int8_t ty[16];
        memcpy(ta, acc, n * sizeof *acc);
        _mm_storeu_si128((__m128i *)(void *)ty, requant16(ruy, ta, add, &m, &r, zp));
        memcpy(y, ty, n);
    }
}

void fn_qs8_requant_ukernel__avx2(size_t n, const uint32_t *acc, int8_t *y, const fn_qs8_requant_params *p) {
    if (p->ruy) requant(1, n, acc, y, p);
    else requant(0, n, acc, y, p);
}
