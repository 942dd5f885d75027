/* qs8-qc8w-gemm for ARMv8.2 dot product (SDOT). SDOT multiplies signed by signed bytes, so the
 * activations are read as they are (a_offset 0). Each 32-byte weight group (8 channels x 4 k)
 * is two registers of 4 channels; one SDOT by lane adds 4 products of one row into 4 channels.
 * Sixteen bytes of each row are loaded at once and their four lanes meet four weight groups.
 * A is indirect (fn_ukernels.h): ks steps of kc bytes per row, the weights one run of ks * kc.
 * The epilogue is fn_requant_neon.h's. */
#include <arm_neon.h>
#include <string.h>

#include "fn_requant_neon.h"
#include "fn_ukernels.h"

enum { MR = 4, NR = 8 };

/* Four-byte tail of a row: one k group, broadcast to every lane. */
static inline int8x16_t load4_dup(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return vreinterpretq_s8_s32(vdupq_n_s32(v));
}

/* R rows (a constant after inlining: 1, or the whole tile), so a one-row GEMM (a batch-1
 * FULLY_CONNECTED) does not compute three copies of its row. */
static inline __attribute__((always_inline)) void gemm_rows(size_t R, size_t mr, size_t nc, size_t kc, size_t ks,
                                                            const int8_t *const *a, const void *w, int8_t *c,
                                                            size_t cm_stride, const fn_qs8_out_params *p) {
    const size_t blk_bytes = FN_GEMM_BLOCK_BYTES(NR, kc * ks);
    const uint8_t *blk = (const uint8_t *)w;
    const int32x4_t zp = vdupq_n_s32(p->zp_out), lo = vdupq_n_s32(p->lo), hi = vdupq_n_s32(p->hi);
    for (size_t n0 = 0; n0 < nc; n0 += NR, blk += blk_bytes) {
        const int32_t *hdr = (const int32_t *)(const void *)blk;
        const int8_t *wk = (const int8_t *)(blk + 16 * NR);
        int32x4_t acc[MR][2];
        for (size_t i = 0; i < R; i++) {
            acc[i][0] = vld1q_s32(hdr);
            acc[i][1] = vld1q_s32(hdr + 4);
        }
#define FN_DOT_LANE(lane)                                                     \
    do {                                                                      \
        const int8x16_t wl = vld1q_s8(wk), wh = vld1q_s8(wk + 16);            \
        wk += 32;                                                             \
        for (size_t i = 0; i < R; i++) {                                      \
            acc[i][0] = vdotq_laneq_s32(acc[i][0], wl, va[i], lane);          \
            acc[i][1] = vdotq_laneq_s32(acc[i][1], wh, va[i], lane);          \
        }                                                                     \
    } while (0)
        for (size_t t = 0; t < ks; t++) {
            /* rows past mr repeat the last one: computed, never stored */
            const int8_t *ar[MR];
            for (size_t i = 0; i < R; i++) ar[i] = a[t * MR + (i < mr ? i : mr - 1)];
            size_t k = 0;
            for (; k + 16 <= kc; k += 16) {
                int8x16_t va[MR];
                for (size_t i = 0; i < R; i++) va[i] = vld1q_s8(ar[i] + k);
                FN_DOT_LANE(0);
                FN_DOT_LANE(1);
                FN_DOT_LANE(2);
                FN_DOT_LANE(3);
            }
            /* kc is a multiple of 4: at most three groups remain, two as 8 bytes, then one as 4 */
            if (k + 8 <= kc) {
                int8x16_t va[MR];
                for (size_t i = 0; i < R; i++) va[i] = vcombine_s8(vld1_s8(ar[i] + k), vdup_n_s8(0));
                FN_DOT_LANE(0);
                FN_DOT_LANE(1);
                k += 8;
            }
            if (k < kc) {
                int8x16_t va[MR];
                for (size_t i = 0; i < R; i++) va[i] = load4_dup(ar[i] + k);
                FN_DOT_LANE(0);
            }
        }
#undef FN_DOT_LANE
        const requant4_params ql = requant4_load(hdr, NR), qh = requant4_load(hdr + 4, NR);
        const size_t nb = nc - n0 < NR ? nc - n0 : NR;
        for (size_t i = 0; i < mr; i++) {
            const int32x4_t rl = requant4(acc[i][0], &ql, zp, lo, hi);
            const int32x4_t rh = requant4(acc[i][1], &qh, zp, lo, hi);
            const int8x8_t r8 = vmovn_s16(vcombine_s16(vmovn_s32(rl), vmovn_s32(rh)));
            int8_t *cr = c + i * cm_stride + n0;
            if (nb == NR) {
                vst1_s8(cr, r8);
            } else {
                int8_t tmp[NR];
                vst1_s8(tmp, r8);
                memcpy(cr, tmp, nb);
            }
        }
    }
}

void fn_qs8_qc8w_gemm_ukernel_4x8c4__neondot(size_t mr, size_t nc, size_t kc, size_t ks, const int8_t *const *a,
                                             const void *w, int8_t *c, size_t cm_stride, const fn_qs8_out_params *p) {
    if (mr == 1) gemm_rows(1, mr, nc, kc, ks, a, w, c, cm_stride, p);
    else gemm_rows(MR, mr, nc, kc, ks, a, w, c, cm_stride, p);
}
