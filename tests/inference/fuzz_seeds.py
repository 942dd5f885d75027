"""One-op seed models of every op family, small enough to mutate by the thousand.

The model fuzzer (tests.inference.loader_fuzz: the in-process smoke test and `make -C native
fuzz`) mutates them next to the zoo, so its mutants reach the checks of kernels the zoo does not
use; the aarch64 vectors (tests.inference.aarch64_vectors) run them as one-op plans.
"""

from __future__ import annotations

import numpy as np

from agent.inference.models import make_thin_path
from tests.inference import models


def seed_models() -> list[bytes]:
    """Small valid models covering every op family, so mutations reach every kernel's checks."""
    rng = np.random.default_rng(0)
    q = (0.05, 3)
    seeds = [
        make_thin_path.build(),
        models.conv2d(rng, h=5, w=5, c=3, o=4, stride=(2, 1)),
        models.conv2d(rng, h=5, w=5, c=4, depthwise=True, mult=2, padding=1),
        models.fully_connected(rng, batch=2, depth=6, units=3),
        models.single_op("ADD", [((2, 3), "int8", q, None), ((3,), "int8", (0.1, -2), None)], [((2, 3), "int8", q)],
                         "AddOptions", [(0, "b", 0)]),
        models.single_op("MUL", [((2, 3), "int8", q, None), ((2, 1), "int8", q, None)], [((2, 3), "int8", q)],
                         "MulOptions", [(0, "b", 1)]),
        models.single_op("MEAN", [((1, 3, 3, 4), "int8", q, None), ((2,), "int32", None, np.array([1, 2], np.int32))],
                         [((1, 1, 1, 4), "int8", (0.02, 0))], "ReducerOptions", [(0, "bool", True)]),
        models.single_op("SOFTMAX", [((2, 5), "int8", q, None)], [((2, 5), "int8", (1 / 256, -128))],
                         "SoftmaxOptions", [(0, "f", 1.0)]),
        models.single_op("AVERAGE_POOL_2D", [((1, 4, 4, 2), "int8", q, None)], [((1, 2, 2, 2), "int8", q)],
                         "Pool2DOptions", [(0, "b", 1), (1, "i", 2), (2, "i", 2), (3, "i", 2), (4, "i", 2), (5, "b", 0)]),
        models.single_op("HARD_SWISH", [((2, 4), "int8", q, None)], [((2, 4), "int8", (0.03, -1))]),
        models.single_op("TRANSPOSE", [((2, 3, 4), "int8", q, None), ((3,), "int32", None, np.array([2, 0, 1], np.int32))],
                         [((4, 2, 3), "int8", q)], "TransposeOptions", []),
        models.single_op("PAD", [((2, 3), "int8", q, None), ((2, 2), "int32", None, np.array([[1, 0], [0, 2]], np.int32))],
                         [((3, 5), "int8", q)], "PadOptions", []),
        models.single_op("GATHER", [((4, 3), "int8", q, None), ((2,), "int32", None, np.array([3, 0], np.int32))],
                         [((2, 3), "int8", q)], "GatherOptions", [(0, "i", 0), (1, "i", 0)]),
        models.single_op("CONCATENATION", [((2, 2), "int8", q, None), ((2, 3), "int8", q, None)], [((2, 5), "int8", q)],
                         "ConcatenationOptions", [(0, "i", 1), (1, "b", 0)]),
        models.single_op("BATCH_MATMUL", [((2, 3, 4), "int8", q, None), ((2, 4, 5), "int8", q, None)],
                         [((2, 3, 5), "int8", (0.2, 0))], "BatchMatMulOptions",
                         [(0, "bool", False), (1, "bool", False), (2, "bool", False)]),
        models.single_op("STRIDED_SLICE", [((4, 5), "int8", q, None), ((2,), "int32", None, np.array([1, 0], np.int32)),
                                           ((2,), "int32", None, np.array([4, 5], np.int32)),
                                           ((2,), "int32", None, np.array([2, 2], np.int32))],
                         [((2, 3), "int8", q)], "StridedSliceOptions",
                         [(0, "i", 0), (1, "i", 0), (2, "i", 0), (3, "i", 0), (4, "i", 0), (5, "bool", False)]),
        models.single_op("QUANTIZE", [((3, 4), "float32", None, None)], [((3, 4), "int8", q)]),
        models.single_op("DEQUANTIZE", [((3, 4), "int8", q, None)], [((3, 4), "float32", None)]),
        dynamic_batch_reshape(),
    ]
    return seeds


def dynamic_batch_reshape() -> bytes:
    """RESHAPE whose target is computed from SHAPE, as converters emit for a dynamic batch."""
    from agent.inference.builder import ModelBuilder

    q = (0.05, 3)
    mb = ModelBuilder()
    x = mb.tensor((2, 3, 4), "int8", scale=q[0], zero_point=q[1])
    shp = mb.tensor((3,), "int32")
    mb.op("SHAPE", [x], [shp], "ShapeOptions", [(0, "B", 2)])
    idx = mb.tensor((1,), "int32", data=np.array([0], np.int32))
    batch = mb.tensor((1,), "int32")
    mb.op("GATHER", [shp, idx], [batch], "GatherOptions", [(0, "i", 0), (1, "i", 0)])
    rest_idx = mb.tensor((2,), "int32", data=np.array([1, 2], np.int32))
    rest = mb.tensor((2,), "int32")
    mb.op("GATHER", [shp, rest_idx], [rest], "GatherOptions", [(0, "i", 0), (1, "i", 0)])
    ax = mb.tensor((1,), "int32", data=np.array([0], np.int32))
    prod = mb.tensor((), "int32")
    mb.op("REDUCE_PROD", [rest, ax], [prod], "ReducerOptions", [(0, "bool", False)])
    b0 = mb.tensor((), "int32")
    mb.op("RESHAPE", [batch, mb.tensor((0,), "int32", data=np.zeros(0, np.int32))], [b0], "ReshapeOptions",
          [(0, "ivec", [])])
    new_shape = mb.tensor((2,), "int32")
    mb.op("PACK", [b0, prod], [new_shape], "PackOptions", [(0, "i", 2), (1, "i", 0)])
    y = mb.tensor((1, 1), "int8", scale=q[0], zero_point=q[1])  # a placeholder shape, as converters write
    mb.op("RESHAPE", [x, new_shape], [y], "ReshapeOptions", [(0, "ivec", [-1, 12])])
    return mb.build([x], [y])
