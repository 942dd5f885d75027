/* A small pthread pool for one plan (no OpenMP, which a wheel would have to carry).
 *
 * fn_parallel splits a job's task indices into one contiguous range per thread (the caller is
 * thread 0): each thread takes tasks from the front of its own range, then from the others'. So,
 * on a quiet machine, thread t runs the same part of every node (the same rows of the image), and
 * a node reads rows the previous node wrote from the same core's cache. Each range is one atomic
 * ticket holding the job's generation (high 32 bits) and the range's next index (low 32): a task
 * is claimed only by a compare-and-swap on a ticket of the generation the thread saw, so a worker
 * that wakes late can never take a task of another job. The caller, once it finds no task left,
 * closes every range and waits only for the tasks that were claimed: a worker the scheduler has
 * not run yet costs nothing, and on a busy machine the caller simply does the whole job. Every
 * task writes its own outputs, so the bytes do not depend on who ran what. A set cancel flag
 * stops the hand-out: claimed tasks (one tile each) finish, the rest are skipped. Workers spin
 * briefly for the next job (nodes follow each other within microseconds), then sleep on a
 * condition variable. */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "fn_kernels.h"

#define SPIN_ROUNDS 4000
#define CLOSED 0xFFFFFFFFu

typedef struct {
    uint64_t ticket; /* atomic: generation << 32 | next task index (CLOSED once closed) */
    uint32_t end;    /* atomic: one past the range's last task */
    char pad[64 - sizeof(uint64_t) - sizeof(uint32_t)];
} fn_range;

struct fn_pool {
    int32_t n_workers;
    pthread_t *tids;
    fn_range *ranges; /* n_workers + 1, one cache line each */
    pthread_mutex_t mu;
    pthread_cond_t wake;
    int32_t stop;
    /* the current job; written by the caller before it publishes the generation */
    fn_task_fn fn;
    void *ctx;
    const volatile int32_t *cancel;
    uint8_t *scratch;
    size_t scratch_stride;
    uint32_t gen;      /* atomic: the current job's generation */
    uint32_t finished; /* atomic: tasks of the current job done */
};

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* Claims the next task of generation gen in range r: its index, or -1 if it has none left. */
static int64_t claim(fn_range *r, uint32_t gen) {
    uint64_t v = __atomic_load_n(&r->ticket, __ATOMIC_ACQUIRE);
    for (;;) {
        const uint32_t idx = (uint32_t)v;
        if ((uint32_t)(v >> 32) != gen || idx == CLOSED || idx >= __atomic_load_n(&r->end, __ATOMIC_RELAXED)) return -1;
        if (__atomic_compare_exchange_n(&r->ticket, &v, v + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) return idx;
    }
}

/* Thread `self` runs tasks of generation gen: its own range first, then the others' in turn. */
static void work(struct fn_pool *p, uint32_t gen, int32_t self, uint8_t *scratch) {
    const int32_t n = p->n_workers + 1;
    for (int32_t k = 0; k < n; k++) {
        fn_range *r = &p->ranges[(self + k) % n];
        for (;;) {
            if (FN_CANCEL_REQUESTED(p->cancel)) return;
            const int64_t t = claim(r, gen);
            if (t < 0) break;
            p->fn(p->ctx, (size_t)t, scratch);
            __atomic_fetch_add(&p->finished, 1, __ATOMIC_RELEASE);
        }
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
        uint32_t gen = __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE);
        for (int spin = 0; gen == seen && spin < SPIN_ROUNDS; spin++) {
            cpu_relax();
            gen = __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE);
        }
        if (gen == seen) {
            pthread_mutex_lock(&p->mu);
            while ((gen = __atomic_load_n(&p->gen, __ATOMIC_ACQUIRE)) == seen && !p->stop)
                pthread_cond_wait(&p->wake, &p->mu);
            const int stop = p->stop;
            pthread_mutex_unlock(&p->mu);
            if (stop) return NULL;
        }
        seen = gen;
        work(p, gen, index + 1, p->scratch + (size_t)(index + 1) * p->scratch_stride);
    }
}

struct fn_pool *fn_pool_create(int32_t n_workers) {
    struct fn_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->tids = calloc((size_t)n_workers + 1, sizeof(pthread_t));
    void *ranges = NULL;
    if (posix_memalign(&ranges, 64, ((size_t)n_workers + 1) * sizeof(fn_range)) != 0) ranges = NULL;
    p->ranges = ranges;
    if (!p->tids || !p->ranges || pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p->tids);
        free(p->ranges);
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->wake, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p->tids);
        free(p->ranges);
        free(p);
        return NULL;
    }
    for (int32_t i = 0; i <= n_workers; i++) p->ranges[i] = (fn_range){CLOSED, 0, {0}}; /* generation 0, closed */
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
    free(p->ranges);
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
    p->cancel = cancel;
    p->scratch = ex->scratch;
    p->scratch_stride = ex->scratch_stride;
    __atomic_store_n(&p->finished, 0, __ATOMIC_RELAXED);
    const uint32_t gen = __atomic_load_n(&p->gen, __ATOMIC_RELAXED) + 1;
    const uint32_t n = (uint32_t)p->n_workers + 1;
    for (uint32_t k = 0; k < n; k++) {
        fn_range *r = &p->ranges[k];
        __atomic_store_n(&r->end, (uint32_t)(n_tasks * (k + 1) / n), __ATOMIC_RELAXED);
        __atomic_store_n(&r->ticket, (uint64_t)gen << 32 | (uint32_t)(n_tasks * k / n), __ATOMIC_RELEASE);
    }
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->gen, gen, __ATOMIC_RELEASE); /* publishes the job */
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    work(p, gen, 0, ex->scratch);
    /* close the job; the index each range had counts the tasks claimed from it */
    uint32_t claimed = 0;
    for (uint32_t k = 0; k < n; k++) {
        fn_range *r = &p->ranges[k];
        const uint32_t first = (uint32_t)(n_tasks * k / n);
        const uint64_t last = __atomic_exchange_n(&r->ticket, ((uint64_t)gen << 32) | CLOSED, __ATOMIC_ACQ_REL);
        const uint32_t next = (uint32_t)last < r->end ? (uint32_t)last : r->end;
        claimed += next - first;
    }
    for (int spin = 0; __atomic_load_n(&p->finished, __ATOMIC_ACQUIRE) < claimed; spin++) {
        if (spin < SPIN_ROUNDS) cpu_relax();
        else sched_yield();
    }
    return claimed < n_tasks ? FN_CANCELLED : FN_OK;
}
