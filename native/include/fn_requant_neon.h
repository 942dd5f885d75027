/* The NEON output stage shared by the aarch64 microkernels: fn_mul_ruy_x86 on 64-bit lanes, step
 * for step. SSHL by register wraps as x << ls does; SMULL gives the exact product; + 2^30 and an
 * arithmetic >> 31; + 2^(rs-1) (0 when rs = 0) and SSHL by -rs, an arithmetic shift that
 * truncates; XTN keeps the low 32 bits, which is fn_wrap32. SQRDMULH + SRSHL would round the same
 * way (half up) but saturate where x and M are both INT32_MIN, and the plan does not forbid that
 * multiplier (tests/ukernels reach it). */
#ifndef FN_REQUANT_NEON_H
#define FN_REQUANT_NEON_H

#if !defined(__aarch64__)
#error "fn_requant_neon.h is for aarch64 translation units"
#endif

#include <arm_neon.h>
#include <stddef.h>
#include <stdint.h>

/* The per-channel requantisation constants of four channels, read once per block from a header
 * of rows of `row` int32 (bias, mult, shl, shr: fn_ukernels.h, fn_dwconv.h), hdr at the first. */
typedef struct {
    int32x4_t mult, shl;
    int64x2_t nshr_lo, nshr_hi; /* -rs as 64-bit shift counts */
    int64x2_t rnd_lo, rnd_hi;   /* 2^(rs-1), or 0 when rs = 0 */
} requant4_params;

static inline requant4_params requant4_load(const int32_t *hdr, size_t row) {
    requant4_params q;
    q.mult = vld1q_s32(hdr + row);
    q.shl = vld1q_s32(hdr + 2 * row);
    const int32x4_t shr = vld1q_s32(hdr + 3 * row);
    const int64x2_t rs_lo = vmovl_s32(vget_low_s32(shr)), rs_hi = vmovl_high_s32(shr);
    const int64x2_t one = vdupq_n_s64(1);
    q.nshr_lo = vnegq_s64(rs_lo);
    q.nshr_hi = vnegq_s64(rs_hi);
    q.rnd_lo = vshrq_n_s64(vshlq_s64(one, rs_lo), 1);
    q.rnd_hi = vshrq_n_s64(vshlq_s64(one, rs_hi), 1);
    return q;
}

/* fn_mul_ruy_x86 of four accumulators (bias included), + zp, clamped to [lo, hi]. */
static inline int32x4_t requant4(int32x4_t acc, const requant4_params *q, int32x4_t zp, int32x4_t lo,
                                 int32x4_t hi) {
    const int32x4_t x = vshlq_s32(acc, q->shl);
    const int64x2_t half = vdupq_n_s64((int64_t)1 << 30);
    int64x2_t v_lo = vshrq_n_s64(vaddq_s64(vmull_s32(vget_low_s32(x), vget_low_s32(q->mult)), half), 31);
    int64x2_t v_hi = vshrq_n_s64(vaddq_s64(vmull_high_s32(x, q->mult), half), 31);
    v_lo = vshlq_s64(vaddq_s64(v_lo, q->rnd_lo), q->nshr_lo);
    v_hi = vshlq_s64(vaddq_s64(v_hi, q->rnd_hi), q->nshr_hi);
    const int32x4_t r = vaddq_s32(vcombine_s32(vmovn_s64(v_lo), vmovn_s64(v_hi)), zp);
    return vminq_s32(vmaxq_s32(r, lo), hi);
}

#endif
