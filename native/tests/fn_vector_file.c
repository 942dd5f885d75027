/* Reading the test-vector files: see fn_vector_file.h. */
#include "fn_vector_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fn_engine.h"

int fn_take(fn_reader *r, void *dst, size_t n) {
    if (n > r->len - r->pos) return -1;
    if (dst) memcpy(dst, r->p + r->pos, n);
    r->pos += n;
    return 0;
}

uint8_t *fn_read_file(const char *path, size_t *len) {
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
    if (buf && ferror(f)) { free(buf); buf = NULL; }
    fclose(f);
    *len = n;
    return buf;
}

int fn_vec_plan_read(fn_reader *r, fn_vec_plan *v, const char *path) {
    memset(v, 0, sizeof *v);
    int32_t name_len = 0;
    if (fn_take(r, &v->n_tensors, 4) || fn_take(r, &v->n_nodes, 4) || fn_take(r, &v->arena_len, 8) ||
        fn_take(r, &v->consts_len, 8) || fn_take(r, &v->n_in, 4) || fn_take(r, &v->n_out, 4) ||
        fn_take(r, &v->n_cases, 4) || fn_take(r, &name_len, 4) || v->n_tensors < 0 || v->n_nodes < 0 ||
        v->arena_len < 0 || v->consts_len < 0 || v->n_in < 0 || v->n_out < 0 || v->n_cases < 0 ||
        name_len < 0 || name_len >= (int32_t)sizeof v->name || fn_take(r, v->name, (size_t)name_len)) {
        fprintf(stderr, "%s: malformed plan header\n", path);
        return -1;
    }
    const size_t left = r->len - r->pos;
    const size_t rows_bytes = (size_t)v->n_tensors * FN_TENSOR_COLS * sizeof(int64_t);
    const size_t nodes_bytes = (size_t)v->n_nodes * FN_NODE_COLS * sizeof(int32_t);
    const size_t ids_bytes = ((size_t)v->n_in + (size_t)v->n_out) * sizeof(int32_t);
    if (rows_bytes > left || nodes_bytes > left || (size_t)v->consts_len > left || ids_bytes > left) {
        fprintf(stderr, "%s: tables longer than the file\n", path);
        return -1;
    }
    /* +1: malloc(0) may return NULL, and an empty table is valid */
    v->rows = malloc(rows_bytes + 1);
    v->nodes = malloc(nodes_bytes + 1);
    v->consts = malloc((size_t)v->consts_len + 1);
    v->ids = malloc(ids_bytes + 1);
    if (!v->rows || !v->nodes || !v->consts || !v->ids || fn_take(r, v->rows, rows_bytes) ||
        fn_take(r, v->nodes, nodes_bytes) || fn_take(r, v->consts, (size_t)v->consts_len) ||
        fn_take(r, v->ids, ids_bytes)) {
        fprintf(stderr, "%s: truncated tables or out of memory\n", path);
        fn_vec_plan_free(v);
        return -1;
    }
    return 0;
}

void fn_vec_plan_free(fn_vec_plan *v) {
    free(v->rows);
    free(v->nodes);
    free(v->consts);
    free(v->ids);
    v->rows = NULL;
    v->nodes = NULL;
    v->consts = NULL;
    v->ids = NULL;
}

uint8_t *fn_vec_tensor(const int64_t *rows, int32_t n_tensors, int32_t id, uint8_t *arena, int64_t arena_len,
                       uint8_t *consts, int64_t consts_len, int64_t *nbytes) {
    if (id < 0 || id >= n_tensors) return NULL;
    const int64_t *row = rows + (int64_t)id * FN_TENSOR_COLS;
    const int64_t region = row[8], off = row[9], n = row[10];
    if (region != FN_REGION_ARENA && region != FN_REGION_CONST) return NULL;
    const int64_t limit = region == FN_REGION_ARENA ? arena_len : consts_len;
    if (off < 0 || n < 0 || off > limit || n > limit - off) return NULL;
    *nbytes = n;
    return (region == FN_REGION_ARENA ? arena : consts) + off;
}
