/* qs8-vadd, portable C: the twin every SIMD variant is tested against. The parameters are
 * copied first: stores through int8_t pointers may alias anything, and would otherwise make the
 * compiler reload every parameter for every element. */
#include "fn_ukernels_eltwise.h"

void fn_qs8_vadd_ukernel__scalar(size_t n, const int8_t *a, const int8_t *b, int8_t *y, const fn_qs8_vadd_params *p) {
    const fn_qs8_vadd_params q = *p;
    for (size_t i = 0; i < n; i++)
        y[i] = fn_qs8_vadd_out(fn_qs8_vadd_in(a[i], &q.a, q.ls), fn_qs8_vadd_in(b[i], &q.b, q.ls), &q);
}

void fn_qs8_vaddc_ukernel__scalar(size_t n, const int8_t *a, int32_t b, int8_t *y, const fn_qs8_vadd_params *p) {
    const fn_qs8_vadd_params q = *p;
    for (size_t i = 0; i < n; i++) y[i] = fn_qs8_vadd_out(fn_qs8_vadd_in(a[i], &q.a, q.ls), b, &q);
}
