"""The plan vocabulary the planner and the op handlers share: native op kinds and requantization
rules (mirrors of native/include/fn_engine.h), dtype codes, node row sizes and PlanTables."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

MAX_DIMS = 6
NODE_IN, NODE_OUT, NODE_PARAMS = 8, 4, 48
ALIGN = 64
MAX_ELEMENTS = 1 << 31  # per tensor; kernels index with int64 but dims are int32


class NativeOp(enum.IntEnum):
    """Mirror of enum fn_op in native/include/fn_engine.h (same order)."""

    FULLY_CONNECTED = 0
    CONV_2D = enum.auto()
    DEPTHWISE_CONV_2D = enum.auto()
    QUANTIZE_F32_S8 = enum.auto()
    DEQUANTIZE_S8_F32 = enum.auto()
    REQUANTIZE_S8 = enum.auto()
    COPY = enum.auto()
    ADD_S8 = enum.auto()
    MUL_S8 = enum.auto()
    AVG_POOL_S8 = enum.auto()
    MAX_POOL_S8 = enum.auto()
    MEAN_S8 = enum.auto()
    SOFTMAX_S8 = enum.auto()
    LUT_S8 = enum.auto()
    CONCAT = enum.auto()
    STRIDED_COPY = enum.auto()
    GATHER = enum.auto()
    BATCH_MATMUL_S8 = enum.auto()
    BINARY_F32 = enum.auto()
    UNARY_F32 = enum.auto()
    BINARY_I32 = enum.auto()
    REDUCE_I32 = enum.auto()


class Requant(enum.IntEnum):
    """Mirror of enum fn_requant."""

    DOUBLE_ROUND = 0
    FLOAT64 = 1
    RUY_X86 = 2


DTYPES: dict[str, tuple[int, np.dtype]] = {
    "float32": (0, np.dtype(np.float32)), "int32": (1, np.dtype(np.int32)),
    "int8": (2, np.dtype(np.int8)), "uint8": (3, np.dtype(np.uint8)),
    "int64": (4, np.dtype(np.int64)), "bool": (5, np.dtype(np.bool_)),
    "int16": (6, np.dtype(np.int16)),
}
F64_CODE = 7

# Requantization rule per op in the oracle build, learnt from tests (see docs/engine.md): the
# builtin FULLY_CONNECTED and CONV_2D run through ruy's x86 output stage, BATCH_MATMUL through
# gemmlowp double rounding, DEPTHWISE_CONV_2D through double rounding for the channels its
# NEON-emulated blocks of 8 leave over (the blocks themselves round half up; see ops.conv2d).
FC_REQUANT = Requant.RUY_X86
CONV_REQUANT = Requant.RUY_X86
DWCONV_REQUANT = Requant.DOUBLE_ROUND
BMM_REQUANT = Requant.DOUBLE_ROUND


@dataclass
class PlanTables:
    tensor_rows: np.ndarray  # int64 [n, 11]
    node_rows: np.ndarray  # int32 [m, 63]
    consts: np.ndarray  # uint8
    arena_bytes: int
    inputs: list[int]  # plan tensor ids of the graph inputs
    outputs: list[int]
    offsets: list[int]  # arena offset of each plan tensor (or -1 if constant)
    op_names: list[str]  # model op name behind each node (for error messages)
    model_tensors: dict[int, int]  # model tensor index -> plan tensor id
    io_shapes: dict[int, tuple[int, ...]]  # inferred shapes of the graph inputs and outputs


def prod(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
