/* AVERAGE_POOL_2D and MAX_POOL_2D, int8 NHWC. Windows are clipped to the image: padding is
 * neither summed nor counted (TFLite's AveragePool), and the average rounds half away from 0. */
#include "fn_kernels.h"
#include "fn_ukernels_eltwise.h"

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

int fn_prepare_avg_pool_s8(fn_node *n, const fn_tensor *t, int32_t nt, size_t *scratch_bytes) {
    (void)t, (void)nt, (void)scratch_bytes;
    return fn_eltwise_prepare(n);
}

int fn_prepare_max_pool_s8(fn_node *n, const fn_tensor *t, int32_t nt, size_t *scratch_bytes) {
    (void)t, (void)nt, (void)scratch_bytes;
    return fn_eltwise_prepare(n);
}

/* Channels summed at a time by AVERAGE_POOL (the int32 sums live on the stack). */
#define POOL_CHANNEL_BLOCK 256

/* Each output pixel's window is clipped to the image; its rows of pixels (each C channels
 * apart) go through the s8-maxpool / s8-sumpool microkernels, channels innermost. */
static int run_pool(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel, int is_max) {
    const fn_eltwise_ukernels *uk = n->state;
    const fn_tensor *xt = &t[n->in[0]], *yt = &t[n->out[0]];
    const int64_t N = xt->dims[0], H = xt->dims[1], W = xt->dims[2], C = xt->dims[3];
    const int64_t OH = yt->dims[1], OW = yt->dims[2];
    const int8_t *x = (const int8_t *)xt->data;
    int8_t *y = (int8_t *)yt->data;
    const int32_t *p = n->p;
    const int32_t lo = p[P_ACT_MIN], hi = p[P_ACT_MAX];
    const int clamps = lo > -128 || hi < 127;
    int32_t acc[POOL_CHANNEL_BLOCK];
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
                int8_t *yp = y + ((b * OH + oy) * OW + ox) * C;
                const int8_t *xp = x + ((b * H + ys) * W + xs) * C;
                if (is_max) {
                    for (int64_t iy = 0; iy < ye - ys; iy++)
                        uk->maxpool((size_t)(xe - xs), (size_t)C, xp + iy * W * C, (size_t)C, yp, iy == 0);
                    if (clamps)
                        for (int64_t c = 0; c < C; c++) yp[c] = (int8_t)fn_clamp32(yp[c], lo, hi);
                    continue;
                }
                const int32_t half = (int32_t)(count / 2);
                for (int64_t c0 = 0; c0 < C; c0 += POOL_CHANNEL_BLOCK) {
                    const int64_t cb = C - c0 < POOL_CHANNEL_BLOCK ? C - c0 : POOL_CHANNEL_BLOCK;
                    for (int64_t iy = 0; iy < ye - ys; iy++)
                        uk->sumpool((size_t)(xe - xs), (size_t)cb, xp + iy * W * C + c0, (size_t)C, acc, iy == 0);
                    for (int64_t c = 0; c < cb; c++) {
                        const int32_t s = acc[c];
                        const int32_t avg = s > 0 ? (s + half) / (int32_t)count : (s - half) / (int32_t)count;
                        yp[c0 + c] = (int8_t)fn_clamp32(avg, lo, hi);
                    }
                }
            }
        }
    }
    return FN_OK;
}

int fn_run_avg_pool_s8(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) { return run_pool(n, t, cancel, 0); }
int fn_run_max_pool_s8(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) { return run_pool(n, t, cancel, 1); }
