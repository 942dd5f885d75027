/* The microkernel self-test: before a SIMD gemm is used in a process, it must give the scalar
 * twin's bytes on a fixed set of problems that reach every tail and extreme (row and channel
 * tails, several indirect steps, every shift, extreme multipliers, zero points and inputs).
 * A kernel that fails is never used: fn_gemm_config_for falls back to the next ISA below.
 * This guards machines the test suite never ran on (AVX-512 VNNI is not on every CI host). */
#include <stdlib.h>
#include <string.h>

#include "fn_ukernels.h"

static uint32_t next(uint32_t *s) {
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static int8_t pick_s8(uint32_t *s) {
    const uint32_t r = next(s);
    switch (r % 8) {
    case 0: return -128;
    case 1: return 127;
    default: return (int8_t)(r >> 8);
    }
}

static int one_case(const fn_gemm_config *cfg, const fn_gemm_config *ref, uint32_t *seed, size_t mr, size_t nc,
                    size_t kc, size_t ks) {
    enum { MAX_N = 64, MAX_K = 3 * 24, MAX_M = 16 };
    const size_t k = kc * ks;
    int8_t w[MAX_N * MAX_K], a_rows[MAX_M * MAX_K], c1[MAX_M * MAX_N], c2[MAX_M * MAX_N];
    int32_t bias[MAX_N], mult[MAX_N], shift[MAX_N];
    for (size_t i = 0; i < nc * k; i++) w[i] = pick_s8(seed);
    for (size_t i = 0; i < mr * k; i++) a_rows[i] = pick_s8(seed);
    for (size_t j = 0; j < nc; j++) {
        /* two channels in three are scaled as real layers are, so that their outputs mostly land
         * inside [-128, 127] and a rounding slip shows; the third is anywhere (saturation) */
        const int real = j % 3 != 2;
        bias[j] = real ? (int32_t)next(seed) >> 18 : (int32_t)next(seed);
        mult[j] = (int32_t)((next(seed) >> 1) | 0x40000000u);
        /* a power of two (a common multiplier) puts both roundings on exact ties */
        if (j % 2 == 1) mult[j] = 0x40000000;
        if (j % 7 == 0) mult[j] = INT32_MAX;
        shift[j] = real ? -(int32_t)(1 + next(seed) % 13) : (int32_t)(next(seed) % 63) - 31;
        if (j % 11 == 5) shift[j] = (int32_t)(next(seed) % 3); /* left shifts, small accumulators */
    }
    const int32_t zp_in = pick_s8(seed);
    fn_qs8_out_params p = {pick_s8(seed), -128, 127};
    if (next(seed) % 2) { p.lo = -100; p.hi = 90; }
    const fn_gemm_config *cfgs[2] = {ref, cfg};
    int8_t *outs[2] = {c1, c2};
    for (int v = 0; v < 2; v++) {
        const fn_gemm_config *g = cfgs[v];
        const size_t blocks = (nc + (size_t)g->nr - 1) / (size_t)g->nr;
        const size_t bytes = blocks * fn_gemm_block_bytes(g, k);
        uint8_t *packed = NULL;
        if (posix_memalign((void **)&packed, 64, bytes) != 0) return -1;
        fn_gemm_pack(g, (int32_t)nc, (int32_t)k, w, bias, mult, shift, zp_in, p.zp_out, packed);
        memset(outs[v], 0x55, sizeof c1);
        /* rows are taken MR at a time, as the operator does; step t of row i reads kc bytes at
         * a_rows + i * k + t * kc, so every step split gives the bytes of one plain row */
        for (size_t m0 = 0; m0 < mr; m0 += (size_t)g->mr) {
            const size_t rows = mr - m0 < (size_t)g->mr ? mr - m0 : (size_t)g->mr;
            const int8_t *at[16 * 3];
            for (size_t t = 0; t < ks; t++)
                for (size_t i = 0; i < (size_t)g->mr; i++) at[t * (size_t)g->mr + i] = a_rows + (m0 + (i < rows ? i : 0)) * k + t * kc;
            g->ukernel(rows, nc, kc, ks, at, packed, outs[v] + m0 * nc, nc, &p);
        }
        free(packed);
    }
    return memcmp(c1, c2, mr * nc) != 0 ? 1 : 0;
}

int fn_gemm_selftest(const fn_gemm_config *cfg, const fn_gemm_config *ref) {
    uint32_t seed = 0x9E3779B9u;
    static const size_t ncs[] = {1, 3, 8, 15, 16, 17, 31, 33, 64};
    static const size_t kcs[] = {4, 8, 24};
    for (size_t mr = 1; mr <= 16; mr += (mr < 8 ? 1 : 7))
        for (size_t a = 0; a < sizeof ncs / sizeof ncs[0]; a++)
            for (size_t b = 0; b < sizeof kcs / sizeof kcs[0]; b++)
                for (size_t ks = 1; ks <= 3; ks += 2)
                    if (one_case(cfg, ref, &seed, mr, ncs[a], kcs[b], ks) != 0) return -1;
    return 0;
}
