/* Fixed-point primitives with TFLite's reference semantics (gemmlowp double rounding).
 * Signed overflow is avoided everywhere: wrapping arithmetic goes through uint32, so results
 * equal what two's-complement int32 code computes without undefined behaviour. */
#ifndef FN_FIXEDPOINT_H
#define FN_FIXEDPOINT_H

#include <stdint.h>

static inline int32_t fn_wrap32(int64_t v) { return (int32_t)(uint32_t)(uint64_t)v; }

/* SaturatingRoundingDoublingHighMul: round((a*b) / 2^31), ties away from zero, saturating. */
static inline int32_t fn_srdhm(int32_t a, int32_t b) {
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* RoundingDivideByPOT: x / 2^e rounded half away from zero, 0 <= e <= 31. */
static inline int32_t fn_rdbpot(int32_t x, int e) {
    const int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    const int32_t rem = x & mask;
    const int32_t thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > thr ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier, double rounding (the default build of TFLite). */
static inline int32_t fn_mbqm(int32_t x, int32_t m, int shift) {
    const int ls = shift > 0 ? shift : 0;
    const int rs = shift > 0 ? 0 : -shift;
    const int32_t xs = (int32_t)((uint32_t)x << ls);
    return fn_rdbpot(fn_srdhm(xs, m), rs);
}

static inline int32_t fn_clamp32(int32_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : v);
}

static inline int32_t fn_sat_add32(int32_t a, int32_t b) {
    int64_t s = (int64_t)a + b;
    return s > INT32_MAX ? INT32_MAX : (s < INT32_MIN ? INT32_MIN : (int32_t)s);
}

#endif
