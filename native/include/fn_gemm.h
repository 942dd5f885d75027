/* The operator side of the int8 GEMM shared by CONV_2D and FULLY_CONNECTED: weights packed once
 * at plan creation for this process's microkernel, and the tiling of M (output rows) x N (output
 * channels) into tasks for the plan's threads. Each operator only says where row m of A is. */
#ifndef FN_GEMM_H
#define FN_GEMM_H

#include "fn_kernels.h"
#include "fn_ukernels.h"

typedef struct {
    const fn_gemm_config *cfg;
    int32_t n, k;   /* output channels; real depth per row */
    int32_t ks, kc; /* steps of the indirect A and bytes per step (a multiple of 4): ks * kc >= k */
    size_t blk_bytes;
    uint8_t *packed; /* 64-byte aligned, inside this allocation */
    uint8_t *extra;  /* the operator's own constant bytes (a zero-point row), after the packing */
} fn_gemm_state;

/* Allocates node->state with `extra` bytes for the operator and packs w[n][k] (row stride k) into
 * it, for ks steps of k / ks bytes (ks > 1 needs k / ks to be a multiple of 4). FN_OK or
 * FN_E_NOMEM. */
int fn_gemm_prepare(fn_node *node, int32_t n, int32_t k, int32_t ks, const int8_t *w, const int32_t *bias,
                    const int32_t *mult, const int32_t *shift, int32_t zp_in, int32_t zp_out, size_t extra);

/* Fills a[t * MR + i] (t < ks, i < mr) with the A pointers of rows m0.. (fn_ukernels.h); scratch
 * has MR * kc bytes for rows that must be copied. */
typedef void (*fn_gemm_rows_fn)(const void *ctx, size_t m0, size_t mr, size_t MR, const int8_t **a, int8_t *scratch);

/* C[m][n] (row stride n) for m < M: tiles of mr rows and whole blocks of channels, as tasks. */
int fn_gemm_run(const fn_node *node, size_t M, fn_gemm_rows_fn rows, const void *rows_ctx, int8_t *c,
                const fn_qs8_out_params *op, const volatile int32_t *cancel);

/* The most steps an indirect A may have (a kernel of 8x8 taps). */
#define FN_GEMM_MAX_KS 64

/* Scratch one thread needs: mr rows of kc bytes, when rows are copied (im2col, a K tail). */
static inline size_t fn_gemm_scratch(const fn_gemm_state *g) { return (size_t)g->cfg->mr * (size_t)g->kc; }

#endif
