/* qs8-vmul, portable C: the twin every SIMD variant is tested against. The parameters are
 * copied first (int8_t stores may alias them). */
#include "fn_ukernels_eltwise.h"

void fn_qs8_vmul_ukernel__scalar(size_t n, const int8_t *a, const int8_t *b, int8_t *y, const fn_qs8_vmul_params *p) {
    const fn_qs8_vmul_params q = *p;
    for (size_t i = 0; i < n; i++) y[i] = fn_qs8_vmul_out((a[i] - q.a_zp) * (b[i] - q.b_zp), &q);
}

void fn_qs8_vmulc_ukernel__scalar(size_t n, const int8_t *a, int32_t b, int8_t *y, const fn_qs8_vmul_params *p) {
    const fn_qs8_vmul_params q = *p;
    for (size_t i = 0; i < n; i++) y[i] = fn_qs8_vmul_out((a[i] - q.a_zp) * b, &q);
}
