"""Op handlers: per TFLite builtin, validate the operator and emit native plan nodes.

Each handler mirrors what the TFLite kernel's Prepare checks and computes (multipliers, shifts,
activation ranges, padding) and hands the kernel only integers it can trust. One module per op
family, each named after its C twin in native/src/ops/ (as TFLite keeps one reference kernel per
op); importing this package fills the registries HANDLERS and FOLDERS.
"""

from __future__ import annotations

from agent.inference.ops._common import DTYPE_OF, conv_geometry
from agent.inference.ops._registry import FOLDERS, HANDLERS, Folder, Handler, folds, handles
from agent.inference.ops.conv import conv2d
from agent.inference.ops.data import (
    concatenation,
    gather,
    pad,
    reshape,
    reshape_target,
    shape_op,
    slice_geometry,
    strided_slice,
    transpose,
)
from agent.inference.ops.elementwise import add_sub, broadcast_params, mul
from agent.inference.ops.fold import (
    fold_arith,
    fold_gather,
    fold_pack,
    fold_reduce,
    fold_reshape,
    fold_shape,
    fold_slice,
)
from agent.inference.ops.fully_connected import fully_connected
from agent.inference.ops.lut import float_lut, hard_swish, neg, relu
from agent.inference.ops.matmul import batch_matmul
from agent.inference.ops.pool import pool
from agent.inference.ops.quantize import dequantize, quantize
from agent.inference.ops.reduce import mean, reduce_int, reduce_params
from agent.inference.ops.softmax import softmax

__all__ = [
    "DTYPE_OF", "FOLDERS", "HANDLERS", "Folder", "Handler", "add_sub", "batch_matmul",
    "broadcast_params", "concatenation", "conv2d", "conv_geometry", "dequantize", "float_lut",
    "fold_arith", "fold_gather", "fold_pack", "fold_reduce", "fold_reshape", "fold_shape",
    "fold_slice", "folds", "fully_connected", "gather", "handles", "hard_swish", "mean", "mul",
    "neg", "pad", "pool", "quantize", "reduce_int", "reduce_params", "relu", "reshape",
    "reshape_target", "shape_op", "slice_geometry", "softmax", "strided_slice", "transpose",
]
