/* s8-maxpool and s8-sumpool for AVX2: 32 (max) or 16 (sum) channels a step, the pixels of the
 * window row one after another; channels left over take the scalar loop. */
#include <immintrin.h>

#include "fn_fixedpoint_avx2.h"
#include "fn_ukernels_eltwise.h"

void fn_s8_maxpool_ukernel__avx2(size_t k, size_t c, const int8_t *x, size_t stride, int8_t *y, int first) {
    size_t j = 0;
    for (; j + 32 <= c; j += 32) {
        __m256i m = first ? _mm256_set1_epi8(-128) : _mm256_loadu_si256((const __m256i *)(const void *)(y + j));
        for (size_t i = 0; i < k; i++)
            m = _mm256_max_epi8(m, _mm256_loadu_si256((const __m256i *)(const void *)(x + i * stride + j)));
        _mm256_storeu_si256((__m256i *)(void *)(y + j), m);
    }
    if (j < c) fn_s8_maxpool_ukernel__scalar(k, c - j, x + j, stride, y + j, first);
}

void fn_s8_sumpool_ukernel__avx2(size_t k, size_t c, const int8_t *x, size_t stride, int32_t *acc, int first) {
    size_t j = 0;
    for (; j + 16 <= c; j += 16) {
        __m256i *a0 = (__m256i *)(void *)(acc + j), *a1 = (__m256i *)(void *)(acc + j + 8);
        __m256i s0 = first ? _mm256_setzero_si256() : _mm256_loadu_si256(a0);
        __m256i s1 = first ? _mm256_setzero_si256() : _mm256_loadu_si256(a1);
        for (size_t i = 0; i < k; i++) {
            const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(x + i * stride + j));
            s0 = _mm256_add_epi32(s0, fn_s8lo_to_s32_avx2(v));
            s1 = _mm256_add_epi32(s1, fn_s8hi_to_s32_avx2(v));
        }
        _mm256_storeu_si256(a0, s0);
        _mm256_storeu_si256(a1, s1);
    }
    if (j < c) fn_s8_sumpool_ukernel__scalar(k, c - j, x + j, stride, acc + j, first);
}
