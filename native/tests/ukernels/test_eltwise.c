/* Every element-wise microkernel set this machine runs (fn_ukernels_eltwise.h) against the
 * scalar one, byte for byte, over random rows and random parameters across everything the operators' checks admit
 * (multipliers of any sign including INT32_MIN, every shift, clamp ranges outside int8, zero
 * points at both ends, SOFTMAX's float step at ties, infinities and NaN), plus the one input
 * where SRDHM saturates. LiteRT cannot reach most of
 * these (its own kernels refuse or wrap first), so this is where they are compared.
 *
 *   test_eltwise [TRIALS]
 *
 * Prints "ok eltwise ISA: N trials" per ISA whose set differs from the scalar one (the scalar set
 * itself is listed as the reference), "skip eltwise ISA: ..." for the others, "MISMATCH ..." for
 * the first differences; exits 0 only if all agree. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fn_test_rng.h"
#include "fn_ukernels_eltwise.h"

static const fn_eltwise_ukernels REF = FN_ELTWISE_UKERNELS(scalar);
static fn_eltwise_ukernels SIMD; /* the set under test */

static int32_t any32(void) {
    switch (rnd() % 6) {
    case 0: return INT32_MIN;
    case 1: return INT32_MAX;
    case 2: return range(-3, 3);
    default: return (int32_t)(rnd() ^ (rnd() << 16));
    }
}
/* Floats with ties (k + 0.5), values around the int32 range, infinities and NaN among them. */
static float any_float(void) {
    switch (rnd() % 8) {
    case 0: return (float)range(-300, 300) + 0.5f;
    case 1: return (float)range(-3, 3) * 1073741824.0f;
    case 2: return rnd() % 2 ? INFINITY : -INFINITY;
    case 3: return NAN;
    case 4: return (float)range(-100000, 100000) * 1e-3f;
    default: return (float)rnd() / 4294967296.0f;
    }
}
static int32_t mult(void) { return rnd() % 3 ? range(1 << 30, INT32_MAX) : any32(); }
static int32_t zp(void) {
    const uint32_t r = rnd() % 4;
    return r == 0 ? -128 : r == 1 ? 127 : range(-128, 127);
}
static void shifts(int32_t *shl, int32_t *shr) {
    const int32_t s = rnd() % 2 ? range(-31, 31) : range(-25, -8);
    *shl = s > 0 ? s : 0;
    *shr = s > 0 ? 0 : -s;
}
static void clamp_range(int32_t *lo, int32_t *hi) {
    if (rnd() % 4 == 0) {
        *lo = -128;
        *hi = 127;
    } else if (rnd() % 3 == 0) { /* outside int8: the conversion wraps */
        *lo = range(-300, 300);
        *hi = *lo + range(0, 400);
    } else {
        *lo = range(-128, 127);
        *hi = range(*lo, 127);
    }
}

static long failures;
static void same(const char *what, const void *ref, const void *got, size_t bytes, long it) {
    if (memcmp(ref, got, bytes) != 0 && failures++ < 10) printf("MISMATCH %s (trial %ld, %zu bytes)\n", what, it, bytes);
}

enum { MAXN = 300 };

static void one(long it) {
    int8_t a[MAXN], b[MAXN], y0[MAXN], y1[MAXN], table[256];
    uint32_t acc0[MAXN], acc1[MAXN];
    int32_t sum0[MAXN], sum1[MAXN];
    size_t n = rnd() % 70;
    if (rnd() % 8 == 0) n = rnd() % MAXN;
    for (size_t i = 0; i < MAXN; i++) {
        a[i] = (int8_t)rnd();
        b[i] = (int8_t)rnd();
    }
    if (rnd() % 4 == 0) /* the extremes only */
        for (size_t i = 0; i < n; i++) {
            a[i] = rnd() % 2 ? -128 : 127;
            b[i] = rnd() % 2 ? -128 : 127;
        }

    fn_qs8_vadd_params p;
    p.kind = range(FN_VADD_ADD, FN_VADD_SQDIFF);
    p.ls = rnd() % 2 ? (rnd() % 2 ? 20 : 7) : range(0, 20);
    p.a = (fn_qs8_vadd_input){zp(), mult(), rnd() % 2 ? range(0, 3) : range(0, 31)};
    p.b = (fn_qs8_vadd_input){zp(), mult(), rnd() % 2 ? range(0, 3) : range(0, 31)};
    p.out_mult = mult();
    shifts(&p.out_shl, &p.out_shr);
    p.out_zp = zp();
    clamp_range(&p.lo, &p.hi);
    REF.vadd(n, a, b, y0, &p);
    SIMD.vadd(n, a, b, y1, &p);
    same("qs8-vadd", y0, y1, n, it);
    const int32_t c = rnd() % 2 ? fn_qs8_vadd_in(b[0], &p.b, p.ls) : any32();
    REF.vaddc(n, a, c, y0, &p);
    SIMD.vaddc(n, a, c, y1, &p);
    same("qs8-vaddc", y0, y1, n, it);

    fn_qs8_vmul_params m = {zp(), zp(), mult(), 0, 0, zp(), 0, 0};
    shifts(&m.shl, &m.shr);
    clamp_range(&m.lo, &m.hi);
    REF.vmul(n, a, b, y0, &m);
    SIMD.vmul(n, a, b, y1, &m);
    same("qs8-vmul", y0, y1, n, it);
    const int32_t d = range(-255, 255);
    REF.vmulc(n, a, d, y0, &m);
    SIMD.vmulc(n, a, d, y1, &m);
    same("qs8-vmulc", y0, y1, n, it);

    for (int i = 0; i < 256; i++) table[i] = (int8_t)rnd();
    REF.lut(n, a, y0, table);
    SIMD.lut(n, a, y1, table);
    same("x8-lut", y0, y1, n, it);

    uint32_t r0 = rnd(), r1 = r0;
    REF.rsum(n, a, &r0);
    SIMD.rsum(n, a, &r1);
    same("s8-rsum", &r0, &r1, sizeof r0, it);
    for (size_t i = 0; i < MAXN; i++) acc0[i] = acc1[i] = (uint32_t)any32();
    REF.vacc(n, a, acc0);
    SIMD.vacc(n, a, acc1);
    same("s8-vacc", acc0, acc1, n * sizeof *acc0, it);

    fn_qs8_requant_params q = {any32(), mult(), 0, 0, zp(), (int32_t)(rnd() % 2)};
    shifts(&q.shl, &q.shr);
    if (rnd() % 2) { /* sums of a real mean */
        q.add = range(-5000, 5000);
        for (size_t i = 0; i < n; i++) acc0[i] = (uint32_t)range(-40000, 40000);
    }
    REF.requant(n, acc0, y0, &q);
    SIMD.requant(n, acc0, y1, &q);
    same(q.ruy ? "qs8-requant (ruy)" : "qs8-requant", y0, y1, n, it);

    const size_t ch = (size_t)range(1, 70), stride = ch + (size_t)range(0, 3);
    const size_t k = (size_t)range(1, 4); /* k * stride <= 4 * 73 < MAXN */
    const int first = (int)(rnd() % 2);
    for (size_t i = 0; i < ch; i++) {
        y0[i] = y1[i] = (int8_t)rnd();
        sum0[i] = sum1[i] = range(-100000, 100000);
    }
    REF.maxpool(k, ch, a, stride, y0, first);
    SIMD.maxpool(k, ch, a, stride, y1, first);
    same("s8-maxpool", y0, y1, ch, it);
    REF.sumpool(k, ch, a, stride, sum0, first);
    SIMD.sumpool(k, ch, a, stride, sum1, first);
    same("s8-sumpool", sum0, sum1, ch * sizeof *sum0, it);

    const int32_t m0 = REF.rmax(n, a), m1 = SIMD.rmax(n, a);
    same("s8-rmax", &m0, &m1, sizeof m0, it);
    float exps[256];
    for (int i = 0; i < 256; i++) exps[i] = any_float();
    const float inv = rnd() % 4 ? (float)range(1, 1 << 20) / 4096.0f : any_float();
    const int32_t z = zp();
    REF.softmax(n, a, exps + 128, inv, z, y0);
    SIMD.softmax(n, a, exps + 128, inv, z, y1);
    same("qs8-softmax", y0, y1, n, it);
}

/* SRDHM's one saturating input, INT32_MIN * INT32_MIN, at every shift and rounding rule. */
static void saturation(void) {
    uint32_t acc[16];
    int8_t y0[16], y1[16];
    for (int i = 0; i < 16; i++) acc[i] = i % 2 ? 0x80000000u : 0x80000000u >> (i / 2);
    for (int ruy = 0; ruy < 2; ruy++)
        for (int32_t s = -31; s <= 31; s++) {
            const fn_qs8_requant_params q = {0, INT32_MIN, s > 0 ? s : 0, s > 0 ? 0 : -s, 0, ruy};
            REF.requant(16, acc, y0, &q);
            SIMD.requant(16, acc, y1, &q);
            same("qs8-requant at INT32_MIN", y0, y1, 16, s);
        }
}

int main(int argc, char **argv) {
    const long trials = argc > 1 ? atol(argv[1]) : 50000;
    printf("ok eltwise scalar: the reference\n");
    for (int isa = 0; isa < FN_ISA_COUNT; isa++) {
        if (isa == FN_ISA_SCALAR) continue;
        if (!fn_isa_supported(isa)) {
            printf("skip eltwise %s: not supported here\n", fn_isa_name(isa));
            continue;
        }
        SIMD = fn_eltwise_ukernels_for(isa);
        if (SIMD.vadd == REF.vadd) {
            printf("skip eltwise %s: runs the scalar microkernels\n", fn_isa_name(isa));
            continue;
        }
        const long before = failures;
        for (long it = 0; it < trials; it++) one(it);
        saturation();
        if (failures == before) printf("ok eltwise %s: %ld trials\n", fn_isa_name(isa), trials);
    }
    return failures != 0;
}
