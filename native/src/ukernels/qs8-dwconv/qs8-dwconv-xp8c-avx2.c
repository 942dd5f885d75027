/* qs8-dwconv for AVX2, any number of taps: per block of 8 channels and pair of taps, the two
 * rows' bytes are interleaved, sign-extended to int16 and multiplied with vpmaddwd against the
 * int16 weight pairs (exact: each product of int8 fits int16, their sum int32). */
#include "fn_dwconv.h"

static inline __m256i taps(const int8_t *const *in, size_t ks, size_t off, const int16_t *w, int tail, __m128i sh) {
    __m256i acc = _mm256_setzero_si256();
    size_t t = 0;
    for (; t + 2 <= ks; t += 2, w += 2 * FN_DWCONV_CR)
        acc = fn_qs8_dwconv_tap2_avx2(acc, fn_qs8_dwconv_load8_avx2(in[t] + off, tail, sh),
                                      fn_qs8_dwconv_load8_avx2(in[t + 1] + off, tail, sh), w);
    if (t < ks) acc = fn_qs8_dwconv_tap2_avx2(acc, fn_qs8_dwconv_load8_avx2(in[t] + off, tail, sh), _mm_setzero_si128(), w);
    return acc;
}

FN_DECLARE_QS8_DWCONV_UKERNEL(fn_qs8_dwconv_ukernel_xp8c__avx2) {
    fn_qs8_dwconv_avx2(taps, channels, output_width, ks, input, input_stride, weights, output, p);
}
