/* qs8-qc8w-gemm for AVX2. vpmaddubsw would saturate to int16, so this path sign-extends both
 * operands to int16 and uses vpmaddwd, which is exact (two products of int8 fit int32). Each
 * 32-byte weight row (8 channels x 4 k) becomes two int16 registers of 4 channels; the pairs of
 * partial sums are folded with vphaddd at the end. The epilogue is fn_mul_ruy_x86 on 64-bit lanes. */
#include <immintrin.h>

#include "fn_ukernels.h"

enum { MR = 4, NR = 8 };

/* fn_mul_ruy_x86 on 8 lanes, + zp, clamp; returns int32 lanes in [lo, hi]. */
static inline __m256i requant8(__m256i acc, const int32_t *hdr, __m256i zp, __m256i lo, __m256i hi) {
    const __m256i bias = _mm256_loadu_si256((const __m256i *)(const void *)hdr);
    const __m256i mult = _mm256_loadu_si256((const __m256i *)(const void *)(hdr + NR));
    const __m256i shl = _mm256_loadu_si256((const __m256i *)(const void *)(hdr + 2 * NR));
    const __m256i shr = _mm256_loadu_si256((const __m256i *)(const void *)(hdr + 3 * NR));
    const __m256i x = _mm256_sllv_epi32(_mm256_add_epi32(acc, bias), shl);
    const __m256i half = _mm256_set1_epi64x((int64_t)1 << 30);
    const __m256i one = _mm256_set1_epi64x(1);
    const __m256i lo32 = _mm256_set1_epi64x(0xFFFFFFFF);
    const __m256i sh_e = _mm256_and_si256(shr, lo32), sh_o = _mm256_srli_epi64(shr, 32);
    /* AVX2 has no 64-bit arithmetic shift: shift logically after adding 2^63 and subtract it
     * back, shifted; (v + 2^63) >> s - 2^(63-s) equals v >> s for every int64 v */
    const __m256i bias63 = _mm256_set1_epi64x(INT64_MIN);
    __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(x, mult), half);
    __m256i po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(mult, 32)), half);
    pe = _mm256_sub_epi64(_mm256_srli_epi64(_mm256_xor_si256(pe, bias63), 31), _mm256_set1_epi64x((int64_t)1 << 32));
    po = _mm256_sub_epi64(_mm256_srli_epi64(_mm256_xor_si256(po, bias63), 31), _mm256_set1_epi64x((int64_t)1 << 32));
    /* (v + 2^(rs-1)) >> rs with |v| < 2^32: the same bias trick with a variable count */
    const __m256i re = _mm256_sllv_epi64(one, _mm256_sub_epi64(sh_e, one));
    const __m256i ro = _mm256_sllv_epi64(one, _mm256_sub_epi64(sh_o, one));
    pe = _mm256_sub_epi64(_mm256_srlv_epi64(_mm256_xor_si256(_mm256_add_epi64(pe, re), bias63), sh_e),
                          _mm256_srlv_epi64(bias63, sh_e));
    po = _mm256_sub_epi64(_mm256_srlv_epi64(_mm256_xor_si256(_mm256_add_epi64(po, ro), bias63), sh_o),
                          _mm256_srlv_epi64(bias63, sh_o));
    __m256i r = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
    r = _mm256_add_epi32(r, zp);
    return _mm256_min_epi32(_mm256_max_epi32(r, lo), hi);
}

/* R rows (a constant after inlining: 1, or the whole tile), so a one-row GEMM (a batch-1
 * FULLY_CONNECTED) does not compute three copies of its row. */
static inline __attribute__((always_inline)) void gemm_rows(size_t R, size_t mr, size_t nc, size_t kc, size_t ks,
                                                            const int8_t *const *a, const void *w, int8_t *c,
                                                            size_t cm_stride, const fn_qs8_out_params *p) {
    const size_t blk_bytes = FN_GEMM_BLOCK_BYTES(NR, kc * ks);
    const uint8_t *blk = (const uint8_t *)w;
    const __m256i zp = _mm256_set1_epi32(p->zp_out), lo = _mm256_set1_epi32(p->lo), hi = _mm256_set1_epi32(p->hi);
    for (size_t n0 = 0; n0 < nc; n0 += NR, blk += blk_bytes) {
        __m256i acc_l[MR], acc_h[MR];
        for (size_t i = 0; i < MR; i++) acc_l[i] = acc_h[i] = _mm256_setzero_si256();
        const int8_t *wk = (const int8_t *)(blk + 16 * NR);
        for (size_t t = 0; t < ks; t++) {
            const int8_t *ar[MR];
            for (size_t i = 0; i < R; i++) ar[i] = a[t * MR + (i < mr ? i : mr - 1)];
            for (size_t k = 0; k < kc; k += 4, wk += 4 * NR) {
                const __m128i w0 = _mm_loadu_si128((const __m128i *)(const void *)wk);
                const __m128i w1 = _mm_loadu_si128((const __m128i *)(const void *)(wk + 16));
                const __m256i wl = _mm256_cvtepi8_epi16(w0); /* channels 0-3, 4 k each */
                const __m256i wh = _mm256_cvtepi8_epi16(w1); /* channels 4-7 */
                for (size_t i = 0; i < R; i++) {
                    int32_t q;
                    __builtin_memcpy(&q, ar[i] + k, 4);
                    /* the 4 bytes in every dword, then widened: [a0 a1 a2 a3] in every qword */
                    const __m256i av = _mm256_cvtepi8_epi16(_mm_set1_epi32(q));
                    acc_l[i] = _mm256_add_epi32(acc_l[i], _mm256_madd_epi16(wl, av));
                    acc_h[i] = _mm256_add_epi32(acc_h[i], _mm256_madd_epi16(wh, av));
                }
            }
        }
        const size_t nb = nc - n0 < NR ? nc - n0 : NR;
        for (size_t i = 0; i < mr; i++) {
            /* hadd gives channels [0 1 4 5 | 2 3 6 7]; the permute restores 0..7 */
            const __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc_l[i], acc_h[i]), 0xD8);
            const __m256i r = requant8(s, (const int32_t *)(const void *)blk, zp, lo, hi);
            const __m128i r16 = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
            const __m128i r8 = _mm_packs_epi16(r16, r16);
            int8_t *cr = c + i * cm_stride + n0;
            if (nb == NR) {
                _mm_storel_epi64((__m128i *)(void *)cr, r8);
            } else {
                int8_t tmp[16];
                _mm_storeu_si128((__m128i *)(void *)tmp, r8);
                for (size_t j = 0; j < nb; j++) cr[j] = tmp[j];
            }
        }
    }
}

void fn_qs8_qc8w_gemm_ukernel_4x8c4__avx2(size_t mr, size_t nc, size_t kc, size_t ks, const int8_t *const *a,
                                          const void *w, int8_t *c, size_t cm_stride, const fn_qs8_out_params *p) {
    if (mr == 1) gemm_rows(1, mr, nc, kc, ks, a, w, c, cm_stride, p);
    else gemm_rows(MR, mr, nc, kc, ks, a, w, c, cm_stride, p);
}
