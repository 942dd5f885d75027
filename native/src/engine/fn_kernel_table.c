/* The kernel table: per op kind its check, its operator and, for ops that run microkernels,
 * the prepare step that packs their constants for the ISA chosen at plan creation. */
#include <stddef.h>

#include "fn_kernels.h"

#define K(op, name) [op] = {#name, fn_check_##name, fn_run_##name, NULL}
/* An op whose constants are packed for a microkernel at plan creation. */
#define KP(op, name) [op] = {#name, fn_check_##name, fn_run_##name, fn_prepare_##name}

static const fn_kernel KERNELS[FN_OP_COUNT] = {
    KP(FN_OP_FULLY_CONNECTED, fully_connected_s8),
    KP(FN_OP_CONV_2D, conv2d_s8),
    KP(FN_OP_DEPTHWISE_CONV_2D, dwconv2d_s8),
    K(FN_OP_QUANTIZE_F32_S8, quantize_f32_s8),
    K(FN_OP_DEQUANTIZE_S8_F32, dequantize_s8_f32),
    K(FN_OP_REQUANTIZE_S8, requantize_s8),
    K(FN_OP_COPY, copy),
    KP(FN_OP_ADD_S8, add_s8),
    KP(FN_OP_MUL_S8, mul_s8),
    K(FN_OP_BINARY_F32, binary_f32),
    K(FN_OP_BINARY_I32, binary_i32),
    KP(FN_OP_AVG_POOL_S8, avg_pool_s8),
    KP(FN_OP_MAX_POOL_S8, max_pool_s8),
    KP(FN_OP_MEAN_S8, mean_s8),
    K(FN_OP_REDUCE_I32, reduce_i32),
    KP(FN_OP_SOFTMAX_S8, softmax_s8),
    KP(FN_OP_LUT_S8, lut_s8),
    K(FN_OP_UNARY_F32, unary_f32),
    K(FN_OP_STRIDED_COPY, strided_copy),
    K(FN_OP_CONCAT, concat),
    K(FN_OP_GATHER, gather),
    K(FN_OP_BATCH_MATMUL_S8, batch_matmul_s8),
};

const fn_kernel *fn_kernel_for(int32_t op) {
    if (op < 0 || op >= FN_OP_COUNT || KERNELS[op].run == NULL) return NULL;
    return &KERNELS[op];
}
