/* A small pthread pool for one plan (no OpenMP, which a wheel would have to carry).
 *
 * fn_parallel hands out task indices from an atomic counter to the calling thread and the
 * workers; every task writes its own outputs, so the bytes do not depend on who ran what. A
 * worker spins briefly for the next job (nodes follow each other within microseconds), then
 * sleeps on a condition variable. A set cancel flag stops the hand-out: running tasks finish
 * (each is one tile), the rest are skipped. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "fn_kernels.h"

#define SPIN_ROUNDS 20000

struct fn_pool {
    int32_t n_workers;
    pthread_t *tids;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    /* the current job */
    fn_task_fn fn;
    void *ctx;
    size_t n_tasks;
    const volatile int32_t *cancel;
    uint8_t *scratch;
    size_t scratch_stride;
    size_t next;        /* atomic: next task index */
    int32_t busy;       /* atomic: workers still on the current job */
    uint64_t gen;       /* atomic: job generation */
    int32_t stop;
    int32_t cancelled;  /* atomic */
};

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static void work(struct fn_pool *p, uint8_t *scratch) {
    for (;;) {
        if (FN_CANCEL_REQUESTED(p->cancel)) {
            __atomic_store_n(&p->cancelled, 1, __ATOMIC_RELAXED);
            return;
        }
        const size_t t = __atomic_fetch_add(&p->next, 1, __ATOMIC_ACQ_REL);
        if (t >= p->n_tasks) return;
        p->fn(p->ctx, t, scratch);
    }
}

typedef struct {
    struct fn_pool *pool;
    int32_t index;
} worker_arg;

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    struct fn_pool *p = wa->pool;
    const int32_t index = wa->index;
    free(wa);
    uint64_t seen = 0;
    for (;;) {
        uint64_t g = __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE);
        for (int spin = 0; g == seen && spin < SPIN_ROUNDS; spin++) {
            cpu_relax();
            g = __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE)) == seen && !p->stop)
                pthread_cond_wait(&p->wake, &p->mu);
            const int stop = p->stop;
            pthread_mutex_unlock(&p->mu);
            if (stop) return NULL;
        }
        seen = g;
        work(p, p->scratch + (size_t)(index + 1) * p->scratch_stride);
        __atomic_fetch_sub(&p->busy, 1, __ATOMIC_ACQ_REL);
    }
}

struct fn_pool *fn_pool_create(int32_t n_workers) {
    struct fn_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->tids = calloc((size_t)n_workers + 1, sizeof(pthread_t));
    if (!p->tids || pthread_mutex_init(&p->mu, NULL) != 0) { free(p->tids); free(p); return NULL; }
    if (pthread_cond_init(&p->wake, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p->tids);
        free(p);
        return NULL;
    }
    for (int32_t i = 0; i < n_workers; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (wa) { wa->pool = p; wa->index = i; }
        if (!wa || pthread_create(&p->tids[i], NULL, worker_main, wa) != 0) {
            free(wa);
            fn_pool_free(p);
            return NULL;
        }
        p->n_workers = i + 1;
    }
    return p;
}

void fn_pool_free(struct fn_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int32_t i = 0; i < p->n_workers; i++) pthread_join(p->tids[i], NULL);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    free(p->tids);
    free(p);
}

int fn_parallel(const fn_exec *ex, size_t n_tasks, fn_task_fn fn, void *ctx, const volatile int32_t *cancel) {
    struct fn_pool *p = ex->pool;
    if (p == NULL || n_tasks < 2) {
        for (size_t t = 0; t < n_tasks; t++) {
            if (FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
            fn(ctx, t, ex->scratch);
        }
        return FN_OK;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    p->cancel = cancel;
    p->scratch = ex->scratch;
    p->scratch_stride = ex->scratch_stride;
    __atomic_store_n(&p->next, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&p->cancelled, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&p->busy, p->n_workers, __ATOMIC_RELAXED);
    pthread_mutex_lock(&p->mu);
    __atomic_fetch_add(&p->gen, 1, __ATOMIC_ACQ_REL);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    work(p, ex->scratch);
    for (int spin = 0; __atomic_load_n(&p->busy, __ATOMIC_ACQUIRE) > 0; spin++) {
        if (spin < SPIN_ROUNDS) cpu_relax();
        else sched_yield();
    }
    return __atomic_load_n(&p->cancelled, __ATOMIC_RELAXED) ? FN_CANCELLED : FN_OK;
}
