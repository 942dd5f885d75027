/* A small pthread pool for one plan (no OpenMP, which a wheel would have to carry).
 *
 * fn_parallel publishes a job and hands out its task indices from one atomic ticket that holds
 * the job's generation (high 32 bits) and the next index (low 32): a worker claims a task only
 * by a compare-and-swap on the ticket of the generation it saw, so a worker that wakes late can
 * never take a task of another job. The calling thread works too and, when no task is left,
 * closes the job and waits only for the tasks that were claimed: a worker the scheduler has not
 * run yet costs nothing, and on a busy machine the caller simply does the whole job. Every task
 * writes its own outputs, so the bytes do not depend on who ran what. A set cancel flag stops the
 * hand-out: claimed tasks (one tile each) finish, the rest are skipped. Workers spin briefly for
 * the next job (nodes follow each other within microseconds), then sleep on a condition variable. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "fn_kernels.h"

#define SPIN_ROUNDS 4000
#define CLOSED 0xFFFFFFFFu

struct fn_pool {
    int32_t n_workers;
    pthread_t *tids;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    int32_t stop;
    /* the current job; written by the caller before it publishes the ticket */
    fn_task_fn fn;
    void *ctx;
    uint32_t n_tasks;
    const volatile int32_t *cancel;
    uint8_t *scratch;
    size_t scratch_stride;
    uint64_t ticket;   /* atomic: generation << 32 | next task index (CLOSED once closed) */
    uint32_t finished; /* atomic: tasks of the current job done */
};

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* Claims the next task of generation gen: its index, or -1 if that job has none left. */
static int64_t claim(struct fn_pool *p, uint32_t gen) {
    uint64_t v = __atomic_load_n(&p->ticket, __ATOMIC_ACQUIRE);
    for (;;) {
        const uint32_t idx = (uint32_t)v;
        if ((uint32_t)(v >> 32) != gen || idx == CLOSED || idx >= p->n_tasks) return -1;
        if (__atomic_compare_exchange_n(&p->ticket, &v, v + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return idx;
    }
}

static void work(struct fn_pool *p, uint32_t gen, uint8_t *scratch) {
    for (;;) {
        if (FN_CANCEL_REQUESTED(p->cancel)) return;
        const int64_t t = claim(p, gen);
        if (t < 0) return;
        p->fn(p->ctx, (size_t)t, scratch);
        __atomic_fetch_add(&p->finished, 1, __ATOMIC_RELEASE);
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
    uint32_t seen = 0;
    for (;;) {
        uint32_t gen = (uint32_t)(__atomic_load_n(&p->ticket, __ATOMIC_ACQUIRE) >> 32);
        for (int spin = 0; gen == seen && spin < SPIN_ROUNDS; spin++) {
            cpu_relax();
            gen = (uint32_t)(__atomic_load_n(&p->ticket, __ATOMIC_ACQUIRE) >> 32);
        }
        if (gen == seen) {
            pthread_mutex_lock(&p->mu);
            while ((gen = (uint32_t)(__atomic_load_n(&p->ticket, __ATOMIC_ACQUIRE) >> 32)) == seen && !p->stop)
                pthread_cond_wait(&p->wake, &p->mu);
            const int stop = p->stop;
            pthread_mutex_unlock(&p->mu);
            if (stop) return NULL;
        }
        seen = gen;
        work(p, gen, p->scratch + (size_t)(index + 1) * p->scratch_stride);
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
    p->ticket = CLOSED; /* generation 0, closed */
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
    if (p == NULL || n_tasks < 2 || n_tasks >= CLOSED) {
        for (size_t t = 0; t < n_tasks; t++) {
            if (FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
            fn(ctx, t, ex->scratch);
        }
        return FN_OK;
    }
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = (uint32_t)n_tasks;
    p->cancel = cancel;
    p->scratch = ex->scratch;
    p->scratch_stride = ex->scratch_stride;
    __atomic_store_n(&p->finished, 0, __ATOMIC_RELAXED);
    const uint32_t gen = (uint32_t)(__atomic_load_n(&p->ticket, __ATOMIC_RELAXED) >> 32) + 1;
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->ticket, (uint64_t)gen << 32, __ATOMIC_RELEASE); /* publishes the job */
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    work(p, gen, ex->scratch);
    /* close the job; the index it had counts the tasks that were claimed */
    const uint64_t last = __atomic_exchange_n(&p->ticket, ((uint64_t)gen << 32) | CLOSED, __ATOMIC_ACQ_REL);
    const uint32_t claimed = (uint32_t)last < n_tasks ? (uint32_t)last : (uint32_t)n_tasks;
    for (int spin = 0; __atomic_load_n(&p->finished, __ATOMIC_ACQUIRE) < claimed; spin++) {
        if (spin < SPIN_ROUNDS) cpu_relax();
        else sched_yield();
    }
    return claimed < n_tasks ? FN_CANCELLED : FN_OK;
}
