/* qs8-dwconv for AVX2, exactly 9 taps (3x3 at any stride and dilation): as the xp kernel, with
 * a pixel's nine row pointers held in registers across its channel blocks and the taps unrolled
 * into four pairs and a single. */
#include "fn_dwconv.h"

static inline __m256i block9(const int8_t *const *r, size_t off, const int16_t *w, int tail, __m128i sh) {
    __m256i acc = _mm256_setzero_si256();
    for (int t = 0; t < 8; t += 2, w += 2 * FN_DWCONV_CR)
        acc = fn_qs8_dwconv_tap2_avx2(acc, fn_qs8_dwconv_load8_avx2(r[t] + off, tail, sh),
                                      fn_qs8_dwconv_load8_avx2(r[t + 1] + off, tail, sh), w);
    return fn_qs8_dwconv_tap2_avx2(acc, fn_qs8_dwconv_load8_avx2(r[8] + off, tail, sh), _mm_setzero_si128(), w);
}

void fn_qs8_dwconv_ukernel_9p8c__avx2(size_t channels, size_t output_width, size_t ks, const int8_t *const *input,
                                      size_t input_stride, const void *weights, int8_t *output,
                                      const fn_qs8_dwconv_params *p) {
    enum { CR = FN_DWCONV_CR };
    (void)ks; /* 9 */
    const size_t blk_bytes = FN_DWCONV_BLOCK_BYTES(9), full = channels / CR * CR, nt = channels - full;
    const __m128i sh = _mm_cvtsi32_si128((int)(CR - nt) * 8);
    const __m256i zp = _mm256_set1_epi32(p->zp_out), lo = _mm256_set1_epi32(p->lo), hi = _mm256_set1_epi32(p->hi);
    for (; output_width > 0; output_width--, input += input_stride, output += channels) {
        /* a local copy: stores through int8_t may alias input[], so the compiler keeps these in registers */
        const int8_t *r[9];
        for (int t = 0; t < 9; t++) r[t] = input[t];
        const uint8_t *blk = (const uint8_t *)weights;
        for (size_t c0 = 0; c0 < full; c0 += CR, blk += blk_bytes) {
            const __m256i acc = block9(r, c0, (const int16_t *)(const void *)(blk + 16 * CR), 0, sh);
            fn_qs8_dwconv_finish8_avx2(acc, blk, output + c0, c0, CR, p, zp, lo, hi);
        }
        if (nt > 0) {
            const __m256i acc = block9(r, channels - CR, (const int16_t *)(const void *)(blk + 16 * CR), 1, sh);
            fn_qs8_dwconv_finish8_avx2(acc, blk, output + full, full, nt, p, zp, lo, hi);
        }
    }
}
