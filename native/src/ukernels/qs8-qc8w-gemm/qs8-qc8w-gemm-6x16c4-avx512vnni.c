/* qs8-qc8w-gemm for AVX-512 VNNI: vpdpbusd multiplies unsigned activation bytes by signed weight
 * bytes, so activations are flipped (x ^ 0x80 = x + 128 as uint8) and the packed bias carries the
 * -128 * sum(w) correction (a_offset 128). Six rows by 16 channels per zmm, two zmm of channels at
 * a time while they last. The epilogue is fn_mul_ruy_x86 on 64-bit lanes: exact, no float. */
#include <immintrin.h>

#include "fn_ukernels.h"

enum { MR = 6, NR = 16 };

/* fn_mul_ruy_x86 on 16 lanes, then + zp, clamp and narrow to int8. */
static inline __m128i requant16(__m512i acc, const int32_t *hdr, __m512i zp, __m512i lo, __m512i hi) {
    const __m512i bias = _mm512_loadu_si512(hdr);
    const __m512i mult = _mm512_loadu_si512(hdr + NR);
    const __m512i shl = _mm512_loadu_si512(hdr + 2 * NR);
    const __m512i shr = _mm512_loadu_si512(hdr + 3 * NR);
    const __m512i x = _mm512_sllv_epi32(_mm512_add_epi32(acc, bias), shl);
    const __m512i half = _mm512_set1_epi64((int64_t)1 << 30);
    const __m512i one = _mm512_set1_epi64(1);
    const __m512i lo32 = _mm512_set1_epi64(0xFFFFFFFF);
    /* even lanes: the low dword of each qword (vpmuldq sign-extends it) */
    const __m512i sh_e = _mm512_and_si512(shr, lo32), sh_o = _mm512_srli_epi64(shr, 32);
    __m512i pe = _mm512_srai_epi64(_mm512_add_epi64(_mm512_mul_epi32(x, mult), half), 31);
    __m512i po = _mm512_srai_epi64(
        _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(mult, 32)), half), 31);
    /* (v + 2^(rs-1)) >> rs; a shift count of -1 (rs = 0) gives vpsllvq's 0 */
    pe = _mm512_srav_epi64(_mm512_add_epi64(pe, _mm512_sllv_epi64(one, _mm512_sub_epi64(sh_e, one))), sh_e);
    po = _mm512_srav_epi64(_mm512_add_epi64(po, _mm512_sllv_epi64(one, _mm512_sub_epi64(sh_o, one))), sh_o);
    __m512i r = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
    r = _mm512_add_epi32(r, zp);
    r = _mm512_min_epi32(_mm512_max_epi32(r, lo), hi);
    return _mm512_cvtsepi32_epi8(r);
}

static inline __attribute__((always_inline)) void tile(size_t R, size_t mr, size_t nblk, size_t nc_left, size_t kc,
                                                       size_t ks, const int8_t *const *a, const uint8_t *blk,
                                                       size_t blk_bytes, int8_t *c, size_t cm_stride,
                                                       const fn_qs8_out_params *p) {
    __m512i acc0[MR], acc1[MR];
    for (size_t i = 0; i < MR; i++) acc0[i] = acc1[i] = _mm512_setzero_si512();
    const int8_t *w0 = (const int8_t *)(blk + 16 * NR);
    const int8_t *w1 = (const int8_t *)(blk + blk_bytes + 16 * NR);
    const __m512i flip = _mm512_set1_epi32((int32_t)0x80808080u);
    for (size_t t = 0; t < ks; t++) {
        const int8_t *ar[MR];
        for (size_t i = 0; i < R; i++) ar[i] = a[t * MR + (i < mr ? i : mr - 1)];
        for (size_t k = 0; k < kc; k += 4, w0 += 4 * NR, w1 += 4 * NR) {
            const __m512i wv0 = _mm512_loadu_si512(w0);
            const __m512i wv1 = nblk > 1 ? _mm512_loadu_si512(w1) : _mm512_setzero_si512();
            for (size_t i = 0; i < R; i++) {
                int32_t q;
                __builtin_memcpy(&q, ar[i] + k, 4);
                const __m512i av = _mm512_xor_si512(_mm512_set1_epi32(q), flip);
                acc0[i] = _mm512_dpbusd_epi32(acc0[i], av, wv0);
                if (nblk > 1) acc1[i] = _mm512_dpbusd_epi32(acc1[i], av, wv1);
            }
        }
    }
    const __m512i zp = _mm512_set1_epi32(p->zp_out), lo = _mm512_set1_epi32(p->lo), hi = _mm512_set1_epi32(p->hi);
    const size_t n0 = nc_left < NR ? nc_left : NR;
    const __mmask16 m0 = (__mmask16)((1u << n0) - 1u);
    const size_t n1 = nblk > 1 ? (nc_left - NR < NR ? nc_left - NR : NR) : 0;
    const __mmask16 m1 = (__mmask16)((1u << n1) - 1u);
    for (size_t i = 0; i < mr; i++) {
        int8_t *cr = c + i * cm_stride;
        _mm_mask_storeu_epi8(cr, m0, requant16(acc0[i], (const int32_t *)(const void *)blk, zp, lo, hi));
        if (nblk > 1)
            _mm_mask_storeu_epi8(cr + NR, m1,
                                 requant16(acc1[i], (const int32_t *)(const void *)(blk + blk_bytes), zp, lo, hi));
    }
}

void fn_qs8_qc8w_gemm_ukernel_6x16c4__avx512vnni(size_t mr, size_t nc, size_t kc, size_t ks,
                                                 const int8_t *const *a, const void *w, int8_t *c, size_t cm_stride,
                                                 const fn_qs8_out_params *p) {
    const size_t blk_bytes = FN_GEMM_BLOCK_BYTES(NR, kc * ks);
    const uint8_t *blk = (const uint8_t *)w;
    size_t n0 = 0;
    /* R = 1 for a one-row GEMM (a batch-1 FULLY_CONNECTED), so it computes no copies of its row */
    const size_t R = mr == 1 ? 1 : MR;
    for (; n0 + NR < nc; n0 += 2 * NR, blk += 2 * blk_bytes) {
        if (R == 1) tile(1, mr, 2, nc - n0, kc, ks, a, blk, blk_bytes, c + n0, cm_stride, p);
        else tile(MR, mr, 2, nc - n0, kc, ks, a, blk, blk_bytes, c + n0, cm_stride, p);
    }
    if (n0 < nc) {
        if (R == 1) tile(1, mr, 1, nc - n0, kc, ks, a, blk, blk_bytes, c + n0, cm_stride, p);
        else tile(MR, mr, 1, nc - n0, kc, ks, a, blk, blk_bytes, c + n0, cm_stride, p);
    }
}
