/* Every depthwise microkernel this machine runs (fn_dwconv.h) against the scalar one, byte for
 * byte, over random problems: channel counts with every remainder modulo 8 (the SIMD tail block
 * reads the 8 bytes that end at the last channel), 1..30 pixels, 1..25 taps (9 for the 9p
 * kernels), an indirection stride above ks, taps that point at one shared zero-point row (as
 * padding does) or at the same pixel twice, the gemmlowp/ruy rounding split at every channel,
 * multipliers and shifts across their range (power-of-two multipliers: exact rounding ties),
 * clamp ranges at the int8 ends and inside, and weights, inputs and zero points at -128 and 127.
 * The packed blocks come from fn_dwconv_pack, as plans pack them.
 *
 *   test_qs8_dwconv [TRIALS]
 *
 * Prints "ok qs8-dwconv ISA KERNEL: N trials" per ISA whose kernel is not the scalar one (the
 * scalar kernel is listed as the reference), "skip qs8-dwconv ISA: ..." for the others,
 * "MISMATCH ..." for the first differences; exits 0 only if all agree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fn_cpu.h"
#include "fn_dwconv.h"
#include "fn_test_rng.h"

static int8_t s8(int extremes) { return extremes ? (rnd() % 2 ? -128 : 127) : (int8_t)rnd(); }
static int32_t zp(void) {
    const uint32_t r = rnd() % 4;
    return r == 0 ? -128 : r == 1 ? 127 : range(-128, 127);
}

enum { MAXC = 72, MAXW = 30, MAXKS = 25, MAXPIX = 64, MAXSTRIDE = MAXKS + 3 };

typedef struct {
    size_t channels, width, ks, stride;
    const int8_t *ptrs[MAXW * MAXSTRIDE];
    fn_qs8_dwconv_params p;
    uint8_t *packed;
} problem;

static int8_t image[MAXPIX * MAXC], zero_row[MAXC];

/* A random problem of ks taps (0: any count). Pointers address `channels` bytes each. */
static void draw(problem *pb, size_t ks) {
    const int extremes = rnd() % 5 == 0;
    pb->channels = (size_t)range(FN_DWCONV_CR, MAXC);
    if (rnd() % 4 == 0) pb->channels = (size_t)range(FN_DWCONV_CR, 2 * FN_DWCONV_CR + 1);
    pb->width = (size_t)range(1, MAXW);
    pb->ks = ks ? ks : (size_t)range(1, MAXKS);
    pb->stride = pb->ks + (rnd() % 3 == 0 ? (size_t)range(1, 3) : 0);
    const int32_t zp_in = zp();
    for (size_t i = 0; i < sizeof image; i++) image[i] = s8(extremes && rnd() % 2);
    memset(zero_row, zp_in, sizeof zero_row);
    for (size_t i = 0; i < pb->width * pb->stride; i++) {
        const uint32_t r = rnd() % 8;
        /* padding reads the zero-point row; any pixel start keeps `channels` bytes in range */
        pb->ptrs[i] = r == 0 ? zero_row : image + (size_t)range(0, (int32_t)(sizeof image - pb->channels));
    }
    int8_t f[MAXKS * MAXC];
    int32_t bias[MAXC], mult[MAXC], shift[MAXC];
    for (size_t i = 0; i < pb->ks * pb->channels; i++) f[i] = s8(extremes);
    for (size_t c = 0; c < pb->channels; c++) {
        bias[c] = rnd() % 8 == 0 ? (int32_t)(rnd() ^ (rnd() << 16)) : range(-100000, 100000);
        mult[c] = rnd() % 6 == 0 ? (int32_t)1 << 30 : range(1 << 30, INT32_MAX);
        shift[c] = rnd() % 3 == 0 ? range(-31, 8) : range(-12, -4);
    }
    const int with_bias = rnd() % 6 != 0;
    const size_t blocks = (pb->channels + FN_DWCONV_CR - 1) / FN_DWCONV_CR;
    void *mem = NULL;
    if (posix_memalign(&mem, 64, blocks * FN_DWCONV_BLOCK_BYTES(pb->ks)) != 0) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    pb->packed = mem;
    /* the packing reads the filter as [1][ks][channels] */
    fn_dwconv_pack((int32_t)pb->channels, 1, (int32_t)pb->ks, f, with_bias ? bias : NULL, mult, shift, zp_in,
                   pb->packed);
    pb->p.zp_out = zp();
    if (rnd() % 3 == 0) {
        pb->p.lo = -128;
        pb->p.hi = 127;
    } else {
        pb->p.lo = range(-128, 127);
        pb->p.hi = range(pb->p.lo, 127);
    }
    const uint32_t split = rnd() % 4;
    pb->p.ruy_channels = split == 0 ? 0 : split == 1 ? (int32_t)pb->channels : range(0, (int32_t)pb->channels);
}

static long failures;

/* 1 if kernel k computes the scalar kernel's bytes on pb (reports the first difference). */
static int agree(const char *name, fn_qs8_dwconv_ukernel k, const problem *pb, long it) {
    static int8_t want[MAXW * MAXC + 16], got[MAXW * MAXC + 16];
    const size_t bytes = pb->width * pb->channels;
    memset(want, 0x5A, sizeof want);
    memset(got, 0x5A, sizeof got);
    fn_qs8_dwconv_ukernel_xp8c__scalar(pb->channels, pb->width, pb->ks, pb->ptrs, pb->stride, pb->packed, want,
                                       &pb->p);
    k(pb->channels, pb->width, pb->ks, pb->ptrs, pb->stride, pb->packed, got, &pb->p);
    if (memcmp(want, got, sizeof got) == 0) return 1;
    if (failures++ < 10) {
        size_t at = 0;
        while (want[at] == got[at]) at++;
        printf("MISMATCH qs8-dwconv %s (trial %ld): channels %zu width %zu ks %zu stride %zu ruy_channels %d: "
               "byte %zu (pixel %zu, channel %zu) %s: %d, want %d\n",
               name, it, pb->channels, pb->width, pb->ks, pb->stride, pb->p.ruy_channels, at,
               at / pb->channels, at % pb->channels, at < bytes ? "in the output" : "past the output (overwrite)",
               got[at], want[at]);
    }
    return 0;
}

int main(int argc, char **argv) {
    const long trials = argc > 1 ? atol(argv[1]) : 20000;
    const fn_dwconv_config *ref = fn_dwconv_config_for(FN_ISA_SCALAR);
    printf("ok qs8-dwconv scalar: the reference\n");
    for (int isa = 0; isa < FN_ISA_COUNT; isa++) {
        if (isa == FN_ISA_SCALAR) continue;
        const fn_dwconv_config *cfg = fn_dwconv_config_for(isa);
        if (!fn_isa_supported(isa)) {
            printf("skip qs8-dwconv %s: not supported here\n", fn_isa_name(isa));
            continue;
        }
        if (cfg->ukernel_xp == ref->ukernel_xp) {
            printf("skip qs8-dwconv %s: runs the scalar microkernel\n", fn_isa_name(isa));
            continue;
        }
        const fn_qs8_dwconv_ukernel kernels[2] = {cfg->ukernel_xp, cfg->ukernel_9p};
        const char *names[2] = {"xp8c", "9p8c"};
        for (int v = 0; v < 2; v++) {
            if (kernels[v] == NULL) continue;
            const long before = failures;
            for (long it = 0; it < trials; it++) {
                problem pb;
                draw(&pb, v == 1 ? 9 : 0);
                agree(names[v], kernels[v], &pb, it);
                free(pb.packed);
            }
            if (failures == before)
                printf("ok qs8-dwconv %s %s: %ld trials\n", fn_isa_name(isa), names[v], trials);
        }
    }
    return failures != 0;
}
