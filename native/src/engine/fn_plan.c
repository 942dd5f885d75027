/* The plan executor: validates the tensor and node tables, binds kernels once, runs nodes. */
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "fn_cpu.h"
#include "fn_kernels.h"
#include "fn_ukernels.h"

struct fn_plan {
    fn_tensor *tensors;
    uint8_t *consts; /* the plan's own copy of the constants its kernels read (own_consts) */
    int32_t n_tensors;
    fn_node *nodes;
    int32_t n_nodes;
    int32_t isa;
    size_t scratch_need; /* the most scratch one thread needs for any node */
    fn_exec exec;
};

static int alloc_exec(fn_exec *ex, int32_t threads, size_t need) {
    const size_t stride = fn_round_up(need > 0 ? need : 1, 64);
    void *scratch = NULL;
    if (posix_memalign(&scratch, 64, stride * (size_t)threads + 64) != 0) return FN_E_NOMEM;
    struct fn_pool *pool = NULL;
    if (threads > 1 && (pool = fn_pool_create(threads - 1)) == NULL) {
        free(scratch);
        return FN_E_NOMEM;
    }
    fn_pool_free(ex->pool);
    free(ex->scratch);
    ex->threads = threads;
    ex->pool = pool;
    ex->scratch = scratch;
    ex->scratch_stride = stride;
    return FN_OK;
}

static int load_tensor(const int64_t *row, fn_tensor *t, uint8_t *arena, int64_t arena_len,
                       const uint8_t *consts, int64_t consts_len) {
    memset(t, 0, sizeof *t);
    int64_t type = row[0], ndim = row[1], region = row[8], off = row[9], nbytes = row[10];
    if (type < 0 || type > FN_F64 || fn_dtype_size((int32_t)type) == 0) return FN_E_TENSOR;
    if (ndim < 0 || ndim > FN_MAX_DIMS) return FN_E_TENSOR;
    int64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        int64_t d = row[2 + i];
        if (d < 0 || d > INT32_MAX) return FN_E_TENSOR;
        if (d != 0 && count > INT64_MAX / 16 / d) return FN_E_TENSOR;
        count *= d;
        t->dims[i] = (int32_t)d;
    }
    if (count * fn_dtype_size((int32_t)type) != nbytes) return FN_E_TENSOR;
    if (off < 0 || nbytes < 0) return FN_E_TENSOR;
    const int64_t limit = region == FN_REGION_ARENA ? arena_len : (region == FN_REGION_CONST ? consts_len : -1);
    if (limit < 0 || off > limit || nbytes > limit - off) return FN_E_TENSOR;
    if (off % fn_dtype_size((int32_t)type) != 0) return FN_E_TENSOR;  /* keep typed loads aligned */
    t->type = (int32_t)type;
    t->region = (int32_t)region;
    t->ndim = (int32_t)ndim;
    t->count = count;
    t->nbytes = nbytes;
    if (nbytes > 0) {
        /* const data is never written by kernels; the cast only lets one struct serve both */
        t->data = region == FN_REGION_ARENA ? arena + off : (uint8_t *)(uintptr_t)(consts + off);
    }
    return FN_OK;
}

/* Byte ranges of two tensors share a byte (empty tensors share none). */
static int overlap(const fn_tensor *a, const fn_tensor *b) {
    if (a->nbytes == 0 || b->nbytes == 0) return 0;
    return a->data < b->data + b->nbytes && b->data < a->data + a->nbytes;
}

/* What every node's outputs must satisfy whatever its kernel: they lie in the arena (a kernel
 * never writes the constants, nor parameters checked once here), and no output shares a byte
 * with another output or with an input, except a copy onto itself (an in-place RESHAPE). So
 * no kernel reads what it has already overwritten and no memcpy sees overlapping ranges. */
static int outputs_ok(const fn_node *n, const fn_tensor *t, int32_t nt) {
    for (int j = 0; j < n->n_out; j++) {
        if (!fn_tensor_ok(t, nt, n->out[j], -1)) return 0;
        const fn_tensor *o = &t[n->out[j]];
        if (o->nbytes > 0 && o->region != FN_REGION_ARENA) return 0;
        for (int k = 0; k < j; k++)
            if (overlap(o, &t[n->out[k]])) return 0;
        for (int k = 0; k < n->n_in; k++) {
            if (n->in[k] < 0 || n->in[k] >= nt) continue; /* optional inputs; the kernel checks the rest */
            const fn_tensor *x = &t[n->in[k]];
            const int same = x->data == o->data && x->nbytes == o->nbytes;
            if (overlap(o, x) && !(same && n->op == FN_OP_COPY)) return 0;
        }
    }
    return 1;
}

/* Copies the constants the kernels still read into one block the plan owns, each at a 64-byte
 * boundary, and points their tensors there. A constant is left out (its data pointer NULL) when
 * every input slot that names it was consumed by a prepare, and no node parameter has its index
 * as value: parameters name tables and multipliers by tensor index, and any parameter that could
 * be such a reference keeps the constant. */
static int own_consts(fn_plan *plan) {
    const int32_t nt = plan->n_tensors;
    uint8_t *keep = calloc((size_t)nt + 1, 1);
    if (!keep) return FN_E_NOMEM;
    enum { UNSEEN = 0, CONSUMED = 1, READ = 2 };
    for (int32_t i = 0; i < plan->n_nodes; i++) {
        const fn_node *n = &plan->nodes[i];
        for (int j = 0; j < n->n_in; j++) {
            const int32_t ti = n->in[j];
            if (ti < 0 || ti >= nt) continue;
            if (!(n->consumed & (1u << j))) keep[ti] = READ;
            else if (keep[ti] == UNSEEN) keep[ti] = CONSUMED;
        }
        for (int j = 0; j < FN_NODE_PARAMS; j++)
            if (n->p[j] >= 0 && n->p[j] < nt) keep[n->p[j]] = READ;
    }
    size_t total = 0;
    for (int32_t i = 0; i < nt; i++) {
        const fn_tensor *t = &plan->tensors[i];
        if (t->region == FN_REGION_CONST && t->nbytes > 0 && keep[i] != CONSUMED) total += fn_round_up((size_t)t->nbytes, 64);
    }
    if (total > 0 && posix_memalign((void **)&plan->consts, 64, total) != 0) {
        free(keep);
        return FN_E_NOMEM;
    }
    size_t off = 0;
    for (int32_t i = 0; i < nt; i++) {
        fn_tensor *t = &plan->tensors[i];
        if (t->region != FN_REGION_CONST || t->nbytes == 0) continue;
        if (keep[i] == CONSUMED) {
            t->data = NULL;
            continue;
        }
        memcpy(plan->consts + off, t->data, (size_t)t->nbytes);
        t->data = plan->consts + off;
        off += fn_round_up((size_t)t->nbytes, 64);
    }
    free(keep);
    return FN_OK;
}

fn_plan *fn_plan_create(const int64_t *tensor_rows, int32_t n_tensors, const int32_t *node_rows,
                        int32_t n_nodes, uint8_t *arena, int64_t arena_len, const uint8_t *consts,
                        int64_t consts_len, int32_t *err_node, int32_t *err) {
    *err_node = -1;
    *err = FN_OK;
    if (n_tensors < 0 || n_nodes < 0 || arena_len < 0 || consts_len < 0) {
        *err = FN_E_TENSOR;
        return NULL;
    }
    fn_plan *plan = calloc(1, sizeof *plan);
    if (!plan) { *err = FN_E_NOMEM; return NULL; }
    plan->tensors = calloc((size_t)n_tensors + 1, sizeof(fn_tensor));
    plan->nodes = calloc((size_t)n_nodes + 1, sizeof(fn_node));
    if (!plan->tensors || !plan->nodes) { *err = FN_E_NOMEM; fn_plan_free(plan); return NULL; }
    plan->n_tensors = n_tensors;
    plan->n_nodes = n_nodes;
    plan->isa = fn_isa();
    for (int32_t i = 0; i < n_tensors; i++) {
        int rc = load_tensor(tensor_rows + (int64_t)i * FN_TENSOR_COLS, &plan->tensors[i], arena,
                             arena_len, consts, consts_len);
        if (rc != FN_OK) { *err = rc; *err_node = i; fn_plan_free(plan); return NULL; }
    }
    for (int32_t i = 0; i < n_nodes; i++) {
        const int32_t *row = node_rows + (int64_t)i * FN_NODE_COLS;
        fn_node *n = &plan->nodes[i];
        n->op = row[0];
        n->n_in = row[1];
        n->n_out = row[2];
        memcpy(n->in, row + 3, sizeof n->in);
        memcpy(n->out, row + 3 + FN_MAX_IN, sizeof n->out);
        memcpy(n->p, row + 3 + FN_MAX_IN + FN_MAX_OUT, sizeof n->p);
        const fn_kernel *k = fn_kernel_for(n->op);
        int rc = FN_OK;
        if (!k) rc = FN_E_OP;
        else if (n->n_in < 0 || n->n_in > FN_MAX_IN || n->n_out < 1 || n->n_out > FN_MAX_OUT) rc = FN_E_NODE;
        else {
            for (int j = n->n_in; j < FN_MAX_IN; j++) n->in[j] = -1;
            for (int j = n->n_out; j < FN_MAX_OUT; j++) n->out[j] = -1;
            if (!outputs_ok(n, plan->tensors, n_tensors)) rc = FN_E_NODE;
            if (rc == FN_OK && k->check(n, plan->tensors, n_tensors) != 0) rc = FN_E_NODE;
            size_t need = 0;
            if (rc == FN_OK && k->prepare) rc = k->prepare(n, plan->tensors, n_tensors, &need);
            if (need > plan->scratch_need) plan->scratch_need = need;
        }
        if (rc != FN_OK) { *err = rc; *err_node = i; fn_plan_free(plan); return NULL; }
        n->run = k->run;
        n->exec = &plan->exec;
    }
    if (own_consts(plan) != FN_OK || alloc_exec(&plan->exec, 1, plan->scratch_need) != FN_OK) {
        *err = FN_E_NOMEM;
        fn_plan_free(plan);
        return NULL;
    }
    return plan;
}

int fn_plan_set_threads(fn_plan *plan, int32_t threads) {
    if (threads < 1 || threads > FN_MAX_THREADS) return FN_E_NODE;
    if (threads == plan->exec.threads) return FN_OK;
    return alloc_exec(&plan->exec, threads, plan->scratch_need);
}

int32_t fn_plan_node_count(const fn_plan *plan) { return plan->n_nodes; }

int fn_plan_isa(const fn_plan *plan) { return plan->isa; }

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int fn_plan_run_profile(fn_plan *plan, const volatile int32_t *cancel, int32_t *err_node, int64_t *ns) {
    *err_node = -1;
    for (int32_t i = 0; i < plan->n_nodes; i++) ns[i] = 0;
    for (int32_t i = 0; i < plan->n_nodes; i++) {
        if (FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
        const int64_t t0 = now_ns();
        int rc = plan->nodes[i].run(&plan->nodes[i], plan->tensors, cancel);
        ns[i] = now_ns() - t0;
        if (rc != FN_OK) { *err_node = i; return rc; }
    }
    return FN_OK;
}

int fn_plan_run(fn_plan *plan, const volatile int32_t *cancel, int32_t *err_node) {
    *err_node = -1;
    for (int32_t i = 0; i < plan->n_nodes; i++) {
        if (FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
        int rc = plan->nodes[i].run(&plan->nodes[i], plan->tensors, cancel);
        if (rc != FN_OK) { *err_node = i; return rc; }
    }
    return FN_OK;
}

void fn_plan_free(fn_plan *plan) {
    if (!plan) return;
    if (plan->nodes)
        for (int32_t i = 0; i < plan->n_nodes; i++) free(plan->nodes[i].state);
    fn_pool_free(plan->exec.pool);
    free(plan->exec.scratch);
    free(plan->consts);
    free(plan->tensors);
    free(plan->nodes);
    free(plan);
}
