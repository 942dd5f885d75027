/* AVERAGE_POOL_2D and MAX_POOL_2D, int8 NHWC. Windows are clipped to the image: padding is
 * neither summed nor counted (TFLite's AveragePool), and the average rounds half away from 0. */
#include "fn_kernels.h"

enum { P_STRIDE_H, P_STRIDE_W, P_FH, P_FW, P_PAD_T, P_PAD_L, P_ACT_MIN, P_ACT_MAX };

static int check_pool(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (n->n_in != 1 || n->n_out != 1) return -1;
    if (!fn_tensor_ok(t, nt, n->in[0], FN_I8) || !fn_tensor_ok(t, nt, n->out[0], FN_I8)) return -1;
    const fn_tensor *x = &t[n->in[0]], *y = &t[n->out[0]];
    if (x->ndim != 4 || y->ndim != 4 || x->dims[0] != y->dims[0] || x->dims[3] != y->dims[3]) return -1;
    if (n->p[P_STRIDE_H] < 1 || n->p[P_STRIDE_W] < 1 || n->p[P_FH] < 1 || n->p[P_FW] < 1) return -1;
    if (n->p[P_PAD_T] < 0 || n->p[P_PAD_L] < 0 || n->p[P_ACT_MIN] > n->p[P_ACT_MAX]) return -1;
    /* the int32 window sum of AVERAGE_POOL: at most 128 * (window inside the image) */
    const int64_t wh = n->p[P_FH] < x->dims[1] ? n->p[P_FH] : x->dims[1];
    const int64_t ww = n->p[P_FW] < x->dims[2] ? n->p[P_FW] : x->dims[2];
    if (wh * ww > (INT32_MAX / 128)) return -1;
    return 0;
}

int fn_check_avg_pool_s8(const fn_node *n, const fn_tensor *t, int32_t nt) { return check_pool(n, t, nt); }
int fn_check_max_pool_s8(const fn_node *n, const fn_tensor *t, int32_t nt) { return check_pool(n, t, nt); }

static int run_pool(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel, int is_max) {
    const fn_tensor *xt = &t[n->in[0]], *yt = &t[n->out[0]];
    const int64_t N = xt->dims[0], H = xt->dims[1], W = xt->dims[2], C = xt->dims[3];
    const int64_t OH = yt->dims[1], OW = yt->dims[2];
    const int8_t *x = (const int8_t *)xt->data;
    int8_t *y = (int8_t *)yt->data;
    const int32_t *p = n->p;
    for (int64_t b = 0; b < N; b++) {
        for (int64_t oy = 0; oy < OH; oy++) {
            if (FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
            for (int64_t ox = 0; ox < OW; ox++) {
                if (FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
                const int64_t y0 = oy * p[P_STRIDE_H] - p[P_PAD_T], x0 = ox * p[P_STRIDE_W] - p[P_PAD_L];
                const int64_t ys = y0 < 0 ? 0 : y0, ye = y0 + p[P_FH] > H ? H : y0 + p[P_FH];
                const int64_t xs = x0 < 0 ? 0 : x0, xe = x0 + p[P_FW] > W ? W : x0 + p[P_FW];
                const int64_t count = (ye - ys) * (xe - xs);
                if (ye <= ys || xe <= xs) return FN_E_RUNTIME; /* an empty window has no average */
                for (int64_t c = 0; c < C; c++) {
                    int32_t acc = is_max ? -128 : 0;
                    for (int64_t iy = ys; iy < ye; iy++)
                        for (int64_t ix = xs; ix < xe; ix++) {
                            const int32_t v = x[((b * H + iy) * W + ix) * C + c];
                            if (is_max) acc = v > acc ? v : acc;
                            else acc += v;
                        }
                    if (!is_max) {
                        const int32_t half = (int32_t)(count / 2);
                        acc = acc > 0 ? (acc + half) / (int32_t)count : (acc - half) / (int32_t)count;
                    }
                    y[((b * OH + oy) * OW + ox) * C + c] = (int8_t)fn_clamp32(acc, p[P_ACT_MIN], p[P_ACT_MAX]);
                }
            }
        }
    }
    return FN_OK;
}

int fn_run_avg_pool_s8(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) { return run_pool(n, t, cancel, 0); }
int fn_run_max_pool_s8(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) { return run_pool(n, t, cancel, 1); }
