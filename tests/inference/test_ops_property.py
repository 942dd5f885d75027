"""Per-op property tests: single-op models over generated shapes, strides, paddings, scales and
zero points; our bytes must equal LiteRT's builtin kernels' bytes for random inputs."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.inference.schema import ACT_NONE, ACT_RELU, ACT_RELU6, ACT_RELU_N1_TO_1
from tests.inference import models
from tests.inference.oracle import assert_bit_exact

PROPS = settings(max_examples=int(os.environ.get("FLEETNODE_PROPERTY_EXAMPLES", "60")), deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scales = st.floats(min_value=0.002, max_value=0.5)
zps = st.integers(-128, 127)
acts = st.sampled_from([ACT_NONE, ACT_RELU, ACT_RELU6, ACT_RELU_N1_TO_1])
seeds = st.integers(0, 2**32 - 1)


@PROPS
@given(n=st.integers(1, 2), h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 20),
       o=st.integers(1, 20), k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), dil=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       padding=st.integers(0, 1), act=acts, s_in=scales, z_in=zps, s_out=scales, z_out=zps,
       per_channel=st.booleans(), groups=st.sampled_from([1, 1, 2, 3]), seed=seeds)
def test_conv2d(n: int, h: int, w: int, c: int, o: int, k: tuple[int, int], stride: tuple[int, int],
                dil: tuple[int, int], padding: int, act: int, s_in: float, z_in: int, s_out: float, z_out: int,
                per_channel: bool, groups: int, seed: int) -> None:
    c, o = max(1, c // groups) * groups, max(1, o // groups) * groups
    eff = ((k[0] - 1) * dil[0] + 1, (k[1] - 1) * dil[1] + 1)
    if padding == 1 and (h < eff[0] or w < eff[1]):
        h, w = max(h, eff[0]), max(w, eff[1])
    rng = np.random.default_rng(seed)
    data = models.conv2d(rng, n=n, h=h, w=w, c=c, o=o, kh=k[0], kw=k[1], stride=stride, dil=dil, padding=padding,
                         act=act, s_in=s_in, z_in=z_in, s_out=s_out, z_out=z_out, per_channel=per_channel,
                         groups=groups)
    assert_bit_exact(data, rng, runs=2)


# Channel counts on and around the kernels' blocks of 8 (and 16, 32), so that full blocks, tails
# (LiteRT rounds them differently) and counts below one block all come up; square 3x3 and 5x5
# kernels as often as the other shapes, since they have kernels of their own.
dw_channels = st.one_of(st.integers(1, 24), st.sampled_from([7, 8, 9, 15, 16, 17, 23, 31, 32, 33, 40, 47, 48, 63, 64, 65]))
dw_kernels = st.one_of(st.sampled_from([(3, 3), (5, 5)]), st.tuples(st.integers(1, 5), st.integers(1, 5)))


@PROPS
@given(n=st.integers(1, 2), h=st.integers(1, 12), w=st.integers(1, 12), c=dw_channels,
       mult=st.sampled_from([1, 1, 1, 2, 3]), k=dw_kernels, stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       dil=st.tuples(st.integers(1, 2), st.integers(1, 2)), padding=st.integers(0, 1), act=acts, s_in=scales,
       z_in=zps, s_out=scales, z_out=zps, per_channel=st.booleans(), seed=seeds)
def test_depthwise_conv2d(n: int, h: int, w: int, c: int, mult: int, k: tuple[int, int], stride: tuple[int, int],
                          dil: tuple[int, int], padding: int, act: int, s_in: float, z_in: int, s_out: float,
                          z_out: int, per_channel: bool, seed: int) -> None:
    eff = ((k[0] - 1) * dil[0] + 1, (k[1] - 1) * dil[1] + 1)
    if padding == 1:
        h, w = max(h, eff[0]), max(w, eff[1])
    rng = np.random.default_rng(seed)
    data = models.conv2d(rng, n=n, h=h, w=w, c=c, kh=k[0], kw=k[1], stride=stride, dil=dil, padding=padding,
                         act=act, s_in=s_in, z_in=z_in, s_out=s_out, z_out=z_out, per_channel=per_channel,
                         depthwise=True, mult=mult)
    assert_bit_exact(data, rng, runs=2)



# Shapes past the depthwise operator's buffers (fn_op_dwconv2d.c): every row's pointers do not
# fit the kept table, so tasks build their row; one row does not fit a thread's scratch, and the
# input rows with repeated channels of a multiplier do not either, so the reference loop runs.
@pytest.mark.parametrize("h, w, c, k, dil, mult", [
    (150, 150, 8, (5, 5), (2, 2), 1),  # the table would pass 4 MiB
    (1, 40000, 8, (1, 1), (1, 1), 1),  # a row of 40000 pointers passes 256 KiB
    (3, 3000, 64, (3, 3), (1, 1), 2),  # 3 rows of 3000 x 128 repeated channels pass 1 MiB
])
def test_depthwise_conv2d_large(h: int, w: int, c: int, k: tuple[int, int], dil: tuple[int, int], mult: int) -> None:
    rng = np.random.default_rng(h * w + c)
    data = models.conv2d(rng, h=h, w=w, c=c, kh=k[0], kw=k[1], dil=dil, padding=0, s_in=0.02, z_in=-7,
                         s_out=0.05, z_out=3, depthwise=True, mult=mult)
    assert_bit_exact(data, rng, runs=1)

@PROPS
@given(batch=st.integers(1, 6), depth=st.integers(1, 70), units=st.integers(1, 40), act=acts, s_in=scales,
       z_in=zps, s_out=scales, z_out=zps, per_channel=st.booleans(), bias=st.booleans(), seed=seeds)
def test_fully_connected(batch: int, depth: int, units: int, act: int, s_in: float, z_in: int, s_out: float,
                         z_out: int, per_channel: bool, bias: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = models.fully_connected(rng, batch=batch, depth=depth, units=units, act=act, s_in=s_in, z_in=z_in,
                                  s_out=s_out, z_out=z_out, per_channel=per_channel, bias=bias)
    assert_bit_exact(data, rng, runs=2)


def _broadcast_shapes(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    rank = draw(st.integers(1, 4))
    full = [draw(st.integers(1, 6)) for _ in range(rank)]
    a = tuple(d if draw(st.booleans()) else 1 for d in full)
    b = tuple(d if draw(st.booleans()) else 1 for d in full)
    b = b[draw(st.integers(0, rank - 1)):]  # lower rank on one side
    return a, b


def _row_shapes(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Rows long enough for the vector microkernels, with every tail length: the same shape, a
    scalar, a per-channel vector, a per-row value (LayerNorm's mean), an outer product."""
    rows, n = draw(st.integers(1, 4)), draw(st.integers(1, 80))
    kind = draw(st.sampled_from(["same", "scalar", "channel", "row", "outer"]))
    a: tuple[int, ...] = (rows, n)
    b: tuple[int, ...] = {"same": (rows, n), "scalar": (1,), "channel": (n,), "row": (rows, 1), "outer": (n,)}[kind]
    if kind == "outer":
        a = (rows, 1)
    return (b, a) if draw(st.booleans()) else (a, b)


# Scales and zero points at the ends of their ranges as well: multipliers far from 1 (MUL's
# left shift), zero points whose differences reach +-255.
wide_scales = st.one_of(scales, st.sampled_from([1e-4, 3e-4, 1.0, 4.0, 16.0]))
wide_zps = st.one_of(st.sampled_from([-128, 127]), zps)


@st.composite
def binary_cases(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...], list[tuple[float, int]]]:
    a, b = _broadcast_shapes(draw) if draw(st.booleans()) else _row_shapes(draw)
    return a, b, [(draw(wide_scales), draw(wide_zps)) for _ in range(3)]


@PROPS
@given(op=st.sampled_from(["ADD", "SUB", "MUL", "SQUARED_DIFFERENCE"]), case=binary_cases(), act=acts, seed=seeds)
def test_binary_int8(op: str, case: tuple[tuple[int, ...], tuple[int, ...], list[tuple[float, int]]], act: int,
                     seed: int) -> None:
    a, b, q = case
    (s1, z1), (s2, z2), (s_out, z_out) = q
    # LiteRT's x86-64 ADD and MUL run NEON code through an SSE emulation in blocks of 8 and 16,
    # and that code narrows the requantized result to int16 without saturation: past 32767
    # output steps (an input scale over 64 output scales for ADD, a product of input scales
    # over half the output scale for MUL) its bytes wrap. We saturate, as its scalar tails do;
    # no converted model comes near those ratios. Its SQUARED_DIFFERENCE aborts once the output
    # multiplier reaches 1.
    floor = {"ADD": max(s1, s2) / 64, "SUB": 0.0, "MUL": 2 * s1 * s2,
             "SQUARED_DIFFERENCE": (2 * max(s1, s2)) ** 2 / 2**13}[op]
    q = [(s1, z1), (s2, z2), (max(s_out, floor), z_out)]
    out = tuple(np.broadcast_shapes(a, b))
    opts: dict[str, tuple[str | None, list[tuple[int, str, object]]]] = {
        "ADD": ("AddOptions", [(0, "b", act)]), "SUB": ("SubOptions", [(0, "b", act)]),
        "MUL": ("MulOptions", [(0, "b", act)]), "SQUARED_DIFFERENCE": (None, [])}
    name, fields = opts[op]
    data = models.single_op(op, [(a, "int8", q[0], None), (b, "int8", q[1], None)], [(out, "int8", q[2])],
                            name, fields)
    assert_bit_exact(data, np.random.default_rng(seed), runs=2)


@PROPS
@given(op=st.sampled_from(["AVERAGE_POOL_2D", "MAX_POOL_2D"]), n=st.integers(1, 2), h=st.integers(1, 10),
       w=st.integers(1, 10), c=st.one_of(st.integers(1, 20), st.integers(21, 70)), f=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), padding=st.integers(0, 1), act=acts, s=scales,
       z=zps, seed=seeds)
def test_pool(op: str, n: int, h: int, w: int, c: int, f: tuple[int, int], stride: tuple[int, int], padding: int,
              act: int, s: float, z: int, seed: int) -> None:
    h, w = max(h, f[0]), max(w, f[1])

    def out(size: int, k: int, st_: int) -> int:
        return (size + st_ - 1) // st_ if padding == 0 else (size - k + st_) // st_

    oshape = (n, out(h, f[0], stride[0]), out(w, f[1], stride[1]), c)
    data = models.single_op(op, [((n, h, w, c), "int8", (s, z), None)], [(oshape, "int8", (s, z))], "Pool2DOptions",
                            [(0, "b", padding), (1, "i", stride[1]), (2, "i", stride[0]), (3, "i", f[1]),
                             (4, "i", f[0]), (5, "b", act)])
    assert_bit_exact(data, np.random.default_rng(seed), runs=2)


@st.composite
def mean_cases(draw: st.DrawFn) -> tuple[tuple[int, ...], list[int], bool]:
    pick = draw(st.integers(0, 2))
    if pick == 0:  # the 4D spatial case LiteRT optimizes
        shape = (draw(st.integers(1, 2)), draw(st.integers(1, 8)), draw(st.integers(1, 8)), draw(st.integers(1, 40)))
        return shape, [1, 2], draw(st.booleans())
    if pick == 1:  # long rows: summed along (LayerNorm's mean) or added across
        shape = (draw(st.integers(1, 5)), draw(st.integers(1, 100)))
        return shape, [draw(st.integers(0, 1))], draw(st.booleans())
    rank = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 7)) for _ in range(rank))
    axes = sorted(draw(st.sets(st.integers(0, rank - 1), min_size=1)))
    return shape, axes, draw(st.booleans())


@PROPS
@given(case=mean_cases(), s_in=scales, z_in=zps, s_out=scales, z_out=zps, seed=seeds)
def test_mean(case: tuple[tuple[int, ...], list[int], bool], s_in: float, z_in: int, s_out: float, z_out: int,
              seed: int) -> None:
    shape, axes, keep = case
    out = tuple((1 if i in axes else d) for i, d in enumerate(shape) if keep or i not in axes)
    data = models.single_op("MEAN", [(shape, "int8", (s_in, z_in), None),
                                     ((len(axes),), "int32", None, np.array(axes, np.int32))],
                            [(out, "int8", (s_out, z_out))], "ReducerOptions", [(0, "bool", keep)])
    assert_bit_exact(data, np.random.default_rng(seed), runs=2)


@PROPS
@given(shape=st.one_of(st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple),
                      st.tuples(st.integers(1, 3), st.integers(41, 1001))),  # classifier heads
       s_in=st.one_of(scales, st.sampled_from([1e-3, 1.0, 4.0])), z_in=wide_zps,
       beta=st.sampled_from([1.0, 0.5, 2.0]), seed=seeds)
def test_softmax(shape: tuple[int, ...], s_in: float, z_in: int, beta: float, seed: int) -> None:
    data = models.single_op("SOFTMAX", [(shape, "int8", (s_in, z_in), None)], [(shape, "int8", (1 / 256, -128))],
                            "SoftmaxOptions", [(0, "f", beta)])
    assert_bit_exact(data, np.random.default_rng(seed), runs=2)


UNARY = ["LOGISTIC", "TANH", "GELU", "HARD_SWISH", "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU"]


@PROPS
@given(op=st.sampled_from(UNARY), shape=st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple),
       s_in=scales, z_in=zps, s_out=scales, z_out=zps, approx=st.booleans(),
       alpha=st.floats(0.01, 0.9), seed=seeds)
def test_unary_int8(op: str, shape: tuple[int, ...], s_in: float, z_in: int, s_out: float, z_out: int,
                    approx: bool, alpha: float, seed: int) -> None:
    opts: tuple[str | None, list[tuple[int, str, object]]] = (None, [])
    if op == "LOGISTIC":
        s_out, z_out = 1 / 256, -128
    elif op == "TANH":
        s_out, z_out = 1 / 128, 0
    elif op == "GELU":
        opts = ("GeluOptions", [(0, "bool", approx)])
    elif op == "HARD_SWISH":
        s_out = max(s_out, s_in / 128 * 1.01)  # larger ratios are refused (see ops.hard_swish)
    elif op == "LEAKY_RELU":
        opts = ("LeakyReluOptions", [(0, "f", alpha)])
    data = models.single_op(op, [(shape, "int8", (s_in, z_in), None)], [(shape, "int8", (s_out, z_out))], *opts)
    assert_bit_exact(data, np.random.default_rng(seed), runs=2)


@PROPS
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple), s_in=scales, z_in=st.integers(-128, -60),
       s_out=scales, z_out=zps, seed=seeds)
def test_rsqrt_int8(shape: tuple[int, ...], s_in: float, z_in: int, s_out: float, z_out: int, seed: int) -> None:
    data = models.single_op("RSQRT", [(shape, "int8", (s_in, z_in), None)], [(shape, "int8", (s_out, z_out))])
    rng = np.random.default_rng(seed)
    from agent.inference import load_model
    from tests.inference.oracle import litert_run
    m = load_model(data)
    for _ in range(2):
        x = rng.integers(z_in, 128, size=shape, dtype=np.int8)  # RSQRT is defined from the zero point up
        assert m.run([x])[0].tobytes() == litert_run(data, [x])[0].tobytes()


@PROPS
@given(shape=st.lists(st.integers(1, 40), min_size=1, max_size=3).map(tuple), s=scales, z=zps,
       s2=scales, z2=zps, seed=seeds)
def test_quantize_dequantize_requantize(shape: tuple[int, ...], s: float, z: int, s2: float, z2: int,
                                        seed: int) -> None:
    rng = np.random.default_rng(seed)
    assert_bit_exact(models.single_op("QUANTIZE", [(shape, "float32", None, None)], [(shape, "int8", (s, z))]), rng)
    assert_bit_exact(models.single_op("DEQUANTIZE", [(shape, "int8", (s, z), None)], [(shape, "float32", None)]), rng)
    assert_bit_exact(models.single_op("QUANTIZE", [(shape, "int8", (s, z), None)], [(shape, "int8", (s2, z2))]), rng)
    # uint8 model inputs/outputs: the converter brackets the int8 graph with these
    assert_bit_exact(models.single_op("QUANTIZE", [(shape, "uint8", (s, z + 128), None)], [(shape, "int8", (s2, z2))]), rng)
    assert_bit_exact(models.single_op("QUANTIZE", [(shape, "int8", (s, z), None)], [(shape, "uint8", (s2, z2 + 128))]), rng)


@st.composite
def permuted(draw: st.DrawFn) -> tuple[tuple[int, ...], list[int]]:
    rank = draw(st.integers(1, 5))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(rank))
    return shape, draw(st.permutations(list(range(rank))))


@PROPS
@given(case=permuted(), dtype=st.sampled_from(["int8", "float32", "int32"]), seed=seeds)
def test_transpose(case: tuple[tuple[int, ...], list[int]], dtype: str, seed: int) -> None:
    shape, perm = case
    q = (0.1, 3) if dtype == "int8" else None
    out = tuple(shape[p] for p in perm)
    data = models.single_op("TRANSPOSE", [(shape, dtype, q, None), ((len(perm),), "int32", None, np.array(perm, np.int32))],
                            [(out, dtype, q)], "TransposeOptions", [])
    assert_bit_exact(data, np.random.default_rng(seed), runs=1)


@PROPS
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple), data_=st.data(), seed=seeds, z=zps,
       v2=st.booleans(), value=st.integers(-128, 127))
def test_pad(shape: tuple[int, ...], data_: st.DataObject, seed: int, z: int, v2: bool, value: int) -> None:
    pads = np.array([[data_.draw(st.integers(0, 3)), data_.draw(st.integers(0, 3))] for _ in shape], np.int32)
    out = tuple(d + int(a) + int(b) for d, (a, b) in zip(shape, pads))
    ins = [(shape, "int8", (0.05, z), None), ((len(shape), 2), "int32", None, pads)]
    if v2:  # PADV2: an explicit pad value, quantized like the input
        ins.append(((1,), "int8", (0.05, z), np.array([value], np.int8)))
        data = models.single_op("PADV2", ins, [(out, "int8", (0.05, z))])
    else:
        data = models.single_op("PAD", ins, [(out, "int8", (0.05, z))], "PadOptions", [])
    assert_bit_exact(data, np.random.default_rng(seed), runs=1)


@PROPS
@given(data_=st.data(), seed=seeds)
def test_slice(data_: st.DataObject, seed: int) -> None:
    rank = data_.draw(st.integers(1, 4))
    shape = tuple(data_.draw(st.integers(1, 6)) for _ in range(rank))
    begin = [data_.draw(st.integers(0, d - 1)) for d in shape]
    size = [data_.draw(st.sampled_from([-1, *range(1, d - b + 1)])) for d, b in zip(shape, begin)]
    out = tuple(d - b if s == -1 else s for d, b, s in zip(shape, begin, size))
    data = models.single_op("SLICE", [(shape, "int8", (0.1, 0), None), ((rank,), "int32", None, np.array(begin, np.int32)),
                                      ((rank,), "int32", None, np.array(size, np.int32))], [(out, "int8", (0.1, 0))])
    assert_bit_exact(data, np.random.default_rng(seed), runs=1)


@st.composite
def slices(draw: st.DrawFn) -> tuple[tuple[int, ...], list[int], list[int], list[int], int, int, int]:
    rank = draw(st.integers(1, 4))
    shape = tuple(draw(st.integers(1, 7)) for _ in range(rank))
    begin = [draw(st.integers(-d, d - 1)) for d in shape]
    end = [draw(st.integers(-d, d)) for d in shape]
    strides = [draw(st.sampled_from([1, 2, 3, -1, -2])) for _ in shape]
    masks = [draw(st.integers(0, (1 << rank) - 1)) for _ in range(3)]
    return shape, begin, end, strides, masks[0], masks[1], masks[2]


@PROPS
@given(case=slices(), seed=seeds)
def test_strided_slice(case: tuple[tuple[int, ...], list[int], list[int], list[int], int, int, int],
                       seed: int) -> None:
    shape, begin, end, strides, bm, em, sam = case
    ref = np.arange(int(np.prod(shape))).reshape(shape)
    idx = []
    for d in range(len(shape)):
        if sam >> d & 1:
            b = 0 if bm >> d & 1 else begin[d] % shape[d]  # the begin mask also applies to a shrunk axis
            if strides[d] < 0:
                return  # a shrunk axis with a negative stride is refused (LiteRT reads nothing)
            idx.append(b)
            continue
        idx.append(slice(None if bm >> d & 1 else begin[d], None if em >> d & 1 else end[d], strides[d]))
    expect = ref[tuple(idx)]
    if expect.size == 0:
        return  # empty results are refused by both engines in different ways; not a property
    data = models.single_op(
        "STRIDED_SLICE",
        [(shape, "int8", (0.1, 0), None), ((len(shape),), "int32", None, np.array(begin, np.int32)),
         ((len(shape),), "int32", None, np.array(end, np.int32)),
         ((len(shape),), "int32", None, np.array(strides, np.int32))],
        [(expect.shape, "int8", (0.1, 0))], "StridedSliceOptions",
        [(0, "i", bm), (1, "i", em), (2, "i", 0), (3, "i", 0), (4, "i", sam), (5, "bool", False)])
    assert_bit_exact(data, np.random.default_rng(seed), runs=1)


@PROPS
@given(rank=st.integers(1, 4), data_=st.data(), n=st.integers(1, 5), pack=st.booleans(), seed=seeds)
def test_concatenation_and_pack(rank: int, data_: st.DataObject, n: int, pack: bool, seed: int) -> None:
    base = [data_.draw(st.integers(1, 4)) for _ in range(rank)]
    axis = data_.draw(st.integers(0, rank if pack else rank - 1))
    shapes = []
    for _ in range(n):
        s = list(base)
        if not pack:
            s[axis] = data_.draw(st.integers(1, 4))
        shapes.append(tuple(s))
    arrays = [np.zeros(s) for s in shapes]
    out = (np.stack(arrays, axis=axis) if pack else np.concatenate(arrays, axis=axis)).shape
    q = (0.07, -5)
    ins = [(s, "int8", q, None) for s in shapes]
    if pack:
        data = models.single_op("PACK", ins, [(out, "int8", q)], "PackOptions", [(0, "i", n), (1, "i", axis)])
    else:
        data = models.single_op("CONCATENATION", ins, [(out, "int8", q)], "ConcatenationOptions",
                                [(0, "i", axis), (1, "b", 0)])
    assert_bit_exact(data, np.random.default_rng(seed), runs=1)


@PROPS
@given(rank=st.integers(1, 3), data_=st.data(), seed=seeds)
def test_gather(rank: int, data_: st.DataObject, seed: int) -> None:
    shape = tuple(data_.draw(st.integers(1, 6)) for _ in range(rank))
    axis = data_.draw(st.integers(0, rank - 1))
    idx_type = data_.draw(st.sampled_from(["int32", "int64"]))
    idx = np.array(data_.draw(st.lists(st.integers(0, shape[axis] - 1), min_size=1, max_size=5)), idx_type)
    out = shape[:axis] + idx.shape + shape[axis + 1:]
    data = models.single_op("GATHER", [(shape, "int8", (0.1, 2), None), (idx.shape, idx_type, None, idx)],
                            [(out, "int8", (0.1, 2))], "GatherOptions", [(0, "i", axis), (1, "i", 0)])
    assert_bit_exact(data, np.random.default_rng(seed), runs=1)


@PROPS
@given(batch=st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple), m=st.integers(1, 9),
       k=st.integers(1, 20), n=st.integers(1, 9), adj_x=st.booleans(), adj_y=st.booleans(),
       q=st.tuples(scales, zps, scales, zps, scales, zps), seed=seeds)
def test_batch_matmul(batch: tuple[int, ...], m: int, k: int, n: int, adj_x: bool, adj_y: bool,
                      q: tuple[float, int, float, int, float, int], seed: int) -> None:
    sa = batch + ((k, m) if adj_x else (m, k))
    sb = batch + ((n, k) if adj_y else (k, n))
    data = models.single_op("BATCH_MATMUL", [(sa, "int8", (q[0], q[1]), None), (sb, "int8", (q[2], q[3]), None)],
                            [(batch + (m, n), "int8", (q[4], q[5]))], "BatchMatMulOptions",
                            [(0, "bool", adj_x), (1, "bool", adj_y), (2, "bool", False)])
    assert_bit_exact(data, np.random.default_rng(seed), runs=2)


@PROPS
@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple), seed=seeds)
def test_reshape_neg_shape(shape: tuple[int, ...], seed: int) -> None:
    rng = np.random.default_rng(seed)
    flat = (int(np.prod(shape)),)
    new_shape = np.array(flat, np.int32)
    assert_bit_exact(models.single_op("RESHAPE", [(shape, "int8", (0.1, 1), None), ((1,), "int32", None, new_shape)],
                                      [(flat, "int8", (0.1, 1))], "ReshapeOptions", [(0, "ivec", list(flat))]), rng)
    assert_bit_exact(models.single_op("NEG", [(shape, "float32", None, None)], [(shape, "float32", None)]), rng)
    squeezed = tuple(d for d in shape if d != 1)
    assert_bit_exact(models.single_op("SQUEEZE", [(shape, "int8", (0.1, 1), None)], [(squeezed, "int8", (0.1, 1))],
                                      "SqueezeOptions", [(0, "ivec", [])]), rng)
    axis = len(shape)
    assert_bit_exact(models.single_op("EXPAND_DIMS", [(shape, "int8", (0.1, 1), None),
                                                      ((1,), "int32", None, np.array([axis], np.int32))],
                                      [(shape + (1,), "int8", (0.1, 1))]), rng)
    assert_bit_exact(models.single_op("SHAPE", [(shape, "int8", (0.1, 1), None)], [((len(shape),), "int32", None)],
                                      "ShapeOptions", [(0, "B", 2)]), rng)


@PROPS
@given(op=st.sampled_from(["ADD", "SUB", "MUL", "SQUARED_DIFFERENCE"]), case=binary_cases(),
       dtype=st.sampled_from(["float32", "int32"]), seed=seeds)
def test_binary_float_and_int32(op: str, case: tuple[tuple[int, ...], tuple[int, ...], list[tuple[float, int]]],
                                dtype: str, seed: int) -> None:
    if dtype == "int32" and op == "SQUARED_DIFFERENCE":
        op = "SUB"
    a, b, _ = case
    out = tuple(np.broadcast_shapes(a, b))
    opts: dict[str, tuple[str | None, list[tuple[int, str, object]]]] = {
        "ADD": ("AddOptions", [(0, "b", 0)]), "SUB": ("SubOptions", [(0, "b", 0)]),
        "MUL": ("MulOptions", [(0, "b", 0)]), "SQUARED_DIFFERENCE": (None, [])}
    data = models.single_op(op, [(a, dtype, None, None), (b, dtype, None, None)], [(out, dtype, None)], *opts[op])
    assert_bit_exact(data, np.random.default_rng(seed), runs=2)


@PROPS
@given(op=st.sampled_from(["NEG", "RSQRT", "RELU", "RELU6"]),
       shape=st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple), seed=seeds)
def test_unary_float(op: str, shape: tuple[int, ...], seed: int) -> None:
    data = models.single_op(op, [(shape, "float32", None, None)], [(shape, "float32", None)])
    rng = np.random.default_rng(seed)
    from agent.inference import load_model
    from tests.inference.oracle import litert_run
    m = load_model(data)
    for _ in range(2):
        x = rng.uniform(-6, 6, size=shape).astype(np.float32)
        if op == "RSQRT":
            x = np.abs(x) + np.float32(0.01)
        assert m.run([x])[0].tobytes() == litert_run(data, [x])[0].tobytes()


@PROPS
@given(op=st.sampled_from(["REDUCE_PROD", "SUM", "REDUCE_MAX", "REDUCE_MIN"]), case=mean_cases(), seed=seeds)
def test_reduce_int32(op: str, case: tuple[tuple[int, ...], list[int], bool], seed: int) -> None:
    shape, axes, keep = case
    out = tuple((1 if i in axes else d) for i, d in enumerate(shape) if keep or i not in axes)
    data = models.single_op(op, [(shape, "int32", None, None), ((len(axes),), "int32", None, np.array(axes, np.int32))],
                            [(out, "int32", None)], "ReducerOptions", [(0, "bool", keep)])
    rng = np.random.default_rng(seed)
    from agent.inference import load_model
    from tests.inference.oracle import litert_run
    m = load_model(data)
    x = rng.integers(-3, 4, size=shape, dtype=np.int32)  # small values: products stay meaningful
    assert m.run([x])[0].tobytes() == litert_run(data, [x])[0].tobytes()


@PROPS
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple), dtype=st.sampled_from(["int8", "int32"]),
       seed=seeds)
def test_neg_integer(shape: tuple[int, ...], dtype: str, seed: int) -> None:
    q = (0.1, 3) if dtype == "int8" else None
    data = models.single_op("NEG", [(shape, dtype, q, None)], [(shape, dtype, q)])
    rng = np.random.default_rng(seed)
    from agent.inference import load_model
    from tests.inference.oracle import litert_run
    m = load_model(data)
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    x.flat[0] = info.min  # the value whose negation wraps
    assert m.run([x])[0].tobytes() == litert_run(data, [x])[0].tobytes()
