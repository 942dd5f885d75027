/* FULLY_CONNECTED, int8 activations and weights, int32 bias, per-tensor or per-channel scales.
 * Semantics of TFLite's integer FullyConnected: acc = bias + sum w * (x - zp_in), then the
 * op's requantization rule, + zp_out, clamp to the fused activation range. */
#include <string.h>

#include "fn_gemm.h"

enum { P_ZP_IN, P_ZP_OUT, P_ACT_MIN, P_ACT_MAX, P_MODE, P_MULT, P_SHIFT, P_SCALE, P_ZP_W };

int fn_check_fully_connected_s8(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (n->n_in < 2 || n->n_in > 3 || n->n_out != 1) return -1;
    if (!fn_tensor_ok(t, nt, n->in[0], FN_I8) || !fn_tensor_ok(t, nt, n->in[1], FN_I8)) return -1;
    if (!fn_tensor_ok(t, nt, n->out[0], FN_I8)) return -1;
    const fn_tensor *w = &t[n->in[1]];
    if (w->ndim != 2 || w->dims[1] <= 0) return -1;
    const int64_t units = w->dims[0], depth = w->dims[1];
    if (t[n->in[0]].count % depth != 0) return -1;
    const int64_t batch = t[n->in[0]].count / depth;
    if (t[n->out[0]].count != batch * units) return -1;
    if (n->n_in == 3 && n->in[2] >= 0 && !fn_param_tensor_ok(t, nt, n->in[2], FN_I32, units)) return -1;
    if (n->p[P_MODE] == FN_RQ_FLOAT64) {
        if (!fn_param_tensor_ok(t, nt, n->p[P_SCALE], FN_F64, units)) return -1;
    } else if (n->p[P_MODE] == FN_RQ_DOUBLE_ROUND || n->p[P_MODE] == FN_RQ_RUY_X86) {
        if (!fn_param_tensor_ok(t, nt, n->p[P_MULT], FN_I32, units)) return -1;
        if (!fn_const_i32_ok(t, nt, n->p[P_SHIFT], units, -31, 31)) return -1;
    } else {
        return -1;
    }
    /* an int8 output range: every microkernel narrows after this clamp, saturating or not */
    if (n->p[P_ACT_MIN] > n->p[P_ACT_MAX] || n->p[P_ACT_MIN] < -128 || n->p[P_ACT_MAX] > 127) return -1;
    if (!fn_zp_ok(n->p[P_ZP_IN], FN_I8) || !fn_zp_ok(n->p[P_ZP_W], FN_I8) || !fn_zp_ok(n->p[P_ZP_OUT], FN_I8))
        return -1;
    return 0;
}

/* FULLY_CONNECTED as a GEMM (M = batch, N = units, K = depth) when it rounds as ruy does and its
 * weights, bias and multipliers are constants. */
int fn_prepare_fully_connected_s8(fn_node *n, const fn_tensor *t, int32_t nt, size_t *scratch_bytes) {
    (void)nt;
    const fn_tensor *w = &t[n->in[1]];
    const int32_t bias = n->n_in == 3 ? n->in[2] : -1;
    if (n->p[P_MODE] != FN_RQ_RUY_X86 || n->p[P_ZP_W] != 0) return FN_OK;
    if (w->region != FN_REGION_CONST || (bias >= 0 && t[bias].region != FN_REGION_CONST) ||
        t[n->p[P_MULT]].region != FN_REGION_CONST || w->dims[1] > INT32_MAX / 2)
        return FN_OK;
    int rc = fn_gemm_prepare(n, w->dims[0], w->dims[1], 1, (const int8_t *)w->data,
                             bias >= 0 ? (const int32_t *)t[bias].data : NULL, (const int32_t *)t[n->p[P_MULT]].data,
                             (const int32_t *)t[n->p[P_SHIFT]].data, n->p[P_ZP_IN], n->p[P_ZP_OUT], 0);
    if (rc != FN_OK) return rc;
    n->consumed |= 1u << 1; /* the filter: only the packed copy is read from now on */
    *scratch_bytes = fn_gemm_scratch(n->state);
    return FN_OK;
}

typedef struct {
    const int8_t *x;
    size_t depth, kc;
} fc_rows_ctx;

static void fc_rows(const void *ctx, size_t m0, size_t mr, size_t MR, const int8_t **rows, int8_t *scratch) {
    (void)MR;
    const fc_rows_ctx *r = ctx;
    for (size_t i = 0; i < mr; i++) {
        const int8_t *src = r->x + (m0 + i) * r->depth;
        if (r->kc == r->depth) {
            rows[i] = src;
            continue;
        }
        int8_t *dst = scratch + i * r->kc;
        memcpy(dst, src, r->depth);
        memset(dst + r->depth, 0, r->kc - r->depth);
        rows[i] = dst;
    }
}

int fn_run_fully_connected_s8(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const fn_tensor *w = &t[n->in[1]];
    const int64_t units = w->dims[0], depth = w->dims[1];
    const int64_t batch = t[n->in[0]].count / depth;
    if (n->state) {
        const fn_gemm_state *g = n->state;
        const fc_rows_ctx r = {(const int8_t *)t[n->in[0]].data, (size_t)depth, (size_t)g->kc};
        const fn_qs8_out_params op = {n->p[P_ZP_OUT], n->p[P_ACT_MIN], n->p[P_ACT_MAX]};
        return fn_gemm_run(n, (size_t)batch, fc_rows, &r, (int8_t *)t[n->out[0]].data, &op, cancel);
    }
    const int8_t *x = (const int8_t *)t[n->in[0]].data;
    const int8_t *wd = (const int8_t *)w->data;
    const int32_t *bias = (n->n_in == 3 && n->in[2] >= 0) ? (const int32_t *)t[n->in[2]].data : NULL;
    int8_t *y = (int8_t *)t[n->out[0]].data;
    const int mode = n->p[P_MODE];
    const int32_t *mult = mode != FN_RQ_FLOAT64 ? (const int32_t *)t[n->p[P_MULT]].data : NULL;
    const int32_t *shift = mode != FN_RQ_FLOAT64 ? (const int32_t *)t[n->p[P_SHIFT]].data : NULL;
    const double *scale = mode == FN_RQ_FLOAT64 ? (const double *)t[n->p[P_SCALE]].data : NULL;
    const int32_t zp_in = n->p[P_ZP_IN], zp_w = n->p[P_ZP_W];
    for (int64_t b = 0; b < batch; b++) {
        if (FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
        const int8_t *xr = x + b * depth;
        for (int64_t u = 0; u < units; u++) {
            if ((u & 63) == 0 && FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
            const int8_t *wr = wd + u * depth;
            uint32_t acc = 0; /* int32 wrap-around semantics without signed overflow */
            if (zp_w == 0 && depth <= INT32_MAX) {
                uint32_t wsum = 0; /* sum w*(x - zp) == sum w*x - zp * sum w, modulo 2^32 */
                fn_dot_s8(wr, xr, (int32_t)depth, &acc, &wsum);
                acc -= (uint32_t)zp_in * wsum;
            } else {
                for (int64_t k = 0; k < depth; k++)
                    acc += (uint32_t)(((int32_t)wr[k] - zp_w) * ((int32_t)xr[k] - zp_in));
            }
            if (bias) acc += (uint32_t)bias[u];
            const int32_t r = fn_requant((int32_t)acc, mode, mult ? mult[u] : 0, shift ? shift[u] : 0,
                                         scale ? scale[u] : 0.0);
            y[b * units + u] = fn_out_s8(r, n->p[P_ZP_OUT], n->p[P_ACT_MIN], n->p[P_ACT_MAX]);
        }
    }
    return FN_OK;
}
