/* x8-lut for AVX2: a 256-entry byte table as sixteen 16-entry vpshufb tables, 32 bytes a step.
 * vpshufb gives table[i & 15], or 0 where bit 7 of the index is set. With u = (uint8_t)x, stage k
 * (0..15) looks up index i_k: i_0 = u, then i_k = i_{k-1} - 16, wrapping for k <= 8 and saturating
 * (signed) after. Stage k then contributes exactly for
 *   k = 0 .. u/16          when u < 128,
 *   k = u/16 - 7 .. u/16   when u >= 128,
 * each time at position u & 15. XOR-ing the contributions of tables D_k gives table[u] when the
 * prefix XORs P_K = D_0 ^ ... ^ D_K satisfy P_K = T_K (K < 8) and P_K ^ P_{K-8} = T_K (K >= 8),
 * T_K being entries 16K .. 16K+15: so P_K = T_K ^ P_{K-8} and D_K = P_K ^ P_{K-1}. */
#include <immintrin.h>
#include <string.h>

#include "fn_ukernels_eltwise.h"

static inline __m256i lookup32(__m256i u, const __m256i *d) {
    const __m256i sixteen = _mm256_set1_epi8(16);
    __m256i i = u, y = _mm256_shuffle_epi8(d[0], i);
    for (int k = 1; k <= 8; k++) {
        i = _mm256_sub_epi8(i, sixteen);
        y = _mm256_xor_si256(y, _mm256_shuffle_epi8(d[k], i));
    }
    for (int k = 9; k < 16; k++) {
        i = _mm256_subs_epi8(i, sixteen);
        y = _mm256_xor_si256(y, _mm256_shuffle_epi8(d[k], i));
    }
    return y;
}

void fn_x8_lut_ukernel__avx2(size_t n, const int8_t *x, int8_t *y, const int8_t table[256]) {
    if (n < 32) { /* fewer lookups than building the sixteen tables costs */
        fn_x8_lut_ukernel__scalar(n, x, y, table);
        return;
    }
    __m128i p[16];
    __m256i d[16];
    for (int k = 0; k < 16; k++) {
        const __m128i t = _mm_loadu_si128((const __m128i *)(const void *)(table + 16 * k));
        p[k] = k < 8 ? t : _mm_xor_si128(t, p[k - 8]);
        d[k] = _mm256_broadcastsi128_si256(k == 0 ? p[0] : _mm_xor_si128(p[k], p[k - 1]));
    }
    for (; n >= 32; n -= 32, x += 32, y += 32) {
        const __m256i u = _mm256_loadu_si256((const __m256i *)(const void *)x);
        _mm256_storeu_si256((__m256i *)(void *)y, lookup32(u, d));
    }
    if (n > 0) {
        int8_t tx[32] = {0}, ty[32];
        memcpy(tx, x, n);
        _mm256_storeu_si256((__m256i *)(void *)ty, lookup32(_mm256_loadu_si256((const __m256i *)(const void *)tx), d));
        memcpy(y, ty, n);
    }
}
