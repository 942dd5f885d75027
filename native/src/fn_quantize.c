/* QUANTIZE (float32 -> int8, int8 -> int8), DEQUANTIZE (int8 -> float32) and byte copies
 * (RESHAPE and friends), with TFLite's reference arithmetic. */
#include <string.h>

#include "fn_kernels.h"

#define FN_CHUNK 65536 /* elements between cancel checks */

static float param_f32(int32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

enum { Q_ZP, Q_SCALE_BITS, Q_MIN, Q_MAX };

int fn_check_quantize_f32_s8(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (n->n_in != 1 || n->n_out != 1) return -1;
    if (!fn_tensor_ok(t, nt, n->in[0], FN_F32) || !fn_tensor_ok(t, nt, n->out[0], FN_I8)) return -1;
    if (t[n->in[0]].count != t[n->out[0]].count) return -1;
    return 0;
}

int fn_run_quantize_f32_s8(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const float *x = (const float *)t[n->in[0]].data;
    int8_t *y = (int8_t *)t[n->out[0]].data;
    const float scale = param_f32(n->p[Q_SCALE_BITS]);
    const int32_t zp = n->p[Q_ZP];
    const int64_t count = t[n->in[0]].count;
    for (int64_t i = 0; i < count; i++) {
        if ((i % FN_CHUNK) == 0 && FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
        const int32_t q = fn_f32_to_i32(roundf(x[i] / scale));
        y[i] = (int8_t)fn_clamp32(fn_wrap32((int64_t)q + zp), -128, 127);
    }
    return FN_OK;
}

int fn_check_dequantize_s8_f32(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (n->n_in != 1 || n->n_out != 1) return -1;
    if (!fn_tensor_ok(t, nt, n->in[0], FN_I8) || !fn_tensor_ok(t, nt, n->out[0], FN_F32)) return -1;
    if (t[n->in[0]].count != t[n->out[0]].count) return -1;
    return 0;
}

int fn_run_dequantize_s8_f32(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const int8_t *x = (const int8_t *)t[n->in[0]].data;
    float *y = (float *)t[n->out[0]].data;
    const float scale = param_f32(n->p[Q_SCALE_BITS]);
    const int32_t zp = n->p[Q_ZP];
    const int64_t count = t[n->in[0]].count;
    for (int64_t i = 0; i < count; i++) {
        if ((i % FN_CHUNK) == 0 && FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
        y[i] = scale * (float)((int32_t)x[i] - zp);
    }
    return FN_OK;
}

enum { R_ZP_IN, R_ZP_OUT, R_MULT, R_SHIFT };

int fn_check_requantize_s8(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (n->n_in != 1 || n->n_out != 1) return -1;
    if (!fn_tensor_ok(t, nt, n->in[0], FN_I8) || !fn_tensor_ok(t, nt, n->out[0], FN_I8)) return -1;
    if (t[n->in[0]].count != t[n->out[0]].count) return -1;
    if (n->p[R_SHIFT] < -31 || n->p[R_SHIFT] > 31) return -1;
    return 0;
}

int fn_run_requantize_s8(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const int8_t *x = (const int8_t *)t[n->in[0]].data;
    int8_t *y = (int8_t *)t[n->out[0]].data;
    const int64_t count = t[n->in[0]].count;
    for (int64_t i = 0; i < count; i++) {
        if ((i % FN_CHUNK) == 0 && FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
        const int32_t r = fn_mbqm((int32_t)x[i] - n->p[R_ZP_IN], n->p[R_MULT], n->p[R_SHIFT]);
        y[i] = fn_out_s8(r, n->p[R_ZP_OUT], -128, 127);
    }
    return FN_OK;
}

int fn_check_copy(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (n->n_in < 1 || n->n_out != 1) return -1;
    if (!fn_tensor_ok(t, nt, n->in[0], -1) || !fn_tensor_ok(t, nt, n->out[0], t[n->in[0]].type)) return -1;
    if (t[n->in[0]].nbytes != t[n->out[0]].nbytes) return -1;
    return 0;
}

int fn_run_copy(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    (void)cancel;
    if (t[n->in[0]].data != t[n->out[0]].data && t[n->out[0]].nbytes > 0)
        memmove(t[n->out[0]].data, t[n->in[0]].data, (size_t)t[n->out[0]].nbytes);
    return FN_OK;
}
