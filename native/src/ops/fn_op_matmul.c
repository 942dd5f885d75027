/* BATCH_MATMUL int8: out[b, m, n] = requant(sum_k (lhs[b, m, k] - zp_l) * (rhs[b, k, n] - zp_r)).
 * Batch dimensions broadcast through zero strides; transposed operands through their strides. */
#include "fn_kernels.h"

enum { BM_BATCH = 0, BM_LSTR = 4, BM_RSTR = 8, BM_M = 12, BM_N, BM_K, BM_L_MS, BM_L_KS, BM_R_KS, BM_R_NS,
       BM_ZP_L, BM_ZP_R, BM_ZP_OUT, BM_MULT, BM_SHIFT, BM_MODE, BM_MIN, BM_MAX };

/* The widest output row accumulated in one go (on the stack). */
#define ROW_MAX 1024

int fn_check_batch_matmul_s8(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (n->n_in != 2 || n->n_out != 1) return -1;
    if (!fn_tensor_ok(t, nt, n->in[0], FN_I8) || !fn_tensor_ok(t, nt, n->in[1], FN_I8)) return -1;
    if (!fn_tensor_ok(t, nt, n->out[0], FN_I8)) return -1;
    const int32_t *p = n->p;
    for (int d = 0; d < 4; d++)
        if (p[BM_LSTR + d] < 0 || p[BM_RSTR + d] < 0) return -1;
    if (p[BM_L_MS] < 0 || p[BM_L_KS] < 0 || p[BM_R_KS] < 0 || p[BM_R_NS] < 0) return -1;
    /* M, K and N are real extents of the operands: a stride 0 along one of them would let K
     * (the work per output element) grow without the operands growing */
    if ((p[BM_M] > 1 && p[BM_L_MS] == 0) || (p[BM_K] > 1 && (p[BM_L_KS] == 0 || p[BM_R_KS] == 0)) ||
        (p[BM_N] > 1 && p[BM_R_NS] == 0))
        return -1;
    /* each operand's walk over (batch dims, rows, cols), and the output's element count */
    const int32_t l_dims[6] = {p[BM_BATCH], p[BM_BATCH + 1], p[BM_BATCH + 2], p[BM_BATCH + 3], p[BM_M], p[BM_K]};
    const int32_t l_str[6] = {p[BM_LSTR], p[BM_LSTR + 1], p[BM_LSTR + 2], p[BM_LSTR + 3], p[BM_L_MS], p[BM_L_KS]};
    const int32_t r_dims[6] = {p[BM_BATCH], p[BM_BATCH + 1], p[BM_BATCH + 2], p[BM_BATCH + 3], p[BM_K], p[BM_N]};
    const int32_t r_str[6] = {p[BM_RSTR], p[BM_RSTR + 1], p[BM_RSTR + 2], p[BM_RSTR + 3], p[BM_R_KS], p[BM_R_NS]};
    const int32_t o_dims[6] = {p[BM_BATCH], p[BM_BATCH + 1], p[BM_BATCH + 2], p[BM_BATCH + 3], p[BM_M], p[BM_N]};
    if (!fn_walk_ok(l_dims, l_str, 6, 0, t[n->in[0]].count)) return -1;
    if (!fn_walk_ok(r_dims, r_str, 6, 0, t[n->in[1]].count)) return -1;
    if (fn_dims_count(o_dims, 6, t[n->out[0]].count) != t[n->out[0]].count) return -1;
    if (!fn_shift_ok(p[BM_SHIFT]) || p[BM_MIN] > p[BM_MAX]) return -1;
    if (!fn_zp_ok(p[BM_ZP_L], FN_I8) || !fn_zp_ok(p[BM_ZP_R], FN_I8) || !fn_zp_ok(p[BM_ZP_OUT], FN_I8)) return -1;
    if (p[BM_MODE] != FN_RQ_DOUBLE_ROUND && p[BM_MODE] != FN_RQ_RUY_X86) return -1;
    return 0;
}

int fn_run_batch_matmul_s8(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const int32_t *p = n->p;
    const int8_t *l = (const int8_t *)t[n->in[0]].data, *r = (const int8_t *)t[n->in[1]].data;
    int8_t *y = (int8_t *)t[n->out[0]].data;
    int64_t o = 0;
    for (int64_t b0 = 0; b0 < p[BM_BATCH]; b0++)
    for (int64_t b1 = 0; b1 < p[BM_BATCH + 1]; b1++)
    for (int64_t b2 = 0; b2 < p[BM_BATCH + 2]; b2++)
    for (int64_t b3 = 0; b3 < p[BM_BATCH + 3]; b3++) {
        const int8_t *lb = l + b0 * p[BM_LSTR] + b1 * p[BM_LSTR + 1] + b2 * p[BM_LSTR + 2] + b3 * p[BM_LSTR + 3];
        const int8_t *rb = r + b0 * p[BM_RSTR] + b1 * p[BM_RSTR + 1] + b2 * p[BM_RSTR + 2] + b3 * p[BM_RSTR + 3];
        for (int64_t m = 0; m < p[BM_M]; m++) {
            if (FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
            if (p[BM_R_NS] == 1 && p[BM_N] <= ROW_MAX) {
                /* rhs rows are contiguous along n: accumulate a whole output row at once, in an
                 * order the compiler vectorises (integer sums do not depend on the order) */
                int32_t acc[ROW_MAX];
                const int64_t N = p[BM_N], K = p[BM_K], l_ks = p[BM_L_KS], r_ks = p[BM_R_KS];
                const int32_t zp_l = p[BM_ZP_L], zp_r = p[BM_ZP_R], mode = p[BM_MODE], mult = p[BM_MULT];
                const int32_t shift = p[BM_SHIFT], zp_out = p[BM_ZP_OUT], lo = p[BM_MIN], hi = p[BM_MAX];
                const int8_t *lr = lb + m * p[BM_L_MS];
                for (int64_t j = 0; j < N; j++) acc[j] = 0;
                for (int64_t k = 0; k < K; k++) {
                    const int32_t a = lr[k * l_ks] - zp_l;
                    const int8_t *rr = rb + k * r_ks;
                    for (int64_t j = 0; j < N; j++)
                        acc[j] = (int32_t)((uint32_t)acc[j] + (uint32_t)(a * ((int32_t)rr[j] - zp_r)));
                }
                int8_t *yr = y + o;
                for (int64_t j = 0; j < N; j++)
                    yr[j] = fn_out_s8(fn_requant(acc[j], mode, mult, shift, 0.0), zp_out, lo, hi);
                o += N;
                continue;
            }
            if (p[BM_L_KS] == 1 && p[BM_R_KS] == 1) {
                /* both operands contiguous along k (rhs transposed, as Q K^T is): one dot
                 * product per output (fn_dot_s8, with the sum of the rhs row), sum
                 * (a - zp_l)(c - zp_r) expanded; wrapping int32 like TFLite's */
                const int64_t N = p[BM_N], K = p[BM_K], r_ns = p[BM_R_NS];
                const int32_t zp_l = p[BM_ZP_L], zp_r = p[BM_ZP_R];
                const int8_t *lr = lb + m * p[BM_L_MS];
                uint32_t lsum = 0;
                for (int64_t k = 0; k < K; k++) lsum += (uint32_t)(int32_t)lr[k];
                for (int64_t j = 0; j < N; j++, o++) {
                    const int8_t *rr = rb + j * r_ns;
                    uint32_t dot = 0, rsum = 0;
                    fn_dot_s8(rr, lr, (int32_t)K, &dot, &rsum);
                    const uint32_t acc = dot - (uint32_t)zp_r * lsum - (uint32_t)zp_l * rsum +
                                         (uint32_t)K * (uint32_t)zp_l * (uint32_t)zp_r;
                    const int32_t v = fn_requant((int32_t)acc, p[BM_MODE], p[BM_MULT], p[BM_SHIFT], 0.0);
                    y[o] = fn_out_s8(v, p[BM_ZP_OUT], p[BM_MIN], p[BM_MAX]);
                }
                continue;
            }
            for (int64_t j = 0; j < p[BM_N]; j++, o++) {
                if ((j & 63) == 63 && FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
                uint32_t acc = 0;
                for (int64_t k = 0; k < p[BM_K]; k++) {
                    const int32_t a = lb[m * p[BM_L_MS] + k * p[BM_L_KS]] - p[BM_ZP_L];
                    const int32_t c = rb[k * p[BM_R_KS] + j * p[BM_R_NS]] - p[BM_ZP_R];
                    acc += (uint32_t)(a * c);
                }
                const int32_t v = fn_requant((int32_t)acc, p[BM_MODE], p[BM_MULT], p[BM_SHIFT], 0.0);
                y[o] = fn_out_s8(v, p[BM_ZP_OUT], p[BM_MIN], p[BM_MAX]);
            }
        }
    }
    return FN_OK;
}
