/* s8-maxpool and s8-sumpool, portable C: the twins every SIMD variant is tested against. */
#include "fn_ukernels_eltwise.h"

void fn_s8_maxpool_ukernel__scalar(size_t k, size_t c, const int8_t *x, size_t stride, int8_t *y, int first) {
    for (size_t j = 0; j < c; j++) {
        int32_t m = first ? -128 : y[j];
        for (size_t i = 0; i < k; i++) {
            const int32_t v = x[i * stride + j];
            m = v > m ? v : m;
        }
        y[j] = (int8_t)m;
    }
}

void fn_s8_sumpool_ukernel__scalar(size_t k, size_t c, const int8_t *x, size_t stride, int32_t *acc, int first) {
    for (size_t j = 0; j < c; j++) {
        int32_t s = first ? 0 : acc[j];
        for (size_t i = 0; i < k; i++) s += x[i * stride + j];
        acc[j] = s;
    }
}
