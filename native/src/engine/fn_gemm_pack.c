/* Weight packing for the gemm microkernels: the block layout fn_ukernels.h describes, with the
 * tile shape and channel order of the configuration it is packed for. */
#include <string.h>

#include "fn_ukernels.h"

/* Rows 4..11 of an AVX2 block (FN_GEMM_HDR_ROWS_AVX2) from its first four: per channel, what
 * fn_requant8_avx2_prepare computes on 8 lanes, here once per block and in plain C. */
static void avx2_rows(const int32_t hdr[4][64], int32_t zp_out, int32_t rows[8][8]) {
    int64_t rnd[8], sh[8];
    memset(rows, 0, sizeof(int32_t[8][8]));
    for (int j = 0; j < 8; j++) {
        const int32_t rs = hdr[3][j]; /* 0..31: fn_check keeps shifts in [-31, 31] */
        rnd[j] = ((int64_t)1 << 62) + ((int64_t)1 << 30) + (rs > 0 ? (int64_t)1 << (30 + rs) : 0);
        sh[j] = 31 + rs;
        rows[5][j] = (int32_t)((uint32_t)zp_out - (1u << (31 - rs))); /* zp_c */
    }
    for (int i = 0; i < 4; i++) {
        rows[0][2 * i] = hdr[1][2 * i + 1]; /* mult of the odd channels, in even slots */
        memcpy(&rows[1][2 * i], &rnd[2 * i], 8);
        memcpy(&rows[2][2 * i], &rnd[2 * i + 1], 8);
        memcpy(&rows[3][2 * i], &sh[2 * i], 8);
        memcpy(&rows[4][2 * i], &sh[2 * i + 1], 8);
    }
    /* the accumulators' start: channels 0 1 4 5 and 2 3 6 7, each bias before a zero */
    static const int first[4] = {0, 1, 4, 5};
    for (int i = 0; i < 4; i++) {
        rows[6][2 * i] = hdr[0][first[i]];
        rows[7][2 * i] = hdr[0][first[i] + 2];
    }
}

void fn_gemm_pack(const fn_gemm_config *cfg, int32_t n, int32_t k, const int8_t *w, const int32_t *bias,
                  const int32_t *mult, const int32_t *shift, int32_t zp_in, int32_t zp_out, uint8_t *out) {
    const size_t nr = (size_t)cfg->nr, kc = fn_round_up((size_t)k, 4);
    const size_t blk_bytes = fn_gemm_block_bytes(cfg, kc);
    const uint32_t a_zp = (uint32_t)(zp_in + cfg->a_offset);
    for (size_t n0 = 0; n0 < (size_t)n; n0 += nr) {
        uint8_t *blk = out + (n0 / nr) * blk_bytes;
        memset(blk, 0, blk_bytes);
        int32_t hdr[4][64];
        memset(hdr, 0, sizeof hdr);
        int8_t *wk = (int8_t *)(blk + 4 * (size_t)cfg->hdr_rows * nr);
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
        if (cfg->hdr_rows == FN_GEMM_HDR_ROWS_AVX2 && nr == 8) {
            int32_t rows[8][8];
            avx2_rows((const int32_t(*)[64])hdr, zp_out, rows);
            memcpy(blk + 4 * nr * 4, rows, sizeof rows);
        }
    }
}
