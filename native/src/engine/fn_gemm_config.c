/* The gemm microkernel per ISA, and weight packing for the tile it reads. */
#include <pthread.h>
#include <string.h>

#include "fn_cpu.h"
#include "fn_ukernels.h"

#if defined(__x86_64__)
/* The AVX2 kernel widens a weight row's two halves into two registers of int16 pairs; with
 * channels 0 1 4 5 in the first half and 2 3 6 7 in the second, vphaddd leaves the eight sums in
 * channel order and no permute is needed. */
static const uint8_t AVX2_W_SLOT[8] = {0, 1, 4, 5, 2, 3, 6, 7};
#endif

static const fn_gemm_config CONFIGS[FN_ISA_COUNT] = {
    [FN_ISA_SCALAR] = {fn_qs8_qc8w_gemm_ukernel_4x8c4__scalar, 4, 8, 4, 0, FN_ISA_SCALAR},
#if defined(__x86_64__)
    [FN_ISA_AVX2] = {fn_qs8_qc8w_gemm_ukernel_4x8c4__avx2, 4, 8, 4, 0, FN_ISA_AVX2, AVX2_W_SLOT},
    [FN_ISA_AVX512VNNI] = {fn_qs8_qc8w_gemm_ukernel_6x16c4__avx512vnni, 6, 16, 4, 128, FN_ISA_AVX512VNNI},
#endif
#if defined(__aarch64__) && defined(FN_HAVE_NEONDOT)
    [FN_ISA_NEONDOT] = {fn_qs8_qc8w_gemm_ukernel_4x8c4__neondot, 4, 8, 4, 0, FN_ISA_NEONDOT},
#endif
};

static int verdict[FN_ISA_COUNT]; /* 0 not tested yet, 1 passed, -1 failed the self-test */
static pthread_mutex_t verdict_lock = PTHREAD_MUTEX_INITIALIZER;

int fn_gemm_verified(int isa) {
    if (isa < 0 || isa >= FN_ISA_COUNT || CONFIGS[isa].ukernel == NULL) return 0;
    if (isa == FN_ISA_SCALAR) return 1;
    if (!fn_isa_supported(isa)) return 0;
    pthread_mutex_lock(&verdict_lock);
    if (verdict[isa] == 0) verdict[isa] = fn_gemm_selftest(&CONFIGS[isa], &CONFIGS[FN_ISA_SCALAR]) == 0 ? 1 : -1;
    const int ok = verdict[isa] == 1;
    pthread_mutex_unlock(&verdict_lock);
    return ok;
}

const fn_gemm_config *fn_gemm_config_for(int isa) {
    if (isa < 0 || isa >= FN_ISA_COUNT) return NULL;
    /* the ISA's own gemm if it passes the self-test; else the best one below it that does (an
     * ISA this build has no gemm for, such as NEON without the dot-product build, runs scalar) */
    for (int i = isa; i > FN_ISA_SCALAR; i--)
        if (fn_gemm_verified(i)) return &CONFIGS[i];
    return &CONFIGS[FN_ISA_SCALAR];
}

void fn_gemm_pack(const fn_gemm_config *cfg, int32_t n, int32_t k, const int8_t *w, const int32_t *bias,
                  const int32_t *mult, const int32_t *shift, int32_t zp_in, uint8_t *out) {
    const size_t nr = (size_t)cfg->nr, kc = fn_round_up((size_t)k, 4);
    const size_t blk_bytes = FN_GEMM_BLOCK_BYTES(nr, kc);
    const uint32_t a_zp = (uint32_t)(zp_in + cfg->a_offset);
    for (size_t n0 = 0; n0 < (size_t)n; n0 += nr) {
        uint8_t *blk = out + (n0 / nr) * blk_bytes;
        memset(blk, 0, blk_bytes);
        int32_t hdr[4][64];
        memset(hdr, 0, sizeof hdr);
        int8_t *wk = (int8_t *)(blk + 16 * nr);
        for (size_t j = 0; j < nr && n0 + j < (size_t)n; j++) {
            const size_t ch = n0 + j;
            const int8_t *wr = w + ch * (size_t)k;
            const size_t slot = cfg->w_slot ? cfg->w_slot[j] : j;
            uint32_t sum = 0;
            for (size_t q = 0; q < (size_t)k; q++) {
                sum += (uint32_t)(int32_t)wr[q];
                wk[((q / 4) * nr + slot) * 4 + (q % 4)] = wr[q];
            }
            /* sum w * (x - zp) = sum w * (x + a_offset) - (zp + a_offset) * sum w, mod 2^32 */
            hdr[0][j] = (int32_t)((bias ? (uint32_t)bias[ch] : 0u) - a_zp * sum);
            hdr[1][j] = mult[ch];
            hdr[2][j] = shift[ch] > 0 ? shift[ch] : 0;
            hdr[3][j] = shift[ch] > 0 ? 0 : -shift[ch];
        }
        for (int r = 0; r < 4; r++) memcpy(blk + (size_t)r * nr * 4, hdr[r], nr * 4);
    }
}

fn_qs8_peak_fn fn_qs8_peak_for(int isa) {
    if (!fn_isa_supported(isa)) return NULL;
    switch (isa) {
    case FN_ISA_SCALAR: return fn_qs8_peak__scalar;
#if defined(__x86_64__)
    case FN_ISA_AVX2: return fn_qs8_peak__avx2;
    case FN_ISA_AVX512VNNI: return fn_qs8_peak__avx512vnni;
#endif
#if defined(__aarch64__) && defined(FN_HAVE_NEONDOT)
    case FN_ISA_NEONDOT: return fn_qs8_peak__neondot;
#endif
    default: return NULL;
    }
}
