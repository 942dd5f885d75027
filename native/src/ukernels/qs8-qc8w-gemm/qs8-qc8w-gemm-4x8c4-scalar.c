/* qs8-qc8w-gemm, portable C: the twin every SIMD variant is tested against. */
#include "fn_kernels.h"
#include "fn_ukernels.h"

void fn_qs8_qc8w_gemm_ukernel_4x8c4__scalar(size_t mr, size_t nc, size_t kc, size_t ks, const int8_t *const *a,
                                            const void *w, int8_t *c, size_t cm_stride,
                                            const fn_qs8_out_params *p) {
    enum { MR = 4, NR = 8 };
    const uint8_t *blk = (const uint8_t *)w;
    for (size_t n0 = 0; n0 < nc; n0 += NR) {
        const int32_t *hdr = (const int32_t *)(const void *)blk;
        const int8_t *wk = (const int8_t *)(blk + 16 * NR);
        const size_t nb = nc - n0 < NR ? nc - n0 : NR;
        for (size_t i = 0; i < mr; i++) {
            uint32_t acc[NR];
            for (size_t j = 0; j < NR; j++) acc[j] = (uint32_t)hdr[j];
            const int8_t *wq = wk;
            for (size_t t = 0; t < ks; t++) {
                const int8_t *ar = a[t * MR + i];
                for (size_t k = 0; k < kc; k += 4, wq += 4 * NR)
                    for (size_t j = 0; j < NR; j++)
                        for (size_t q = 0; q < 4; q++)
                            acc[j] += (uint32_t)((int32_t)ar[k + q] * (int32_t)wq[j * 4 + q]);
            }
            int8_t *cr = c + i * cm_stride + n0;
            for (size_t j = 0; j < nb; j++) {
                const int32_t sh = hdr[2 * NR + j] - hdr[3 * NR + j];
                const int32_t r = fn_mul_ruy_x86((int32_t)acc[j], hdr[NR + j], sh);
                cr[j] = fn_out_s8(r, p->zp_out, p->lo, p->hi);
            }
        }
        blk += FN_GEMM_BLOCK_BYTES(NR, kc * ks);
    }
}
