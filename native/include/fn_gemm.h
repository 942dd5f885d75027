/* The operator side of the int8 GEMM shared by CONV_2D and FULLY_CONNECTED: weights packed once
 * at plan creation for this process's microkernel, and the tiling of M (output rows) x N (output
 * channels) into tasks for the plan's threads. Each operator only says where row m of A is. */
#ifndef FN_GEMM_H
#define FN_GEMM_H

#include "fn_kernels.h"
#include "fn_ukernels.h"

typedef struct {
    const fn_gemm_config *cfg;
    int32_t n, k, kc;
    size_t blk_bytes;
    uint8_t *packed; /* 64-byte aligned, inside this allocation */
} fn_gemm_state;

/* Allocates node->state and packs w[n][k] (row stride k) into it. FN_OK or FN_E_NOMEM. */
int fn_gemm_prepare(fn_node *node, int32_t n, int32_t k, const int8_t *w, const int32_t *bias,
                    const int32_t *mult, const int32_t *shift, int32_t zp_in);

/* Fills a[0..mr) with rows m0.. of A, kc readable bytes each; scratch has mr * kc bytes. */
typedef void (*fn_gemm_rows_fn)(const void *ctx, size_t m0, size_t mr, const int8_t **a, int8_t *scratch);

/* C[m][n] (row stride n) for m < M: tiles of mr rows and whole blocks of channels, as tasks. */
int fn_gemm_run(const fn_node *node, size_t M, fn_gemm_rows_fn rows, const void *rows_ctx, int8_t *c,
                const fn_qs8_out_params *op, const volatile int32_t *cancel);

/* Scratch one thread needs: mr rows of kc bytes, when rows are copied (im2col, a K tail). */
static inline size_t fn_gemm_scratch(const fn_gemm_state *g) { return (size_t)g->cfg->mr * (size_t)g->kc; }

#endif
