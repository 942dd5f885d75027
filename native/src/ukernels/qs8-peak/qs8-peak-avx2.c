/* The int8 multiply-accumulate peak of AVX2: independent vpmaddwd + vpaddd chains (16 MACs each),
 * no loads, as many in flight as registers allow. Bench only: what a gemm could reach at best. */
#include <immintrin.h>

#include "fn_ukernels.h"

uint64_t fn_qs8_peak__avx2(uint64_t iters, int32_t *sink) {
    __m256i acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_epi32(i);
    __m256i x = _mm256_set1_epi16(3), w = _mm256_set1_epi16(5);
    for (uint64_t n = 0; n < iters; n++) {
        for (int i = 0; i < 12; i++) acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(x, w));
        __asm__ volatile("" : "+x"(x), "+x"(w)); /* keeps the products in the loop */
    }
    __m256i s = acc[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_epi32(s, acc[i]);
    *sink = _mm256_extract_epi32(s, 0);
    return iters * 12u * 16u;
}
