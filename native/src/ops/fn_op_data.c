/* Data movement: a strided copy (TRANSPOSE, STRIDED_SLICE, SLICE, PAD after a fill), row-wise
 * concatenation (CONCATENATION, PACK) and GATHER. Element size comes from the tensor type; the
 * planner describes the walk with element strides, and check() proves every address in bounds. */
#include <string.h>

#include "fn_kernels.h"

/* ---- strided copy: out[out_off + sum i*os] = in[in_off + sum i*is] over dims[6] ---------------- */
enum { SC_DIMS = 0, SC_IN_OFF = 6, SC_IN_STR = 7, SC_OUT_OFF = 13, SC_OUT_STR = 14, SC_FILL = 20,
       SC_FILL_BITS = 21 };

int fn_check_strided_copy(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (n->n_in != 1 || n->n_out != 1) return -1;
    if (!fn_tensor_ok(t, nt, n->in[0], -1) || !fn_tensor_ok(t, nt, n->out[0], t[n->in[0]].type)) return -1;
    const int32_t *dims = &n->p[SC_DIMS], *os = &n->p[SC_OUT_STR];
    /* The walk visits each output element at most once: no more elements than the output has,
     * and no output stride 0 along a real dimension. That bounds the work by the output size. */
    if (fn_dims_count(dims, FN_MAX_DIMS, t[n->out[0]].count) < 0) return -1;
    for (int d = 0; d < FN_MAX_DIMS; d++)
        if (dims[d] > 1 && os[d] == 0) return -1;
    if (!fn_walk_ok(dims, &n->p[SC_IN_STR], FN_MAX_DIMS, n->p[SC_IN_OFF], t[n->in[0]].count)) return -1;
    if (!fn_walk_ok(dims, os, FN_MAX_DIMS, n->p[SC_OUT_OFF], t[n->out[0]].count)) return -1;
    if (n->p[SC_FILL] != 0 && n->p[SC_FILL] != 1) return -1;
    return 0;
}

int fn_run_strided_copy(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const fn_tensor *xt = &t[n->in[0]];
    fn_tensor *yt = &t[n->out[0]];
    const int64_t es = fn_dtype_size(xt->type);
    const uint8_t *x = xt->data;
    uint8_t *y = yt->data;
    if (n->p[SC_FILL]) { /* PAD: the fill value's bytes repeated (int8 zero point, or 32-bit bits) */
        const int32_t bits = n->p[SC_FILL_BITS];
        for (int64_t i = 0; i < yt->count; i++) {
            if (FN_CANCEL_POLL(i, cancel)) return FN_CANCELLED;
            memcpy(y + i * es, &bits, (size_t)(es < 4 ? es : 4));
        }
    }
    const int32_t *d = &n->p[SC_DIMS], *is = &n->p[SC_IN_STR], *os = &n->p[SC_OUT_STR];
    int64_t done = 0; /* elements copied: the cancel flag is polled every FN_CANCEL_EVERY */
    int64_t next_poll = 0;
    for (int64_t a0 = 0; a0 < d[0]; a0++)
    for (int64_t a1 = 0; a1 < d[1]; a1++)
    for (int64_t a2 = 0; a2 < d[2]; a2++)
    for (int64_t a3 = 0; a3 < d[3]; a3++)
    for (int64_t a4 = 0; a4 < d[4]; a4++, done += d[5]) {
        if (done >= next_poll) {
            if (FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
            next_poll = done + FN_CANCEL_EVERY;
        }
        int64_t io = n->p[SC_IN_OFF] + a0 * is[0] + a1 * is[1] + a2 * is[2] + a3 * is[3] + a4 * is[4];
        int64_t oo = n->p[SC_OUT_OFF] + a0 * os[0] + a1 * os[1] + a2 * os[2] + a3 * os[3] + a4 * os[4];
        if (is[5] == 1 && os[5] == 1) {
            memcpy(y + oo * es, x + io * es, (size_t)(d[5] * es));
        } else {
            for (int64_t a5 = 0; a5 < d[5]; a5++, io += is[5], oo += os[5])
                memcpy(y + oo * es, x + io * es, (size_t)es);
        }
    }
    return FN_OK;
}

/* ---- concatenation: output rows are the inputs' rows side by side ---------------------------- */
enum { CC_OUTER = 0, CC_ROW = 1 }; /* CC_ROW + k: elements per outer row of input k */

int fn_check_concat(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (n->n_in < 1 || n->n_out != 1 || !fn_tensor_ok(t, nt, n->out[0], -1)) return -1;
    const int64_t outer = n->p[CC_OUTER];
    if (outer < 1) return -1;
    int64_t total = 0;
    for (int k = 0; k < n->n_in; k++) {
        if (!fn_tensor_ok(t, nt, n->in[k], t[n->out[0]].type)) return -1;
        const int64_t row = n->p[CC_ROW + k];
        if (row < 0 || row * outer != t[n->in[k]].count) return -1;
        total += row; /* at most FN_MAX_IN * INT32_MAX */
    }
    const int64_t out_count = t[n->out[0]].count;
    return (total <= out_count / outer && total * outer == out_count) ? 0 : -1;
}

int fn_run_concat(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const int64_t es = fn_dtype_size(t[n->out[0]].type), outer = n->p[CC_OUTER];
    int64_t total = 0;
    for (int k = 0; k < n->n_in; k++) total += n->p[CC_ROW + k];
    uint8_t *y = t[n->out[0]].data;
    for (int64_t o = 0; o < outer; o++) {
        if (FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
        int64_t col = 0;
        for (int k = 0; k < n->n_in; k++) {
            const int64_t row = n->p[CC_ROW + k];
            if (row > 0) memcpy(y + (o * total + col) * es, t[n->in[k]].data + o * row * es, (size_t)(row * es));
            col += row;
        }
    }
    return FN_OK;
}

/* ---- gather: out[o, i, :] = in[o, idx[i], :] ------------------------------------------------- */
enum { G_OUTER = 0, G_AXIS = 1, G_INNER = 2 };

int fn_check_gather(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (n->n_in != 2 || n->n_out != 1) return -1;
    if (!fn_tensor_ok(t, nt, n->in[0], -1) || !fn_tensor_ok(t, nt, n->out[0], t[n->in[0]].type)) return -1;
    if (!fn_tensor_ok(t, nt, n->in[1], FN_I32) && !fn_tensor_ok(t, nt, n->in[1], FN_I64)) return -1;
    if (fn_dims_count(&n->p[G_OUTER], 3, t[n->in[0]].count) != t[n->in[0]].count) return -1;
    const int64_t outer = n->p[G_OUTER], inner = n->p[G_INNER], out_count = t[n->out[0]].count;
    /* outer * indices * inner == out_count, multiplied only once known not to overflow */
    const int64_t rows = t[n->in[1]].count;
    if (rows > out_count / outer || outer * rows > out_count / inner) return -1;
    return outer * rows * inner == out_count ? 0 : -1;
}

int fn_run_gather(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const fn_tensor *xt = &t[n->in[0]], *it = &t[n->in[1]];
    const int64_t es = fn_dtype_size(xt->type), outer = n->p[G_OUTER], axis = n->p[G_AXIS];
    const int64_t inner = n->p[G_INNER], count = it->count;
    uint8_t *y = t[n->out[0]].data;
    for (int64_t o = 0; o < outer; o++) {
        if (FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
        for (int64_t i = 0; i < count; i++) {
            if ((i & 63) == 63 && FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
            const int64_t idx = it->type == FN_I32 ? ((const int32_t *)it->data)[i] : ((const int64_t *)it->data)[i];
            if (idx < 0 || idx >= axis) return FN_E_RUNTIME; /* LiteRT refuses these too */
            memcpy(y + ((o * count + i) * inner) * es, xt->data + ((o * axis + idx) * inner) * es, (size_t)(inner * es));
        }
    }
    return FN_OK;
}
