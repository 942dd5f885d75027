/* qs8-qc8w-gemm for AVX2. vpmaddubsw would saturate to int16, so this path sign-extends both
 * operands to int16 and uses vpmaddwd, which is exact (two products of int8 fit int32). Each
 * 32-byte weight row (8 channels x 4 k) becomes two int16 registers of 4 channels; the pairs of
 * partial sums are folded with vphaddd at the end, which leaves channel order because the
 * packing put channels 0 1 4 5 in the first half of each row and 2 3 6 7 in the second.
 *
 * The tile's A rows are widened to int16 once, into a buffer on the stack, before the loop over
 * blocks of 8 channels: each k step then takes a row's four int16 with one broadcast load, and
 * the vector units spend their slots on the weights' widening, vpmaddwd and vpaddd only. Rows
 * deeper than that buffer widen their bytes at every block instead. The epilogue is
 * fn_requant_avx2.h's, with its per-channel constants prepared at packing (the header of
 * FN_GEMM_HDR_ROWS_AVX2 rows), and the accumulators start from the bias. */
#include <immintrin.h>

#include "fn_requant_avx2.h"
#include "fn_ukernels.h"

enum { MR = 4, NR = 8, KMAX = 4096 /* int16 per row in the widened tile: 32 KiB of stack */,
       W_OFFSET = 4 * FN_GEMM_HDR_ROWS_AVX2 * NR /* bytes of a block's header */ };

/* The packed weights' two int16 halves of k step wk (channels 0 1 4 5, then 2 3 6 7). */
#define LOAD_W(wk, wl, wh)                                                                     \
    const __m256i wl = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(wk))); \
    const __m256i wh = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)((wk) + 16)))

/* Every row's accumulators start from the block's bias (header rows 10 and 11). */
static inline __attribute__((always_inline)) void start(const uint8_t *blk, __m256i *acc_l, __m256i *acc_h) {
    const __m256i bl = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 4 * 10 * NR));
    const __m256i bh = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 4 * 11 * NR));
    for (size_t i = 0; i < MR; i++) {
        acc_l[i] = bl;
        acc_h[i] = bh;
    }
}

/* Requantizes the tile's R rows of one block and stores its mr rows of nb channels. */
static inline __attribute__((always_inline)) void tile_out(size_t R, const __m256i *acc_l, const __m256i *acc_h,
                                                            const uint8_t *blk, int8_t *c, size_t cm_stride,
                                                            size_t mr, size_t nb, const fn_qs8_out_params *p) {
    const fn_requant8_avx2_consts rk = fn_requant8_avx2_load((const int32_t *)(const void *)blk);
    /* every row of the tile at once (rows past mr repeat row mr - 1 and are not stored) */
    __m256i r[MR];
    for (size_t i = 0; i < R; i++) r[i] = fn_requant8_avx2_biased(_mm256_hadd_epi32(acc_l[i], acc_h[i]), &rk);
    for (size_t i = R; i < MR; i++) r[i] = r[0];
    /* saturating packs: int8 lanes [rows 0..3 of channels 0-3 | rows 0..3 of channels 4-7],
     * clamped to the activation range, then each row's 8 bytes made one qword */
    const __m256i lo = _mm256_set1_epi8((int8_t)p->lo), hi = _mm256_set1_epi8((int8_t)p->hi);
    const __m256i b8 = _mm256_packs_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3]));
    const __m256i rows = _mm256_permutevar8x32_epi32(_mm256_min_epi8(_mm256_max_epi8(b8, lo), hi),
                                                     _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    fn_store_s8x8_rows_avx2(c, cm_stride, rows, mr, nb);
}

/* R rows (a constant after inlining: 1, or the whole tile), so a one-row GEMM (a batch-1
 * FULLY_CONNECTED) does not compute three copies of its row. */
static inline __attribute__((always_inline)) void gemm_rows(size_t R, size_t mr, size_t nc, size_t kc, size_t ks,
                                                            const int8_t *const *a, const void *w, int8_t *c,
                                                            size_t cm_stride, const fn_qs8_out_params *p) {
    const size_t K = kc * ks, blk_bytes = FN_GEMM_BLOCK_BYTES_H(NR, FN_GEMM_HDR_ROWS_AVX2, K);
    const uint8_t *blk = (const uint8_t *)w;
    if (K <= KMAX) {
        /* row i's K int16 (step t's kc bytes at t * kc): widened once for all the blocks */
        int16_t aw[MR][KMAX] __attribute__((aligned(32)));
        for (size_t i = 0; i < R; i++)
            for (size_t t = 0; t < ks; t++) {
                const int8_t *src = a[t * MR + (i < mr ? i : mr - 1)];
                int16_t *dst = &aw[i][t * kc];
                size_t k = 0;
                for (; k + 16 <= kc; k += 16)
                    _mm256_storeu_si256((__m256i *)(void *)(dst + k),
                                        _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(src + k))));
                for (; k < kc; k += 4) { /* kc is a multiple of 4 */
                    int32_t q;
                    __builtin_memcpy(&q, src + k, 4);
                    _mm_storel_epi64((__m128i *)(void *)(dst + k), _mm_cvtepi8_epi16(_mm_cvtsi32_si128(q)));
                }
            }
        for (size_t n0 = 0; n0 < nc; n0 += NR, blk += blk_bytes) {
            __m256i acc_l[MR], acc_h[MR];
            start(blk, acc_l, acc_h);
            const int8_t *wk = (const int8_t *)(blk + W_OFFSET);
            for (size_t k = 0; k < K; k += 4, wk += 4 * NR) {
                LOAD_W(wk, wl, wh);
                for (size_t i = 0; i < R; i++) {
                    /* [a0 a1 a2 a3] as int16 in every qword: one load, no shuffle */
                    int64_t q;
                    __builtin_memcpy(&q, &aw[i][k], 8);
                    const __m256i av = _mm256_set1_epi64x(q);
                    acc_l[i] = _mm256_add_epi32(acc_l[i], _mm256_madd_epi16(wl, av));
                    acc_h[i] = _mm256_add_epi32(acc_h[i], _mm256_madd_epi16(wh, av));
                }
            }
            tile_out(R, acc_l, acc_h, blk, c + n0, cm_stride, mr, nc - n0 < NR ? nc - n0 : NR, p);
        }
        return;
    }
    for (size_t n0 = 0; n0 < nc; n0 += NR, blk += blk_bytes) {
        __m256i acc_l[MR], acc_h[MR];
        start(blk, acc_l, acc_h);
        const int8_t *wk = (const int8_t *)(blk + W_OFFSET);
        for (size_t t = 0; t < ks; t++) {
            const int8_t *ar[MR];
            for (size_t i = 0; i < R; i++) ar[i] = a[t * MR + (i < mr ? i : mr - 1)];
            for (size_t k = 0; k < kc; k += 4, wk += 4 * NR) {
                LOAD_W(wk, wl, wh);
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
        tile_out(R, acc_l, acc_h, blk, c + n0, cm_stride, mr, nc - n0 < NR ? nc - n0 : NR, p);
    }
}

void fn_qs8_qc8w_gemm_ukernel_4x8c4__avx2(size_t mr, size_t nc, size_t kc, size_t ks, const int8_t *const *a,
                                          const void *w, int8_t *c, size_t cm_stride, const fn_qs8_out_params *p) {
    if (mr == 1) gemm_rows(1, mr, nc, kc, ks, a, w, c, cm_stride, p);
    else gemm_rows(MR, mr, nc, kc, ks, a, w, c, cm_stride, p);
}
