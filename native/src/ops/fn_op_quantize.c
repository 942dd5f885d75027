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

/* LiteRT's optimized QUANTIZE/DEQUANTIZE/requantize run blocks of 8 (16) elements through NEON
 * code, which x86-64 builds emulate with SSE, and the remaining elements through scalar code;
 * the two round differently, so each kernel is told where the block part ends (Q_BLOCKED). */
enum { Q_ZP, Q_SCALE_BITS, Q_AUX_BITS, Q_BLOCKED };

/* float -> int32 as NEON's vcvtnq_s32_f32: round half to even, saturating. */
static int32_t cvt_rne_sat(float v) {
    if (v != v) return 0;
    if (v >= 2147483648.0f) return INT32_MAX;
    if (v < -2147483648.0f) return INT32_MIN;
    return (int32_t)nearbyintf(v); /* the default rounding mode is to nearest, ties to even */
}

int fn_check_quantize_f32_s8(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (fn_check_unary(n, t, nt, FN_F32, FN_I8) != 0 || !fn_zp_ok(n->p[Q_ZP], FN_I8)) return -1;
    return (n->p[Q_BLOCKED] < 0 || n->p[Q_BLOCKED] > t[n->in[0]].count) ? -1 : 0;
}

int fn_run_quantize_f32_s8(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const float *x = (const float *)t[n->in[0]].data;
    int8_t *y = (int8_t *)t[n->out[0]].data;
    const double scale = (double)param_f32(n->p[Q_SCALE_BITS]);
    const float inv_scale = param_f32(n->p[Q_AUX_BITS]); /* (float)(1.0 / scale) */
    const int32_t zp = n->p[Q_ZP];
    const int64_t count = t[n->in[0]].count, blocked = n->p[Q_BLOCKED];
    for (int64_t i = 0; i < count; i++) {
        if ((i % FN_CHUNK) == 0 && FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
        int32_t q;
        if (i < blocked) q = fn_wrap32((int64_t)cvt_rne_sat(x[i] * inv_scale) + zp);
        else q = fn_wrap32((int64_t)fn_f64_to_i32(round((double)x[i] / scale)) + zp);
        y[i] = (int8_t)fn_clamp32(q, -128, 127);
    }
    return FN_OK;
}

int fn_check_dequantize_s8_f32(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (fn_check_unary(n, t, nt, FN_I8, FN_F32) != 0 || !fn_zp_ok(n->p[Q_ZP], FN_I8)) return -1;
    return (n->p[Q_BLOCKED] < 0 || n->p[Q_BLOCKED] > t[n->in[0]].count) ? -1 : 0;
}

int fn_run_dequantize_s8_f32(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const int8_t *x = (const int8_t *)t[n->in[0]].data;
    float *y = (float *)t[n->out[0]].data;
    const float scale = param_f32(n->p[Q_SCALE_BITS]);
    const float zero_times_scale = param_f32(n->p[Q_AUX_BITS]); /* (float)(-zp * (double)scale) */
    const int32_t zp = n->p[Q_ZP];
    const int64_t count = t[n->in[0]].count, blocked = n->p[Q_BLOCKED];
    for (int64_t i = 0; i < count; i++) {
        if ((i % FN_CHUNK) == 0 && FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
        if (i < blocked) {
            const float prod = (float)x[i] * scale;
            y[i] = prod + zero_times_scale;
        } else {
            y[i] = (float)((double)scale * (double)((int32_t)x[i] - zp));
        }
    }
    return FN_OK;
}

/* int8/uint8 -> int8/uint8 (the converter's uint8 model inputs and outputs are such QUANTIZE ops). */
enum { R_ZP_IN, R_ZP_OUT, R_MULT, R_SHIFT, R_BLOCKED };

static int byte_type(int32_t type) { return type == FN_I8 || type == FN_U8; }

int fn_check_requantize_s8(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (n->n_in != 1 || n->n_out != 1) return -1;
    if (!fn_tensor_ok(t, nt, n->in[0], -1) || !fn_tensor_ok(t, nt, n->out[0], -1)) return -1;
    if (!byte_type(t[n->in[0]].type) || !byte_type(t[n->out[0]].type)) return -1;
    if (t[n->in[0]].count != t[n->out[0]].count) return -1;
    if (!fn_shift_ok(n->p[R_SHIFT])) return -1;
    if (!fn_zp_ok(n->p[R_ZP_IN], t[n->in[0]].type) || !fn_zp_ok(n->p[R_ZP_OUT], t[n->out[0]].type)) return -1;
    return (n->p[R_BLOCKED] < 0 || n->p[R_BLOCKED] > t[n->in[0]].count) ? -1 : 0;
}

int fn_run_requantize_s8(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const uint8_t *x = t[n->in[0]].data;
    uint8_t *y = t[n->out[0]].data;
    const int in_signed = t[n->in[0]].type == FN_I8, out_signed = t[n->out[0]].type == FN_I8;
    const int32_t lo = out_signed ? -128 : 0, hi = out_signed ? 127 : 255;
    const int64_t count = t[n->in[0]].count, blocked = n->p[R_BLOCKED];
    for (int64_t i = 0; i < count; i++) {
        if ((i % FN_CHUNK) == 0 && FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
        const int32_t v = in_signed ? (int32_t)(int8_t)x[i] : (int32_t)x[i];
        const int32_t d = v - n->p[R_ZP_IN];
        const int32_t r = i < blocked ? fn_mul_ruy_x86(d, n->p[R_MULT], n->p[R_SHIFT])
                                      : fn_mbqm(d, n->p[R_MULT], n->p[R_SHIFT]);
        y[i] = (uint8_t)fn_clamp32(fn_wrap32((int64_t)r + n->p[R_ZP_OUT]), lo, hi);
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
    uint8_t *y = t[n->out[0]].data;
    const uint8_t *x = t[n->in[0]].data;
    const int64_t nbytes = t[n->out[0]].nbytes;
    if (x == y) return FN_OK; /* in place; fn_plan_create refuses any other overlap */
    for (int64_t off = 0; off < nbytes; off += FN_CHUNK * 16) { /* 1 MiB between cancel checks */
        if (FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
        const int64_t len = nbytes - off < FN_CHUNK * 16 ? nbytes - off : FN_CHUNK * 16;
        memcpy(y + off, x + off, (size_t)len);
    }
    return FN_OK;
}
