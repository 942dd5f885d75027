/* The element loop every AVX2 binary int8 microkernel shares (include only from *-avx2.c files):
 * 16 elements a step, then the tail through zeroed 16-byte copies, so nothing is read or written
 * past n. STEP is an expression of the two __m128i operands `va` and `vb` giving the 16 output
 * bytes; with BCONST set the second operand is never read (a vector-with-constant kernel). */
#ifndef FN_VBINARY_AVX2_H
#define FN_VBINARY_AVX2_H

#include <immintrin.h>
#include <string.h>

#define FN_S8_BINARY_LOOP_AVX2(n, a, b, y, BCONST, STEP)                                         \
    do {                                                                                          \
        for (; (n) >= 16; (n) -= 16, (a) += 16, (y) += 16) {                                      \
            const __m128i va = _mm_loadu_si128((const __m128i *)(const void *)(a));               \
            const __m128i vb = (BCONST) ? _mm_setzero_si128()                                     \
                                        : _mm_loadu_si128((const __m128i *)(const void *)(b));    \
            _mm_storeu_si128((__m128i *)(void *)(y), (STEP));                                     \
            if (!(BCONST)) (b) += 16;                                                             \
        }                                                                                         \
        if ((n) > 0) {                                                                            \
            int8_t ta_[16] = {0}, tb_[16] = {0}, ty_[16];                                         \
            memcpy(ta_, (a), (n));                                                                \
            if (!(BCONST)) memcpy(tb_, (b), (n));                                                 \
            const __m128i va = _mm_loadu_si128((const __m128i *)(const void *)ta_);               \
            const __m128i vb = _mm_loadu_si128((const __m128i *)(const void *)tb_);               \
            _mm_storeu_si128((__m128i *)(void *)ty_, (STEP));                                     \
            memcpy((y), ty_, (n));                                                                \
        }                                                                                         \
    } while (0)

#endif
