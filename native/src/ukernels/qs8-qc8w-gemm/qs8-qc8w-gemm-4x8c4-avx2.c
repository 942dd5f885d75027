/* qs8-qc8w-gemm for AVX2. vpmaddubsw would saturate to int16, so this path sign-extends both
 * operands to int16 and uses vpmaddwd, which is exact (two products of int8 fit int32). Each
 * 32-byte weight row (8 channels x 4 k) becomes two int16 registers of 4 channels; the pairs of
 * partial sums are folded with vphaddd at the end. The epilogue is fn_mul_ruy_x86 on 64-bit lanes. */
#include <immintrin.h>

#include "fn_ukernels.h"

enum { MR = 4, NR = 8 };

/* fn_mul_ruy_x86 on 8 lanes, in one rounding shift per lane. Its two roundings nest exactly:
 *   ((p + 2^30) >> 31 + 2^(rs-1)) >> rs  ==  (p + 2^30 + [rs > 0] 2^(30+rs)) >> (31 + rs)
 * for p = (x << ls) * M (floor divisions by powers of two compose). AVX2 has no 64-bit arithmetic
 * shift, so 2^62 is added too: the sum is then in [0, 2^64) for every int32 x and M, the logical
 * shift by s = 31 + rs gives the result plus 2^(62-s), and that constant (mod 2^32) is taken off
 * together with the zero point. What depends only on the channel is computed once per block. */
typedef struct {
    __m256i bias, mult_e, mult_o, shl, rnd_e, rnd_o, sh_e, sh_o, zp_c;
} requant8_consts;

static inline requant8_consts requant8_prepare(const int32_t *hdr, int32_t zp_out) {
    requant8_consts k;
    k.bias = _mm256_loadu_si256((const __m256i *)(const void *)hdr);
    const __m256i mult = _mm256_loadu_si256((const __m256i *)(const void *)(hdr + NR));
    k.shl = _mm256_loadu_si256((const __m256i *)(const void *)(hdr + 2 * NR));
    const __m256i shr = _mm256_loadu_si256((const __m256i *)(const void *)(hdr + 3 * NR));
    k.mult_e = mult;
    k.mult_o = _mm256_srli_epi64(mult, 32);
    const __m256i lo32 = _mm256_set1_epi64x(0xFFFFFFFF);
    const __m256i rs_e = _mm256_and_si256(shr, lo32), rs_o = _mm256_srli_epi64(shr, 32);
    const __m256i base = _mm256_set1_epi64x(((int64_t)1 << 62) + ((int64_t)1 << 30));
    const __m256i two30 = _mm256_set1_epi64x((int64_t)1 << 30), zero = _mm256_setzero_si256();
    const __m256i t_e = _mm256_andnot_si256(_mm256_cmpeq_epi64(rs_e, zero), _mm256_sllv_epi64(two30, rs_e));
    const __m256i t_o = _mm256_andnot_si256(_mm256_cmpeq_epi64(rs_o, zero), _mm256_sllv_epi64(two30, rs_o));
    k.rnd_e = _mm256_add_epi64(base, t_e);
    k.rnd_o = _mm256_add_epi64(base, t_o);
    const __m256i s31 = _mm256_set1_epi64x(31);
    k.sh_e = _mm256_add_epi64(rs_e, s31);
    k.sh_o = _mm256_add_epi64(rs_o, s31);
    /* 2^(62 - s) = 2^(31 - rs) in each 32-bit lane */
    const __m256i c32 = _mm256_sllv_epi32(_mm256_set1_epi32(1), _mm256_sub_epi32(_mm256_set1_epi32(31), shr));
    k.zp_c = _mm256_sub_epi32(_mm256_set1_epi32(zp_out), c32);
    return k;
}

/* acc + bias through fn_mul_ruy_x86, + zp, clamped: int32 lanes in [lo, hi]. */
static inline __m256i requant8(__m256i acc, const requant8_consts *k, __m256i lo, __m256i hi) {
    const __m256i x = _mm256_sllv_epi32(_mm256_add_epi32(acc, k->bias), k->shl);
    const __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(x, k->mult_e), k->rnd_e);
    const __m256i po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), k->mult_o), k->rnd_o);
    const __m256i qe = _mm256_srlv_epi64(pe, k->sh_e), qo = _mm256_srlv_epi64(po, k->sh_o);
    const __m256i r = _mm256_add_epi32(_mm256_blend_epi32(qe, _mm256_slli_epi64(qo, 32), 0xAA), k->zp_c);
    return _mm256_min_epi32(_mm256_max_epi32(r, lo), hi);
}

/* R rows (a constant after inlining: 1, or the whole tile), so a one-row GEMM (a batch-1
 * FULLY_CONNECTED) does not compute three copies of its row. */
static inline __attribute__((always_inline)) void gemm_rows(size_t R, size_t mr, size_t nc, size_t kc, size_t ks,
                                                            const int8_t *const *a, const void *w, int8_t *c,
                                                            size_t cm_stride, const fn_qs8_out_params *p) {
    const size_t blk_bytes = FN_GEMM_BLOCK_BYTES(NR, kc * ks);
    const uint8_t *blk = (const uint8_t *)w;
    const __m256i lo = _mm256_set1_epi32(p->lo), hi = _mm256_set1_epi32(p->hi);
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
        const requant8_consts rk = requant8_prepare((const int32_t *)(const void *)blk, p->zp_out);
        for (size_t i = 0; i < mr; i++) {
            /* hadd gives channels [0 1 4 5 | 2 3 6 7]; the permute restores 0..7 */
            const __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc_l[i], acc_h[i]), 0xD8);
            const __m256i r = requant8(s, &rk, lo, hi);
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
