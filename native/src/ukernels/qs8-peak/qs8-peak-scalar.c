/* The int8 multiply-accumulate rate of plain C: independent integer chains (the compiler may
 * vectorise them at the baseline ISA, as it may the scalar gemm). */
#include "fn_ukernels.h"

uint64_t fn_qs8_peak__scalar(uint64_t iters, int32_t *sink) {
    uint32_t acc[16];
    for (int i = 0; i < 16; i++) acc[i] = (uint32_t)i;
    volatile int32_t xv = 3, wv = 5;
    const int32_t x = xv, w = wv;
    for (uint64_t n = 0; n < iters; n++) {
        for (int i = 0; i < 16; i++) acc[i] += (uint32_t)(x * (w + i));
        __asm__ volatile("" : : "r"(acc[0]) : "memory");
    }
    uint32_t s = 0;
    for (int i = 0; i < 16; i++) s += acc[i];
    *sink = (int32_t)s;
    return iters * 16u;
}
