/* Microkernels of the element-wise int8 ops, their reductions and their tables: qs8-vadd (ADD,
 * SUB, SQUARED_DIFFERENCE), qs8-vmul (MUL), x8-lut (every int8 -> int8 table op), s8-rsum and
 * qs8-requant (MEAN), s8-maxpool and s8-sumpool (the pools), s8-rmax and qs8-softmax (SOFTMAX). As in fn_ukernels.h: pure compute
 * on rows, one ISA per file, named fn_<dtype>_<op>_ukernel__<isa>; the operators collapse shapes
 * into rows, poll cancel between rows and call what fn_eltwise_ukernels_for picked at plan
 * creation.
 *
 * Exactness: every variant returns the scalar variant's bytes for every input and every
 * parameter a node's check admits. The scalar arithmetic below (the fn_fixedpoint.h primitives,
 * as the operators always computed them) is the definition; the SIMD variants compute the same
 * integer steps lane by lane (fn_fixedpoint_avx2.h). */
#ifndef FN_UKERNELS_ELTWISE_H
#define FN_UKERNELS_ELTWISE_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "fn_cpu.h"
#include "fn_fixedpoint.h"
#include "fn_kernels.h"

/* ---- qs8-vadd: TFLite's AddFunc. Each input x becomes
 *   x' = RDBPOT(SRDHM((x - zp) << ls, mult), shr)       (0 <= ls <= 20, 0 <= shr <= 31)
 * and the output y = (int8) clamp(MBQM(raw, out_mult, out_shift) + out_zp, lo, hi) with raw
 * a' + b', a' - b', b' - a' or (a' - b')^2 in wrapping int32 arithmetic. */
enum { FN_VADD_ADD = 0, FN_VADD_SUB, FN_VADD_RSUB, FN_VADD_SQDIFF };

typedef struct {
    int32_t zp, mult, shr;
} fn_qs8_vadd_input;

typedef struct {
    int32_t kind, ls;
    fn_qs8_vadd_input a, b;
    int32_t out_mult, out_shl, out_shr; /* out_shl = max(shift, 0), out_shr = max(-shift, 0) */
    int32_t out_zp, lo, hi;
} fn_qs8_vadd_params;

/* y[i] = op(a[i], b[i]) for i < n. */
typedef void (*fn_qs8_vadd_ukernel)(size_t n, const int8_t *a, const int8_t *b, int8_t *y,
                                    const fn_qs8_vadd_params *p);
/* y[i] = op(a[i], b) with b' already computed (fn_qs8_vadd_in of the broadcast input). */
typedef void (*fn_qs8_vaddc_ukernel)(size_t n, const int8_t *a, int32_t b, int8_t *y, const fn_qs8_vadd_params *p);

static inline int32_t fn_qs8_vadd_in(int32_t x, const fn_qs8_vadd_input *q, int32_t ls) {
    const int32_t v = (int32_t)((uint32_t)(x - q->zp) << ls);
    return fn_rdbpot(fn_srdhm(v, q->mult), q->shr);
}

static inline int8_t fn_qs8_vadd_out(int32_t a, int32_t b, const fn_qs8_vadd_params *p) {
    int32_t raw;
    switch (p->kind) {
    case FN_VADD_ADD: raw = fn_wrap32((int64_t)a + b); break;
    case FN_VADD_SUB: raw = fn_wrap32((int64_t)a - b); break;
    case FN_VADD_RSUB: raw = fn_wrap32((int64_t)b - a); break;
    default: { const int64_t d = (int64_t)a - b; raw = fn_wrap32(d * d); } break;
    }
    const int32_t xs = (int32_t)((uint32_t)raw << p->out_shl);
    return fn_out_s8(fn_rdbpot(fn_srdhm(xs, p->out_mult), p->out_shr), p->out_zp, p->lo, p->hi);
}

/* ---- qs8-vmul: TFLite's MulElementwise. y = (int8) clamp(MBQM((a - a_zp) * (b - b_zp), mult,
 * shift) + out_zp, lo, hi); the product of two int8 differences fits int32 exactly. */
typedef struct {
    int32_t a_zp, b_zp;
    int32_t mult, shl, shr; /* shl = max(shift, 0), shr = max(-shift, 0) */
    int32_t out_zp, lo, hi;
} fn_qs8_vmul_params;

typedef void (*fn_qs8_vmul_ukernel)(size_t n, const int8_t *a, const int8_t *b, int8_t *y,
                                    const fn_qs8_vmul_params *p);
/* y[i] = (a[i] - a_zp) * b requantized, with b = the broadcast input minus its zero point. */
typedef void (*fn_qs8_vmulc_ukernel)(size_t n, const int8_t *a, int32_t b, int8_t *y, const fn_qs8_vmul_params *p);

static inline int8_t fn_qs8_vmul_out(int32_t prod, const fn_qs8_vmul_params *p) {
    const int32_t xs = (int32_t)((uint32_t)prod << p->shl);
    return fn_out_s8(fn_rdbpot(fn_srdhm(xs, p->mult), p->shr), p->out_zp, p->lo, p->hi);
}

/* ---- x8-lut: y[i] = table[(uint8_t)x[i]]. */
typedef void (*fn_x8_lut_ukernel)(size_t n, const int8_t *x, int8_t *y, const int8_t table[256]);

/* ---- s8-rsum: *acc += sum of x[0..n) in wrapping 32-bit arithmetic (exact in any order).
 *      s8-vacc: acc[i] += x[i] for i < n, wrapping. */
typedef void (*fn_s8_rsum_ukernel)(size_t n, const int8_t *x, uint32_t *acc);
typedef void (*fn_s8_vacc_ukernel)(size_t n, const int8_t *x, uint32_t *acc);

/* ---- qs8-requant: y[i] = (int8) clamp(R(acc[i] + add) + zp, -128, 127), wrapping sums, with R
 * MBQM (gemmlowp double rounding) or, with ruy set, fn_mul_ruy_x86 (both roundings half up). */
typedef struct {
    int32_t add, mult, shl, shr, zp;
    int32_t ruy;
} fn_qs8_requant_params;

typedef void (*fn_qs8_requant_ukernel)(size_t n, const uint32_t *acc, int8_t *y, const fn_qs8_requant_params *p);

static inline int8_t fn_qs8_requant_one(uint32_t acc, const fn_qs8_requant_params *p) {
    const int32_t s = fn_wrap32((int64_t)(int32_t)acc + p->add);
    const int32_t r = p->ruy ? fn_mul_ruy_x86(s, p->mult, p->shl - p->shr) : fn_mbqm(s, p->mult, p->shl - p->shr);
    return fn_out_s8(r, p->zp, -128, 127);
}

/* ---- s8-maxpool / s8-sumpool: k pixels x[i * stride + j] (i < k) of c channels (j < c);
 *   maxpool: y[j] = max(y[j], x[i * stride + j] over i), and max over i alone when first;
 *   sumpool: acc[j] += x[i * stride + j] over i (acc[j] = the sum alone when first), int32
 *            (the pool check bounds every window sum well inside int32). */
typedef void (*fn_s8_maxpool_ukernel)(size_t k, size_t c, const int8_t *x, size_t stride, int8_t *y, int first);
typedef void (*fn_s8_sumpool_ukernel)(size_t k, size_t c, const int8_t *x, size_t stride, int32_t *acc, int first);

/* ---- s8-rmax: max(-128, x[0..n)).
 *      qs8-softmax: SOFTMAX's output step, y[i] = (int8) clamp(round(table[x[i]] * inv) + zp,
 *      -128, 127) with C's roundf (half away from zero) and x86-64's float-to-int32 conversion
 *      (fn_f32_to_i32); table is the row's view of the exp table, read at x[i] in [-128, 127]. */
typedef int32_t (*fn_s8_rmax_ukernel)(size_t n, const int8_t *x);
typedef void (*fn_qs8_softmax_ukernel)(size_t n, const int8_t *x, const float *table, float inv, int32_t zp,
                                       int8_t *y);

static inline int8_t fn_qs8_softmax_one(int8_t x, const float *table, float inv, int32_t zp) {
    return fn_out_s8(fn_f32_to_i32(roundf(table[x] * inv)), zp, -128, 127);
}

#define FN_DECLARE_ELTWISE_UKERNELS(isa)                                                                       \
    void fn_qs8_vadd_ukernel__##isa(size_t n, const int8_t *a, const int8_t *b, int8_t *y,                      \
                                    const fn_qs8_vadd_params *p);                                              \
    void fn_qs8_vaddc_ukernel__##isa(size_t n, const int8_t *a, int32_t b, int8_t *y, const fn_qs8_vadd_params *p); \
    void fn_qs8_vmul_ukernel__##isa(size_t n, const int8_t *a, const int8_t *b, int8_t *y,                      \
                                    const fn_qs8_vmul_params *p);                                              \
    void fn_qs8_vmulc_ukernel__##isa(size_t n, const int8_t *a, int32_t b, int8_t *y, const fn_qs8_vmul_params *p); \
    void fn_x8_lut_ukernel__##isa(size_t n, const int8_t *x, int8_t *y, const int8_t table[256]);               \
    void fn_s8_rsum_ukernel__##isa(size_t n, const int8_t *x, uint32_t *acc);                                   \
    void fn_s8_vacc_ukernel__##isa(size_t n, const int8_t *x, uint32_t *acc);                                   \
    void fn_qs8_requant_ukernel__##isa(size_t n, const uint32_t *acc, int8_t *y, const fn_qs8_requant_params *p); \
    void fn_s8_maxpool_ukernel__##isa(size_t k, size_t c, const int8_t *x, size_t stride, int8_t *y, int first); \
    void fn_s8_sumpool_ukernel__##isa(size_t k, size_t c, const int8_t *x, size_t stride, int32_t *acc, int first); \
    int32_t fn_s8_rmax_ukernel__##isa(size_t n, const int8_t *x);                                              \
    void fn_qs8_softmax_ukernel__##isa(size_t n, const int8_t *x, const float *table, float inv, int32_t zp,     \
                                       int8_t *y)

FN_DECLARE_ELTWISE_UKERNELS(scalar);
#if defined(__x86_64__)
FN_DECLARE_ELTWISE_UKERNELS(avx2);
#endif

typedef struct {
    fn_qs8_vadd_ukernel vadd;
    fn_qs8_vaddc_ukernel vaddc;
    fn_qs8_vmul_ukernel vmul;
    fn_qs8_vmulc_ukernel vmulc;
    fn_x8_lut_ukernel lut;
    fn_s8_rsum_ukernel rsum;
    fn_s8_vacc_ukernel vacc;
    fn_qs8_requant_ukernel requant;
    fn_s8_maxpool_ukernel maxpool;
    fn_s8_sumpool_ukernel sumpool;
    fn_s8_rmax_ukernel rmax;
    fn_qs8_softmax_ukernel softmax;
} fn_eltwise_ukernels;

#define FN_ELTWISE_UKERNELS(isa)                                                                      \
    {fn_qs8_vadd_ukernel__##isa, fn_qs8_vaddc_ukernel__##isa, fn_qs8_vmul_ukernel__##isa,             \
     fn_qs8_vmulc_ukernel__##isa, fn_x8_lut_ukernel__##isa, fn_s8_rsum_ukernel__##isa,                \
     fn_s8_vacc_ukernel__##isa, fn_qs8_requant_ukernel__##isa, fn_s8_maxpool_ukernel__##isa,          \
     fn_s8_sumpool_ukernel__##isa, fn_s8_rmax_ukernel__##isa, fn_qs8_softmax_ukernel__##isa}

/* The element-wise microkernels of an ISA (fn_cpu.h): AVX2 on AVX2 and AVX-512 machines, the
 * portable C elsewhere. Operators call this once per node, at plan creation. */
static inline fn_eltwise_ukernels fn_eltwise_ukernels_for(int isa) {
#if defined(__x86_64__)
    if (isa == FN_ISA_AVX2 || isa == FN_ISA_AVX512VNNI) {
        const fn_eltwise_ukernels k = FN_ELTWISE_UKERNELS(avx2);
        return k;
    }
#endif
    (void)isa;
    const fn_eltwise_ukernels k = FN_ELTWISE_UKERNELS(scalar);
    return k;
}

/* A prepare step for ops that need nothing but the microkernels: node->state holds them. */
static inline int fn_eltwise_prepare(fn_node *node) {
    fn_eltwise_ukernels *k = malloc(sizeof *k);
    if (!k) return FN_E_NOMEM;
    *k = fn_eltwise_ukernels_for(fn_isa());
    node->state = k;
    return FN_OK;
}

#endif
