/* Broadcasting binary ops: int8 ADD/SUB/SQUARED_DIFFERENCE, int8 MUL, and the float32 and int32
 * variants that float islands and shape arithmetic use. Shapes are padded to 6 dimensions; a
 * stride of 0 broadcasts an input along that dimension. */
#include <stdlib.h>

#include "fn_kernels.h"
#include "fn_rows.h"
#include "fn_ukernels_eltwise.h"

/* Parameter layout shared by every binary op. */
enum { B_DIMS = 0, B_STRIDE_A = 6, B_STRIDE_B = 12, B_KIND = 18, B_OP = 19 };

enum { ADD_ZP_A = B_OP, ADD_ZP_B, ADD_ZP_OUT, ADD_LSHIFT, ADD_MA, ADD_SA, ADD_MB, ADD_SB, ADD_MO, ADD_SO,
       ADD_MIN, ADD_MAX };
enum { MUL_ZP_A = B_OP, MUL_ZP_B, MUL_ZP_OUT, MUL_M, MUL_S, MUL_MIN, MUL_MAX };

static int check_broadcast(const fn_node *n, const fn_tensor *t, int32_t nt, int32_t type_in, int32_t type_out) {
    if (n->n_in != 2 || n->n_out != 1) return -1;
    if (!fn_tensor_ok(t, nt, n->in[0], type_in) || !fn_tensor_ok(t, nt, n->in[1], type_in)) return -1;
    if (!fn_tensor_ok(t, nt, n->out[0], type_out)) return -1;
    const int32_t *dims = &n->p[B_DIMS];
    if (fn_dims_count(dims, FN_MAX_DIMS, t[n->out[0]].count) != t[n->out[0]].count) return -1;
    for (int d = 0; d < FN_MAX_DIMS; d++)
        if (n->p[B_STRIDE_A + d] < 0 || n->p[B_STRIDE_B + d] < 0) return -1;
    if (!fn_walk_ok(dims, &n->p[B_STRIDE_A], FN_MAX_DIMS, 0, t[n->in[0]].count)) return -1;
    if (!fn_walk_ok(dims, &n->p[B_STRIDE_B], FN_MAX_DIMS, 0, t[n->in[1]].count)) return -1;
    return 0;
}

/* Walks the output in row-major order and hands each (a offset, b offset) to the op. */
#define FN_BROADCAST_LOOP(n, cancel, ...)                                                        \
    do {                                                                                          \
        const int32_t *dims_ = &(n)->p[B_DIMS];                                                   \
        const int32_t *sa_ = &(n)->p[B_STRIDE_A], *sb_ = &(n)->p[B_STRIDE_B];                     \
        int64_t o_ = 0;                                                                           \
        for (int64_t i0 = 0; i0 < dims_[0]; i0++)                                                 \
        for (int64_t i1 = 0; i1 < dims_[1]; i1++) {                                               \
            for (int64_t i2 = 0; i2 < dims_[2]; i2++)                                             \
            for (int64_t i3 = 0; i3 < dims_[3]; i3++)                                             \
            for (int64_t i4 = 0; i4 < dims_[4]; i4++) {                                           \
                int64_t ia = i0 * sa_[0] + i1 * sa_[1] + i2 * sa_[2] + i3 * sa_[3] + i4 * sa_[4]; \
                int64_t ib = i0 * sb_[0] + i1 * sb_[1] + i2 * sb_[2] + i3 * sb_[3] + i4 * sb_[4]; \
                for (int64_t i5 = 0; i5 < dims_[5]; i5++, o_++, ia += sa_[5], ib += sb_[5]) {     \
                    if (FN_CANCEL_POLL(o_, cancel)) return FN_CANCELLED;                          \
                    __VA_ARGS__                                                                   \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
    } while (0)

enum { ADD_KIND_ADD = 0, ADD_KIND_SUB = 1, ADD_KIND_SQDIFF = 2 };

int fn_check_add_s8(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (check_broadcast(n, t, nt, FN_I8, FN_I8) != 0) return -1;
    if (n->p[B_KIND] < ADD_KIND_ADD || n->p[B_KIND] > ADD_KIND_SQDIFF) return -1;
    if (n->p[ADD_LSHIFT] < 0 || n->p[ADD_LSHIFT] > 20) return -1;
    if (n->p[ADD_SA] > 0 || n->p[ADD_SB] > 0 || n->p[ADD_SA] < -31 || n->p[ADD_SB] < -31) return -1;
    if (n->p[ADD_SO] < -31 || n->p[ADD_SO] > 31 || n->p[ADD_MIN] > n->p[ADD_MAX]) return -1;
    if (!fn_zp_ok(n->p[ADD_ZP_A], FN_I8) || !fn_zp_ok(n->p[ADD_ZP_B], FN_I8) || !fn_zp_ok(n->p[ADD_ZP_OUT], FN_I8))
        return -1;
    return 0;
}

int fn_check_mul_s8(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (check_broadcast(n, t, nt, FN_I8, FN_I8) != 0) return -1;
    if (!fn_shift_ok(n->p[MUL_S]) || n->p[MUL_MIN] > n->p[MUL_MAX]) return -1;
    if (!fn_zp_ok(n->p[MUL_ZP_A], FN_I8) || !fn_zp_ok(n->p[MUL_ZP_B], FN_I8) || !fn_zp_ok(n->p[MUL_ZP_OUT], FN_I8))
        return -1;
    return 0;
}

/* ---- int8 ADD/SUB/SQUARED_DIFFERENCE and MUL through row microkernels.
 *
 * At plan creation the six broadcast dimensions collapse into rows (fn_rows.h). A row where
 * both inputs advance by one element runs the vector-vector microkernel; a row where one input
 * stays put (a scalar, or a per-row value such as LayerNorm's mean) runs the vector-constant
 * one, with that input's requantized value computed once per row by the scalar code. Any other
 * row (strides a checked plan may have but the planner never writes) runs the scalar
 * microkernel element by element. */

/* How a row reads its inputs. */
enum { ROW_VV, ROW_VC, ROW_CV, ROW_STRIDED };

static int row_kind(const fn_rows *s) {
    const int64_t a = s->sa[s->nd - 1], b = s->sb[s->nd - 1];
    if (a == 1 && b == 1) return ROW_VV;
    if (a == 1 && b == 0) return ROW_VC;
    if (a == 0 && b == 1) return ROW_CV;
    return ROW_STRIDED;
}

typedef struct {
    fn_rows shape;
    int row;
    fn_eltwise_ukernels uk;
    fn_qs8_vadd_params add, add_swapped; /* add_swapped: b as the row's vector input (ROW_CV) */
    fn_qs8_vmul_params mul, mul_swapped;
} bin_state;

static void add_params(const fn_node *n, fn_qs8_vadd_params *q) {
    const int32_t *p = n->p;
    static const int32_t kinds[] = {FN_VADD_ADD, FN_VADD_SUB, FN_VADD_SQDIFF};
    q->kind = kinds[p[B_KIND]];
    q->ls = p[ADD_LSHIFT];
    q->a = (fn_qs8_vadd_input){p[ADD_ZP_A], p[ADD_MA], -p[ADD_SA]};
    q->b = (fn_qs8_vadd_input){p[ADD_ZP_B], p[ADD_MB], -p[ADD_SB]};
    q->out_mult = p[ADD_MO];
    q->out_shl = p[ADD_SO] > 0 ? p[ADD_SO] : 0;
    q->out_shr = p[ADD_SO] > 0 ? 0 : -p[ADD_SO];
    q->out_zp = p[ADD_ZP_OUT];
    q->lo = p[ADD_MIN];
    q->hi = p[ADD_MAX];
}

static void mul_params(const fn_node *n, fn_qs8_vmul_params *q) {
    const int32_t *p = n->p;
    *q = (fn_qs8_vmul_params){p[MUL_ZP_A], p[MUL_ZP_B], p[MUL_M], p[MUL_S] > 0 ? p[MUL_S] : 0,
                              p[MUL_S] > 0 ? 0 : -p[MUL_S], p[MUL_ZP_OUT], p[MUL_MIN], p[MUL_MAX]};
}

static int prepare_binary(fn_node *n) {
    bin_state *s = calloc(1, sizeof *s);
    if (!s) return FN_E_NOMEM;
    int64_t sa[FN_MAX_DIMS], sb[FN_MAX_DIMS];
    for (int d = 0; d < FN_MAX_DIMS; d++) {
        sa[d] = n->p[B_STRIDE_A + d];
        sb[d] = n->p[B_STRIDE_B + d];
    }
    fn_rows_collapse(&s->shape, &n->p[B_DIMS], sa, sb);
    s->row = row_kind(&s->shape);
    s->uk = fn_eltwise_ukernels_for(fn_isa());
    if (n->op == FN_OP_ADD_S8) {
        add_params(n, &s->add);
        s->add_swapped = s->add;
        s->add_swapped.a = s->add.b;
        s->add_swapped.b = s->add.a;
        if (s->add.kind == FN_VADD_SUB) s->add_swapped.kind = FN_VADD_RSUB;
    } else {
        mul_params(n, &s->mul);
        s->mul_swapped = s->mul; /* the product commutes */
        s->mul_swapped.a_zp = s->mul.b_zp;
        s->mul_swapped.b_zp = s->mul.a_zp;
    }
    n->state = s;
    return FN_OK;
}

int fn_prepare_add_s8(fn_node *n, const fn_tensor *t, int32_t nt, size_t *scratch_bytes) {
    (void)t, (void)nt, (void)scratch_bytes;
    return prepare_binary(n);
}

int fn_prepare_mul_s8(fn_node *n, const fn_tensor *t, int32_t nt, size_t *scratch_bytes) {
    (void)t, (void)nt, (void)scratch_bytes;
    return prepare_binary(n);
}

typedef struct {
    const bin_state *s;
    const int8_t *a, *b;
    int8_t *y;
} bin_ctx;

static void add_row(const void *ctx, int64_t ia, int64_t ib, int64_t o, int64_t len) {
    const bin_ctx *c = ctx;
    const bin_state *s = c->s;
    switch (s->row) {
    case ROW_VV: s->uk.vadd((size_t)len, c->a + ia, c->b + ib, c->y + o, &s->add); break;
    case ROW_VC:
        s->uk.vaddc((size_t)len, c->a + ia, fn_qs8_vadd_in(c->b[ib], &s->add.b, s->add.ls), c->y + o, &s->add);
        break;
    case ROW_CV:
        s->uk.vaddc((size_t)len, c->b + ib, fn_qs8_vadd_in(c->a[ia], &s->add.a, s->add.ls), c->y + o,
                    &s->add_swapped);
        break;
    default: {
        const int64_t sa = s->shape.sa[s->shape.nd - 1], sb = s->shape.sb[s->shape.nd - 1];
        for (int64_t j = 0; j < len; j++)
            fn_qs8_vadd_ukernel__scalar(1, c->a + ia + j * sa, c->b + ib + j * sb, c->y + o + j, &s->add);
    } break;
    }
}

static void mul_row(const void *ctx, int64_t ia, int64_t ib, int64_t o, int64_t len) {
    const bin_ctx *c = ctx;
    const bin_state *s = c->s;
    switch (s->row) {
    case ROW_VV: s->uk.vmul((size_t)len, c->a + ia, c->b + ib, c->y + o, &s->mul); break;
    case ROW_VC: s->uk.vmulc((size_t)len, c->a + ia, c->b[ib] - s->mul.b_zp, c->y + o, &s->mul); break;
    case ROW_CV: s->uk.vmulc((size_t)len, c->b + ib, c->a[ia] - s->mul.a_zp, c->y + o, &s->mul_swapped); break;
    default: {
        const int64_t sa = s->shape.sa[s->shape.nd - 1], sb = s->shape.sb[s->shape.nd - 1];
        for (int64_t j = 0; j < len; j++)
            fn_qs8_vmul_ukernel__scalar(1, c->a + ia + j * sa, c->b + ib + j * sb, c->y + o + j, &s->mul);
    } break;
    }
}

/* With threads, one row of two whole same-shape operands (a residual ADD) is cut into pieces
 * of at least this many elements, at most 16 per thread; each piece is a task. */
#define FN_BIN_TASK_ELEMS ((int64_t)1 << 14)

typedef struct {
    const bin_ctx *c;
    fn_row_fn row;
    int64_t len, piece;
} bin_job;

static void bin_task(void *ctx, size_t task, uint8_t *scratch) {
    (void)scratch;
    const bin_job *j = ctx;
    const int64_t at = (int64_t)task * j->piece, len = j->len - at < j->piece ? j->len - at : j->piece;
    j->row(j->c, at, at, at, len);
}

static int run_binary(const fn_node *n, fn_tensor *t, fn_row_fn row, const volatile int32_t *cancel) {
    const bin_ctx c = {n->state, (const int8_t *)t[n->in[0]].data, (const int8_t *)t[n->in[1]].data,
                       (int8_t *)t[n->out[0]].data};
    const fn_rows *shape = &c.s->shape;
    const int64_t len = shape->dims[0], threads = n->exec->threads;
    if (threads > 1 && shape->nd == 1 && c.s->row == ROW_VV && len >= 2 * FN_BIN_TASK_ELEMS) {
        int64_t piece = (len + 16 * threads - 1) / (16 * threads);
        if (piece < FN_BIN_TASK_ELEMS) piece = FN_BIN_TASK_ELEMS;
        piece = (piece + 63) / 64 * 64;
        const bin_job j = {&c, row, len, piece};
        return fn_parallel(n->exec, (size_t)((len + piece - 1) / piece), bin_task, (void *)&j, cancel);
    }
    return fn_rows_walk(shape, row, &c, cancel);
}

int fn_run_add_s8(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    return run_binary(n, t, add_row, cancel);
}

int fn_run_mul_s8(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    return run_binary(n, t, mul_row, cancel);
}

enum { F_ADD = 0, F_SUB, F_MUL, F_DIV, F_SQDIFF, F_MAX, F_MIN };

int fn_check_binary_f32(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (check_broadcast(n, t, nt, FN_F32, FN_F32) != 0) return -1;
    return (n->p[B_KIND] >= F_ADD && n->p[B_KIND] <= F_MIN) ? 0 : -1;
}

int fn_run_binary_f32(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const float *a = (const float *)t[n->in[0]].data, *b = (const float *)t[n->in[1]].data;
    float *y = (float *)t[n->out[0]].data;
    const int kind = n->p[B_KIND];
    FN_BROADCAST_LOOP(n, cancel, {
        const float x = a[ia], z = b[ib];
        float r;
        switch (kind) {
        case F_ADD: r = x + z; break;
        case F_SUB: r = x - z; break;
        case F_MUL: r = x * z; break;
        case F_DIV: r = x / z; break;
        case F_SQDIFF: r = (x - z) * (x - z); break;
        case F_MAX: r = x > z ? x : z; break;
        default: r = x < z ? x : z; break;
        }
        y[o_] = r;
    });
    return FN_OK;
}

enum { I_ADD = 0, I_SUB, I_MUL, I_FLOORDIV, I_MAX, I_MIN };

int fn_check_binary_i32(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (check_broadcast(n, t, nt, FN_I32, FN_I32) != 0) return -1;
    return (n->p[B_KIND] >= I_ADD && n->p[B_KIND] <= I_MIN) ? 0 : -1;
}

int fn_run_binary_i32(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const int32_t *a = (const int32_t *)t[n->in[0]].data, *b = (const int32_t *)t[n->in[1]].data;
    int32_t *y = (int32_t *)t[n->out[0]].data;
    const int kind = n->p[B_KIND];
    FN_BROADCAST_LOOP(n, cancel, {
        const int64_t x = a[ia], z = b[ib];
        int64_t r;
        switch (kind) {
        case I_ADD: r = x + z; break;
        case I_SUB: r = x - z; break;
        case I_MUL: r = x * z; break;
        case I_FLOORDIV:
            if (z == 0) return FN_E_RUNTIME;
            r = x / z;
            if ((x % z != 0) && ((x < 0) != (z < 0))) r -= 1;
            break;
        case I_MAX: r = x > z ? x : z; break;
        default: r = x < z ? x : z; break;
        }
        y[o_] = fn_wrap32(r);
    });
    return FN_OK;
}

/* Unary float32 ops of float islands (only those LiteRT computes exactly; its float TANH and
 * LOGISTIC use polynomial approximations we do not reproduce). */
enum { U_KIND = 0 };
enum { U_NEG = 0, U_RSQRT, U_RELU, U_RELU6 };

int fn_check_unary_f32(const fn_node *n, const fn_tensor *t, int32_t nt) {
    if (fn_check_unary(n, t, nt, FN_F32, FN_F32) != 0) return -1;
    return (n->p[U_KIND] >= U_NEG && n->p[U_KIND] <= U_RELU6) ? 0 : -1;
}

int fn_run_unary_f32(const fn_node *n, fn_tensor *t, const volatile int32_t *cancel) {
    const float *x = (const float *)t[n->in[0]].data;
    float *y = (float *)t[n->out[0]].data;
    const int64_t count = t[n->in[0]].count;
    const int kind = n->p[U_KIND];
    for (int64_t i = 0; i < count; i++) {
        if ((i & 0xFFFF) == 0 && FN_CANCEL_REQUESTED(cancel)) return FN_CANCELLED;
        const float v = x[i];
        float r;
        switch (kind) {
        case U_NEG: r = -v; break;
        case U_RSQRT: r = 1.0f / sqrtf(v); break;
        case U_RELU: r = v > 0.0f ? v : 0.0f; break;
        default: r = v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f; break;
        }
        y[i] = r;
    }
    return FN_OK;
}
