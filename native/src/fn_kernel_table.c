/* The kernel table: one portable reference kernel per op kind. A faster kernel for an ISA
 * replaces an entry here once, at plan creation; the reference stays as its test twin. */
#include <stddef.h>

#include "fn_kernels.h"

#define K(op, name) [op] = {#name, fn_check_##name, fn_run_##name}

static const fn_kernel KERNELS[FN_OP_COUNT] = {
    K(FN_OP_FULLY_CONNECTED, fully_connected_s8),
    K(FN_OP_CONV_2D, conv2d_s8),
    K(FN_OP_DEPTHWISE_CONV_2D, dwconv2d_s8),
    K(FN_OP_QUANTIZE_F32_S8, quantize_f32_s8),
    K(FN_OP_DEQUANTIZE_S8_F32, dequantize_s8_f32),
    K(FN_OP_REQUANTIZE_S8, requantize_s8),
    K(FN_OP_COPY, copy),
    K(FN_OP_ADD_S8, add_s8),
    K(FN_OP_MUL_S8, mul_s8),
    K(FN_OP_BINARY_F32, binary_f32),
    K(FN_OP_BINARY_I32, binary_i32),
    K(FN_OP_AVG_POOL_S8, avg_pool_s8),
    K(FN_OP_MAX_POOL_S8, max_pool_s8),
    K(FN_OP_MEAN_S8, mean_s8),
    K(FN_OP_REDUCE_I32, reduce_i32),
    K(FN_OP_SOFTMAX_S8, softmax_s8),
    K(FN_OP_LUT_S8, lut_s8),
    K(FN_OP_UNARY_F32, unary_f32),
    K(FN_OP_STRIDED_COPY, strided_copy),
    K(FN_OP_CONCAT, concat),
    K(FN_OP_GATHER, gather),
    K(FN_OP_BATCH_MATMUL_S8, batch_matmul_s8),
};

const fn_kernel *fn_kernel_for(int32_t op) {
    if (op < 0 || op >= FN_OP_COUNT || KERNELS[op].run == NULL) return NULL;
    return &KERNELS[op];
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
