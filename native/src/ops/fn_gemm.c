/* The ISA-agnostic GEMM operator: packing at plan creation, tiling and threads at run time. */
#include "fn_gemm.h"

#include <stdlib.h>

#include "fn_cpu.h"

int fn_gemm_prepare(fn_node *node, int32_t n, int32_t k, int32_t ks, const int8_t *w, const int32_t *bias,
                    const int32_t *mult, const int32_t *shift, int32_t zp_in, int32_t zp_out, size_t extra) {
    const fn_gemm_config *cfg = fn_gemm_config_for(fn_isa());
    if (ks < 1 || ks > FN_GEMM_MAX_KS || k % ks != 0 || (ks > 1 && (k / ks) % cfg->kr != 0)) return FN_E_NODE;
    const size_t kc = ks > 1 ? (size_t)(k / ks) : fn_round_up((size_t)k, (size_t)cfg->kr);
    const size_t blk = fn_gemm_block_bytes(cfg, kc * (size_t)ks);
    const size_t nblocks = fn_round_up((size_t)n, (size_t)cfg->nr) / (size_t)cfg->nr;
    const size_t head = fn_round_up(sizeof(fn_gemm_state), 64);
    void *mem = NULL;
    if (nblocks > (SIZE_MAX - extra) / blk - 1 || posix_memalign(&mem, 64, head + nblocks * blk + extra) != 0)
        return FN_E_NOMEM;
    fn_gemm_state *g = mem;
    g->cfg = cfg;
    g->n = n;
    g->k = k;
    g->ks = ks;
    g->kc = (int32_t)kc;
    g->blk_bytes = blk;
    g->packed = (uint8_t *)mem + head;
    g->extra = g->packed + nblocks * blk;
    fn_gemm_pack(cfg, n, k, w, bias, mult, shift, zp_in, zp_out, g->packed);
    node->state = g;
    return FN_OK;
}

typedef struct {
    const fn_gemm_state *g;
    fn_gemm_rows_fn rows;
    const void *rows_ctx;
    int8_t *c;
    const fn_qs8_out_params *op;
    size_t M, m_tiles, n_chunk;
    size_t group, m_groups; /* a task: `group` consecutive row tiles of one channel chunk */
} gemm_job;

static void gemm_task(void *ctx, size_t task, uint8_t *scratch) {
    const gemm_job *j = ctx;
    const fn_gemm_state *g = j->g;
    const size_t MR = (size_t)g->cfg->mr, NR = (size_t)g->cfg->nr;
    const size_t t0 = (task % j->m_groups) * j->group, n0 = (task / j->m_groups) * j->n_chunk;
    const size_t t1 = t0 + j->group < j->m_tiles ? t0 + j->group : j->m_tiles;
    const size_t nc = (size_t)g->n - n0 < j->n_chunk ? (size_t)g->n - n0 : j->n_chunk;
    for (size_t tile = t0; tile < t1; tile++) {
        const size_t m0 = tile * MR, mr = j->M - m0 < MR ? j->M - m0 : MR;
        const int8_t *a[FN_GEMM_MAX_KS * 16];
        j->rows(j->rows_ctx, m0, mr, MR, a, (int8_t *)scratch);
        g->cfg->ukernel(mr, nc, (size_t)g->kc, (size_t)g->ks, a, g->packed + n0 / NR * g->blk_bytes,
                        j->c + m0 * (size_t)g->n + n0, (size_t)g->n, j->op);
    }
}

/* Below this many multiply-adds a node runs on the calling thread: waking workers costs more. */
#define FN_GEMM_PARALLEL_MACS (1 << 18)
/* With threads, a task takes row tiles until it has about this many multiply-adds (each task
 * costs two atomics on the pool's shared ticket), keeping at least 16 tasks per thread. */
#define FN_GEMM_TASK_MACS (1 << 17)

int fn_gemm_run(const fn_node *node, size_t M, fn_gemm_rows_fn rows, const void *rows_ctx, int8_t *c,
                const fn_qs8_out_params *op, const volatile int32_t *cancel) {
    const fn_gemm_state *g = node->state;
    const fn_exec *ex = node->exec;
    const size_t MR = (size_t)g->cfg->mr, NR = (size_t)g->cfg->nr;
    const size_t m_tiles = (M + MR - 1) / MR, n_blocks = ((size_t)g->n + NR - 1) / NR;
    size_t n_chunks = 1;
    const size_t macs = M * (size_t)g->n * (size_t)g->kc * (size_t)g->ks;
    const int threads = macs >= FN_GEMM_PARALLEL_MACS ? ex->threads : 1;
    if (threads > 1 && m_tiles < 4 * (size_t)threads) {
        /* few rows (FULLY_CONNECTED, late layers): split the channels too */
        n_chunks = (4 * (size_t)threads + m_tiles - 1) / m_tiles;
        if (n_chunks > n_blocks) n_chunks = n_blocks;
    }
    const size_t blocks_per_chunk = (n_blocks + n_chunks - 1) / n_chunks;
    gemm_job j = {g, rows, rows_ctx, c, op, M, m_tiles, blocks_per_chunk * NR, 1, m_tiles};
    n_chunks = (n_blocks + blocks_per_chunk - 1) / blocks_per_chunk;
    if (threads == 1) {
        fn_exec one = *ex;
        one.pool = NULL;
        return fn_parallel(&one, m_tiles * n_chunks, gemm_task, &j, cancel);
    }
    const size_t tile_macs = MR * blocks_per_chunk * NR * (size_t)g->kc * (size_t)g->ks;
    size_t group = (FN_GEMM_TASK_MACS + tile_macs - 1) / tile_macs;
    const size_t most = m_tiles / (16 * (size_t)threads);
    if (group > most) group = most;
    if (group < 1) group = 1;
    j.group = group;
    j.m_groups = (m_tiles + group - 1) / group;
    return fn_parallel(ex, j.m_groups * n_chunks, gemm_task, &j, cancel);
}
