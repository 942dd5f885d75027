/* qs8-dwconv, any number of taps, portable C: the twin every SIMD variant is tested against, and
 * the kernel of every ISA without its own. */
#include "fn_dwconv.h"

void fn_qs8_dwconv_ukernel_xp8c__scalar(size_t channels, size_t output_width, size_t ks, const int8_t *const *input,
                                        size_t input_stride, const void *weights, int8_t *output,
                                        const fn_qs8_dwconv_params *p) {
    enum { CR = FN_DWCONV_CR };
    const size_t blk_bytes = FN_DWCONV_BLOCK_BYTES(ks);
    for (; output_width > 0; output_width--, input += input_stride, output += channels) {
        const uint8_t *blk = (const uint8_t *)weights;
        for (size_t c0 = 0; c0 < channels; c0 += CR, blk += blk_bytes) {
            const int32_t *hdr = (const int32_t *)(const void *)blk;
            const int16_t *w = (const int16_t *)(const void *)(blk + 16 * CR);
            const size_t nc = channels - c0 < CR ? channels - c0 : CR;
            uint32_t acc[CR];
            for (size_t j = 0; j < nc; j++) acc[j] = (uint32_t)hdr[j];
            for (size_t t = 0; t < ks; t++) {
                const int8_t *x = input[t] + c0;
                const int16_t *wt = w + t / 2 * 2 * CR + t % 2;
                for (size_t j = 0; j < nc; j++) acc[j] += (uint32_t)((int32_t)x[j] * (int32_t)wt[2 * j]);
            }
            for (size_t j = 0; j < nc; j++) output[c0 + j] = fn_qs8_dwconv_out((int32_t)acc[j], hdr, j, c0, p);
        }
    }
}
