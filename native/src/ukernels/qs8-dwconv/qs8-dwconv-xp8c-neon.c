/* qs8-dwconv for aarch64 NEON (any ARMv8-A, no dot product needed), any number of taps. Blocks
 * of 8 channels outside, pixels inside. A tap's 8 bytes are widened to int16 and multiplied into
 * two int32x4 accumulators with SMLAL by the tap's 8 int16 weights; LD2 splits a packed pair of
 * taps (fn_dwconv.h keeps taps 2p and 2p+1 of each channel side by side) into the weights of each.
 * The output stage is fn_requant_neon.h's; the channels after the last full block of 8 that LiteRT
 * rounds as gemmlowp are recomputed lane by lane, as in the other kernels. A block of fewer than 8
 * channels reads and writes its bytes through a buffer: a row holds only `channels` bytes. */
#if defined(__aarch64__)
#include <arm_neon.h>
#include <string.h>

#include "fn_dwconv.h"
#include "fn_requant_neon.h"

static inline int16x8_t load8(const int8_t *p, size_t nc) {
    if (nc == FN_DWCONV_CR) return vmovl_s8(vld1_s8(p));
    int8_t tmp[FN_DWCONV_CR] = {0};
    memcpy(tmp, p, nc);
    return vmovl_s8(vld1_s8(tmp));
}

FN_DECLARE_QS8_DWCONV_UKERNEL(fn_qs8_dwconv_ukernel_xp8c__neon) {
    enum { CR = FN_DWCONV_CR };
    const size_t blk_bytes = FN_DWCONV_BLOCK_BYTES(ks);
    const int32x4_t zp = vdupq_n_s32(p->zp_out), lo = vdupq_n_s32(p->lo), hi = vdupq_n_s32(p->hi);
    const uint8_t *blk = (const uint8_t *)weights;
    for (size_t c0 = 0; c0 < channels; c0 += CR, blk += blk_bytes) {
        const size_t nc = channels - c0 < CR ? channels - c0 : CR;
        const int32_t *hdr = (const int32_t *)(const void *)blk;
        const int16_t *w = (const int16_t *)(const void *)(blk + 16 * CR);
        const requant4_params ql = requant4_load(hdr, CR), qh = requant4_load(hdr + 4, CR);
        const int32x4_t bl = vld1q_s32(hdr), bh = vld1q_s32(hdr + 4);
        const int fix = c0 + nc > (size_t)p->ruy_channels;
        const int8_t *const *in = input;
        int8_t *out = output + c0;
        for (size_t x = 0; x < output_width; x++, in += input_stride, out += channels) {
            int32x4_t al = vdupq_n_s32(0), ah = al;
            size_t t = 0;
            for (; t + 1 < ks; t += 2) {
                const int16x8x2_t ww = vld2q_s16(w + t / 2 * 2 * CR);
                const int16x8_t x0 = load8(in[t] + c0, nc), x1 = load8(in[t + 1] + c0, nc);
                al = vmlal_s16(al, vget_low_s16(x0), vget_low_s16(ww.val[0]));
                ah = vmlal_high_s16(ah, x0, ww.val[0]);
                al = vmlal_s16(al, vget_low_s16(x1), vget_low_s16(ww.val[1]));
                ah = vmlal_high_s16(ah, x1, ww.val[1]);
            }
            if (t < ks) {
                const int16x8x2_t ww = vld2q_s16(w + t / 2 * 2 * CR);
                const int16x8_t x0 = load8(in[t] + c0, nc);
                al = vmlal_s16(al, vget_low_s16(x0), vget_low_s16(ww.val[0]));
                ah = vmlal_high_s16(ah, x0, ww.val[0]);
            }
            const int32x4_t rl = requant4(vaddq_s32(al, bl), &ql, zp, lo, hi);
            const int32x4_t rh = requant4(vaddq_s32(ah, bh), &qh, zp, lo, hi);
            const int8x8_t o = vqmovn_s16(vcombine_s16(vqmovn_s32(rl), vqmovn_s32(rh)));
            if (nc == CR) {
                vst1_s8(out, o);
            } else {
                int8_t tmp[CR];
                vst1_s8(tmp, o);
                memcpy(out, tmp, nc);
            }
            if (fix) {
                int32_t acc[CR];
                vst1q_s32(acc, al);
                vst1q_s32(acc + 4, ah);
                fn_qs8_dwconv_fix_lanes(out, acc, hdr, c0, nc, p);
            }
        }
    }
}
#endif
