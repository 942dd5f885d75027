/* The parts of CONV_2D and DEPTHWISE_CONV_2D that are the same (fn_conv.h). */
#include "fn_conv.h"

int fn_conv_check_common(const fn_node *n, const fn_tensor *t, int32_t nt, int64_t out_ch) {
    if (n->n_in < 2 || n->n_in > 3 || n->n_out != 1) return -1;
    if (!fn_tensor_ok(t, nt, n->in[0], FN_I8) || !fn_tensor_ok(t, nt, n->in[1], FN_I8)) return -1;
    if (!fn_tensor_ok(t, nt, n->out[0], FN_I8)) return -1;
    const fn_tensor *x = &t[n->in[0]], *w = &t[n->in[1]], *y = &t[n->out[0]];
    if (x->ndim != 4 || w->ndim != 4 || y->ndim != 4) return -1;
    if (y->dims[0] != x->dims[0] || y->dims[3] != out_ch) return -1;
    if (n->p[P_STRIDE_H] < 1 || n->p[P_STRIDE_W] < 1 || n->p[P_DIL_H] < 1 || n->p[P_DIL_W] < 1) return -1;
    if (n->p[P_PAD_TOP] < 0 || n->p[P_PAD_LEFT] < 0) return -1;
    /* an int8 output range: every microkernel narrows after this clamp, saturating or not */
    if (n->p[P_ACT_MIN] > n->p[P_ACT_MAX] || n->p[P_ACT_MIN] < -128 || n->p[P_ACT_MAX] > 127) return -1;
    if (n->p[P_MODE] != FN_RQ_DOUBLE_ROUND && n->p[P_MODE] != FN_RQ_RUY_X86) return -1;
    if (n->p[P_HALF_UP_CH] < 0 || n->p[P_HALF_UP_CH] > out_ch) return -1;
    if (n->n_in == 3 && n->in[2] >= 0 && !fn_param_tensor_ok(t, nt, n->in[2], FN_I32, out_ch)) return -1;
    if (!fn_param_tensor_ok(t, nt, n->p[P_MULT], FN_I32, out_ch)) return -1;
    if (!fn_const_i32_ok(t, nt, n->p[P_SHIFT], out_ch, -31, 31)) return -1;
    if (!fn_zp_ok(n->p[P_ZP_IN], FN_I8) || !fn_zp_ok(n->p[P_ZP_OUT], FN_I8)) return -1;
    return 0;
}

conv_args fn_conv_load_args(const fn_node *n, const fn_tensor *t) {
    const fn_tensor *xt = &t[n->in[0]], *yt = &t[n->out[0]];
    conv_args a;
    a.N = xt->dims[0], a.H = xt->dims[1], a.W = xt->dims[2], a.C = xt->dims[3];
    a.OH = yt->dims[1], a.OW = yt->dims[2];
    a.sh = n->p[P_STRIDE_H], a.sw = n->p[P_STRIDE_W], a.dh = n->p[P_DIL_H], a.dw = n->p[P_DIL_W];
    a.pt = n->p[P_PAD_TOP], a.pl = n->p[P_PAD_LEFT], a.zp_in = n->p[P_ZP_IN], a.mode = n->p[P_MODE];
    a.x = (const int8_t *)xt->data;
    a.w = (const int8_t *)t[n->in[1]].data;
    a.bias = (n->n_in == 3 && n->in[2] >= 0) ? (const int32_t *)t[n->in[2]].data : NULL;
    a.mult = (const int32_t *)t[n->p[P_MULT]].data;
    a.shift = (const int32_t *)t[n->p[P_SHIFT]].data;
    a.y = (int8_t *)yt->data;
    return a;
}

int32_t fn_conv_find_taps(const conv_args *a, int32_t KH, int32_t KW, int32_t b, int32_t oy, int32_t ox,
                         int64_t *tap, int64_t *tap_x) {
    const int64_t iy0 = (int64_t)oy * a->sh - a->pt, ix0 = (int64_t)ox * a->sw - a->pl;
    int32_t ntaps = 0;
    for (int32_t ky = 0; ky < KH; ky++) {
        const int64_t iy = iy0 + (int64_t)ky * a->dh;
        if (iy < 0 || iy >= a->H) continue;
        for (int32_t kx = 0; kx < KW; kx++) {
            const int64_t ix = ix0 + (int64_t)kx * a->dw;
            if (ix < 0 || ix >= a->W) continue;
            tap[ntaps] = (int64_t)ky * KW + kx;
            tap_x[ntaps] = (((int64_t)b * a->H + iy) * a->W + ix) * a->C;
            ntaps++;
        }
    }
    return ntaps;
}
