/* Element-wise int8 -> int8 ops as a 256-entry table. Any such op is a function of one int8, so
 * the table, built once at load with the op's exact TFLite arithmetic, is bit-exact by
 * construction: LOGISTIC, TANH, GELU (float LUTs as LiteRT builds them), HARD_SWISH (int16
 * fixed point), RELU/RELU6/RELU_N1_TO_1 and LEAKY_RELU (requantize, then clamp). */
#include "fn_kernels.h"
#include "fn_ukernels_eltwise.h"

enum { L_TABLE, L_MIN_VALID };

int fn_check_lut_s8(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (fn_check_unary(n, t, nt, FN_I8, FN_I8) != 0) return -1;
    if (n->p[L_MIN_VALID] < -128 || n->p[L_MIN_VALID] > 128) return -1;
    /* a constant: microkernels may hold the table in registers while they write the output */
    if (!fn_param_tensor_ok(t, nt, n->p[L_TABLE], FN_I8, 256)) return -1;
    return t[n->p[L_TABLE]].region == FN_REGION_CONST ? 0 : -1;
}

int fn_prepare_lut_s8(fn_node *n, const fn_tensor *t, int32_t nt, size_t *scratch_bytes) {
    (void)t, (void)nt, (void)scratch_bytes;
    return fn_eltwise_prepare(n);
}

int fn_run_lut_s8(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const fn_eltwise_ukernels *uk = n->state;
    const int8_t *x = (const int8_t *)t[n->in[0]].data;
    int8_t *y = (int8_t *)t[n->out[0]].data;
    const int8_t *table = (const int8_t *)t[n->p[L_TABLE]].data;
    const int64_t count = t[n->in[0]].count;
    const int32_t min_valid = n->p[L_MIN_VALID];
    /* An op undefined for some inputs (RSQRT below its zero point) fails the whole run, as in
     * LiteRT, before anything is written. */
    if (min_valid > -128)
        for (int64_t i = 0; i < count; i += FN_CANCEL_EVERY) {
            if (FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
            const int64_t end = count - i < FN_CANCEL_EVERY ? count : i + FN_CANCEL_EVERY;
            int below = 0;
            for (int64_t j = i; j < end; j++) below |= x[j] < min_valid;
            if (below) return FN_E_RUNTIME;
        }
    for (int64_t i = 0; i < count; i += FN_CANCEL_EVERY) {
        if (FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
        uk->lut((size_t)(count - i < FN_CANCEL_EVERY ? count - i : FN_CANCEL_EVERY), x + i, y + i, table);
    }
    return FN_OK;
}

/* ---- float transforms, as LiteRT's LUTPopulate: q = clamp(round(f(s_in*(v-zp_in)) / s_out) + zp_out) */
static float tf_logistic(float v) { return 1.0f / (1.0f + expf(-v)); }
static float tf_tanh(float v) { return tanhf(v); }
static float tf_gelu(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752440f)); }
static float tf_gelu_tanh(float v) {
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    return 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
}

static void lut_float(float (*f)(float), float s_in, int32_t zp_in, float s_out, int32_t zp_out, int8_t out[256]) {
    const float inverse_scale = 1.0f / s_out;
    for (int32_t v = -128; v <= 127; v++) {
        const float dq = s_in * (float)(v - zp_in);
        const float rescaled = roundf(f(dq) * inverse_scale);
        const int32_t q = fn_f32_to_i32(rescaled + (float)zp_out);
        out[(uint8_t)(int8_t)v] = (int8_t)fn_clamp32(q, -128, 127);
    }
}

/* ---- int16 fixed point of TFLite's HardSwish */
static int16_t sat16(int32_t v) { return (int16_t)(v > INT16_MAX ? INT16_MAX : (v < INT16_MIN ? INT16_MIN : v)); }
static int16_t srdhm16(int16_t a, int16_t b) {
    if (a == INT16_MIN && b == INT16_MIN) return INT16_MAX;
    const int32_t ab = (int32_t)a * b;
    const int32_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
    return (int16_t)((ab + nudge) / (1 << 15));
}
static int16_t sdhm16(int16_t a, int16_t b) { /* truncating, not rounding */
    if (a == INT16_MIN && b == INT16_MIN) return INT16_MAX;
    return (int16_t)(((int32_t)a * b) / (1 << 15));
}
static int16_t rdbpot16(int16_t x, int e) {
    const int16_t mask = (int16_t)((1 << e) - 1);
    const int16_t rem = (int16_t)(x & mask);
    const int16_t thr = (int16_t)((mask >> 1) + (x < 0 ? 1 : 0));
    return (int16_t)((x >> e) + (rem > thr ? 1 : 0));
}

static int lut_hard_swish(const int32_t *ip, int8_t out[256]) {
    const int32_t zp_in = ip[0], zp_out = ip[1], m_out = ip[2], e_out = ip[3], m_relu = ip[4], e_relu = ip[5];
    if (m_out < INT16_MIN || m_out > INT16_MAX || m_relu < INT16_MIN || m_relu > INT16_MAX) return -1;
    if (e_out > 0 || e_out < -15 || e_relu < -15 || e_relu > 15) return -1;
    for (int32_t v = -128; v <= 127; v++) {
        const int16_t in = (int16_t)(v - zp_in);
        const int16_t hires = (int16_t)(in * 128);
        const int16_t pre_out = srdhm16(hires, (int16_t)m_out);
        int16_t r = hires;
        if (e_relu > 0) r = sat16((int32_t)r * (1 << (e_relu - 1)));
        r = srdhm16(r, (int16_t)m_relu);
        if (e_relu > 0) r = sat16((int32_t)r * 2);
        if (e_relu < 0) r = rdbpot16(r, -e_relu);
        r = (int16_t)(((int32_t)r + (1 << 15)) >> 1);
        const int16_t pre = sdhm16(r, pre_out);
        const int32_t o = (int32_t)rdbpot16(pre, -e_out) + zp_out;
        out[(uint8_t)(int8_t)v] = (int8_t)fn_clamp32(o, -128, 127);
    }
    return 0;
}

/* ---- requantize then clamp (RELU family), or two multipliers by sign (LEAKY_RELU) */
static int lut_requant(const int32_t *ip, int leaky, int8_t out[256]) {
    const int32_t zp_in = ip[0], zp_out = ip[1], m = ip[2], sh = ip[3], lo = ip[4], hi = ip[5];
    const int32_t m_neg = leaky ? ip[6] : m, sh_neg = leaky ? ip[7] : sh;
    if (sh < -31 || sh > 31 || sh_neg < -31 || sh_neg > 31 || lo > hi) return -1;
    for (int32_t v = -128; v <= 127; v++) {
        const int32_t d = v - zp_in;
        const int32_t r = d >= 0 ? fn_mbqm(d, m, sh) : fn_mbqm(d, m_neg, sh_neg);
        out[(uint8_t)(int8_t)v] = (int8_t)fn_clamp32(r + zp_out, lo, hi);
    }
    return 0;
}

/* ---- RSQRT int8: gemmlowp fixed-point Newton-Raphson (TFLite's GetInvSqrtQuantizedMultiplierExp) */
static int32_t sat_shl32(int32_t x, int e) { /* SaturatingRoundingMultiplyByPOT<e>, e > 0 */
    const int32_t threshold = (int32_t)((1u << (31 - e)) - 1);
    if (x > threshold) return INT32_MAX;
    if (x < -threshold) return INT32_MIN;
    return (int32_t)((uint32_t)x << e);
}

static void inv_sqrt_multiplier(int32_t input, int32_t *mult, int *shift) {
    if (input <= 1) {
        *mult = INT32_MAX;
        *shift = 0;
        return;
    }
    int sh = 11;
    while (input >= (1 << 29)) {
        input /= 4;
        ++sh;
    }
    int clz = 0;
    for (uint32_t v = (uint32_t)input; !(v & 0x80000000u); v <<= 1) clz++;
    const int pairs = (clz - 1) / 2 - 1;
    sh -= pairs;
    input = (int32_t)((uint32_t)input << (2 * pairs));
    const int32_t x_in = input >> 1;                  /* F3 */
    const int32_t half_in = fn_rdbpot(x_in, 1);        /* F3 */
    const int32_t half_three = (1 << 28) + (1 << 27); /* 1.5 in F3 */
    int32_t x = 1 << 28;                              /* 1.0 in F3 */
    for (int i = 0; i < 5; i++) {
        const int32_t x3 = sat_shl32(fn_srdhm(fn_srdhm(x, x), x), 6);        /* F9 -> F3 */
        const int32_t a = fn_srdhm(half_three, x), b = fn_srdhm(half_in, x3); /* F6 */
        x = sat_shl32(fn_wrap32((int64_t)a - b), 3);                        /* F6 -> F3 */
    }
    x = fn_srdhm(x, 1518500250); /* sqrt(2)/2 in F0 */
    if (sh < 0) {
        x = (int32_t)((uint32_t)x << -sh);
        sh = 0;
    }
    *mult = x;
    *shift = -sh; /* kReverseShift: a right shift becomes a (negative) left shift */
}

static int lut_rsqrt(const int32_t *ip, int8_t out[256]) {
    const int32_t zp_in = ip[0], zp_out = ip[1], m = ip[2], sh = ip[3];
    if (sh - 20 < -31 || sh - 20 > 31) return -1;
    for (int32_t v = -128; v <= 127; v++) {
        const int32_t value = v - zp_in;
        int32_t o;
        if (value <= 0) {
            o = 127; /* 0 reads as the largest output; negative inputs are refused at run time */
        } else {
            int32_t im;
            int ish;
            inv_sqrt_multiplier(value, &im, &ish);
            if (ish + 20 > 31 || ish + 20 < -31) return -1;
            const int32_t data = fn_mbqm(1, im, ish + 20);
            o = fn_clamp32(fn_wrap32((int64_t)fn_mbqm(data, m, sh - 20) + zp_out), -128, 127);
        }
        out[(uint8_t)(int8_t)v] = (int8_t)o;
    }
    return 0;
}

int fn_lut_build(int32_t kind, const float *fp, const int32_t *ip, int8_t out[256]) {
    /* every kind reads an input and an output zero point first; v - zp must not overflow */
    if (!fn_zp_ok(ip[0], FN_I8) || !fn_zp_ok(ip[1], FN_I8)) return -1;
    switch (kind) {
    case FN_LUT_LOGISTIC: lut_float(tf_logistic, fp[0], ip[0], fp[1], ip[1], out); return 0;
    case FN_LUT_TANH: lut_float(tf_tanh, fp[0], ip[0], fp[1], ip[1], out); return 0;
    case FN_LUT_GELU: lut_float(tf_gelu, fp[0], ip[0], fp[1], ip[1], out); return 0;
    case FN_LUT_GELU_TANH: lut_float(tf_gelu_tanh, fp[0], ip[0], fp[1], ip[1], out); return 0;
    case FN_LUT_RSQRT: return lut_rsqrt(ip, out);
    case FN_LUT_HARD_SWISH: return lut_hard_swish(ip, out);
    case FN_LUT_REQUANT_CLAMP: return lut_requant(ip, 0, out);
    case FN_LUT_LEAKY_RELU: return lut_requant(ip, 1, out);
    default: return -1;
    }
}
