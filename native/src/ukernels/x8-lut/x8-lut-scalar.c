/* x8-lut, portable C: the twin every SIMD variant is tested against. */
#include "fn_ukernels_eltwise.h"

void fn_x8_lut_ukernel__scalar(size_t n, const int8_t *x, int8_t *y, const int8_t table[256]) {
    for (size_t i = 0; i < n; i++) y[i] = table[(uint8_t)x[i]];
}
