/* The int8 multiply-accumulate peak of AVX-512 VNNI: independent vpdpbusd chains (64 MACs each). */
#include <immintrin.h>

#include "fn_ukernels.h"

uint64_t fn_qs8_peak__avx512vnni(uint64_t iters, int32_t *sink) {
    __m512i acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_set1_epi32(i);
    __m512i x = _mm512_set1_epi8(3), w = _mm512_set1_epi8(5);
    for (uint64_t n = 0; n < iters; n++) {
        for (int i = 0; i < 16; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], x, w);
        __asm__ volatile("" : "+v"(x), "+v"(w));
    }
    __m512i s = acc[0];
    for (int i = 1; i < 16; i++) s = _mm512_add_epi32(s, acc[i]);
    *sink = _mm512_reduce_add_epi32(s);
    return iters * 16u * 64u;
}
