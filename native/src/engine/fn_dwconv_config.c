/* The depthwise microkernels per ISA, and the weight packing they all read (fn_dwconv.h). */
#include <string.h>

#include "fn_cpu.h"
#include "fn_dwconv.h"

static const fn_dwconv_config CONFIGS[FN_ISA_COUNT] = {
    [FN_ISA_SCALAR] = {NULL, fn_qs8_dwconv_ukernel_xp8c__scalar, FN_ISA_SCALAR},
#if defined(__x86_64__)
    [FN_ISA_AVX2] = {fn_qs8_dwconv_ukernel_9p8c__avx2, fn_qs8_dwconv_ukernel_xp8c__avx2, FN_ISA_AVX2},
    /* an AVX-512 machine runs AVX2 code; the depthwise kernels are load-bound, not width-bound */
    [FN_ISA_AVX512VNNI] = {fn_qs8_dwconv_ukernel_9p8c__avx2, fn_qs8_dwconv_ukernel_xp8c__avx2, FN_ISA_AVX2},
#endif
#if defined(__aarch64__)
    /* plain NEON: runs on the "neon" ISA (dot product present) and needs none of it */
    [FN_ISA_NEONDOT] = {NULL, fn_qs8_dwconv_ukernel_xp8c__neon, FN_ISA_NEONDOT},
#endif
};

const fn_dwconv_config *fn_dwconv_config_for(int isa) {
    if (isa < 0 || isa >= FN_ISA_COUNT) return NULL;
    return CONFIGS[isa].ukernel_xp != NULL ? &CONFIGS[isa] : &CONFIGS[FN_ISA_SCALAR];
}

void fn_dwconv_pack(int32_t channels, int32_t kh, int32_t kw, const int8_t *f, const int32_t *bias,
                    const int32_t *mult, const int32_t *shift, int32_t zp_in, uint8_t *out) {
    enum { CR = FN_DWCONV_CR };
    const size_t C = (size_t)channels, ks = (size_t)kh * (size_t)kw;
    const size_t blk_bytes = FN_DWCONV_BLOCK_BYTES(ks);
    for (size_t c0 = 0; c0 < C; c0 += CR, out += blk_bytes) {
        memset(out, 0, blk_bytes);
        int32_t hdr[4][CR];
        memset(hdr, 0, sizeof hdr);
        int16_t *wp = (int16_t *)(void *)(out + 16 * CR);
        for (size_t j = 0; j < CR && c0 + j < C; j++) {
            const size_t c = c0 + j;
            uint32_t sum = 0;
            for (size_t t = 0; t < ks; t++) {
                const int8_t v = f[t * C + c];
                sum += (uint32_t)(int32_t)v;
                wp[(t / 2 * CR + j) * 2 + t % 2] = v;
            }
            /* sum w * (x - zp) = sum w * x - zp * sum w, mod 2^32 */
            hdr[0][j] = (int32_t)((bias ? (uint32_t)bias[c] : 0u) - (uint32_t)zp_in * sum);
            hdr[1][j] = mult[c];
            hdr[2][j] = shift[c] > 0 ? shift[c] : 0;
            hdr[3][j] = shift[c] > 0 ? 0 : -shift[c];
        }
        memcpy(out, hdr, sizeof hdr);
    }
}
