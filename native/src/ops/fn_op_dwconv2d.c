/* DEPTHWISE_CONV_2D, int8 NHWC, per-channel requantization (TFLite DepthwiseConvPerChannel).
 *
 * With constant filter, bias and multipliers the node runs on the qs8-dwconv microkernel of the
 * plan's ISA (fn_dwconv.h): weights packed at plan creation, and an indirection buffer of row
 * pointers (Dukhan, "The Indirect Convolution Algorithm", as XNNPACK builds it) in which taps
 * outside the image point at a buffer of zp_in. A task is one or more output rows; the plan's
 * threads share them and cancel is polled between them. A depth multiplier M > 1 is run as M = 1
 * over input rows whose channels a task first repeats M times (output channel ic * M + m reads
 * input channel ic). What is too large for that runs on the reference loop at the end of this file. */
#include <stdlib.h>
#include <string.h>

#include "fn_conv.h"
#include "fn_cpu.h"
#include "fn_dwconv.h"
#include "fn_ukernels.h"

int fn_check_dwconv2d_s8(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (n->n_in < 2 || !fn_tensor_ok(t, nt, n->in[0], FN_I8) || !fn_tensor_ok(t, nt, n->in[1], FN_I8)) return -1;
    const fn_tensor *x = &t[n->in[0]], *w = &t[n->in[1]];
    if (x->ndim != 4 || w->ndim != 4 || w->dims[0] != 1) return -1;
    const int64_t m = n->p[P_DEPTH_MULT];
    if (m < 1 || (int64_t)x->dims[3] * m != w->dims[3]) return -1;
    return fn_conv_check_common(n, t, nt, w->dims[3]);
}

/* Prepared depthwise node. The indirection holds ks = KH * KW pointers per output pixel, tap
 * t = ky * KW + kx, pixels in order: the rows of a task are one run of it, one microkernel call. */
typedef struct {
    fn_qs8_dwconv_ukernel ukernel;
    conv_args a;                 /* geometry and tensor addresses, as at plan creation */
    int32_t KH, KW, ks, mult;
    size_t OC;                   /* output channels, C * mult */
    size_t row_bytes;            /* OW * ks pointers, rounded to 64: the start of a task's scratch */
    const int8_t **indirection;  /* OH rows for image 0, or NULL: tasks build their rows */
    const int8_t *zero;          /* OC bytes of zp_in */
    const uint8_t *packed;
    fn_qs8_dwconv_params params;
} dw_state;

/* Beyond the first the buffer of all rows is not kept (tasks build their rows); beyond the
 * others a row's pointers, or its KH input rows with repeated channels, would not fit a
 * thread's scratch, so the reference loop runs. */
#define FN_DW_TABLE_MAX ((size_t)4 << 20)
#define FN_DW_ROW_MAX ((size_t)256 << 10)
#define FN_DW_EXPAND_MAX ((size_t)1 << 20)
/* Below this many multiply-adds a node runs on the calling thread: waking workers costs more.
 * A task is whole rows of at least FN_DW_TASK_MACS (under a microsecond with AVX2) when threads
 * share the node, FN_DW_PARALLEL_MACS when one runs it: handing a task out then costs little, a
 * call's block constants serve many pixels, and cancel is still seen within a few microseconds. */
#define FN_DW_PARALLEL_MACS ((size_t)1 << 15)
#define FN_DW_TASK_MACS ((size_t)1 << 13)

/* Row oy's OW * ks pointers into out. They point into the image at x (input row iy at
 * x + iy * W * C), or with `expanded` into the KH rows a task repeated the channels of (tap row
 * ky at x + ky * W * OC). */
static void dw_build_row(const dw_state *s, const int8_t *x, int expanded, int32_t oy, const int8_t **out) {
    const conv_args *a = &s->a;
    const size_t pixel = expanded ? s->OC : (size_t)a->C;
    for (int32_t ky = 0; ky < s->KH; ky++) {
        const int64_t iy = (int64_t)oy * a->sh + (int64_t)ky * a->dh - a->pt;
        const int in_y = iy >= 0 && iy < a->H;
        const int8_t *row = in_y ? x + (expanded ? (size_t)ky : (size_t)iy) * (size_t)a->W * pixel : NULL;
        for (int32_t ox = 0; ox < a->OW; ox++) {
            const int8_t **o = out + (size_t)ox * (size_t)s->ks + (size_t)ky * (size_t)s->KW;
            for (int32_t kx = 0; kx < s->KW; kx++) {
                const int64_t ix = (int64_t)ox * a->sw + (int64_t)kx * a->dw - a->pl;
                o[kx] = in_y && ix >= 0 && ix < a->W ? row + (size_t)ix * pixel : s->zero;
            }
        }
    }
}

/* The input rows of output row oy, every channel repeated mult times, at dst (KH * W * OC bytes). */
static void dw_expand_rows(const dw_state *s, const int8_t *img, int32_t oy, int8_t *dst) {
    const conv_args *a = &s->a;
    const size_t n = (size_t)a->W * (size_t)a->C, M = (size_t)s->mult;
    for (int32_t ky = 0; ky < s->KH; ky++) {
        const int64_t iy = (int64_t)oy * a->sh + (int64_t)ky * a->dh - a->pt;
        if (iy < 0 || iy >= a->H) continue;
        const int8_t *src = img + (size_t)iy * n;
        int8_t *d = dst + (size_t)ky * n * M;
        for (size_t i = 0; i < n; i++)
            for (size_t m = 0; m < M; m++) d[i * M + m] = src[i];
    }
}

static int is_const(const fn_tensor *t, int32_t idx) { return idx < 0 || t[idx].region == FN_REGION_CONST; }

int fn_prepare_dwconv2d_s8(fn_node *n, const fn_tensor *t, int32_t nt, size_t *scratch_bytes) {
    (void)nt;
    const fn_tensor *w = &t[n->in[1]];
    const int32_t bias = n->n_in == 3 ? n->in[2] : -1;
    if (!is_const(t, n->in[1]) || !is_const(t, bias) || !is_const(t, n->p[P_MULT])) return FN_OK;
    const conv_args a = fn_conv_load_args(n, t);
    if (a.N < 1 || a.H < 1 || a.W < 1 || a.C < 1 || a.OH < 1 || a.OW < 1) return FN_OK;
    const int32_t KH = w->dims[1], KW = w->dims[2], mult = n->p[P_DEPTH_MULT];
    if (KH < 1 || KW < 1) return FN_OK; /* no taps: the reference loop writes requantized biases */
    /* each factor is at most INT32_MAX, so the products below cannot overflow 64 bits */
    const size_t ks = (size_t)KH * (size_t)KW, OC = (size_t)w->dims[3];
    if ((size_t)a.OW > FN_DW_ROW_MAX / sizeof(void *) / ks) return FN_OK;
    const size_t row_ptrs = (size_t)a.OW * ks, row_bytes = fn_round_up(row_ptrs * sizeof(void *), 64);
    if (mult > 1 && (size_t)a.W * OC > FN_DW_EXPAND_MAX / (size_t)KH) return FN_OK;
    const size_t expand_bytes = mult > 1 ? (size_t)KH * (size_t)a.W * OC : 0;
    const int table = mult == 1 && row_ptrs * sizeof(void *) <= FN_DW_TABLE_MAX / (size_t)a.OH;
    const size_t blocks = (OC + FN_DWCONV_CR - 1) / FN_DWCONV_CR;
    const size_t head = fn_round_up(sizeof(dw_state), 64);
    const size_t packed_bytes = blocks * FN_DWCONV_BLOCK_BYTES(ks);
    const size_t table_bytes = table ? fn_round_up(row_ptrs * sizeof(void *) * (size_t)a.OH, 64) : 0;
    const size_t zero_bytes = fn_round_up(OC, 64);
    void *mem = NULL;
    if (posix_memalign(&mem, 64, head + packed_bytes + table_bytes + zero_bytes) != 0) return FN_E_NOMEM;
    dw_state *s = mem;
    uint8_t *packed = (uint8_t *)mem + head;
    int8_t *zero = (int8_t *)(packed + packed_bytes + table_bytes);
    const fn_dwconv_config *cfg = fn_dwconv_config_for(OC >= FN_DWCONV_CR ? fn_isa() : FN_ISA_SCALAR);
    *s = (dw_state){
        .ukernel = ks == 9 && cfg->ukernel_9p ? cfg->ukernel_9p : cfg->ukernel_xp,
        .a = a, .KH = KH, .KW = KW, .ks = (int32_t)ks, .mult = mult, .OC = OC, .row_bytes = row_bytes,
        .indirection = table ? (const int8_t **)(void *)(packed + packed_bytes) : NULL,
        .zero = zero, .packed = packed,
        .params = {n->p[P_ZP_OUT], n->p[P_ACT_MIN], n->p[P_ACT_MAX],
                   a.mode == FN_RQ_RUY_X86 ? (int32_t)OC : n->p[P_HALF_UP_CH]},
    };
    memset(zero, a.zp_in, zero_bytes);
    fn_dwconv_pack((int32_t)OC, KH, KW, a.w, a.bias, a.mult, a.shift, a.zp_in, packed);
    for (int32_t oy = 0; table && oy < a.OH; oy++) dw_build_row(s, a.x, 0, oy, s->indirection + (size_t)oy * row_ptrs);
    n->state = s;
    n->consumed |= 1u << 1; /* the filter: only the packed copy is read from now on */
    *scratch_bytes = row_bytes + expand_bytes;
    return FN_OK;
}
typedef struct {
    const dw_state *s;
    const int8_t *x;
    int8_t *y;
    size_t rows, rows_per_task;
} dw_job;

/* Output rows [r0, r1) of N * OH with the thread's scratch: the rows of image 0 from the kept
 * indirection in one call, any other row from pointers (and repeated channels) built here. */
static void dw_task(void *ctx, size_t task, uint8_t *scratch) {
    const dw_job *j = ctx;
    const dw_state *s = j->s;
    const conv_args *a = &s->a;
    const size_t OW = (size_t)a->OW, OH = (size_t)a->OH, ks = (size_t)s->ks;
    size_t r = task * j->rows_per_task;
    const size_t r1 = j->rows - r < j->rows_per_task ? j->rows : r + j->rows_per_task;
    if (s->indirection && j->x == a->x && r < OH) {
        const size_t e = r1 < OH ? r1 : OH;
        s->ukernel(s->OC, (e - r) * OW, ks, s->indirection + r * OW * ks, ks, s->packed, j->y + r * OW * s->OC,
                   &s->params);
        r = e;
    }
    for (; r < r1; r++) {
        const size_t b = r / OH;
        const int32_t oy = (int32_t)(r % OH);
        const int8_t *img = j->x + b * (size_t)a->H * (size_t)a->W * (size_t)a->C;
        const int8_t **ptrs = (const int8_t **)(void *)scratch;
        if (s->mult > 1) {
            int8_t *expanded = (int8_t *)scratch + s->row_bytes;
            dw_expand_rows(s, img, oy, expanded);
            dw_build_row(s, expanded, 1, oy, ptrs);
        } else {
            dw_build_row(s, img, 0, oy, ptrs);
        }
        s->ukernel(s->OC, OW, ks, ptrs, ks, s->packed, j->y + r * OW * s->OC, &s->params);
    }
}

static int run_dw_ukernel(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const dw_state *s = n->state;
    const conv_args *a = &s->a;
    const size_t rows = (size_t)a->N * (size_t)a->OH;
    const size_t row_macs = (size_t)a->OW * s->OC * (size_t)s->ks;
    fn_exec one = *n->exec;
    const int shared = n->exec->threads > 1 && rows * row_macs >= FN_DW_PARALLEL_MACS;
    if (!shared) one.pool = NULL;
    const size_t want = shared ? FN_DW_TASK_MACS : FN_DW_PARALLEL_MACS;
    const size_t per = row_macs >= want ? 1 : (want + row_macs - 1) / row_macs;
    dw_job j = {s, (const int8_t *)t[n->in[0]].data, (int8_t *)t[n->out[0]].data, rows, per};
    return fn_parallel(&one, (rows + per - 1) / per, dw_task, &j, cancel);
}

int fn_run_dwconv2d_s8(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    if (n->state) return run_dw_ukernel(n, t, cancel);
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
