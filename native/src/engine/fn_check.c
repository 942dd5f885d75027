/* Checks every kernel's check function shares: tensor rows, parameter tensors, walk bounds. */
#include "fn_kernels.h"

int64_t fn_dtype_size(int32_t type) {
    switch (type) {
    case FN_F32: case FN_I32: return 4;
    case FN_I8: case FN_U8: case FN_BOOL: return 1;
    case FN_I64: case FN_F64: return 8;
    case FN_I16: return 2;
    default: return 0;
    }
}

int fn_tensor_ok(const fn_tensor *t, int32_t n_tensors, int32_t idx, int32_t type) {
    if (idx < 0 || idx >= n_tensors) return 0;
    if (type >= 0 && t[idx].type != type) return 0;
    return t[idx].data != NULL || t[idx].nbytes == 0;
}

int fn_param_tensor_ok(const fn_tensor *t, int32_t n, int32_t idx, int32_t type, int64_t count) {
    return fn_tensor_ok(t, n, idx, type) && t[idx].count == count;
}

int fn_const_i32_ok(const fn_tensor *t, int32_t n, int32_t idx, int64_t count, int32_t lo, int32_t hi) {
    if (!fn_param_tensor_ok(t, n, idx, FN_I32, count) || t[idx].region != FN_REGION_CONST) return 0;
    const int32_t *v = (const int32_t *)t[idx].data;
    for (int64_t i = 0; i < count; i++)
        if (v[i] < lo || v[i] > hi) return 0;
    return 1;
}

int64_t fn_dims_count(const int32_t *dims, int nd, int64_t limit) {
    int64_t count = 1;
    for (int d = 0; d < nd; d++) {
        if (dims[d] < 1 || count > limit / dims[d]) return -1;
        count *= dims[d];
    }
    return count;
}

int fn_walk_ok(const int32_t *dims, const int32_t *str, int nd, int64_t off, int64_t count) {
    if (off < 0 || off >= count) return 0;
    int64_t lo = off, hi = off;
    for (int d = 0; d < nd; d++) {
        if (dims[d] < 1) return 0;
        if (dims[d] == 1 || str[d] == 0) continue;
        const int64_t s = str[d] < 0 ? -(int64_t)str[d] : (int64_t)str[d];
        if ((int64_t)dims[d] - 1 > count / s) return 0; /* this span alone leaves the tensor */
        const int64_t span = ((int64_t)dims[d] - 1) * s;   /* <= count, so the sums cannot overflow */
        if (str[d] < 0) lo -= span;
        else hi += span;
    }
    return lo >= 0 && hi < count;
}

int fn_check_unary(const fn_node *n, const fn_tensor *t, int32_t nt, int32_t in_type, int32_t out_type) {
    if (n->n_in != 1 || n->n_out != 1) return -1;
    if (!fn_tensor_ok(t, nt, n->in[0], in_type) || !fn_tensor_ok(t, nt, n->out[0], out_type)) return -1;
    return t[n->in[0]].count == t[n->out[0]].count ? 0 : -1;
}
