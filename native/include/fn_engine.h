/* fleetnode native int8 engine: the plan, tensor and kernel interface shared by every kernel.
 *
 * A plan is a flat list of nodes over a flat table of tensors. The Python loader validates the
 * model and fills both tables; fn_plan_create checks them again (every tensor lies inside its
 * region, every node passes its kernel's check) before any kernel runs, and binds each node to
 * one kernel function from the table chosen once at creation.
 */
#ifndef FN_ENGINE_H
#define FN_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#define FN_MAX_DIMS 6
#define FN_MAX_IN 8
#define FN_MAX_OUT 4
#define FN_NODE_PARAMS 48

/* Row layouts of the int64 tensor table and int32 node table Python hands over. */
#define FN_TENSOR_COLS 11 /* type, ndim, dims[6], region, offset, nbytes */
#define FN_NODE_COLS (3 + FN_MAX_IN + FN_MAX_OUT + FN_NODE_PARAMS)

enum fn_dtype { FN_F32 = 0, FN_I32 = 1, FN_I8 = 2, FN_U8 = 3, FN_I64 = 4, FN_BOOL = 5, FN_I16 = 6, FN_F64 = 7 };
enum fn_region { FN_REGION_ARENA = 0, FN_REGION_CONST = 1 };

enum fn_status {
    FN_OK = 0,
    FN_CANCELLED = 1,
    FN_E_TENSOR = -1,  /* a tensor row is out of its region or malformed */
    FN_E_NODE = -2,    /* a node's tensors or parameters do not fit its kernel */
    FN_E_OP = -3,      /* no kernel for this op kind */
    FN_E_NOMEM = -4,
    FN_E_RUNTIME = -5  /* a data-dependent condition a kernel refuses (e.g. gather index) */
};

/* Op kinds of our plan (not TFLite's builtin codes; the planner maps those). */
enum fn_op {
    FN_OP_FULLY_CONNECTED = 0,
    FN_OP_CONV_2D,
    FN_OP_DEPTHWISE_CONV_2D,
    FN_OP_QUANTIZE_F32_S8,
    FN_OP_DEQUANTIZE_S8_F32,
    FN_OP_REQUANTIZE_S8,
    FN_OP_COPY,
    FN_OP_ADD_S8,
    FN_OP_MUL_S8,
    FN_OP_AVG_POOL_S8,
    FN_OP_MAX_POOL_S8,
    FN_OP_MEAN_S8,
    FN_OP_SOFTMAX_S8,
    FN_OP_LUT_S8,
    FN_OP_CONCAT,
    FN_OP_STRIDED_COPY,
    FN_OP_GATHER,
    FN_OP_BATCH_MATMUL_S8,
    FN_OP_BINARY_F32,
    FN_OP_UNARY_F32,
    FN_OP_BINARY_I32,
    FN_OP_REDUCE_I32,
    FN_OP_COUNT
};

typedef struct {
    int32_t type;
    int32_t ndim;
    int32_t dims[FN_MAX_DIMS];
    int64_t count;  /* number of elements */
    int64_t nbytes;
    uint8_t *data;  /* resolved at plan creation */
    int32_t region; /* FN_REGION_ARENA or FN_REGION_CONST */
} fn_tensor;

struct fn_node;
struct fn_exec;
typedef int (*fn_run_fn)(const struct fn_node *node, fn_tensor *t, const volatile int32_t *cancel);
typedef int (*fn_check_fn)(const struct fn_node *node, const fn_tensor *t, int32_t n_tensors);
/* Optional, after check: packs constants for the chosen microkernel into node->state (freed with
 * the plan) and says how many scratch bytes one thread needs while running the node. */
typedef int (*fn_prepare_fn)(struct fn_node *node, const fn_tensor *t, int32_t n_tensors, size_t *scratch_bytes);

typedef struct fn_node {
    int32_t op, n_in, n_out;
    int32_t in[FN_MAX_IN];
    int32_t out[FN_MAX_OUT];
    int32_t p[FN_NODE_PARAMS];
    fn_run_fn run;
    void *state;           /* what prepare made, or NULL */
    uint32_t consumed;     /* bit j: prepare took what it needs of input j (a filter it packed) */
    struct fn_exec *exec;  /* the plan's threads and scratch */
} fn_node;

typedef struct {
    const char *name;
    fn_check_fn check;
    fn_run_fn run;
    fn_prepare_fn prepare;
} fn_kernel;

typedef struct fn_plan fn_plan;

/* Checks both tables and binds kernels. The arena is borrowed and must outlive the plan; consts is
 * read only here: the plan keeps its own copy of the constants its kernels still read (not the
 * filters the operators packed), so the caller may free consts once this returns.
 * On failure returns NULL and writes the failing node index (or -1) and status to *err_node, *err. */
fn_plan *fn_plan_create(const int64_t *tensor_rows, int32_t n_tensors, const int32_t *node_rows,
                        int32_t n_nodes, uint8_t *arena, int64_t arena_len, const uint8_t *consts,
                        int64_t consts_len, int32_t *err_node, int32_t *err);
/* Runs every node in order; returns FN_OK, FN_CANCELLED, or a negative status (node in *err_node). */
int fn_plan_run(fn_plan *plan, const volatile int32_t *cancel, int32_t *err_node);
void fn_plan_free(fn_plan *plan);
/* Threads that run a plan's nodes (1 by default, at most FN_MAX_THREADS): returns 0, or
 * FN_E_NOMEM (the plan keeps its previous count). Results are the same bytes for every count. */
#define FN_MAX_THREADS 64
int fn_plan_set_threads(fn_plan *plan, int32_t threads);
/* As fn_plan_run, and writes each node's wall time in nanoseconds to ns[0..n_nodes). */
int fn_plan_run_profile(fn_plan *plan, const volatile int32_t *cancel, int32_t *err_node, int64_t *ns);
int32_t fn_plan_node_count(const fn_plan *plan);
/* The ISA (fn_cpu.h) whose microkernels the plan was bound to. */
int fn_plan_isa(const fn_plan *plan);

/* The kernel table: the portable C reference kernel per op. */
const fn_kernel *fn_kernel_for(int32_t op);

/* Tables built once at load (exposed so every machine builds them with the same code). */
enum fn_lut_kind {
    FN_LUT_LOGISTIC = 0, FN_LUT_TANH, FN_LUT_GELU, FN_LUT_GELU_TANH, FN_LUT_RSQRT, FN_LUT_HARD_SWISH,
    FN_LUT_REQUANT_CLAMP, FN_LUT_LEAKY_RELU
};
/* fp: {s_in, s_out} for float transforms; ip: zero points and integer multipliers (see fn_lut.c). */
int fn_lut_build(int32_t kind, const float *fp, const int32_t *ip, int8_t out[256]);
void fn_softmax_table(float s_in, float beta, float table[256]);

/* Helpers shared by kernels' checks. */
int fn_tensor_ok(const fn_tensor *t, int32_t n_tensors, int32_t idx, int32_t type);
int64_t fn_dtype_size(int32_t type);

#define FN_CANCEL_REQUESTED(c) ((c) != NULL && *(c) != 0)

#endif
