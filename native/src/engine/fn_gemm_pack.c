/* Weight packing for the gemm microkernels: the block layout fn_ukernels.h describes, with the
 * tile shape and channel order of the configuration it is packed for. */
#include <string.h>

#include "fn_ukernels.h"

void fn_gemm_pack(const fn_gemm_config *cfg, int32_t n, int32_t k, const int8_t *w, const int32_t *bias,
                  const int32_t *mult, const int32_t *shift, int32_t zp_in, uint8_t *out) {
    const size_t nr = (size_t)cfg->nr, kc = fn_round_up((size_t)k, 4);
    const size_t blk_bytes = FN_GEMM_BLOCK_BYTES(nr, kc);
    const uint32_t a_zp = (uint32_t)(zp_in + cfg->a_offset);
    for (size_t n0 = 0; n0 < (size_t)n; n0 += nr) {
        uint8_t *blk = out + (n0 / nr) * blk_bytes;
        memset(blk, 0, blk_bytes);
        int32_t hdr[4][64];
        memset(hdr, 0, sizeof hdr);
        int8_t *wk = (int8_t *)(blk + 16 * nr);
        for (size_t j = 0; j < nr && n0 + j < (size_t)n; j++) {
            const size_t ch = n0 + j;
            const int8_t *wr = w + ch * (size_t)k;
            const size_t slot = cfg->w_slot ? cfg->w_slot[j] : j;
            uint32_t sum = 0;
            for (size_t q = 0; q < (size_t)k; q++) {
                sum += (uint32_t)(int32_t)wr[q];
                wk[((q / 4) * nr + slot) * 4 + (q % 4)] = wr[q];
            }
            /* sum w * (x - zp) = sum w * (x + a_offset) - (zp + a_offset) * sum w, mod 2^32 */
            hdr[0][j] = (int32_t)((bias ? (uint32_t)bias[ch] : 0u) - a_zp * sum);
            hdr[1][j] = mult[ch];
            hdr[2][j] = shift[ch] > 0 ? shift[ch] : 0;
            hdr[3][j] = shift[ch] > 0 ? 0 : -shift[ch];
        }
        for (int r = 0; r < 4; r++) memcpy(blk + (size_t)r * nr * 4, hdr[r], nr * 4);
    }
}
