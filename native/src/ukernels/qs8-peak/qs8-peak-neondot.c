/* The int8 multiply-accumulate peak of the ARMv8.2 dot product: independent SDOT chains (16 MACs
 * each), no loads. Bench only: what a gemm could reach at best. */
#include <arm_neon.h>

#include "fn_ukernels.h"

uint64_t fn_qs8_peak__neondot(uint64_t iters, int32_t *sink) {
    int32x4_t acc[16];
    for (int i = 0; i < 16; i++) acc[i] = vdupq_n_s32(i);
    int8x16_t x = vdupq_n_s8(3), w = vdupq_n_s8(5);
    for (uint64_t n = 0; n < iters; n++) {
        for (int i = 0; i < 16; i++) acc[i] = vdotq_s32(acc[i], x, w);
        __asm__ volatile("" : "+w"(x), "+w"(w)); /* keeps the products in the loop */
    }
    int32x4_t s = acc[0];
    for (int i = 1; i < 16; i++) s = vaddq_s32(s, acc[i]);
    *sink = vaddvq_s32(s);
    return iters * 16u * 16u;
}
