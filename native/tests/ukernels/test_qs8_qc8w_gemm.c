/* Every qs8-qc8w-gemm microkernel this machine runs against the scalar one, byte for byte.
 *
 *   test_qs8_qc8w_gemm [TRIALS [SEED]]
 *
 * Each trial draws a problem (rows 1..MR, channels across one to three blocks and a tail, K
 * with every remainder modulo 16, now and then deeper than 4096, one step or an indirect A of 2..4 steps with rows shared as a
 * convolution's padding row is), packs it for the scalar config and for the config under test
 * (their nr and a_offset differ), runs the scalar microkernel row by row and the one under test
 * on the whole tile, and compares the whole C buffer, including the bytes past nc and the rows
 * past mr that neither may write. The
 * parameters reach the epilogue's corners: multipliers of 2^30 (ties on every odd product),
 * INT32_MIN and arbitrary int32 values, shifts -31..31, accumulators of INT32_MIN and INT32_MAX
 * (zero activations leave only the bias), zero points and clamps anywhere in int8.
 *
 * Prints "ok qs8-qc8w-gemm ISA MRxNRcKR: N trials" per ISA (the scalar config itself is listed as
 * the reference), or "MISMATCH ..." with the first differing trial, or when an ISA's kernel that
 * this build carries was set aside by the runtime self-test; exits 0 only if all agree. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fn_cpu.h"
#include "fn_test_rng.h"
#include "fn_ukernels.h"

/* Most trials have K up to SHALLOW_K; one in DEEP_ONE_IN goes past 4096, where a microkernel may
 * switch strategy (the AVX2 one widens A into a 4096-entry buffer only below that). */
enum { SHALLOW_K = 80, MAX_K = 4224, DEEP_ONE_IN = 64, MAX_N = 56, MAX_M = 16, MAX_KS = 4, PAD = 8 };

static int32_t pick_mult(void) {
    switch (rnd() % 6) {
    case 0: return (int32_t)1 << 30;
    case 1: return INT32_MIN;
    case 2: return INT32_MAX;
    case 3: return (int32_t)rnd();
    default: return (int32_t)((1u << 30) + rnd() % (1u << 30)); /* as QuantizeMultiplier makes */
    }
}

static int32_t pick_bias(void) {
    switch (rnd() % 6) {
    case 0: return INT32_MIN;
    case 1: return INT32_MAX;
    case 2: return (int32_t)rnd();
    case 3: return 0;
    default: return range(-100000, 100000);
    }
}

typedef struct {
    size_t mr, n, k, ks, kc; /* k = ks * kc, except with ks = 1, where kc = round_up(k, 4) */
    int8_t w[MAX_N * MAX_K];
    const int8_t *rows[MAX_M][MAX_KS]; /* row i, step t: kc bytes */
    int8_t *bufs[MAX_M * MAX_KS + 1];
    size_t n_bufs;
    int32_t bias[MAX_N], mult[MAX_N], shift[MAX_N], zp_in;
    fn_qs8_out_params out;
} problem;

static int8_t pick_a(int zero_a, int extreme) {
    return zero_a ? 0 : extreme ? (rnd() & 1 ? -128 : 127) : (int8_t)rnd();
}

static void release(problem *pb) {
    for (size_t i = 0; i < pb->n_bufs; i++) free(pb->bufs[i]);
    pb->n_bufs = 0;
}

static int8_t *row_buffer(problem *pb, size_t bytes) {
    int8_t *b = malloc(bytes);
    if (!b) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    pb->bufs[pb->n_bufs++] = b;
    return b;
}

/* One problem for a tile of up to max_mr rows; every row of every step in a buffer of exactly kc
 * bytes, or (as a convolution's taps outside the image) one row shared by many. */
static void draw(problem *pb, size_t max_mr, size_t nr) {
    release(pb);
    pb->mr = (size_t)range(1, (int32_t)max_mr);
    const size_t n_max = 3 * nr + 7 < MAX_N ? 3 * nr + 7 : MAX_N;
    pb->n = (size_t)range(1, (int32_t)n_max);
    pb->ks = rnd() % 3 == 0 ? (size_t)range(2, MAX_KS) : 1;
    const int deep = rnd() % DEEP_ONE_IN == 0;
    if (pb->ks == 1) {
        pb->k = (size_t)(deep ? range(4097, MAX_K) : range(1, SHALLOW_K));
        pb->kc = fn_round_up(pb->k, 4);
    } else {
        const int32_t steps = (deep ? MAX_K : SHALLOW_K) / 4 / (int32_t)pb->ks;
        pb->kc = 4 * (size_t)(deep ? range(4097 / 4 / (int32_t)pb->ks + 1, steps) : range(1, steps));
        pb->k = pb->ks * pb->kc;
    }
    const int zero_a = rnd() % 8 == 0, extreme = rnd() % 4 == 0;
    for (size_t i = 0; i < pb->n * pb->k; i++)
        pb->w[i] = extreme ? (rnd() & 1 ? -128 : 127) : (int8_t)rnd();
    int8_t *shared = row_buffer(pb, pb->kc);
    for (size_t q = 0; q < pb->kc; q++) shared[q] = pick_a(zero_a, extreme);
    for (size_t i = 0; i < pb->mr; i++)
        for (size_t t = 0; t < pb->ks; t++) {
            if (pb->ks > 1 && rnd() % 4 == 0) {
                pb->rows[i][t] = shared;
                continue;
            }
            /* bytes past k (ks = 1) meet zero weights: any value must do */
            int8_t *b = row_buffer(pb, pb->kc);
            for (size_t q = 0; q < pb->kc; q++) b[q] = pick_a(zero_a, extreme);
            pb->rows[i][t] = b;
        }
    for (size_t j = 0; j < pb->n; j++) {
        pb->bias[j] = pick_bias();
        pb->mult[j] = pick_mult();
        pb->shift[j] = range(-31, 31);
    }
    /* zero activations with zp_in 0 leave acc = bias, so INT32_MIN and INT32_MAX reach the shift */
    pb->zp_in = zero_a ? 0 : range(-128, 127);
    int32_t lo = range(-128, 127), hi = range(-128, 127);
    if (rnd() % 2) { lo = -128; hi = 127; }
    if (lo > hi) { const int32_t t = lo; lo = hi; hi = t; }
    pb->out.zp_out = range(-128, 127);
    pb->out.lo = lo;
    pb->out.hi = hi;
}

static uint8_t *pack(const fn_gemm_config *cfg, const problem *pb) {
    const size_t blocks = fn_round_up(pb->n, (size_t)cfg->nr) / (size_t)cfg->nr;
    void *packed = NULL;
    if (posix_memalign(&packed, 64, blocks * fn_gemm_block_bytes(cfg, pb->kc * pb->ks)) != 0) return NULL;
    fn_gemm_pack(cfg, (int32_t)pb->n, (int32_t)pb->k, pb->w, pb->bias, pb->mult, pb->shift, pb->zp_in, pb->out.zp_out, packed);
    return packed;
}

/* cfg's microkernel on one tile of pb into c (rows of stride n + PAD, prefilled with 0x5A).
 * Only the pointers a microkernel may read are set (a[t * MR + i], i < mr); the rest are NULL. */
static int run(const fn_gemm_config *cfg, const problem *pb, int8_t *c) {
    uint8_t *packed = pack(cfg, pb);
    if (!packed) return -1;
    const int8_t *a[MAX_KS * MAX_M];
    memset(a, 0, sizeof a);
    for (size_t t = 0; t < pb->ks; t++)
        for (size_t i = 0; i < pb->mr; i++) a[t * (size_t)cfg->mr + i] = pb->rows[i][t];
    memset(c, 0x5A, (size_t)MAX_M * (MAX_N + PAD));
    cfg->ukernel(pb->mr, pb->n, pb->kc, pb->ks, a, packed, c, pb->n + PAD, &pb->out);
    free(packed);
    return 0;
}

/* The reference: the scalar microkernel one row at a time, whatever the tile under test. */
static int run_reference(const fn_gemm_config *ref, const problem *pb, int8_t *c) {
    uint8_t *packed = pack(ref, pb);
    if (!packed) return -1;
    memset(c, 0x5A, (size_t)MAX_M * (MAX_N + PAD));
    for (size_t i = 0; i < pb->mr; i++) {
        const int8_t *a[MAX_KS * MAX_M];
        memset(a, 0, sizeof a);
        for (size_t t = 0; t < pb->ks; t++) a[t * (size_t)ref->mr] = pb->rows[i][t];
        ref->ukernel(1, pb->n, pb->kc, pb->ks, a, packed, c + i * (pb->n + PAD), pb->n + PAD, &pb->out);
    }
    free(packed);
    return 0;
}

/* Whether this build carries the ISA's gemm (the library's objects are built with the same
 * FN_HAVE_NEONDOT as this file). */
static int built(int isa) {
    switch (isa) {
    case FN_ISA_SCALAR: return 1;
#if defined(__x86_64__)
    case FN_ISA_AVX2:
    case FN_ISA_AVX512VNNI: return 1;
#endif
#if defined(__aarch64__) && defined(FN_HAVE_NEONDOT)
    case FN_ISA_NEONDOT: return 1;
#endif
    default: return 0;
    }
}

int main(int argc, char **argv) {
    const long trials = argc > 1 ? strtol(argv[1], NULL, 10) : 20000;
    fn_rng_seed(argc > 2 ? strtoull(argv[2], NULL, 10) : 0x9E3779B97F4A7C15ull);
    const fn_gemm_config *ref = fn_gemm_config_for(FN_ISA_SCALAR);
    static problem pb;
    static int8_t want[MAX_M * (MAX_N + PAD)], got[MAX_M * (MAX_N + PAD)];
    int failures = 0;
    for (int isa = 0; isa < FN_ISA_COUNT; isa++) {
        const fn_gemm_config *cfg = fn_gemm_config_for(isa);
        if (!fn_isa_supported(isa) || cfg == NULL) {
            printf("skip qs8-qc8w-gemm %s: not supported here\n", fn_isa_name(isa));
            continue;
        }
        if (cfg->isa != isa) {
            /* fn_gemm_config_for falls back when the ISA's own kernel failed the runtime self-test,
             * or when the build has none (NEON without the dot-product build); only the latter
             * may pass here */
            if (!built(isa)) {
                printf("skip qs8-qc8w-gemm %s: this build has no microkernel for it (runs %s)\n",
                       fn_isa_name(isa), fn_isa_name(cfg->isa));
            } else {
                printf("MISMATCH qs8-qc8w-gemm %s: failed the runtime self-test, plans run %s\n", fn_isa_name(isa),
                       fn_isa_name(cfg->isa));
                failures++;
            }
            continue;
        }
        long t = 0, bad = -1;
        for (; t < trials && bad < 0; t++) {
            draw(&pb, (size_t)cfg->mr, (size_t)cfg->nr);
            if (run_reference(ref, &pb, want) != 0 || run(cfg, &pb, got) != 0) {
                fprintf(stderr, "out of memory\n");
                return 2;
            }
            if (memcmp(want, got, sizeof want) != 0) bad = t;
        }
        if (bad >= 0) {
            size_t at = 0;
            while (want[at] == got[at]) at++;
            const size_t row = at / (pb.n + PAD), col = at % (pb.n + PAD);
            printf("MISMATCH qs8-qc8w-gemm %s %dx%dc%d: trial %ld (mr %zu, n %zu, ks %zu x kc %zu): row %zu channel %zu is %d, "
                   "scalar %d (bias %d, mult %d, shift %d)\n",
                   fn_isa_name(isa), cfg->mr, cfg->nr, cfg->kr, bad, pb.mr, pb.n, pb.ks, pb.kc, row, col, got[at], want[at],
                   col < pb.n ? pb.bias[col] : 0, col < pb.n ? pb.mult[col] : 0, col < pb.n ? pb.shift[col] : 0);
            failures++;
        } else {
            printf("ok qs8-qc8w-gemm %s %dx%dc%d: %ld trials\n", fn_isa_name(isa), cfg->mr, cfg->nr, cfg->kr, t);
        }
    }
    release(&pb);
    return failures ? 1 : 0;
}
