/* Runs test vectors through the C library alone and compares every output byte.
 *
 *   fn_vector_runner FILE...
 *
 * A .plan file (tests/inference/aarch64_vectors.py writes them on x86-64) holds the plan tables
 * the Python planner built for one model, random inputs, LiteRT's outputs for them and our
 * engine's arena after the same run on x86-64; the runner creates the plan with fn_plan_create,
 * runs every case, compares the graph outputs with LiteRT's bytes and every arena tensor (the
 * output of every node: the plan keeps intermediates) with the x86-64 engine's bytes. A .tabl file holds element-wise tables (fn_lut_build, fn_softmax_table) with
 * the bytes x86-64 built; the runner builds them again here and compares. Built for aarch64 and
 * run under qemu, this shows the library computes the x86-64 answer on an ARM machine.
 *
 * Prints one line per file ("ok NAME ..." or "MISMATCH NAME ...") and exits 0 only if every
 * byte of every file matched. Files are parsed with every length checked: a short or malformed
 * file is a failure, never a read past the buffer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fn_engine.h"

typedef struct {
    const uint8_t *p;
    size_t len, pos;
} reader;

static int take(reader *r, void *dst, size_t n) {
    if (n > r->len - r->pos) return -1;
    if (dst) memcpy(dst, r->p + r->pos, n);
    r->pos += n;
    return 0;
}

static int take_i32(reader *r, int32_t *v) { return take(r, v, sizeof *v); }
static int take_i64(reader *r, int64_t *v) { return take(r, v, sizeof *v); }

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        uint8_t *bigger = realloc(buf, cap * 2);
        if (!bigger) { free(buf); buf = NULL; break; }
        buf = bigger;
        cap *= 2;
    }
    if (ferror(f)) { free(buf); buf = NULL; }
    fclose(f);
    *len = n;
    return buf;
}

/* Address of plan tensor `id` given the tensor rows: the same rule fn_plan_create applies. */
static uint8_t *tensor_bytes(const int64_t *rows, int32_t n_tensors, int32_t id, uint8_t *arena,
                             int64_t arena_len, uint8_t *consts, int64_t consts_len, int64_t *nbytes) {
    if (id < 0 || id >= n_tensors) return NULL;
    const int64_t *row = rows + (int64_t)id * FN_TENSOR_COLS;
    const int64_t region = row[8], off = row[9], n = row[10];
    const int64_t limit = region == FN_REGION_ARENA ? arena_len : consts_len;
    if (off < 0 || n < 0 || off > limit || n > limit - off) return NULL;
    *nbytes = n;
    return (region == FN_REGION_ARENA ? arena : consts) + off;
}

static int run_plan_file(reader *r, const char *path) {
    int32_t n_tensors, n_nodes, n_in, n_out, n_cases, name_len;
    int64_t arena_len, consts_len;
    if (take_i32(r, &n_tensors) || take_i32(r, &n_nodes) || take_i64(r, &arena_len) ||
        take_i64(r, &consts_len) || take_i32(r, &n_in) || take_i32(r, &n_out) ||
        take_i32(r, &n_cases) || take_i32(r, &name_len))
        goto malformed;
    if (n_tensors < 0 || n_nodes < 0 || arena_len < 0 || consts_len < 0 || n_in < 0 || n_out < 0 ||
        n_cases < 0 || name_len < 0 || name_len > 200)
        goto malformed;
    char name[256] = {0};
    if (take(r, name, (size_t)name_len)) goto malformed;
    const size_t rows_bytes = (size_t)n_tensors * FN_TENSOR_COLS * sizeof(int64_t);
    const size_t nodes_bytes = (size_t)n_nodes * FN_NODE_COLS * sizeof(int32_t);
    if (rows_bytes > r->len - r->pos || nodes_bytes > r->len - r->pos - rows_bytes) goto malformed;
    /* Copies, so every table is suitably aligned whatever the file layout. */
    int64_t *rows = malloc(rows_bytes + 8);
    int32_t *nodes = malloc(nodes_bytes + 4);
    uint8_t *consts = malloc((size_t)consts_len + 1);
    /* Zeroed once, as the x86-64 side's arena was: bytes no tensor covers stay equal too. */
    uint8_t *arena = calloc((size_t)arena_len + 1, 1);
    int32_t *ids = malloc(((size_t)n_in + (size_t)n_out + 1) * sizeof(int32_t));
    int status = 1;
    fn_plan *plan = NULL;
    if (!rows || !nodes || !consts || !arena || !ids) {
        fprintf(stderr, "%s: out of memory\n", path);
        goto done;
    }
    if (take(r, rows, rows_bytes) || take(r, nodes, nodes_bytes) || take(r, consts, (size_t)consts_len) ||
        take(r, ids, ((size_t)n_in + (size_t)n_out) * sizeof(int32_t))) {
        fprintf(stderr, "%s: truncated tables\n", path);
        goto done;
    }
    int32_t err_node = -1, err = 0;
    plan = fn_plan_create(rows, n_tensors, nodes, n_nodes, arena, arena_len, consts, consts_len, &err_node, &err);
    if (!plan) {
        printf("MISMATCH %s: fn_plan_create refused the plan (status %d at %d)\n", name, err, err_node);
        goto done;
    }
    int64_t compared = 0, differing = 0, arena_tensors = 0, arena_differing = 0;
    const volatile int32_t cancel = 0;
    for (int32_t c = 0; c < n_cases; c++) {
        for (int32_t k = 0; k < n_in; k++) {
            int64_t nb = 0;
            uint8_t *dst = tensor_bytes(rows, n_tensors, ids[k], arena, arena_len, consts, consts_len, &nb);
            if (!dst || take(r, dst, (size_t)nb)) {
                fprintf(stderr, "%s: case %d: bad input %d\n", path, c, k);
                goto done;
            }
        }
        int rc = fn_plan_run(plan, &cancel, &err_node);
        if (rc != FN_OK) {
            printf("MISMATCH %s: case %d: run failed with status %d at node %d\n", name, c, rc, err_node);
            goto done;
        }
        for (int32_t k = 0; k < n_out; k++) {
            int64_t nb = 0;
            const uint8_t *got = tensor_bytes(rows, n_tensors, ids[n_in + k], arena, arena_len, consts, consts_len, &nb);
            if (!got || (size_t)nb > r->len - r->pos) {
                fprintf(stderr, "%s: case %d: bad output %d\n", path, c, k);
                goto done;
            }
            const uint8_t *want = r->p + r->pos;
            int64_t first = -1, diff = 0;
            for (int64_t i = 0; i < nb; i++)
                if (got[i] != want[i]) { diff++; if (first < 0) first = i; }
            if (diff)
                printf("  %s case %d output %d: %lld of %lld bytes differ, first at byte %lld (%d, want %d)\n",
                       name, c, k, (long long)diff, (long long)nb, (long long)first, got[first], want[first]);
            compared += nb;
            differing += diff;
            r->pos += (size_t)nb;
        }
        if ((size_t)arena_len > r->len - r->pos) {
            fprintf(stderr, "%s: case %d: truncated arena\n", path, c);
            goto done;
        }
        const uint8_t *x86_arena = r->p + r->pos;
        int32_t reported = 0;
        for (int32_t id = 0; id < n_tensors; id++) {
            const int64_t *row = rows + (int64_t)id * FN_TENSOR_COLS;
            if (row[8] != FN_REGION_ARENA) continue;
            int64_t nb = 0;
            const uint8_t *got = tensor_bytes(rows, n_tensors, id, arena, arena_len, consts, consts_len, &nb);
            if (!got) continue; /* fn_plan_create already refused such a row */
            arena_tensors++;
            if (memcmp(got, x86_arena + row[9], (size_t)nb) != 0) {
                arena_differing++;
                if (reported++ < 3)
                    printf("  %s case %d: arena tensor %d (%lld bytes at %lld) differs from x86-64\n", name, c,
                           id, (long long)nb, (long long)row[9]);
            }
        }
        if (memcmp(arena, x86_arena, (size_t)arena_len) != 0 && arena_differing == 0) {
            printf("  %s case %d: arena bytes outside every tensor differ\n", name, c);
            arena_differing++;
        }
        r->pos += (size_t)arena_len;
    }
    if (r->pos != r->len) {
        fprintf(stderr, "%s: %zu trailing bytes\n", path, r->len - r->pos);
        goto done;
    }
    const int bad = differing || arena_differing;
    printf("%s %s: %d cases, %d nodes, %lld output bytes (%lld differ), %lld arena tensors (%lld differ)\n",
           bad ? "MISMATCH" : "ok", name, n_cases, n_nodes, (long long)compared, (long long)differing,
           (long long)arena_tensors, (long long)arena_differing);
    status = bad ? 1 : 0;
done:
    fn_plan_free(plan);
    free(rows);
    free(nodes);
    free(consts);
    free(arena);
    free(ids);
    return status;
malformed:
    fprintf(stderr, "%s: malformed plan header\n", path);
    return 1;
}

static int run_table_file(reader *r, const char *path) {
    int32_t n;
    if (take_i32(r, &n) || n < 0) { fprintf(stderr, "%s: malformed table header\n", path); return 1; }
    int32_t luts = 0, softmax = 0, differing = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t kind, ip[8];
        float fp[2];
        if (take_i32(r, &kind) || take(r, fp, sizeof fp) || take(r, ip, sizeof ip)) {
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
    int failures = 0;
    for (int i = 1; i < argc; i++) {
        size_t len = 0;
        uint8_t *buf = read_file(argv[i], &len);
        if (!buf) {
            fprintf(stderr, "%s: cannot read\n", argv[i]);
            failures++;
            continue;
        }
        reader r = {buf, len, 8};
        if (len >= 8 && memcmp(buf, "FNPLAN01", 8) == 0) failures += run_plan_file(&r, argv[i]);
        else if (len >= 8 && memcmp(buf, "FNTABL01", 8) == 0) failures += run_table_file(&r, argv[i]);
        else { fprintf(stderr, "%s: not a vector file\n", argv[i]); failures++; }
        free(buf);
    }
    printf("%d of %d files failed\n", failures, argc - 1);
    return failures ? 1 : 0;
}
