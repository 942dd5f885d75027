"""Loader and kernel fuzzing: mutate valid models, load and run them; anything but success or a
ModelError is a failure. Used by the fuzz smoke test and by `make -C native fuzz` (sanitizers).

    python -m tests.inference.fuzzing --count 100000 [--seed 1]
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from collections.abc import Callable, Iterator

import numpy as np

from agent.inference import ModelError, load_model
from agent.inference.models import make_thin_path
from tests.inference import models

INTERESTING = [0, 1, 2, 4, 8, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


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


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One to four structure-blind mutations: flips, interesting 8/16/32-bit values, cuts, splices."""
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        kind = int(rng.integers(0, 6))
        if not b:
            break
        pos = int(rng.integers(0, len(b)))
        if kind == 0:
            b[pos] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:
            b[pos] = int(rng.integers(0, 256))
        elif kind in (2, 3):
            width = 4 if kind == 2 else 2
            v = INTERESTING[int(rng.integers(0, len(INTERESTING)))] + int(rng.integers(-2, 3))
            v &= (1 << (8 * width)) - 1
            if pos + width <= len(b):
                b[pos:pos + width] = struct.pack("<I" if width == 4 else "<H", v)
        elif kind == 4:
            del b[pos:pos + int(rng.integers(1, 64))]
        else:
            src = int(rng.integers(0, len(b)))
            chunk = b[src:src + int(rng.integers(1, 32))]
            b[pos:pos] = chunk
    return bytes(b)


def exercise(data: bytes, rng: np.random.Generator) -> str:
    """Loads and runs one model; returns 'ok', 'refused' or 'run-refused'. Raises on anything else."""
    try:
        m = load_model(data)
    except ModelError:
        return "refused"
    xs = []
    for s in m.inputs:
        if s.dtype == np.float32:
            xs.append(rng.standard_normal(s.shape).astype(np.float32) * 10)
        else:
            info = np.iinfo(s.dtype)
            xs.append(rng.integers(info.min, info.max + 1, size=s.shape, dtype=s.dtype))
    try:
        m.run(xs)
    except ModelError:
        return "run-refused"
    return "ok"


def cases(count: int, seed: int) -> Iterator[tuple[int, bytes]]:
    rng = np.random.default_rng(seed)
    seeds = seed_models()
    for i in range(count):
        yield i, mutate(seeds[i % len(seeds)], rng)


def run(count: int, seed: int, report: Callable[[str], None] = print) -> dict[str, int]:
    rng = np.random.default_rng(seed + 1)
    tally = {"ok": 0, "refused": 0, "run-refused": 0}
    t0 = time.time()
    for i, data in cases(count, seed):
        try:
            tally[exercise(data, rng)] += 1
        except Exception as e:  # anything but a ModelError is a bug: show the case
            raise AssertionError(f"case {i}: {type(e).__name__}: {e}") from e
        if report is not None and (i + 1) % 10000 == 0:
            report(f"{i + 1} cases in {time.time() - t0:.0f} s: {tally}")
    return tally


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--count", type=int, default=100000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    tally = run(a.count, a.seed)
    print(f"fuzz: {a.count} mutated models, no crash, no error other than ModelError: {tally}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
