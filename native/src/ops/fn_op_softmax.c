/* SOFTMAX int8 -> int8 as LiteRT's builtin (optimized) kernel on x86-64 computes it: a float
 * table of exp(-beta * s_in * k) for k = 0..255 built once, a float sum per row, and
 * round(e * 1 / (sum * s_out)) + zp_out. The table is a constant built by fn_softmax_table. */
#include <string.h>

#include "fn_kernels.h"
#include "fn_ukernels_eltwise.h"

enum { S_ZP_OUT, S_SCALE_OUT_BITS, S_TABLE };

void fn_softmax_table(float s_in, float beta, float table[256]) {
    const float scale = -s_in * beta;
    for (int32_t k = 0; k <= 255; k++) table[255 - k] = expf(scale * (float)k);
}

int fn_check_softmax_s8(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (n->n_in != 1 || n->n_out != 1) return -1;
    if (!fn_tensor_ok(t, nt, n->in[0], FN_I8) || !fn_tensor_ok(t, nt, n->out[0], FN_I8)) return -1;
    const fn_tensor *x = &t[n->in[0]];
    if (x->ndim < 1 || x->dims[x->ndim - 1] < 1 || t[n->out[0]].count != x->count) return -1;
    if (!fn_zp_ok(n->p[S_ZP_OUT], FN_I8)) return -1;
    /* a constant: microkernels may read ahead of what they have written */
    if (!fn_param_tensor_ok(t, nt, n->p[S_TABLE], FN_F32, 256)) return -1;
    return t[n->p[S_TABLE]].region == FN_REGION_CONST ? 0 : -1;
}

int fn_prepare_softmax_s8(fn_node *n, const fn_tensor *t, int32_t nt, size_t *scratch_bytes) {
    (void)t, (void)nt, (void)scratch_bytes;
    return fn_eltwise_prepare(n);
}

/* Per row: the max and the output step through microkernels; the float sum stays one
 * sequential loop, since the order of float additions is part of the result. */
int fn_run_softmax_s8(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const fn_eltwise_ukernels *uk = n->state;
    const fn_tensor *xt = &t[n->in[0]];
    const int64_t depth = xt->dims[xt->ndim - 1], rows = xt->count / depth;
    const int8_t *x = (const int8_t *)xt->data;
    int8_t *y = (int8_t *)t[n->out[0]].data;
    const float *table = (const float *)t[n->p[S_TABLE]].data;
    float s_out;
    memcpy(&s_out, &n->p[S_SCALE_OUT_BITS], sizeof s_out);
    for (int64_t r = 0; r < rows; r++) {
        if (FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
        const int8_t *xr = x + r * depth;
        const int32_t mx = uk->rmax((size_t)depth, xr);
        const float *row_table = table + (255 - mx); /* row_table[v] for v <= mx stays in [0, 255] */
        float sum = 0.0f;
        for (int64_t j = 0; j < depth; j++) sum += row_table[xr[j]];
        uk->softmax((size_t)depth, xr, row_table, 1.0f / (sum * s_out), n->p[S_ZP_OUT], y + r * depth);
    }
    return FN_OK;
}
