/* CONV_2D, int8 NHWC, per-channel requantization (TFLite ConvPerChannel): taps outside the
 * image are skipped, i.e. padded with zp_in. Ungrouped convolutions that round as ruy does run
 * as a GEMM on the chosen microkernel; the rest on the reference loop below. */
#include <stdlib.h>
#include <string.h>

#include "fn_conv.h"
#include "fn_gemm.h"

int fn_check_conv2d_s8(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (n->n_in < 2 || !fn_tensor_ok(t, nt, n->in[0], FN_I8) || !fn_tensor_ok(t, nt, n->in[1], FN_I8)) return -1;
    const fn_tensor *x = &t[n->in[0]], *w = &t[n->in[1]];
    if (x->ndim != 4 || w->ndim != 4 || w->dims[3] <= 0 || w->dims[0] <= 0) return -1;
    if (x->dims[3] % w->dims[3] != 0) return -1;
    const int64_t groups = x->dims[3] / w->dims[3];
    if (groups <= 0 || w->dims[0] % groups != 0) return -1;
    if (n->p[P_PACKED] != -1) return -1; /* reserved: filters are packed by fn_prepare_conv2d_s8 */
    return fn_conv_check_common(n, t, nt, w->dims[0]);
}

static int is_const(const fn_tensor *t, int32_t idx) { return idx < 0 || t[idx].region == FN_REGION_CONST; }

/* How a convolution's A rows are found. */
enum { ROWS_DIRECT = 0, /* 1x1 taps all inside the image, Cin a multiple of 4: input pixels in place */
       ROWS_INDIRECT,   /* Cin a multiple of 4: one step per tap, out-of-image taps read a zp_in row */
       ROWS_IM2COL };   /* anything else (Cin = 3 of a first layer): taps copied into scratch rows */

/* n bytes from src to dst: two overlapping word copies for the short rows of a small-Cin im2col
 * (KW * Cin = 9 for a 3x3 first layer), where a call to memcpy would cost more than the copy. */
static inline void copy_row(int8_t *dst, const int8_t *src, size_t n) {
    if (n >= 8 && n <= 16) {
        uint64_t lo, hi;
        memcpy(&lo, src, 8);
        memcpy(&hi, src + n - 8, 8);
        memcpy(dst, &lo, 8);
        memcpy(dst + n - 8, &hi, 8);
    } else if (n >= 4 && n < 8) {
        uint32_t lo, hi;
        memcpy(&lo, src, 4);
        memcpy(&hi, src + n - 4, 4);
        memcpy(dst, &lo, 4);
        memcpy(dst + n - 4, &hi, 4);
    } else {
        memcpy(dst, src, n);
    }
}

static int32_t rows_mode(const fn_node *n, const fn_tensor *t) {
    const fn_tensor *x = &t[n->in[0]], *w = &t[n->in[1]], *y = &t[n->out[0]];
    const int32_t KH = w->dims[1], KW = w->dims[2], C = x->dims[3];
    if (C % 4 != 0 || (int64_t)KH * KW > FN_GEMM_MAX_KS) return ROWS_IM2COL;
    if (KH == 1 && KW == 1 && n->p[P_PAD_TOP] == 0 && n->p[P_PAD_LEFT] == 0 &&
        (int64_t)(y->dims[1] - 1) * n->p[P_STRIDE_H] < x->dims[1] && (int64_t)(y->dims[2] - 1) * n->p[P_STRIDE_W] < x->dims[2])
        return ROWS_DIRECT;
    return ROWS_INDIRECT;
}

/* CONV_2D as a GEMM: M = output pixels, N = output channels, K = KH * KW * Cin in the filter's
 * own [O][KH][KW][Cin] order. Taken when the op rounds as ruy does (every ungrouped CONV_2D of
 * the builtin resolver) and the filter, bias and multipliers are constants to pack. */
int fn_prepare_conv2d_s8(fn_node *n, const fn_tensor *t, int32_t nt, size_t *scratch_bytes) {
    (void)nt;
    const fn_tensor *w = &t[n->in[1]];
    const int32_t C = t[n->in[0]].dims[3], groups = C / w->dims[3];
    const int32_t bias = n->n_in == 3 ? n->in[2] : -1;
    if (groups != 1 || n->p[P_MODE] != FN_RQ_RUY_X86) return FN_OK;
    if (!is_const(t, n->in[1]) || !is_const(t, bias) || !is_const(t, n->p[P_MULT])) return FN_OK;
    const int64_t k = (int64_t)w->dims[1] * w->dims[2] * w->dims[3];
    if (k > INT32_MAX / 2) return FN_OK;
    const int32_t mode = rows_mode(n, t);
    const int32_t ks = mode == ROWS_INDIRECT ? w->dims[1] * w->dims[2] : 1;
    int rc = fn_gemm_prepare(n, w->dims[0], (int32_t)k, ks, (const int8_t *)w->data,
                             bias >= 0 ? (const int32_t *)t[bias].data : NULL, (const int32_t *)t[n->p[P_MULT]].data,
                             (const int32_t *)t[n->p[P_SHIFT]].data, n->p[P_ZP_IN], n->p[P_ZP_OUT],
                             mode == ROWS_INDIRECT ? (size_t)C : 0);
    if (rc != FN_OK) return rc;
    n->consumed |= 1u << 1; /* the filter: only the packed copy is read from now on */
    fn_gemm_state *g = n->state;
    if (mode == ROWS_INDIRECT) memset(g->extra, n->p[P_ZP_IN], (size_t)C);
    *scratch_bytes = mode == ROWS_IM2COL ? fn_gemm_scratch(g) : 0;
    return FN_OK;
}

typedef struct {
    conv_args a;
    int32_t KH, KW, mode;
    size_t kc;
    const int8_t *zero_row;
    size_t run;  /* bytes of one filter row of an im2col row: KW * Cin */
    size_t line; /* input bytes from one filter row to the next: dh * W * Cin */
    int64_t span_y, span_x; /* a window's extent past its first tap: (KH - 1) * dh, (KW - 1) * dw */
} conv_rows_ctx;

/* Whether the window whose first tap is (iy0, ix0) lies wholly inside the image. */
static inline int window_inside(const conv_rows_ctx *r, int64_t iy0, int64_t ix0) {
    return iy0 >= 0 && iy0 + r->span_y < r->a.H && ix0 >= 0 && ix0 + r->span_x < r->a.W;
}

/* Output pixel m0 of the batch as (b, oy, ox), found with one division per tile; pixel_next
 * steps it. */
typedef struct { int64_t b, oy, ox; } pixel;

static inline pixel pixel_at(const conv_args *a, size_t m0) {
    const size_t plane = (size_t)a->OH * (size_t)a->OW;
    if (m0 <= UINT32_MAX && plane <= UINT32_MAX) { /* a 32-bit division is several times faster */
        const uint32_t m = (uint32_t)m0, pl = (uint32_t)plane, ow = (uint32_t)a->OW;
        return (pixel){m / pl, m % pl / ow, m % pl % ow};
    }
    return (pixel){(int64_t)(m0 / plane), (int64_t)(m0 % plane / (size_t)a->OW), (int64_t)(m0 % (size_t)a->OW)};
}

static inline void pixel_next(const conv_args *a, pixel *p) {
    if (++p->ox == a->OW) {
        p->ox = 0;
        if (++p->oy == a->OH) { p->oy = 0; p->b++; }
    }
}

/* ROWS_DIRECT and ROWS_INDIRECT: pointers into the input, no copy. */
static void conv_rows(const void *ctx, size_t m0, size_t mr, size_t MR, const int8_t **rows, int8_t *scratch) {
    (void)scratch;
    const conv_rows_ctx *r = ctx;
    const conv_args *a = &r->a;
    const int64_t C = a->C;
    pixel p = pixel_at(a, m0);
    for (size_t i = 0; i < mr; i++, pixel_next(a, &p)) {
        const int64_t iy0 = p.oy * a->sh - a->pt, ix0 = p.ox * a->sw - a->pl;
        const int8_t *img = a->x + p.b * a->H * a->W * C;
        if (r->mode == ROWS_DIRECT) {
            rows[i] = img + (iy0 * a->W + ix0) * C;
            continue;
        }
        size_t tap = 0;
        if (window_inside(r, iy0, ix0)) {
            const int8_t *src = img + (iy0 * a->W + ix0) * C;
            for (int32_t ky = 0; ky < r->KH; ky++, src += r->line)
                for (int32_t kx = 0; kx < r->KW; kx++, tap++) rows[tap * MR + i] = src + kx * a->dw * C;
            continue;
        }
        for (int32_t ky = 0; ky < r->KH; ky++) {
            const int64_t iy = iy0 + (int64_t)ky * a->dh;
            for (int32_t kx = 0; kx < r->KW; kx++, tap++) {
                const int64_t ix = ix0 + (int64_t)kx * a->dw;
                /* a tap outside the image reads zp_in: its term w * (zp - zp) is zero */
                const int inside = iy >= 0 && iy < a->H && ix >= 0 && ix < a->W;
                rows[tap * MR + i] = inside ? img + (iy * a->W + ix) * C : r->zero_row;
            }
        }
    }
}

/* ROWS_IM2COL (Cin not a multiple of 4, as the Cin = 3 of a first layer): each row's taps copied
 * into its scratch row, zp_in for the taps outside the image, zeros in the K tail (under 4
 * bytes, where the weights are zero too). A window inside the image, without dilation across,
 * is KH runs of KW * Cin contiguous input bytes. */
static void conv_rows_im2col(const void *ctx, size_t m0, size_t mr, size_t MR, const int8_t **rows,
                             int8_t *scratch) {
    (void)MR;
    const conv_rows_ctx *r = ctx;
    const conv_args *a = &r->a;
    const int64_t C = a->C;
    const size_t K = (size_t)r->KH * r->run;
    pixel p = pixel_at(a, m0);
    for (size_t i = 0; i < mr; i++, pixel_next(a, &p)) {
        const int64_t iy0 = p.oy * a->sh - a->pt, ix0 = p.ox * a->sw - a->pl;
        const int8_t *img = a->x + p.b * a->H * a->W * C;
        int8_t *dst = scratch + i * r->kc;
        rows[i] = dst;
        for (size_t q = K; q < r->kc; q++) dst[q] = 0;
        if (a->dw == 1 && window_inside(r, iy0, ix0)) {
            const int8_t *src = img + (iy0 * a->W + ix0) * C;
            for (int32_t ky = 0; ky < r->KH; ky++, dst += r->run, src += r->line) copy_row(dst, src, r->run);
            continue;
        }
        for (int32_t ky = 0; ky < r->KH; ky++) {
            const int64_t iy = iy0 + (int64_t)ky * a->dh;
            for (int32_t kx = 0; kx < r->KW; kx++, dst += C) {
                const int64_t ix = ix0 + (int64_t)kx * a->dw;
                const int inside = iy >= 0 && iy < a->H && ix >= 0 && ix < a->W;
                const int8_t *src = inside ? img + (iy * a->W + ix) * C : NULL;
                for (int64_t q = 0; q < C; q++) dst[q] = inside ? src[q] : (int8_t)a->zp_in;
            }
        }
    }
}

static int run_conv_gemm(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const fn_gemm_state *g = n->state;
    const fn_tensor *wt = &t[n->in[1]];
    conv_rows_ctx r;
    r.a = fn_conv_load_args(n, t);
    r.KH = wt->dims[1];
    r.KW = wt->dims[2];
    r.mode = g->ks > 1 ? ROWS_INDIRECT : rows_mode(n, t);
    r.kc = (size_t)g->kc;
    r.zero_row = (const int8_t *)g->extra;
    r.run = (size_t)r.KW * (size_t)r.a.C;
    r.line = (size_t)r.a.dh * (size_t)r.a.W * (size_t)r.a.C;
    r.span_y = (int64_t)(r.KH - 1) * r.a.dh;
    r.span_x = (int64_t)(r.KW - 1) * r.a.dw;
    const fn_qs8_out_params op = {n->p[P_ZP_OUT], n->p[P_ACT_MIN], n->p[P_ACT_MAX]};
    const size_t M = (size_t)r.a.N * (size_t)r.a.OH * (size_t)r.a.OW;
    return fn_gemm_run(n, M, r.mode == ROWS_IM2COL ? conv_rows_im2col : conv_rows, &r, r.a.y, &op, cancel);
}

int fn_run_conv2d_s8(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    if (n->state) return run_conv_gemm(n, t, cancel);
    const conv_args a = fn_conv_load_args(n, t);
    const fn_tensor *wt = &t[n->in[1]];
    const int32_t N = a.N, OH = a.OH, OW = a.OW, zp_in = a.zp_in, mode = a.mode;
    const int32_t O = wt->dims[0], KH = wt->dims[1], KW = wt->dims[2], CG = wt->dims[3];
    const int32_t groups = a.C / CG, OG = O / groups;
    const int8_t *x = a.x, *w = a.w;
    const int32_t *bias = a.bias, *mult = a.mult, *shift = a.shift;
    int8_t *y = a.y;
    int64_t *tap_w = malloc(sizeof(int64_t) * (size_t)KH * (size_t)KW + 1);
    int64_t *tap_x = malloc(sizeof(int64_t) * (size_t)KH * (size_t)KW + 1);
    if (!tap_w || !tap_x) { free(tap_w); free(tap_x); return FN_E_NOMEM; }
    for (int32_t b = 0; b < N; b++) {
        for (int32_t oy = 0; oy < OH; oy++) {
            for (int32_t ox = 0; ox < OW; ox++) {
                /* one output pixel is the tile: a cancel is seen within microseconds */
                if (FN_CANCEL_REQUESTED(cancel)) { free(tap_w); free(tap_x); return FN_CANCELLED; }
                int8_t *yp = y + (((int64_t)b * OH + oy) * OW + ox) * O;
                /* the in-image taps of this pixel, found once for every output channel */
                const int32_t ntaps = fn_conv_find_taps(&a, KH, KW, b, oy, ox, tap_w, tap_x);
                for (int32_t k = 0; k < ntaps; k++) tap_w[k] *= CG;
                for (int32_t oc = 0; oc < O; oc++) {
                    const int64_t goff = (int64_t)(oc / OG) * CG;
                    const int8_t *wo = w + (int64_t)oc * KH * KW * CG;
                    /* sum w * (x - zp) == sum w*x - zp * sum w, modulo 2^32 like TFLite's int32 */
                    uint32_t acc = 0, wsum = 0;
                    for (int32_t k = 0; k < ntaps; k++)
                        fn_dot_s8(wo + tap_w[k], x + tap_x[k] + goff, CG, &acc, &wsum);
                    acc -= (uint32_t)zp_in * wsum;
                    if (bias) acc += (uint32_t)bias[oc];
                    const int32_t r = fn_requant((int32_t)acc, mode, mult[oc], shift[oc], 0.0);
                    yp[oc] = fn_out_s8(r, n->p[P_ZP_OUT], n->p[P_ACT_MIN], n->p[P_ACT_MAX]);
                }
            }
        }
    }
    free(tap_w);
    free(tap_x);
    return FN_OK;
}
