/* qs8-dwconv microkernels: int8 NHWC depthwise convolution (depth multiplier 1) over an
 * indirection buffer, per-channel int8 weights, int8 output. Same rules as fn_ukernels.h: pure
 * compute on packed data, one ISA per file, chosen once per plan by fn_dwconv_config_for.
 *
 * Packed weights, per block of 8 channels (the last block zero-padded), KP = ks rounded up to 2:
 *   int32 bias[8]        bias - zp_in * sum_k w[k][c], wrapping
 *   int32 mult[8]        fixed-point multiplier M
 *   int32 shl[8]         max(shift, 0)
 *   int32 shr[8]         max(-shift, 0)
 *   int16 w[KP/2][8][2]  taps 2p and 2p+1 of each channel side by side (vpmaddwd pairs); an odd
 *                        tap count leaves a zero weight in the last pair
 * Folding zp_in into the bias makes a tap that reads zp_in (padding) contribute nothing, as the
 * reference kernel's skipped taps do, and keeps the sum exact: wrapping int32 sums are the same
 * in any order. The first four rows are the GEMM's requantization header (fn_requant_avx2.h).
 *
 * input holds, per output pixel, ks row pointers (tap t of the packing), the first pixel's at
 * input[0] and each next pixel's input_stride pointers further; each points at `channels`
 * readable int8 (a pixel of the image, or a buffer of zp_in for taps outside it). The kernel
 * writes output_width pixels of `channels` int8, contiguous, at output. SIMD kernels need
 * channels >= FN_DWCONV_CR: a tail block reads the 8 bytes that end at the last channel. */
#ifndef FN_DWCONV_H
#define FN_DWCONV_H

#include <stddef.h>
#include <stdint.h>

#include "fn_kernels.h"

typedef struct {
    int32_t zp_out, lo, hi;
    /* channels below this round as ruy's x86 output stage (fn_mul_ruy_x86); the others as
     * gemmlowp (fn_mbqm): LiteRT rounds its depthwise blocks of 8 one way and the tail the other */
    int32_t ruy_channels;
} fn_qs8_dwconv_params;

typedef void (*fn_qs8_dwconv_ukernel)(size_t channels, size_t output_width, size_t ks, const int8_t *const *input,
                                      size_t input_stride, const void *weights, int8_t *output,
                                      const fn_qs8_dwconv_params *p);

#define FN_DWCONV_CR 8
#define FN_DWCONV_BLOCK_BYTES(ks) ((size_t)FN_DWCONV_CR * 16u + ((size_t)(ks) + 1u) / 2u * (size_t)FN_DWCONV_CR * 4u)

#define FN_DECLARE_QS8_DWCONV_UKERNEL(fn)                                                                  \
    void fn(size_t channels, size_t output_width, size_t ks, const int8_t *const *input, size_t input_stride, \
            const void *weights, int8_t *output, const fn_qs8_dwconv_params *p)

/* 9p: exactly 9 taps (3x3, any stride or dilation); xp: any number of taps (ks >= 1). */
FN_DECLARE_QS8_DWCONV_UKERNEL(fn_qs8_dwconv_ukernel_xp8c__scalar);
FN_DECLARE_QS8_DWCONV_UKERNEL(fn_qs8_dwconv_ukernel_9p8c__avx2);
FN_DECLARE_QS8_DWCONV_UKERNEL(fn_qs8_dwconv_ukernel_xp8c__avx2);
FN_DECLARE_QS8_DWCONV_UKERNEL(fn_qs8_dwconv_ukernel_xp8c__neon);

typedef struct {
    fn_qs8_dwconv_ukernel ukernel_9p; /* for ks == 9 */
    fn_qs8_dwconv_ukernel ukernel_xp; /* for any ks */
    int32_t isa;
} fn_dwconv_config;

/* The depthwise microkernels of an ISA (fn_cpu.h): an ISA without its own runs the scalar ones. */
const fn_dwconv_config *fn_dwconv_config_for(int isa);

/* Packs filter f[KH][KW][channels] (tap t = ky * KW + kx, as the indirection orders them), bias
 * (may be NULL), multipliers and shifts into ceil(channels / 8) blocks of FN_DWCONV_BLOCK_BYTES. */
void fn_dwconv_pack(int32_t channels, int32_t kh, int32_t kw, const int8_t *f, const int32_t *bias,
                    const int32_t *mult, const int32_t *shift, int32_t zp_in, uint8_t *out);

/* Channel c0 + j of a block: its int32 sum (bias included) requantized as params say. */
static inline int8_t fn_qs8_dwconv_out(int32_t acc, const int32_t *hdr, size_t j, size_t c0,
                                       const fn_qs8_dwconv_params *p) {
    const int32_t sh = hdr[2 * FN_DWCONV_CR + j] - hdr[3 * FN_DWCONV_CR + j], m = hdr[FN_DWCONV_CR + j];
    const int32_t r = c0 + j < (size_t)p->ruy_channels ? fn_mul_ruy_x86(acc, m, sh) : fn_mbqm(acc, m, sh);
    return fn_out_s8(r, p->zp_out, p->lo, p->hi);
}

/* Rewrites the channels of a block that round as gemmlowp from their int32 sums (bias excluded):
 * the SIMD epilogues compute ruy's rounding for all 8 lanes first. */
static inline void fn_qs8_dwconv_fix_lanes(int8_t *out, const int32_t *acc, const int32_t *hdr, size_t c0, size_t nc,
                                           const fn_qs8_dwconv_params *p) {
    for (size_t j = (size_t)p->ruy_channels > c0 ? (size_t)p->ruy_channels - c0 : 0; j < nc; j++)
        out[j] = fn_qs8_dwconv_out((int32_t)((uint32_t)acc[j] + (uint32_t)hdr[j]), hdr, j, c0, p);
}

#ifdef __AVX2__
#include "fn_requant_avx2.h"

/* 8 channels of a row at p (tail: the 8 bytes at p end at the last channel, and the shift by
 * sh = 8 * (8 - nc) bits moves the block's nc channels down to lanes 0..nc-1). */
static inline __m128i fn_qs8_dwconv_load8_avx2(const int8_t *p, int tail, __m128i sh) {
    const __m128i v = _mm_loadl_epi64((const __m128i *)(const void *)p);
    return tail ? _mm_srl_epi64(v, sh) : v;
}

/* acc + the products of two taps' 8 channels (a, b as int8) with their int16 weight pairs at w. */
static inline __m256i fn_qs8_dwconv_tap2_avx2(__m256i acc, __m128i a, __m128i b, const int16_t *w) {
    const __m256i x = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(a, b));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(x, _mm256_loadu_si256((const __m256i *)(const void *)w)));
}

/* The int32 sums (bias excluded) of one pixel's 8 channels at byte off of its ks rows. */
typedef __m256i (*fn_qs8_dwconv_taps_avx2)(const int8_t *const *rows, size_t ks, size_t off, const int16_t *w,
                                           int tail, __m128i sh);

/* One block of nc channels from c0 over every pixel: its requantization constants are prepared
 * once, for all the pixels of the call. */
static inline __attribute__((always_inline)) void fn_qs8_dwconv_block_avx2(
    fn_qs8_dwconv_taps_avx2 taps, size_t channels, size_t output_width, size_t ks, const int8_t *const *input,
    size_t input_stride, const uint8_t *blk, int8_t *output, size_t c0, size_t nc, int tail, __m128i sh,
    const fn_qs8_dwconv_params *p) {
    const int32_t *hdr = (const int32_t *)(const void *)blk;
    const int16_t *w = (const int16_t *)(const void *)(blk + 16 * FN_DWCONV_CR);
    const fn_requant8_avx2_consts k = fn_requant8_avx2_prepare(hdr, p->zp_out);
    const __m256i lo = _mm256_set1_epi32(p->lo), hi = _mm256_set1_epi32(p->hi);
    const size_t off = tail ? c0 + nc - FN_DWCONV_CR : c0;
    const int fix = c0 + nc > (size_t)p->ruy_channels;
    for (output += c0; output_width > 0; output_width--, input += input_stride, output += channels) {
        const __m256i acc = taps(input, ks, off, w, tail, sh);
        fn_store_s8x8_avx2(output, fn_requant8_avx2(acc, &k, lo, hi), nc);
        if (fix) {
            int32_t a[FN_DWCONV_CR];
            _mm256_storeu_si256((__m256i *)(void *)a, acc);
            fn_qs8_dwconv_fix_lanes(output, a, hdr, c0, nc, p);
        }
    }
}

/* A whole AVX2 microkernel around its taps: blocks of 8 channels outside, pixels inside (the
 * weights and constants of a block stay in registers), then the tail block. */
static inline __attribute__((always_inline)) void fn_qs8_dwconv_avx2(
    fn_qs8_dwconv_taps_avx2 taps, size_t channels, size_t output_width, size_t ks, const int8_t *const *input,
    size_t input_stride, const void *weights, int8_t *output, const fn_qs8_dwconv_params *p) {
    enum { CR = FN_DWCONV_CR };
    const size_t blk_bytes = FN_DWCONV_BLOCK_BYTES(ks), full = channels / CR * CR, nt = channels - full;
    const __m128i sh = _mm_cvtsi32_si128((int)(CR - nt) * 8);
    const uint8_t *blk = (const uint8_t *)weights;
    for (size_t c0 = 0; c0 < full; c0 += CR, blk += blk_bytes)
        fn_qs8_dwconv_block_avx2(taps, channels, output_width, ks, input, input_stride, blk, output, c0, CR, 0, sh, p);
    if (nt > 0)
        fn_qs8_dwconv_block_avx2(taps, channels, output_width, ks, input, input_stride, blk, output, full, nt, 1, sh, p);
}
#endif

#endif
