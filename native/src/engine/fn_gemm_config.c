/* The gemm microkernel per ISA, verified by the self-test before first use. */
#include <pthread.h>

#include "fn_cpu.h"
#include "fn_ukernels.h"

#if defined(__x86_64__)
/* The AVX2 kernel widens a weight row's two halves into two registers of int16 pairs; with
 * channels 0 1 4 5 in the first half and 2 3 6 7 in the second, vphaddd leaves the eight sums in
 * channel order and no permute is needed. */
static const uint8_t AVX2_W_SLOT[8] = {0, 1, 4, 5, 2, 3, 6, 7};
#endif

static const fn_gemm_config CONFIGS[FN_ISA_COUNT] = {
    [FN_ISA_SCALAR] = {fn_qs8_qc8w_gemm_ukernel_4x8c4__scalar, 4, 8, 4, 0, FN_ISA_SCALAR, NULL, FN_GEMM_HDR_ROWS},
#if defined(__x86_64__)
    [FN_ISA_AVX2] = {fn_qs8_qc8w_gemm_ukernel_4x8c4__avx2, 4, 8, 4, 0, FN_ISA_AVX2, AVX2_W_SLOT, FN_GEMM_HDR_ROWS_AVX2},
    [FN_ISA_AVX512VNNI] = {fn_qs8_qc8w_gemm_ukernel_6x16c4__avx512vnni, 6, 16, 4, 128, FN_ISA_AVX512VNNI, NULL, FN_GEMM_HDR_ROWS},
#endif
#if defined(__aarch64__) && defined(FN_HAVE_NEONDOT)
    [FN_ISA_NEONDOT] = {fn_qs8_qc8w_gemm_ukernel_4x8c4__neondot, 4, 8, 4, 0, FN_ISA_NEONDOT, NULL, FN_GEMM_HDR_ROWS},
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
