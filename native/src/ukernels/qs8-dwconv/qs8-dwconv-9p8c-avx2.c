/* qs8-dwconv for AVX2, exactly 9 taps (3x3 at any stride and dilation): as the xp kernel, with
 * the taps unrolled into four pairs and a single. */
#include "fn_dwconv.h"

static inline __m256i taps9(const int8_t *const *r, size_t ks, size_t off, const int16_t *w, int tail, __m128i sh) {
    (void)ks; /* 9 */
    __m256i acc = _mm256_setzero_si256();
    for (int t = 0; t < 8; t += 2, w += 2 * FN_DWCONV_CR)
        acc = fn_qs8_dwconv_tap2_avx2(acc, fn_qs8_dwconv_load8_avx2(r[t] + off, tail, sh),
                                      fn_qs8_dwconv_load8_avx2(r[t + 1] + off, tail, sh), w);
    return fn_qs8_dwconv_tap2_avx2(acc, fn_qs8_dwconv_load8_avx2(r[8] + off, tail, sh), _mm_setzero_si128(), w);
}

FN_DECLARE_QS8_DWCONV_UKERNEL(fn_qs8_dwconv_ukernel_9p8c__avx2) {
    (void)ks; /* 9 */
    fn_qs8_dwconv_avx2(taps9, channels, output_width, 9, input, input_stride, weights, output, p);
}
