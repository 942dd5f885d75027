/* Rows for row microkernels: the walk of a six-dimensional index space over two strided
 * operands (the two inputs of a broadcasting binary op, or a reduction's input and output),
 * collapsed once at plan creation so that the innermost dimension is as long as it can be. */
#ifndef FN_ROWS_H
#define FN_ROWS_H

#include "fn_kernels.h"

typedef struct {
    int nd; /* >= 1; dims[nd - 1] is the row */
    int64_t dims[FN_MAX_DIMS], sa[FN_MAX_DIMS], sb[FN_MAX_DIMS];
} fn_rows;

/* Drops dimensions of size 1 and merges a dimension into the one outside it wherever both
 * operands walk the pair as one (outer stride = inner stride x inner size, which also holds
 * when both strides are 0). The element order of the walk does not change. */
static inline void fn_rows_collapse(fn_rows *s, const int32_t *dims, const int64_t *sa, const int64_t *sb) {
    int nd = 0;
    for (int d = 0; d < FN_MAX_DIMS; d++) {
        const int64_t dim = dims[d];
        if (dim == 1) continue;
        if (nd > 0 && s->sa[nd - 1] == sa[d] * dim && s->sb[nd - 1] == sb[d] * dim) {
            s->dims[nd - 1] *= dim;
        } else {
            s->dims[nd] = dim;
            nd++;
        }
        s->sa[nd - 1] = sa[d];
        s->sb[nd - 1] = sb[d];
    }
    if (nd == 0) { /* a single element */
        s->dims[0] = 1;
        s->sa[0] = s->sb[0] = 1;
        nd = 1;
    }
    s->nd = nd;
}

/* Calls row(ctx, ia, ib, o, len) for every row in order, where ia and ib are the operands'
 * offsets of the row's first element and o its index in the walk, in pieces of at most
 * FN_CANCEL_EVERY elements; cancel is polled before the first piece and then once every
 * FN_CANCEL_EVERY elements. Offsets stay within the bounds fn_walk_ok checked for the plan. */
typedef void (*fn_row_fn)(const void *ctx, int64_t ia, int64_t ib, int64_t o, int64_t len);

static inline int fn_rows_walk(const fn_rows *s, fn_row_fn row, const void *ctx, const volatile int32_t *cancel) {
    const int nd = s->nd;
    const int64_t len = s->dims[nd - 1], step_a = s->sa[nd - 1], step_b = s->sb[nd - 1];
    int64_t idx[FN_MAX_DIMS] = {0};
    int64_t ia = 0, ib = 0, o = 0, since = FN_CANCEL_EVERY;
    for (;;) {
        for (int64_t j = 0; j < len; j += FN_CANCEL_EVERY) {
            const int64_t piece = len - j < FN_CANCEL_EVERY ? len - j : FN_CANCEL_EVERY;
            if (since >= FN_CANCEL_EVERY) {
                if (FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
                since = 0;
            }
            since += piece;
            row(ctx, ia + j * step_a, ib + j * step_b, o + j, piece);
        }
        o += len;
        int d = nd - 2;
        for (; d >= 0; d--) {
            ia += s->sa[d];
            ib += s->sb[d];
            if (++idx[d] < s->dims[d]) break;
            ia -= s->sa[d] * s->dims[d];
            ib -= s->sb[d] * s->dims[d];
            idx[d] = 0;
        }
        if (d < 0) return FN_OK;
    }
}

#endif
