/* s8-rmax and qs8-softmax for AVX2. The output step is float arithmetic, as in the scalar code,
 * done with the same single-precision operations: the product table[x] * inv (vmulps, no
 * contraction), roundf as trunc(v) plus sign(v) where |v - trunc(v)| >= 0.5 (v - trunc(v) is
 * exact in float, and trunc(v) +- 1 is exact wherever v has a fraction), and vcvttps2dq, which
 * gives INT32_MIN for NaN and out-of-range values as fn_f32_to_i32 does. */
#include <immintrin.h>
#include <string.h>

#include "fn_fixedpoint_avx2.h"
#include "fn_ukernels_eltwise.h"

int32_t fn_s8_rmax_ukernel__avx2(size_t n, const int8_t *x) {
    __m256i m = _mm256_set1_epi8(-128);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) m = _mm256_max_epi8(m, _mm256_loadu_si256((const __m256i *)(const void *)(x + i)));
    __m128i h = _mm_max_epi8(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
    h = _mm_max_epi8(h, _mm_srli_si128(h, 8));
    h = _mm_max_epi8(h, _mm_srli_si128(h, 4));
    h = _mm_max_epi8(h, _mm_srli_si128(h, 2));
    h = _mm_max_epi8(h, _mm_srli_si128(h, 1));
    int32_t r = (int8_t)_mm_cvtsi128_si32(h);
    for (; i < n; i++) r = x[i] > r ? x[i] : r;
    return r;
}

static inline __m256i out8(__m128i x8, const float *table, __m256 inv, __m256i zp) {
    const __m256 e = _mm256_i32gather_ps(table, _mm256_cvtepi8_epi32(x8), 4);
    const __m256 v = _mm256_mul_ps(e, inv);
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0f));
    const __m256 absfrac = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(v, t));
    const __m256 away = _mm256_cmp_ps(absfrac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 r = _mm256_add_ps(t, _mm256_and_ps(away, _mm256_or_ps(sign, _mm256_set1_ps(1.0f))));
    const __m256i q = _mm256_add_epi32(_mm256_cvttps_epi32(r), zp);
    return _mm256_min_epi32(_mm256_max_epi32(q, _mm256_set1_epi32(-128)), _mm256_set1_epi32(127));
}

void fn_qs8_softmax_ukernel__avx2(size_t n, const int8_t *x, const float *table, float inv, int32_t zp, int8_t *y) {
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i vzp = _mm256_set1_epi32(zp);
    for (; n >= 16; n -= 16, x += 16, y += 16) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)x);
        const __m128i r = fn_low_bytes_avx2(out8(v, table, vinv, vzp), out8(_mm_unpackhi_epi64(v, v), table, vinv, vzp));
        _mm_storeu_si128((__m128i *)(void *)y, r);
    }
    for (size_t i = 0; i < n; i++) y[i] = fn_qs8_softmax_one(x[i], table, inv, zp);
}
