/* Declarations of the portable reference kernels (one file per op family) and shared helpers. */
#ifndef FN_KERNELS_H
#define FN_KERNELS_H

#include <math.h>

#include "fn_engine.h"
#include "fn_fixedpoint.h"

/* How an int32 accumulator becomes int8: the rule is per op and fixed at plan time. */
enum fn_requant {
    FN_RQ_DOUBLE_ROUND = 0, /* MultiplyByQuantizedMultiplier with gemmlowp double rounding */
    FN_RQ_FLOAT64 = 1,      /* round(acc * scale) in double, half away from zero */
    FN_RQ_RUY_X86 = 2       /* ruy's x86 output stage: both roundings half up, no saturation */
};

/* ruy's AVX2/AVX-512 multiplier: ((x << ls) * M + 2^30) >> 31, then (v + 2^(rs-1)) >> rs.
 * LiteRT's builtin FULLY_CONNECTED on x86-64 goes through it; ARM ruy rounds differently, so
 * we compute this one everywhere to give one answer on every machine. */
static inline int32_t fn_mul_ruy_x86(int32_t x, int32_t m, int shift) {
    const int ls = shift > 0 ? shift : 0;
    const int rs = shift > 0 ? 0 : -shift;
    const int64_t xs = (int64_t)fn_wrap32((int64_t)((uint64_t)(int64_t)x << ls));
    const int64_t v = (xs * m + ((int64_t)1 << 30)) >> 31;
    const int64_t r = rs > 0 ? (v + ((int64_t)1 << (rs - 1))) >> rs : v;
    return fn_wrap32(r);
}

/* Double to int32 as x86-64's cvttsd2si does: out-of-range and NaN give INT32_MIN. */
static inline int32_t fn_f64_to_i32(double v) {
    if (!(v > -2147483649.0 && v < 2147483648.0)) return INT32_MIN;
    return (int32_t)v;
}
static inline int32_t fn_f32_to_i32(float v) { return fn_f64_to_i32((double)v); }

static inline int32_t fn_requant(int32_t acc, int mode, int32_t m, int32_t sh, double scale) {
    if (mode == FN_RQ_FLOAT64) return fn_f64_to_i32(round((double)acc * scale));
    if (mode == FN_RQ_RUY_X86) return fn_mul_ruy_x86(acc, m, sh);
    return fn_mbqm(acc, m, sh);
}

static inline int8_t fn_out_s8(int32_t v, int32_t zp, int32_t lo, int32_t hi) {
    return (int8_t)fn_clamp32(fn_wrap32((int64_t)v + zp), lo, hi);
}

/* acc += sum a[i]*b[i], wsum += sum a[i], in wrapping 32-bit arithmetic. Written so compilers
 * vectorize it at the baseline ISA; exact because integer sums do not depend on order. */
static inline void fn_dot_s8(const int8_t *a, const int8_t *b, int32_t n, uint32_t *acc, uint32_t *wsum) {
    uint32_t s = 0, ws = 0;
    for (int32_t i = 0; i < n; i++) {
        s += (uint32_t)((int32_t)a[i] * (int32_t)b[i]);
        ws += (uint32_t)(int32_t)a[i];
    }
    *acc += s;
    *wsum += ws;
}

/* What a plan gives its nodes to run with: threads and per-thread scratch (node->exec). */
struct fn_pool;
typedef struct fn_exec {
    int32_t threads;
    struct fn_pool *pool;   /* NULL with one thread */
    uint8_t *scratch;       /* threads * scratch_stride bytes, 64-byte aligned */
    size_t scratch_stride;  /* the largest scratch any node asked for, rounded to 64 */
} fn_exec;

/* One task of a node: task index, and the scratch of the thread that runs it. */
typedef void (*fn_task_fn)(void *ctx, size_t task, uint8_t *scratch);
/* Runs tasks 0..n_tasks-1 on the plan's threads; FN_CANCELLED if cancel stopped the hand-out. */
int fn_parallel(const fn_exec *ex, size_t n_tasks, fn_task_fn fn, void *ctx, const volatile int32_t *cancel);
struct fn_pool *fn_pool_create(int32_t n_workers);
void fn_pool_free(struct fn_pool *p);

/* One input, one output, same element count, the given types. */
int fn_check_unary(const fn_node *n, const fn_tensor *t, int32_t nt, int32_t in_type, int32_t out_type);

/* Checks that a parameter names a tensor of the given type and element count. */
int fn_param_tensor_ok(const fn_tensor *t, int32_t n, int32_t idx, int32_t type, int64_t count);

/* As fn_param_tensor_ok, and the tensor lies in the constants (no kernel can rewrite values
 * that were range-checked at plan creation) and every int32 in it is within [lo, hi]. */
int fn_const_i32_ok(const fn_tensor *t, int32_t n, int32_t idx, int64_t count, int32_t lo, int32_t hi);

/* The product of nd dimensions, or -1 if one is < 1 or the product passes limit (no overflow):
 * plans bound a kernel's work by the sizes of its tensors this way. */
int64_t fn_dims_count(const int32_t *dims, int nd, int64_t limit);

/* 1 if every element offset off + sum_d i_d * str[d] (0 <= i_d < dims[d]) lies in [0, count),
 * decided without overflow; 0 otherwise (also for a dimension < 1). */
int fn_walk_ok(const int32_t *dims, const int32_t *str, int nd, int64_t off, int64_t count);

/* A zero point an int8 (or, with FN_U8, uint8) tensor can have: then x - zp and products of
 * two such differences stay far from int32 overflow. */
static inline int fn_zp_ok(int32_t zp, int32_t type) {
    return type == FN_U8 ? (zp >= 0 && zp <= 255) : (zp >= -128 && zp <= 127);
}

/* The shift range the fixed-point helpers (fn_mbqm, fn_mul_ruy_x86) are defined for. */
static inline int fn_shift_ok(int32_t shift) { return shift >= -31 && shift <= 31; }

/* Cancel polling inside element loops: once every FN_CANCEL_EVERY iterations of counter i. */
#define FN_CANCEL_EVERY 65536
#define FN_CANCEL_POLL(i, cancel) ((((i) & (FN_CANCEL_EVERY - 1)) == 0) && FN_CANCEL_REQUESTED(cancel))

#define FN_DECLARE_KERNEL(name)                                                                 \
    int fn_check_##name(const fn_node *node, const fn_tensor *t, int32_t n_tensors);            \
    int fn_run_##name(const fn_node *node, fn_tensor *t, const volatile int32_t *cancel)

#define FN_DECLARE_PREPARE(name) \
    int fn_prepare_##name(fn_node *node, const fn_tensor *t, int32_t n_tensors, size_t *scratch_bytes)

FN_DECLARE_KERNEL(fully_connected_s8);
FN_DECLARE_PREPARE(fully_connected_s8);
FN_DECLARE_KERNEL(conv2d_s8);
FN_DECLARE_PREPARE(conv2d_s8);
FN_DECLARE_KERNEL(dwconv2d_s8);
FN_DECLARE_PREPARE(dwconv2d_s8);
FN_DECLARE_KERNEL(quantize_f32_s8);
FN_DECLARE_KERNEL(dequantize_s8_f32);
FN_DECLARE_KERNEL(requantize_s8);
FN_DECLARE_KERNEL(copy);
FN_DECLARE_KERNEL(add_s8);
FN_DECLARE_PREPARE(add_s8);
FN_DECLARE_KERNEL(mul_s8);
FN_DECLARE_PREPARE(mul_s8);
FN_DECLARE_KERNEL(binary_f32);
FN_DECLARE_KERNEL(binary_i32);
FN_DECLARE_KERNEL(avg_pool_s8);
FN_DECLARE_PREPARE(avg_pool_s8);
FN_DECLARE_KERNEL(max_pool_s8);
FN_DECLARE_PREPARE(max_pool_s8);
FN_DECLARE_KERNEL(mean_s8);
FN_DECLARE_PREPARE(mean_s8);
FN_DECLARE_KERNEL(reduce_i32);
FN_DECLARE_KERNEL(softmax_s8);
FN_DECLARE_PREPARE(softmax_s8);
FN_DECLARE_KERNEL(lut_s8);
FN_DECLARE_PREPARE(lut_s8);
FN_DECLARE_KERNEL(unary_f32);
FN_DECLARE_KERNEL(strided_copy);
FN_DECLARE_KERNEL(concat);
FN_DECLARE_KERNEL(gather);
FN_DECLARE_KERNEL(batch_matmul_s8);

#endif
