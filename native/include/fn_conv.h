/* What CONV_2D and DEPTHWISE_CONV_2D share: the node's parameter slots, its checks, the
 * arguments both read and the filter taps of an output pixel that fall inside the image. */
#ifndef FN_CONV_H
#define FN_CONV_H

#include "fn_kernels.h"

enum { P_ZP_IN, P_ZP_OUT, P_ACT_MIN, P_ACT_MAX, P_STRIDE_H, P_STRIDE_W, P_DIL_H, P_DIL_W,
       P_PAD_TOP, P_PAD_LEFT, P_MULT, P_SHIFT, P_DEPTH_MULT, P_MODE, P_HALF_UP_CH, P_PACKED };

/* What both convolution kernels read from a node, in one place. */
typedef struct {
    int32_t N, H, W, C, OH, OW, sh, sw, dh, dw, pt, pl, zp_in, mode;
    const int8_t *x, *w;
    const int32_t *bias, *mult, *shift;
    int8_t *y;
} conv_args;

int fn_conv_check_common(const fn_node *n, const fn_tensor *t, int32_t nt, int64_t out_ch);
conv_args fn_conv_load_args(const fn_node *n, const fn_tensor *t);
/* The filter taps of output pixel (b, oy, ox) that fall inside the image: tap index ky*KW+kx
 * and the offset of the input pixel they read. Returns how many. */
int32_t fn_conv_find_taps(const conv_args *a, int32_t KH, int32_t KW, int32_t b, int32_t oy, int32_t ox,
                          int64_t *tap, int64_t *tap_x);

#endif
