/* Runs test vectors through the C library alone and compares every output byte.
 *
 *   [FLEETNODE_ISA=scalar|avx2|avx512vnni|neon] fn_vector_runner FILE...
 *
 * A .plan file (tests/inference/aarch64_vectors.py writes them on x86-64) holds the plan tables
 * the Python planner built for one model, random inputs, LiteRT's outputs for them and our
 * engine's arena after the same run on x86-64; the runner creates the plan with fn_plan_create,
 * runs every case, compares the graph outputs with LiteRT's bytes and every arena tensor (the
 * output of every node: the plan keeps intermediates) with the x86-64 engine's bytes. A .tabl file holds element-wise tables (fn_lut_build, fn_softmax_table) with
 * the bytes x86-64 built; the runner builds them again here and compares. Built for aarch64 and
 * run under qemu, this shows the library computes the x86-64 answer on an ARM machine.
 *
 * Each plan file runs once per ISA this machine supports (fn_isa_supported; only FLEETNODE_ISA's
 * if that is set) and per thread count (1 and 2): a fresh plan bound to that ISA's microkernels,
 * a fresh zeroed arena, the same cases. The first lines name the ISAs and thread counts and,
 * per ISA, the GEMM microkernel its plans bind ("isa neon: qs8-qc8w-gemm 4x8c4 neon"); then
 * one line per run of a plan file ("ok NAME (ISA, N threads): ..." or "MISMATCH NAME (...) ...")
 * and one per table file. Exits 0 only if every byte of every run matched, 2 if FLEETNODE_ISA
 * names an ISA that is unknown or cannot run here. Files are parsed with every length checked: a short or malformed
 * file is a failure, never a read past the buffer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fn_cpu.h"
#include "fn_engine.h"
#include "fn_ukernels.h"
#include "fn_vector_file.h"

/* Compares the arena tensors of one case with the x86-64 arena; returns how many differ. */
static int64_t compare_arena(const fn_vec_plan *v, const char *tag, const uint8_t *arena, const uint8_t *x86,
                             int32_t c, int64_t *tensors) {
    int64_t differing = 0;
    for (int32_t id = 0; id < v->n_tensors; id++) {
        const int64_t *row = v->rows + (int64_t)id * FN_TENSOR_COLS;
        int64_t nb = 0;
        if (row[8] != FN_REGION_ARENA ||
            !fn_vec_tensor(v->rows, v->n_tensors, id, (uint8_t *)(uintptr_t)arena, v->arena_len, v->consts,
                           v->consts_len, &nb))
            continue;
        (*tensors)++;
        if (memcmp(arena + row[9], x86 + row[9], (size_t)nb) != 0 && differing++ < 3)
            printf("  %s %s case %d: arena tensor %d (%lld bytes at %lld) differs from x86-64\n", v->name, tag, c, id,
                   (long long)nb, (long long)row[9]);
    }
    if (differing == 0 && memcmp(arena, x86, (size_t)v->arena_len) != 0) {
        printf("  %s %s case %d: arena bytes outside every tensor differ\n", v->name, tag, c);
        differing++;
    }
    return differing;
}

/* The ISAs and thread counts every plan file runs with. */
static int isas[FN_ISA_COUNT], n_isas;
static const int32_t THREADS[] = {1, 2};
#define N_THREADS ((int)(sizeof THREADS / sizeof THREADS[0]))

/* One pass over a plan file's cases with a plan bound to `isa` and run on `threads` threads:
 * 0 if every byte matched, 1 if some differ (or the plan is refused), -1 if the file is malformed. */
static int run_plan_cases(fn_reader *r, const fn_vec_plan *v, const char *path, int isa, int32_t threads) {
    int status = -1;
    char tag[64];
    snprintf(tag, sizeof tag, "(%s, %d thread%s)", fn_isa_name(isa), threads, threads == 1 ? "" : "s");
    /* Zeroed once, as the x86-64 side's arena was: bytes no tensor covers stay equal too. */
    uint8_t *arena = calloc((size_t)v->arena_len + 1, 1);
    int32_t err_node = -1, err = 0;
    fn_plan *plan = NULL;
    if (!arena || fn_isa_set(isa) != 0) {
        fprintf(stderr, "%s: cannot prepare a run on %s\n", path, fn_isa_name(isa));
        goto done;
    }
    plan = fn_plan_create(v->rows, v->n_tensors, v->nodes, v->n_nodes, arena, v->arena_len, v->consts,
                          v->consts_len, &err_node, &err);
    if (!plan) {
        printf("MISMATCH %s %s: fn_plan_create refused the plan (status %d at %d)\n", v->name, tag, err, err_node);
        status = 1;
        goto done;
    }
    if (fn_plan_isa(plan) != isa || (err = fn_plan_set_threads(plan, threads)) != FN_OK) {
        printf("MISMATCH %s %s: plan bound to %s, threads status %d\n", v->name, tag, fn_isa_name(fn_plan_isa(plan)),
               err);
        status = 1;
        goto done;
    }
    int64_t compared = 0, differing = 0, arena_tensors = 0, arena_differing = 0;
    const volatile int32_t cancel = 0;
    for (int32_t c = 0; c < v->n_cases; c++) {
        for (int32_t k = 0; k < v->n_in; k++) {
            int64_t nb = 0;
            uint8_t *dst = fn_vec_tensor(v->rows, v->n_tensors, v->ids[k], arena, v->arena_len, v->consts,
                                         v->consts_len, &nb);
            if (!dst || fn_take(r, dst, (size_t)nb)) {
                fprintf(stderr, "%s: case %d: bad input %d\n", path, c, k);
                goto done;
            }
        }
        int rc = fn_plan_run(plan, &cancel, &err_node);
        if (rc != FN_OK) {
            printf("MISMATCH %s %s: case %d: run failed with status %d at node %d\n", v->name, tag, c, rc, err_node);
            status = 1;
            goto done;
        }
        for (int32_t k = 0; k < v->n_out; k++) {
            int64_t nb = 0;
            const uint8_t *got = fn_vec_tensor(v->rows, v->n_tensors, v->ids[v->n_in + k], arena, v->arena_len,
                                               v->consts, v->consts_len, &nb);
            if (!got || (size_t)nb > r->len - r->pos) {
                fprintf(stderr, "%s: case %d: bad output %d\n", path, c, k);
                goto done;
            }
            const uint8_t *want = r->p + r->pos;
            int64_t first = -1, diff = 0;
            for (int64_t i = 0; i < nb; i++)
                if (got[i] != want[i]) { diff++; if (first < 0) first = i; }
            if (diff)
                printf("  %s %s case %d output %d: %lld of %lld bytes differ, first at byte %lld (%d, want %d)\n",
                       v->name, tag, c, k, (long long)diff, (long long)nb, (long long)first, got[first], want[first]);
            compared += nb;
            differing += diff;
            r->pos += (size_t)nb;
        }
        if ((size_t)v->arena_len > r->len - r->pos) {
            fprintf(stderr, "%s: case %d: truncated arena\n", path, c);
            goto done;
        }
        arena_differing += compare_arena(v, tag, arena, r->p + r->pos, c, &arena_tensors);
        r->pos += (size_t)v->arena_len;
    }
    if (r->pos != r->len) {
        fprintf(stderr, "%s: %zu trailing bytes\n", path, r->len - r->pos);
        goto done;
    }
    const int bad = differing || arena_differing;
    printf("%s %s %s: %d cases, %d nodes, %lld output bytes (%lld differ), %lld arena tensors (%lld differ)\n",
           bad ? "MISMATCH" : "ok", v->name, tag, v->n_cases, v->n_nodes, (long long)compared, (long long)differing,
           (long long)arena_tensors, (long long)arena_differing);
    status = bad ? 1 : 0;
done:
    fn_plan_free(plan);
    free(arena);
    return status;
}

/* Every ISA and thread count over the same cases; 0 only if all of them matched. */
static int run_plan_file(fn_reader *r, const char *path) {
    fn_vec_plan v;
    if (fn_vec_plan_read(r, &v, path) != 0) return 1;
    const size_t cases = r->pos;
    int bad = 0;
    for (int i = 0; i < n_isas; i++)
        for (int t = 0; t < N_THREADS; t++) {
            r->pos = cases;
            const int rc = run_plan_cases(r, &v, path, isas[i], THREADS[t]);
            if (rc < 0) { fn_vec_plan_free(&v); return 1; }
            bad |= rc;
        }
    fn_vec_plan_free(&v);
    return bad;
}

static int run_table_file(fn_reader *r, const char *path) {
    int32_t n;
    if (fn_take(r, &n, 4) || n < 0) { fprintf(stderr, "%s: malformed table header\n", path); return 1; }
    int32_t luts = 0, softmax = 0, differing = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t kind, ip[8];
        float fp[2];
        if (fn_take(r, &kind, 4) || fn_take(r, fp, sizeof fp) || fn_take(r, ip, sizeof ip)) {
            fprintf(stderr, "%s: table %d truncated\n", path, i);
            return 1;
        }
        uint8_t got[256 * sizeof(float)];
        size_t size;
        if (kind < 0) {
            float table[256];
            fn_softmax_table(fp[0], fp[1], table);
            memcpy(got, table, sizeof table);
            size = sizeof table;
            softmax++;
        } else {
            int8_t table[256];
            if (fn_lut_build(kind, fp, ip, table) != 0) {
                printf("  table %d (kind %d): refused here\n", i, kind);
                differing++;
                memset(table, 0, sizeof table);
            }
            memcpy(got, table, sizeof table);
            size = sizeof table;
            luts++;
        }
        if (size > r->len - r->pos) { fprintf(stderr, "%s: table %d truncated\n", path, i); return 1; }
        if (memcmp(got, r->p + r->pos, size) != 0) {
            printf("  table %d (kind %d, s_in %.9g, %.9g, ip %d %d %d %d) differs\n", i, kind,
                   (double)fp[0], (double)fp[1], ip[0], ip[1], ip[2], ip[3]);
            differing++;
        }
        r->pos += size;
    }
    printf("%s tables: %d LUTs, %d softmax tables, %d differ\n", differing ? "MISMATCH" : "ok", luts,
           softmax, differing);
    return differing ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE.plan|FILE.tabl...\n", argv[0]);
        return 2;
    }
    /* FLEETNODE_ISA names the one ISA to run (as in the Python binding: an unknown or unsupported
     * name is an error, never a fallback); without it, every ISA this machine supports. */
    const char *want = getenv("FLEETNODE_ISA");
    if (want && *want) {
        const int isa = fn_isa_parse(want);
        if (isa < 0 || !fn_isa_supported(isa)) {
            fprintf(stderr, "FLEETNODE_ISA=%s: %s\n", want, isa < 0 ? "unknown ISA" : "not supported here");
            return 2;
        }
        isas[n_isas++] = isa;
    } else {
        for (int isa = 0; isa < FN_ISA_COUNT; isa++)
            if (fn_isa_supported(isa)) isas[n_isas++] = isa;
    }
    printf("isas:");
    for (int i = 0; i < n_isas; i++) printf(" %s", fn_isa_name(isas[i]));
    printf("; threads:");
    for (int t = 0; t < N_THREADS; t++) printf(" %d", THREADS[t]);
    printf("\n");
    /* the microkernel a plan of each ISA binds: an ISA this build has none for runs the scalar one */
    for (int i = 0; i < n_isas; i++) {
        const fn_gemm_config *g = fn_gemm_config_for(isas[i]);
        printf("isa %s: qs8-qc8w-gemm %dx%dc%d %s\n", fn_isa_name(isas[i]), g->mr, g->nr, g->kr, fn_isa_name(g->isa));
    }
    int failures = 0;
    for (int i = 1; i < argc; i++) {
        size_t len = 0;
        uint8_t *buf = fn_read_file(argv[i], &len);
        if (!buf) {
            fprintf(stderr, "%s: cannot read\n", argv[i]);
            failures++;
            continue;
        }
        fn_reader r = {buf, len, 8};
        if (len >= 8 && memcmp(buf, "FNPLAN01", 8) == 0) failures += run_plan_file(&r, argv[i]);
        else if (len >= 8 && memcmp(buf, "FNTABL01", 8) == 0) failures += run_table_file(&r, argv[i]);
        else { fprintf(stderr, "%s: not a vector file\n", argv[i]); failures++; }
        free(buf);
    }
    printf("%d of %d files failed\n", failures, argc - 1);
    return failures ? 1 : 0;
}
