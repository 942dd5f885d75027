"""Data movement: RESHAPE / SQUEEZE / EXPAND_DIMS, TRANSPOSE, PAD, SLICE / STRIDED_SLICE,
CONCATENATION / PACK, GATHER, SHAPE (native twin: fn_op_data.c).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agent.inference import quant
from agent.inference.ops._common import DTYPE_OF, _strides
from agent.inference.ops._registry import handles
from agent.inference.plan import NativeOp, prod
from agent.inference.schema import ACT_NONE
from agent.inference.tflite import OperatorDef

if TYPE_CHECKING:
    from agent.inference.planner import Planner


def reshape_target(pl: Planner, op: OperatorDef) -> tuple[int, ...]:
    """The output shape of RESHAPE / SQUEEZE / EXPAND_DIMS, as LiteRT's Prepare computes it."""
    name = pl.current_op.split()[-1]
    shape = pl.t(op.inputs[0]).shape
    n = prod(shape)
    if name == "SQUEEZE":
        opts = pl.options(op, "SqueezeOptions")
        dims = [d % len(shape) for d in (opts.ints(0) or ())] if opts and shape else []
        pl.require(all(shape[d] == 1 for d in dims), f"squeezing a dimension that is not 1 in {shape}")
        return tuple(d for i, d in enumerate(shape) if (i not in dims if dims else d != 1))
    if name == "EXPAND_DIMS":
        pl.require(len(op.inputs) == 2, "EXPAND_DIMS needs an axis input")
        ax = pl.const(op.inputs[1], "axis")
        pl.require(ax.size == 1, "axis must be a single value")
        axis = int(ax.ravel()[0])
        axis = axis + len(shape) + 1 if axis < 0 else axis
        pl.require(0 <= axis <= len(shape), f"axis {axis} for rank {len(shape)}")
        return shape[:axis] + (1,) + shape[axis:]
    shape_in = op.inputs[1] if len(op.inputs) > 1 and op.inputs[1] >= 0 else -1
    if shape_in >= 0 and len(pl.t(shape_in).shape) == 1 and pl.t(shape_in).shape[0] > 0:
        # reshape.cc: a non-empty 1-D shape tensor wins; otherwise the options' new_shape
        v = pl.data(shape_in)
        pl.require(v is not None, "the new shape must be known at load time")
        assert v is not None
        spec = [int(d) for d in v.ravel()]
    else:
        opts = pl.options(op, "ReshapeOptions")
        spec = list(opts.ints(0) or ()) if opts and opts.ints(0) is not None else list(pl.sg.tensors[op.outputs[0]].shape)
    pl.require(spec.count(-1) <= 1 and all(d >= -1 for d in spec), f"new shape {spec}")
    known = prod(tuple(d for d in spec if d != -1))
    if -1 in spec:
        pl.require(known > 0 and n % known == 0, f"{shape} cannot be reshaped to {spec}")
        spec[spec.index(-1)] = n // known
    pl.require(prod(tuple(spec)) == n, f"{shape} -> {spec} changes the element count")
    return tuple(spec)


@handles("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def reshape(pl: Planner, op: OperatorDef) -> None:
    pl.require(len(op.inputs) >= 1 and op.inputs[0] >= 0 and len(op.outputs) == 1, "needs one input and one output")
    x, y = op.inputs[0], op.outputs[0]
    xt, yt = pl.t(x), pl.t(y)
    pl.require(xt.type == yt.type, f"type {xt.type} -> {yt.type}")
    if xt.scales or yt.scales:
        pl.require(xt.scales[:1] == yt.scales[:1] and xt.zero_points[:1] == yt.zero_points[:1],
                   "quantization differs between input and output")
    pl.expect_shape(y, reshape_target(pl, op))
    pl.node(NativeOp.COPY, [pl.pid(x)], [pl.pid(y)], [])


def _strided_copy(pl: Planner, x: int, y: int, dims: list[int], in_off: int, in_str: list[int],
                  out_off: int, out_str: list[int], fill: int | None = None) -> None:
    pad = 6 - len(dims)
    pl.require(pad >= 0, "rank above 6")
    params = ([1] * pad + dims + [in_off] + [0] * pad + in_str + [out_off] + [0] * pad + out_str
              + [0 if fill is None else 1, 0 if fill is None else fill])
    pl.node(NativeOp.STRIDED_COPY, [pl.pid(x)], [pl.pid(y)], params)


def _same_quant(pl: Planner, a: int, b: int) -> None:
    ta, tb = pl.t(a), pl.t(b)
    pl.require(ta.type == tb.type, f"type {ta.type} vs {tb.type}")
    if ta.type in ("int8", "uint8", "int16") and (ta.scales or tb.scales):
        pl.require(quant.f32(ta.scales[0] if ta.scales else 0.0) == quant.f32(tb.scales[0] if tb.scales else 0.0)
                   and (ta.zero_points[:1] or (0,)) == (tb.zero_points[:1] or (0,)),
                   "input and output quantization differ")


@handles("TRANSPOSE")
def transpose(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (2, 2))
    x, y = op.inputs[0], op.outputs[0]
    _same_quant(pl, x, y)
    shape = pl.t(x).shape
    perm = [int(v) for v in pl.const(op.inputs[1], "permutation").ravel()]
    pl.require(sorted(perm) == list(range(len(shape))), f"permutation {perm} for rank {len(shape)}")
    out_shape = tuple(shape[p] for p in perm)
    pl.expect_shape(y, out_shape)
    ist = _strides(shape)
    _strided_copy(pl, x, y, list(out_shape), 0, [ist[p] for p in perm], 0, _strides(out_shape))


@handles("PAD", "PADV2")
def pad(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (2, 3))
    x, y = op.inputs[0], op.outputs[0]
    _same_quant(pl, x, y)
    xt = pl.t(x)
    pads = pl.const(op.inputs[1], "paddings")
    pl.expect_type(op.inputs[1], "int32", "int64")
    pl.require(pads.shape == (len(xt.shape), 2), f"paddings shape {pads.shape}")
    pads_l = [[int(a), int(b)] for a, b in pads.tolist()]
    pl.require(all(a >= 0 and b >= 0 for a, b in pads_l), "negative padding")
    out_shape = tuple(d + a + b for d, (a, b) in zip(xt.shape, pads_l))
    pl.expect_shape(y, out_shape)
    if len(op.inputs) == 3 and op.inputs[2] >= 0:
        cv = pl.const(op.inputs[2], "constant value")
        pl.require(cv.size == 1 and pl.t(op.inputs[2]).type == xt.type, "constant value")
        fill_arr = np.ascontiguousarray(cv.ravel()[:1])
    else:
        zp = xt.zero_points[0] if xt.zero_points else 0
        fill_arr = np.array([zp if xt.type in ("int8", "uint8", "int16") else 0], dtype=DTYPE_OF[xt.type])
    raw = fill_arr.tobytes()
    pl.require(len(raw) <= 4, f"PAD of {xt.type}")
    fill = int(np.frombuffer((raw * 4)[:4], dtype=np.int32)[0])
    ost = _strides(out_shape)
    out_off = sum(a * s for (a, _), s in zip(pads_l, ost))
    _strided_copy(pl, x, y, list(xt.shape), 0, _strides(xt.shape), out_off, ost, fill)


def slice_geometry(pl: Planner, op: OperatorDef) -> tuple[list[int], list[int], list[int], list[bool]]:
    """(start, step, count, kept) per axis of SLICE / STRIDED_SLICE (strided_slice_logic.h)."""
    is_slice = pl.current_op.endswith(" SLICE")
    pl.counts(op, (3, 3) if is_slice else (4, 4))
    x = op.inputs[0]
    shape = pl.t(x).shape
    rank = len(shape)
    begin = [int(v) for v in pl.const(op.inputs[1], "begin").ravel()]
    pl.require(len(begin) == rank, "begin has the wrong length")
    if is_slice:
        size = [int(v) for v in pl.const(op.inputs[2], "size").ravel()]
        pl.require(len(size) == rank, "size has the wrong length")
        starts, steps, counts, keep = [], [], [], []
        for d in range(rank):
            b = begin[d]
            n = shape[d] - b if size[d] == -1 else size[d]
            pl.require(0 <= b and n >= 0 and b + n <= shape[d], f"slice [{b}, +{n}) of {shape[d]}")
            starts.append(b)
            steps.append(1)
            counts.append(n)
            keep.append(True)
    else:
        end = [int(v) for v in pl.const(op.inputs[2], "end").ravel()]
        stride = [int(v) for v in pl.const(op.inputs[3], "strides").ravel()]
        pl.require(len(end) == rank and len(stride) == rank, "end/strides have the wrong length")
        opts = pl.options(op, "StridedSliceOptions")
        bm, em, elm, nam, sam = ((opts.i32(0), opts.i32(1), opts.i32(2), opts.i32(3), opts.i32(4))
                                 if opts else (0, 0, 0, 0, 0))
        pl.require(not (opts.boolean(5) if opts else False), "the offset attribute is not supported")
        pl.require(elm == 0 and nam == 0, "ellipsis and new-axis masks are not supported")
        starts, steps, counts, keep = [], [], [], []
        for d in range(rank):
            st_, dim = stride[d], shape[d]
            pl.require(st_ != 0, "zero stride")
            # strided_slice_logic.h StartForAxis / StopForAxis
            lo_hi = (0, dim) if st_ > 0 else (-1, dim - 1)
            b = begin[d] if not bm >> d & 1 else (-(1 << 31) if st_ > 0 else (1 << 31) - 1)
            b = b + dim if b < 0 else b
            b = min(max(b, lo_hi[0]), lo_hi[1])
            if sam >> d & 1:
                pl.require(st_ > 0 and 0 <= b < dim, f"shrunk axis {d} index {begin[d]} out of range")
                starts.append(b)
                steps.append(1)
                counts.append(1)
                keep.append(False)
                continue
            e = end[d] if not em >> d & 1 else ((1 << 31) - 1 if st_ > 0 else -(1 << 31))
            e = e + dim if e < 0 else e
            e = min(max(e, lo_hi[0]), lo_hi[1])
            n = max(0, -((b - e) // st_)) if st_ > 0 else max(0, -((e - b) // -st_))
            starts.append(b)
            steps.append(st_)
            counts.append(n)
            keep.append(True)
    pl.require(all(c > 0 for c in counts), "empty slices are not supported")
    return starts, steps, counts, keep


@handles("STRIDED_SLICE", "SLICE")
def strided_slice(pl: Planner, op: OperatorDef) -> None:
    is_slice = pl.current_op.endswith(" SLICE")
    pl.counts(op, (3, 3) if is_slice else (4, 4))
    x, y = op.inputs[0], op.outputs[0]
    _same_quant(pl, x, y)
    shape = pl.t(x).shape
    starts, steps, counts, keep = slice_geometry(pl, op)
    out_shape = tuple(c for c, k in zip(counts, keep) if k)
    pl.expect_shape(y, out_shape)
    ist = _strides(shape)
    in_off = sum(b * s for b, s in zip(starts, ist))
    full_out = _strides(tuple(counts))
    _strided_copy(pl, x, y, counts, in_off, [st * s for st, s in zip(steps, ist)], 0, full_out)


@handles("CONCATENATION", "PACK")
def concatenation(pl: Planner, op: OperatorDef) -> None:
    is_pack = pl.current_op.endswith("PACK")
    pl.require(1 <= len(op.inputs) <= 8 and len(op.outputs) == 1, f"{len(op.inputs)} inputs (at most 8)")
    y = op.outputs[0]
    for i in op.inputs:
        _same_quant(pl, i, y)
    shapes = [pl.t(i).shape for i in op.inputs]
    if is_pack:
        opts = pl.options(op, "PackOptions")
        axis = opts.i32(1) if opts else 0
        rank = len(shapes[0]) + 1
        pl.require(all(s == shapes[0] for s in shapes), "PACK inputs differ in shape")
        axis = axis + rank if axis < 0 else axis
        pl.require(0 <= axis < rank, f"axis {axis}")
        out_shape = shapes[0][:axis] + (len(shapes),) + shapes[0][axis:]
        per_in = [prod(shapes[0][axis:]) for _ in shapes]
        outer = prod(shapes[0][:axis])
    else:
        opts = pl.options(op, "ConcatenationOptions")
        axis = opts.i32(0) if opts else 0
        pl.require((opts.i8(1) if opts else 0) == ACT_NONE, "fused activation on CONCATENATION")
        rank = len(shapes[0])
        axis = axis + rank if axis < 0 else axis
        pl.require(0 <= axis < rank, f"axis {axis}")
        for s in shapes:
            pl.require(len(s) == rank and s[:axis] == shapes[0][:axis] and s[axis + 1:] == shapes[0][axis + 1:],
                       f"shapes {shapes} do not concatenate on axis {axis}")
        out_shape = shapes[0][:axis] + (sum(s[axis] for s in shapes),) + shapes[0][axis + 1:]
        per_in = [prod(s[axis:]) for s in shapes]
        outer = prod(shapes[0][:axis])
    pl.expect_shape(y, out_shape)
    pl.require(outer >= 1, "empty tensors are not supported")
    pl.node(NativeOp.CONCAT, [pl.pid(i) for i in op.inputs], [pl.pid(y)], [outer] + per_in)


@handles("GATHER")
def gather(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (2, 2))
    x, idx, y = op.inputs[0], op.inputs[1], op.outputs[0]
    _same_quant(pl, x, y)
    pl.expect_type(idx, "int32", "int64")
    opts = pl.options(op, "GatherOptions")
    axis = opts.i32(0) if opts else 0
    pl.require((opts.i32(1) if opts else 0) == 0, "batch_dims is not supported")
    shape, ishape = pl.t(x).shape, pl.t(idx).shape
    axis = axis + len(shape) if axis < 0 else axis
    pl.require(0 <= axis < len(shape), f"axis {axis}")
    out_shape = shape[:axis] + ishape + shape[axis + 1:]
    pl.expect_shape(y, out_shape)
    outer, inner = prod(shape[:axis]), prod(shape[axis + 1:])
    pl.require(outer >= 1 and inner >= 1 and shape[axis] >= 1, "empty tensors are not supported")
    d = pl.data(idx)
    if d is not None:
        pl.require(bool(np.all((d >= 0) & (d < shape[axis]))), "gather index out of range")
    pl.node(NativeOp.GATHER, [pl.pid(x), pl.pid(idx)], [pl.pid(y)], [outer, shape[axis], inner])


@handles("SHAPE")
def shape_op(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (1, 1))
    x, y = op.inputs[0], op.outputs[0]
    yt = pl.expect_type(y, "int32", "int64")
    shape: np.ndarray = np.array(pl.t(x).shape, dtype=DTYPE_OF[yt.type])
    pl.expect_shape(y, (len(shape),))
    # Shapes are static here, so SHAPE is a copy of a constant.
    pl.node(NativeOp.COPY, [pl.add_const(shape)], [pl.pid(y)], [])
