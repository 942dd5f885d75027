/* MEAN's microkernels (s8-rsum, s8-vacc, qs8-requant), portable C: the twins every SIMD
 * variant is tested against. */
#include "fn_ukernels_eltwise.h"

void fn_s8_rsum_ukernel__scalar(size_t n, const int8_t *x, uint32_t *acc) {
    uint32_t s = 0;
    for (size_t i = 0; i < n; i++) s += (uint32_t)(int32_t)x[i];
    *acc += s;
}

void fn_s8_vacc_ukernel__scalar(size_t n, const int8_t *x, uint32_t *acc) {
    for (size_t i = 0; i < n; i++) acc[i] += (uint32_t)(int32_t)x[i];
}

void fn_qs8_requant_ukernel__scalar(size_t n, const uint32_t *acc, int8_t *y, const fn_qs8_requant_params *p) {
    const fn_qs8_requant_params q = *p; /* int8_t stores may alias *p */
    for (size_t i = 0; i < n; i++) y[i] = fn_qs8_requant_one(acc[i], &q);
}
