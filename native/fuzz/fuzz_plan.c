/* Plan fuzzer: mutated plan tables and hostile inputs through fn_plan_create and fn_plan_run.
 *
 *   fuzz_plan --iterations N [--seed S] [--start I] SEED.plan...
 *
 * Built with AddressSanitizer and UndefinedBehaviorSanitizer (native/Makefile, `make fuzz`). The
 * seeds are real plans (the zoo's, written by tests/inference/aarch64_vectors.py). Each iteration
 * takes one seed and changes 1-4 things the C side must not trust: a tensor row field (type,
 * rank, dims, region, offset, size), a node field (op kind, counts, tensor ids, parameters,
 * including the ids of constant parameter tensors), constant bytes (weights, biases, tables,
 * per-channel multipliers and shifts), the lengths of the arena and of the constant blob, or the
 * input bytes (any bit pattern, NaN and infinities included for float inputs). Arena and
 * constants are allocated at exactly their stated lengths, so one byte read or written outside
 * them is an AddressSanitizer report. A plan that fn_plan_create accepts is run.
 *
 * The property: fn_plan_create refuses with a status or returns a plan whose run returns
 * FN_OK or a negative status within RUN_LIMIT_S seconds; no sanitizer report, no crash. A run
 * past the limit is cancelled through the plan's cancel flag (and the fuzzer exits if the kernel
 * never polls it); it counts as a failure. Deterministic for a given seed; `--start I
 * --iterations 1` replays iteration I.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "fn_engine.h"
#include "fn_vector_file.h"

#define RUN_LIMIT_S 10 /* the seeds run in milliseconds, even under the sanitizers */

/* Set by the alarm handler: the kernels poll it, so an endless run stops as a cancelled one. */
static volatile int32_t cancel_flag;
static volatile sig_atomic_t alarms;
static volatile int64_t current_iteration;

static void on_alarm(int sig) {
    (void)sig;
    if (alarms++ > 0) { /* the second alarm: the kernel does not poll the flag */
        /* async-signal-safe: the iteration number formatted by hand, written with write(2) */
        char msg[96] = "iteration ";
        char digits[24];
        int n = 0, len = 10;
        uint64_t v = (uint64_t)current_iteration;
        do { digits[n++] = (char)('0' + v % 10); v /= 10; } while (v && n < 20);
        while (n) msg[len++] = digits[--n];
        static const char tail[] = ": a kernel ignored the cancel flag for a whole time limit\n";
        memcpy(msg + len, tail, sizeof tail - 1);
        (void)write(2, msg, (size_t)len + sizeof tail - 1);
        _exit(3);
    }
    cancel_flag = 1;
    alarm(RUN_LIMIT_S);
}

/* xorshift64*: a small deterministic generator, so an iteration can be replayed by number. */
static uint64_t rng_state;
static uint64_t next_u64(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}
static uint32_t below(uint32_t n) { return n ? (uint32_t)(next_u64() % n) : 0; }

static const int64_t INTERESTING[] = {0, 1, -1, 2, 3, 4, 6, 7, 8, 31, 32, 63, 64, 127, 128, 255, 256, -128, -129,
                                      65535, 65536, INT32_MAX, INT32_MIN, (int64_t)INT32_MAX + 1, INT64_MAX,
                                      INT64_MIN, (int64_t)1 << 40};
#define N_INTERESTING ((uint32_t)(sizeof INTERESTING / sizeof INTERESTING[0]))

static int64_t mutate_value(int64_t old, int64_t near) {
    switch (below(5)) {
    case 0: return INTERESTING[below(N_INTERESTING)];
    /* wrapping steps (via uint64, GCC's conversion back wraps): old may be INT64_MAX */
    case 1: return (int64_t)((uint64_t)old + below(17) - 8u);
    case 2: return (int64_t)((uint64_t)near + below(9) - 4u); /* around a length the plan knows */
    case 3: return old ^ ((int64_t)1 << below(63));
    default: return (int64_t)next_u64();
    }
}

static int32_t to_i32(int64_t v) { return (int32_t)(uint32_t)(uint64_t)v; }

typedef struct {
    int64_t iterations, created, refused, ran_ok, ran_failed, by_status[8], hung, first_hung;
} tally;

static void fuzz_one(const fn_vec_plan *seed, const uint8_t *seed_inputs, size_t inputs_len, tally *t) {
    const size_t rows_n = (size_t)seed->n_tensors * FN_TENSOR_COLS, nodes_n = (size_t)seed->n_nodes * FN_NODE_COLS;
    int64_t *rows = malloc(rows_n * sizeof *rows + 1);
    int32_t *nodes = malloc(nodes_n * sizeof *nodes + 1);
    int64_t arena_len = seed->arena_len, consts_len = seed->consts_len;
    const int n_mut = 1 + (int)below(4);
    int input_mut = 0;
    if (!rows || !nodes) { fprintf(stderr, "out of memory\n"); exit(2); }
    memcpy(rows, seed->rows, rows_n * sizeof *rows);
    memcpy(nodes, seed->nodes, nodes_n * sizeof *nodes);
    /* Lengths first: the buffers are then allocated at exactly the stated size. */
    int32_t consts_edits[4][2];
    int n_consts_edits = 0;
    for (int m = 0; m < n_mut; m++) {
        switch (below(10)) {
        case 0: case 1: case 2: /* a tensor row field */
            if (rows_n) {
                size_t i = below((uint32_t)rows_n);
                int64_t near = (i % FN_TENSOR_COLS) == 9 || (i % FN_TENSOR_COLS) == 10 ? seed->arena_len : 0;
                rows[i] = mutate_value(rows[i], near);
            }
            break;
        case 3: case 4: case 5: /* a node field: op, counts, tensor ids, parameters */
            if (nodes_n) {
                size_t i = below((uint32_t)nodes_n);
                nodes[i] = to_i32(mutate_value(nodes[i], below(2) ? seed->n_tensors : 0));
            }
            break;
        case 6: /* constant bytes */
            if (consts_len > 0 && n_consts_edits < 4) {
                consts_edits[n_consts_edits][0] = (int32_t)below((uint32_t)consts_len);
                consts_edits[n_consts_edits][1] = (int32_t)below(256);
                n_consts_edits++;
            }
            break;
        case 7: /* region lengths shorter than the tables say */
            if (below(2)) arena_len = arena_len > 0 ? (int64_t)below((uint32_t)arena_len) : 0;
            else consts_len = consts_len > 0 ? (int64_t)below((uint32_t)consts_len) : 0;
            break;
        default: /* hostile input bytes */
            input_mut = 1;
            break;
        }
    }
    uint8_t *arena = malloc((size_t)arena_len + (arena_len == 0));
    uint8_t *consts = malloc((size_t)consts_len + (consts_len == 0));
    if (!arena || !consts) { fprintf(stderr, "out of memory\n"); exit(2); }
    memcpy(consts, seed->consts, (size_t)consts_len);
    for (int e = 0; e < n_consts_edits; e++)
        if (consts_edits[e][0] < consts_len) consts[consts_edits[e][0]] = (uint8_t)consts_edits[e][1];
    /* Arena starts as garbage: a kernel must not depend on bytes it did not write. */
    for (int64_t i = 0; i < arena_len; i++) arena[i] = (uint8_t)next_u64();
    int32_t err_node = -1, err = 0;
    fn_plan *plan = fn_plan_create(rows, seed->n_tensors, nodes, seed->n_nodes, arena, arena_len, consts,
                                   consts_len, &err_node, &err);
    t->iterations++;
    if (!plan) {
        t->refused++;
        t->by_status[(-err) & 7]++;
    } else {
        t->created++;
        /* Inputs go where the seed's graph inputs live, in the arena only: the constants are
         * immutable while a plan lives (fn_plan_create checked their values), and the binding
         * writes inputs into the arena alone, so a mutated row naming a constant gets none. */
        size_t used = 0;
        for (int32_t k = 0; k < seed->n_in; k++) {
            int64_t nb = 0;
            uint8_t *dst = fn_vec_tensor(rows, seed->n_tensors, seed->ids[k], arena, arena_len, consts, 0, &nb);
            if (!dst || (size_t)nb > inputs_len - used) break;
            if (input_mut) {
                for (int64_t i = 0; i < nb; i++) dst[i] = (uint8_t)next_u64();
            } else {
                memcpy(dst, seed_inputs + used, (size_t)nb);
            }
            used += (size_t)nb;
        }
        cancel_flag = 0;
        alarms = 0;
        alarm(RUN_LIMIT_S);
        int rc = fn_plan_run(plan, &cancel_flag, &err_node);
        alarm(0);
        if (rc == FN_OK) t->ran_ok++;
        else if (rc < 0) t->ran_failed++;
        else if (rc == FN_CANCELLED && cancel_flag) {
            if (t->hung++ == 0) t->first_hung = current_iteration;
            fprintf(stderr, "iteration %lld: run still going after %d s (node %d)\n", (long long)current_iteration,
                    RUN_LIMIT_S, err_node);
        } else { fprintf(stderr, "run returned %d without a cancel\n", rc); exit(1); }
        fn_plan_free(plan);
    }
    free(arena);
    free(consts);
    free(rows);
    free(nodes);
}

int main(int argc, char **argv) {
    int64_t iterations = 10000, start = 0;
    uint64_t seed = 1;
    int first_file = 1;
    while (first_file < argc && argv[first_file][0] == '-') {
        if (first_file + 1 >= argc) break;
        if (strcmp(argv[first_file], "--iterations") == 0) iterations = atoll(argv[first_file + 1]);
        else if (strcmp(argv[first_file], "--seed") == 0) seed = (uint64_t)atoll(argv[first_file + 1]);
        else if (strcmp(argv[first_file], "--start") == 0) start = atoll(argv[first_file + 1]);
        else break;
        first_file += 2;
    }
    const int n_seeds = argc - first_file;
    if (n_seeds < 1 || iterations < 0 || start < 0) {
        fprintf(stderr, "usage: %s --iterations N [--seed S] [--start I] SEED.plan...\n", argv[0]);
        return 2;
    }
    fn_vec_plan *seeds = calloc((size_t)n_seeds, sizeof *seeds);
    uint8_t **files = calloc((size_t)n_seeds, sizeof *files);
    const uint8_t **inputs = calloc((size_t)n_seeds, sizeof *inputs);
    size_t *inputs_len = calloc((size_t)n_seeds, sizeof *inputs_len);
    if (!seeds || !files || !inputs || !inputs_len) return 2;
    for (int s = 0; s < n_seeds; s++) {
        size_t len = 0;
        files[s] = fn_read_file(argv[first_file + s], &len);
        fn_reader r = {files[s], len, 8};
        if (!files[s] || len < 8 || memcmp(files[s], "FNPLAN01", 8) != 0 ||
            fn_vec_plan_read(&r, &seeds[s], argv[first_file + s]) != 0) {
            fprintf(stderr, "%s: not a plan file\n", argv[first_file + s]);
            return 2;
        }
        inputs[s] = files[s] + r.pos; /* the first case's inputs */
        inputs_len[s] = len - r.pos;
    }
    tally t;
    memset(&t, 0, sizeof t);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    for (int64_t i = start; i < start + iterations; i++) {
        /* Each iteration's generator depends only on (seed, i): a failing one is replayable. */
        rng_state = (seed * 0x9E3779B97F4A7C15ULL) ^ ((uint64_t)i + 1) * 0xD1B54A32D192ED03ULL;
        if (rng_state == 0) rng_state = 1;
        for (int w = 0; w < 4; w++) next_u64();
        const int s = (int)below((uint32_t)n_seeds);
        current_iteration = i;
        fuzz_one(&seeds[s], inputs[s], inputs_len[s], &t);
    }
    printf("%lld mutated plans: %lld refused by fn_plan_create (tensor %lld, node %lld, op %lld), "
           "%lld created: %lld ran to FN_OK, %lld stopped with a status\n",
           (long long)t.iterations, (long long)t.refused, (long long)t.by_status[1], (long long)t.by_status[2],
           (long long)t.by_status[3], (long long)t.created, (long long)t.ran_ok, (long long)t.ran_failed);
    if (t.hung)
        printf("FAILED: %lld runs hung (first: iteration %lld)\n", (long long)t.hung, (long long)t.first_hung);
    for (int s = 0; s < n_seeds; s++) {
        fn_vec_plan_free(&seeds[s]);
        free(files[s]);
    }
    free(seeds);
    free(files);
    free(inputs);
    free(inputs_len);
    return t.hung ? 1 : 0;
}
