/* DEPTHWISE_CONV_2D, int8 NHWC, per-channel requantization (TFLite DepthwiseConvPerChannel). */
#include <stdlib.h>

#include "fn_conv.h"

int fn_check_dwconv2d_s8(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (n->n_in < 2 || !fn_tensor_ok(t, nt, n->in[0], FN_I8) || !fn_tensor_ok(t, nt, n->in[1], FN_I8)) return -1;
    const fn_tensor *x = &t[n->in[0]], *w = &t[n->in[1]];
    if (x->ndim != 4 || w->ndim != 4 || w->dims[0] != 1) return -1;
    const int64_t m = n->p[P_DEPTH_MULT];
    if (m < 1 || (int64_t)x->dims[3] * m != w->dims[3]) return -1;
    return fn_conv_check_common(n, t, nt, w->dims[3]);
}

int fn_run_dwconv2d_s8(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const conv_args a = fn_conv_load_args(n, t);
    const fn_tensor *wt = &t[n->in[1]];
    const int32_t N = a.N, OH = a.OH, OW = a.OW, zp_in = a.zp_in, mode = a.mode;
    const int32_t KH = wt->dims[1], KW = wt->dims[2], O = wt->dims[3], M = n->p[P_DEPTH_MULT];
    const int8_t *x = a.x, *w = a.w;
    const int32_t *bias = a.bias, *mult = a.mult, *shift = a.shift;
    int8_t *y = a.y;
    const int32_t half_up = n->p[P_HALF_UP_CH];
    uint32_t *acc = malloc(sizeof(uint32_t) * (size_t)O + 1);
    int64_t *tap = malloc(sizeof(int64_t) * (size_t)KH * (size_t)KW + 1);
    int64_t *tap_x = malloc(sizeof(int64_t) * (size_t)KH * (size_t)KW + 1);
    if (!acc || !tap || !tap_x) { free(acc); free(tap); free(tap_x); return FN_E_NOMEM; }
    for (int32_t b = 0; b < N; b++) {
        for (int32_t oy = 0; oy < OH; oy++) {
            for (int32_t ox = 0; ox < OW; ox++) {
                if (FN_CANCEL_REQUESTED(cancel)) { free(acc); free(tap); free(tap_x); return FN_CANCELLED; }
                int8_t *yp = y + (((int64_t)b * OH + oy) * OW + ox) * O;
                for (int32_t oc = 0; oc < O; oc++) acc[oc] = bias ? (uint32_t)bias[oc] : 0u;
                const int32_t ntaps = fn_conv_find_taps(&a, KH, KW, b, oy, ox, tap, tap_x);
                for (int32_t k = 0; k < ntaps; k++) {
                    const int8_t *xp = x + tap_x[k];
                    const int8_t *wp = w + tap[k] * O;
                    /* channels innermost and contiguous; |x - zp| * |w| fits int16 */
                    if (M == 1) {
                        for (int32_t oc = 0; oc < O; oc++)
                            acc[oc] += (uint32_t)(int32_t)(int16_t)((int16_t)((int32_t)xp[oc] - zp_in) * (int16_t)wp[oc]);
                    } else {
                        for (int32_t oc = 0; oc < O; oc++)
                            acc[oc] += (uint32_t)(int32_t)(int16_t)((int16_t)((int32_t)xp[oc / M] - zp_in) * (int16_t)wp[oc]);
                    }
                }
                for (int32_t oc = 0; oc < O; oc++) {
                    /* LiteRT's depthwise output stage: blocks of 8 channels through NEON code
                     * (rounding half up), the remaining channels through gemmlowp rounding. */
                    const int m = oc < half_up ? FN_RQ_RUY_X86 : mode;
                    const int32_t r = fn_requant((int32_t)acc[oc], m, mult[oc], shift[oc], 0.0);
                    yp[oc] = fn_out_s8(r, n->p[P_ZP_OUT], n->p[P_ACT_MIN], n->p[P_ACT_MAX]);
                }
            }
        }
    }
    free(acc);
    free(tap);
    free(tap_x);
    return FN_OK;
}
