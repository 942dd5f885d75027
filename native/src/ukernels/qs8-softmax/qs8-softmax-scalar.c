/* s8-rmax and qs8-softmax, portable C: the twins every SIMD variant is tested against. */
#include "fn_ukernels_eltwise.h"

int32_t fn_s8_rmax_ukernel__scalar(size_t n, const int8_t *x) {
    int32_t m = -128;
    for (size_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

void fn_qs8_softmax_ukernel__scalar(size_t n, const int8_t *x, const float *table, float inv, int32_t zp, int8_t *y) {
    for (size_t i = 0; i < n; i++) y[i] = fn_qs8_softmax_one(x[i], table, inv, zp);
}
