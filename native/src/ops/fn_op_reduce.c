/* Reductions: int8 MEAN (both of LiteRT's integer recipes reduce to one form:
 * y = MBQM(sum + add, M, shift) + bias, clamped), and int32 SUM/PROD/MAX/MIN for shape arithmetic.
 * The input is walked in row-major order; each element lands in the output slot found by
 * dropping the reduced dimensions (out stride 0). */
#include <stdlib.h>
#include <string.h>

#include "fn_kernels.h"
#include "fn_rows.h"
#include "fn_ukernels_eltwise.h"

enum { R_DIMS = 0, R_OSTRIDE = 6, R_ADD = 12, R_M, R_SHIFT, R_BIAS, R_CHANNELS, R_HALF_UP_CHANNELS, R_KIND = 12 };

static int check_reduce(const fn_node *n, const fn_tensor *t, int32_t nt, int32_t type, int need_scratch) {
    if (n->n_in != 1 || n->n_out != 1 + need_scratch) return -1;
    if (!fn_tensor_ok(t, nt, n->in[0], type) || !fn_tensor_ok(t, nt, n->out[0], type)) return -1;
    for (int d = 0; d < FN_MAX_DIMS; d++)
        if (n->p[R_OSTRIDE + d] < 0) return -1;
    const int64_t in_count = t[n->in[0]].count;
    if (fn_dims_count(&n->p[R_DIMS], FN_MAX_DIMS, in_count) != in_count) return -1;
    if (!fn_walk_ok(&n->p[R_DIMS], &n->p[R_OSTRIDE], FN_MAX_DIMS, 0, t[n->out[0]].count)) return -1;
    if (need_scratch && !(fn_tensor_ok(t, nt, n->out[1], FN_I32) && t[n->out[1]].count == t[n->out[0]].count))
        return -1;
    return 0;
}

#define FN_REDUCE_LOOP(n, cancel, ...)                                                     \
    do {                                                                                    \
        const int32_t *d_ = &(n)->p[R_DIMS], *s_ = &(n)->p[R_OSTRIDE];                      \
        int64_t i_ = 0;                                                                     \
        for (int64_t a0 = 0; a0 < d_[0]; a0++)                                              \
        for (int64_t a1 = 0; a1 < d_[1]; a1++) {                                            \
            for (int64_t a2 = 0; a2 < d_[2]; a2++)                                          \
            for (int64_t a3 = 0; a3 < d_[3]; a3++)                                          \
            for (int64_t a4 = 0; a4 < d_[4]; a4++) {                                        \
                int64_t o_ = a0 * s_[0] + a1 * s_[1] + a2 * s_[2] + a3 * s_[3] + a4 * s_[4]; \
                for (int64_t a5 = 0; a5 < d_[5]; a5++, i_++, o_ += s_[5]) {                 \
                    if (FN_CANCEL_POLL(i_, cancel)) return FN_CANCELLED;                    \
                    __VA_ARGS__                                                             \
                }                                                                           \
            }                                                                               \
        }                                                                                   \
    } while (0)

int fn_check_mean_s8(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (check_reduce(n, t, nt, FN_I8, 1) != 0) return -1;
    if (n->p[R_CHANNELS] < 1 || n->p[R_HALF_UP_CHANNELS] < 0 || n->p[R_HALF_UP_CHANNELS] > n->p[R_CHANNELS]) return -1;
    return (n->p[R_SHIFT] < -31 || n->p[R_SHIFT] > 31) ? -1 : 0;
}

/* MEAN through microkernels: the walk collapses into rows of the input (fn_rows.h, the input
 * contiguous, the output with its strides); a row that maps onto one output slot is summed
 * (s8-rsum), one that maps onto consecutive slots is added element-wise (s8-vacc), any other
 * goes element by element. The epilogue requantizes runs of consecutive outputs (qs8-requant). */
typedef struct {
    fn_rows shape;
    fn_eltwise_ukernels uk;
    fn_qs8_requant_params rq, rq_half_up;
} mean_state;

int fn_prepare_mean_s8(fn_node *n, const fn_tensor *t, int32_t nt, size_t *scratch_bytes) {
    (void)t, (void)nt, (void)scratch_bytes;
    mean_state *s = calloc(1, sizeof *s);
    if (!s) return FN_E_NOMEM;
    const int32_t *dims = &n->p[R_DIMS];
    int64_t in_str[FN_MAX_DIMS], out_str[FN_MAX_DIMS], step = 1;
    for (int d = FN_MAX_DIMS - 1; d >= 0; d--) {
        in_str[d] = step;
        step *= dims[d];
        out_str[d] = n->p[R_OSTRIDE + d];
    }
    fn_rows_collapse(&s->shape, dims, in_str, out_str);
    s->uk = fn_eltwise_ukernels_for(fn_isa());
    const int32_t sh = n->p[R_SHIFT];
    s->rq = (fn_qs8_requant_params){n->p[R_ADD], n->p[R_M], sh > 0 ? sh : 0, sh > 0 ? 0 : -sh, n->p[R_BIAS], 0};
    s->rq_half_up = s->rq;
    s->rq_half_up.ruy = 1;
    n->state = s;
    return FN_OK;
}

typedef struct {
    const mean_state *s;
    const int8_t *x;
    uint32_t *acc;
} mean_ctx;

static void mean_row(const void *ctx, int64_t ia, int64_t ib, int64_t o, int64_t len) {
    const mean_ctx *c = ctx;
    const int64_t step = c->s->shape.sb[c->s->shape.nd - 1];
    (void)o;
    if (step == 0) c->s->uk.rsum((size_t)len, c->x + ia, c->acc + ib);
    else if (step == 1) c->s->uk.vacc((size_t)len, c->x + ia, c->acc + ib);
    else
        for (int64_t j = 0; j < len; j++) c->acc[ib + j * step] += (uint32_t)(int32_t)c->x[ia + j];
}

int fn_run_mean_s8(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const mean_state *s = n->state;
    int8_t *y = (int8_t *)t[n->out[0]].data;
    uint32_t *acc = (uint32_t *)t[n->out[1]].data; /* int32 sums, wrapping like TFLite's */
    const int64_t m = t[n->out[0]].count;
    for (int64_t i = 0; i < m; i += FN_CANCEL_EVERY) {
        if (FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
        memset(acc + i, 0, (size_t)(m - i < FN_CANCEL_EVERY ? m - i : FN_CANCEL_EVERY) * sizeof *acc);
    }
    const mean_ctx c = {s, (const int8_t *)t[n->in[0]].data, acc};
    const int rc = fn_rows_walk(&s->shape, mean_row, &c, cancel);
    if (rc != FN_OK) return rc;
    /* LiteRT's 4D spatial mean runs blocks of 16 channels through NEON code (emulated with SSE
     * on x86-64) whose rounding shift rounds half up; the channels left over take the scalar
     * path with gemmlowp rounding. R_HALF_UP_CHANNELS says how many lead each row. */
    const int64_t channels = n->p[R_CHANNELS], half_up = n->p[R_HALF_UP_CHANNELS];
    const int64_t row = half_up == 0 || half_up == channels ? FN_CANCEL_EVERY : channels;
    for (int64_t i = 0; i < m; i += row) {
        if (FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
        const int64_t len = m - i < row ? m - i : row;
        const int64_t up = half_up == 0 ? 0 : (half_up == channels ? len : (len < half_up ? len : half_up));
        if (up > 0) s->uk.requant((size_t)up, acc + i, y + i, &s->rq_half_up);
        if (len > up) s->uk.requant((size_t)(len - up), acc + i + up, y + i + up, &s->rq);
    }
    return FN_OK;
}

enum { RI_SUM = 0, RI_PROD, RI_MAX, RI_MIN };

int fn_check_reduce_i32(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (check_reduce(n, t, nt, FN_I32, 0) != 0) return -1;
    return (n->p[R_KIND] < RI_SUM || n->p[R_KIND] > RI_MIN) ? -1 : 0;
}

int fn_run_reduce_i32(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const int32_t *x = (const int32_t *)t[n->in[0]].data;
    int32_t *y = (int32_t *)t[n->out[0]].data;
    const int kind = n->p[R_KIND];
    const int64_t m = t[n->out[0]].count;
    const int32_t init = kind == RI_SUM ? 0 : kind == RI_PROD ? 1 : kind == RI_MAX ? INT32_MIN : INT32_MAX;
    for (int64_t i = 0; i < m; i++) {
        if (FN_CANCEL_POLL(i, cancel)) return FN_CANCELLED;
        y[i] = init;
    }
    FN_REDUCE_LOOP(n, cancel, {
        const int32_t v = x[i_];
        switch (kind) {
        case RI_SUM: y[o_] = fn_wrap32((int64_t)y[o_] + v); break;
        case RI_PROD: y[o_] = fn_wrap32((int64_t)y[o_] * v); break;
        case RI_MAX: y[o_] = v > y[o_] ? v : y[o_]; break;
        default: y[o_] = v < y[o_] ? v : y[o_]; break;
        }
    });
    return FN_OK;
}
