/* Runs test vectors through the C library alone (no Python): used to check the aarch64 build
 * under qemu-user against outputs LiteRT produced on x86-64, and the load-time tables (LUTs,
 * softmax exp tables) against the ones the x86-64 build made.
 *
 * Vector file (little endian):
 *   "FNV1" u32 n_tensors u32 n_nodes i64 consts_len i64 arena_len
 *   i64 tensor_rows[n_tensors][FN_TENSOR_COLS]  i32 node_rows[n_nodes][FN_NODE_COLS]  u8 consts[consts_len]
 *   u32 n_cases, each: u32 n_in {i64 offset i64 nbytes u8 bytes[]}  u32 n_out {i64 offset i64 nbytes u8 expected[]}
 *   u32 n_luts, each: i32 kind f32 fp[2] i32 ip[8] i8 expected[256]
 *   u32 n_softmax, each: f32 s_in f32 beta f32 expected[256]
 * Offsets are arena offsets. Exit status 0 when every byte matches.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fn_engine.h"

typedef struct {
    const uint8_t *p, *end;
    int bad;
} reader;

static const void *take(reader *r, size_t n) {
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = 1;
        return NULL;
    }
    const void *q = r->p;
    r->p += n;
    return q;
}

static uint32_t u32(reader *r) { uint32_t v = 0; const void *q = take(r, 4); if (q) memcpy(&v, q, 4); return v; }
static int64_t i64(reader *r) { int64_t v = 0; const void *q = take(r, 8); if (q) memcpy(&v, q, 8); return v; }

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "%s: cannot open\n", path); return 1; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)size + 1);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) { fclose(f); free(buf); return 1; }
    fclose(f);
    reader r = {buf, buf + size, 0};
    int failures = 0;
    const void *magic = take(&r, 4);
    if (!magic || memcmp(magic, "FNV1", 4) != 0) { fprintf(stderr, "%s: not a vector file\n", path); free(buf); return 1; }
    const uint32_t nt = u32(&r), nn = u32(&r);
    const int64_t consts_len = i64(&r), arena_len = i64(&r);
    if (r.bad || consts_len < 0 || arena_len < 0 || nt > 1000000 || nn > 1000000) { free(buf); return 1; }
    int64_t *trows = malloc(sizeof(int64_t) * FN_TENSOR_COLS * (nt + 1));
    int32_t *nrows = malloc(sizeof(int32_t) * FN_NODE_COLS * (nn + 1));
    const void *tsrc = take(&r, sizeof(int64_t) * FN_TENSOR_COLS * nt);
    const void *nsrc = take(&r, sizeof(int32_t) * FN_NODE_COLS * nn);
    const uint8_t *consts_src = take(&r, (size_t)consts_len);
    uint8_t *consts = malloc((size_t)consts_len + 64);
    uint8_t *arena = calloc((size_t)arena_len + 64, 1);
    if (r.bad || !trows || !nrows || !consts || !arena) { fprintf(stderr, "%s: truncated\n", path); return 1; }
    memcpy(trows, tsrc, sizeof(int64_t) * FN_TENSOR_COLS * nt);
    memcpy(nrows, nsrc, sizeof(int32_t) * FN_NODE_COLS * nn);
    memcpy(consts, consts_src, (size_t)consts_len);
    int32_t err_node, err;
    fn_plan *plan = fn_plan_create(trows, (int32_t)nt, nrows, (int32_t)nn, arena, arena_len, consts, consts_len,
                                   &err_node, &err);
    if (!plan) { fprintf(stderr, "%s: plan refused (status %d at %d)\n", path, err, err_node); return 1; }
    const uint32_t n_cases = u32(&r);
    for (uint32_t c = 0; c < n_cases && !r.bad; c++) {
        const uint32_t n_in = u32(&r);
        for (uint32_t k = 0; k < n_in && !r.bad; k++) {
            const int64_t off = i64(&r), nb = i64(&r);
            const void *src = take(&r, (size_t)(nb < 0 ? 0 : nb));
            if (!src || off < 0 || nb < 0 || off + nb > arena_len) { r.bad = 1; break; }
            memcpy(arena + off, src, (size_t)nb);
        }
        const volatile int32_t cancel = 0;
        int32_t bad_node;
        const int rc = fn_plan_run(plan, &cancel, &bad_node);
        if (rc != FN_OK) { fprintf(stderr, "%s case %u: run failed (%d at node %d)\n", path, c, rc, bad_node); failures++; }
        const uint32_t n_out = u32(&r);
        for (uint32_t k = 0; k < n_out && !r.bad; k++) {
            const int64_t off = i64(&r), nb = i64(&r);
            const uint8_t *want = take(&r, (size_t)(nb < 0 ? 0 : nb));
            if (!want || off < 0 || nb < 0 || off + nb > arena_len) { r.bad = 1; break; }
            if (memcmp(arena + off, want, (size_t)nb) != 0) {
                int64_t first = 0;
                while (first < nb && arena[off + first] == want[first]) first++;
                fprintf(stderr, "%s case %u output %u: differs from LiteRT at byte %lld\n", path, c, k, (long long)first);
                failures++;
            }
        }
    }
    const uint32_t n_luts = u32(&r);
    for (uint32_t k = 0; k < n_luts && !r.bad; k++) {
        int32_t kind, ip[8];
        float fp[2];
        int8_t got[256];
        const void *q = take(&r, 4);
        if (q) memcpy(&kind, q, 4);
        q = take(&r, 8);
        if (q) memcpy(fp, q, 8);
        q = take(&r, 32);
        if (q) memcpy(ip, q, 32);
        const int8_t *want = take(&r, 256);
        if (r.bad) break;
        if (fn_lut_build(kind, fp, ip, got) != 0 || memcmp(got, want, 256) != 0) {
            fprintf(stderr, "%s: table %u (kind %d) differs\n", path, k, kind);
            failures++;
        }
    }
    const uint32_t n_soft = u32(&r);
    for (uint32_t k = 0; k < n_soft && !r.bad; k++) {
        float sb[2], got[256];
        const void *q = take(&r, 8);
        if (q) memcpy(sb, q, 8);
        const void *want = take(&r, 1024);
        if (r.bad) break;
        fn_softmax_table(sb[0], sb[1], got);
        if (memcmp(got, want, 1024) != 0) { fprintf(stderr, "%s: softmax table %u differs\n", path, k); failures++; }
    }
    if (r.bad) { fprintf(stderr, "%s: malformed vector file\n", path); failures++; }
    fn_plan_free(plan);
    free(trows); free(nrows); free(consts); free(arena); free(buf);
    return failures;
}

int main(int argc, char **argv) {
    int failures = 0;
    for (int i = 1; i < argc; i++) failures += run_file(argv[i]);
    printf("%d vector file(s), %d failure(s)\n", argc - 1, failures);
    return failures ? 1 : 0;
}
