/* Reading the test-vector files of tests/inference/aarch64_vectors.py (layouts documented there).
 * Shared by the vector runner and the plan fuzzer; every length is checked against the file. */
#ifndef FN_VECTOR_FILE_H
#define FN_VECTOR_FILE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const uint8_t *p;
    size_t len, pos;
} fn_reader;

/* Copies n bytes (or skips them when dst is NULL); -1 if fewer than n remain. */
int fn_take(fn_reader *r, void *dst, size_t n);
/* The whole file in a malloc'd buffer, or NULL. */
uint8_t *fn_read_file(const char *path, size_t *len);

/* A plan file's tables, copied out so each is suitably aligned; the cases stay in the reader. */
typedef struct {
    char name[256];
    int32_t n_tensors, n_nodes, n_in, n_out, n_cases;
    int64_t arena_len, consts_len;
    int64_t *rows;  /* n_tensors x FN_TENSOR_COLS */
    int32_t *nodes; /* n_nodes x FN_NODE_COLS */
    uint8_t *consts;
    int32_t *ids; /* n_in graph input tensor ids, then n_out output ids */
} fn_vec_plan;

/* Reads a plan file's header and tables (the reader is past the magic); 0 or -1 (why on stderr). */
int fn_vec_plan_read(fn_reader *r, fn_vec_plan *v, const char *path);
void fn_vec_plan_free(fn_vec_plan *v);
/* Where tensor `id` lives given the rows (the rule fn_plan_create applies), or NULL. */
uint8_t *fn_vec_tensor(const int64_t *rows, int32_t n_tensors, int32_t id, uint8_t *arena, int64_t arena_len,
                       uint8_t *consts, int64_t consts_len, int64_t *nbytes);

#endif
