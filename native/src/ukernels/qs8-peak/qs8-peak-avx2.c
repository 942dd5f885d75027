/* The int8 multiply-accumulate peak of AVX2: independent vpmaddwd + vpaddd chains (16 MACs each),
 * no loads, eight independent chains. Bench only: what a gemm could reach at best. */
#include <immintrin.h>

#include "fn_ukernels.h"

uint64_t fn_qs8_peak__avx2(uint64_t iters, int32_t *sink) {
    /* in asm: a compiler sees the same product eight times and would compute it once */
    __m256i a0 = _mm256_set1_epi32(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    const __m256i x = _mm256_set1_epi16(3), w = _mm256_set1_epi16(5);
#define FN_PEAK_STEP(acc, tmp) "vpmaddwd %[w], %[x], %%" tmp "\n\tvpaddd %%" tmp ", %[" acc "], %[" acc "]\n\t"
    for (uint64_t n = 0; n < iters; n++)
        __asm__ volatile(FN_PEAK_STEP("a0", "ymm14") FN_PEAK_STEP("a1", "ymm15") FN_PEAK_STEP("a2", "ymm14")
                         FN_PEAK_STEP("a3", "ymm15") FN_PEAK_STEP("a4", "ymm14") FN_PEAK_STEP("a5", "ymm15")
                         FN_PEAK_STEP("a6", "ymm14") FN_PEAK_STEP("a7", "ymm15")
                         : [a0] "+x"(a0), [a1] "+x"(a1), [a2] "+x"(a2), [a3] "+x"(a3), [a4] "+x"(a4), [a5] "+x"(a5),
                           [a6] "+x"(a6), [a7] "+x"(a7)
                         : [x] "x"(x), [w] "x"(w)
                         : "xmm14", "xmm15");
#undef FN_PEAK_STEP
    const __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)),
                                       _mm256_add_epi32(_mm256_add_epi32(a4, a5), _mm256_add_epi32(a6, a7)));
    *sink = _mm256_extract_epi32(s, 0);
    return iters * 8u * 16u;
}
