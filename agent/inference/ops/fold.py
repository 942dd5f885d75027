"""Plan-time folding of integer shape arithmetic.

Models with a dynamic batch compute RESHAPE targets at run time (SHAPE -> GATHER -> REDUCE_PROD
-> PACK ...). Shapes are static here, so those int32 chains are evaluated once at load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from agent.inference.ops._common import DTYPE_OF
from agent.inference.ops._registry import folds
from agent.inference.ops.data import reshape_target, slice_geometry
from agent.inference.ops.reduce import reduce_axes
from agent.inference.tflite import OperatorDef

if TYPE_CHECKING:
    from agent.inference.planner import Planner


def _out_dtype(pl: Planner, op: OperatorDef, k: int = 0) -> type:
    return DTYPE_OF[pl.sg.tensors[op.outputs[k]].type]


def _known(pl: Planner, i: int) -> np.ndarray:
    v = pl.data(i)
    assert v is not None
    return v


@folds("SHAPE")
def fold_shape(pl: Planner, op: OperatorDef) -> list[np.ndarray]:
    pl.counts(op, (1, 1))
    return [np.array(pl.t(op.inputs[0]).shape, dtype=_out_dtype(pl, op))]


@folds("GATHER")
def fold_gather(pl: Planner, op: OperatorDef) -> list[np.ndarray]:
    pl.counts(op, (2, 2))
    x, idx = _known(pl, op.inputs[0]), _known(pl, op.inputs[1])
    opts = pl.options(op, "GatherOptions")
    axis = opts.i32(0) if opts else 0
    axis = axis + x.ndim if axis < 0 else axis
    pl.require(0 <= axis < max(x.ndim, 1) and (opts.i32(1) if opts else 0) == 0, "gather axis")
    pl.require(bool(np.all((idx >= 0) & (idx < x.shape[axis]))), "gather index out of range")
    return [np.take(x, idx.astype(np.int64), axis=axis).astype(_out_dtype(pl, op))]


@folds("REDUCE_PROD", "SUM", "REDUCE_MAX", "REDUCE_MIN")
def fold_reduce(pl: Planner, op: OperatorDef) -> list[np.ndarray]:
    pl.counts(op, (2, 2))
    x = _known(pl, op.inputs[0])
    axes = tuple(reduce_axes(pl, op, x.ndim)) if x.ndim else ()
    opts = pl.options(op, "ReducerOptions")
    keep = opts.boolean(0) if opts else False
    reducers: dict[str, Callable[..., np.ndarray]] = {"REDUCE_PROD": np.prod, "SUM": np.sum, "REDUCE_MAX": np.max,
                                                      "REDUCE_MIN": np.min}
    f = reducers[pl.current_op.split()[-1]]
    return [np.asarray(f(x, axis=axes, keepdims=keep)).astype(_out_dtype(pl, op))]


@folds("PACK", "CONCATENATION")
def fold_pack(pl: Planner, op: OperatorDef) -> list[np.ndarray]:
    xs = [_known(pl, i) for i in op.inputs]
    pl.require(len(xs) >= 1, "no inputs")
    if pl.current_op.endswith("PACK"):
        opts = pl.options(op, "PackOptions")
        axis = opts.i32(1) if opts else 0
        pl.require(all(v.shape == xs[0].shape for v in xs) and -xs[0].ndim - 1 <= axis <= xs[0].ndim, "PACK")
        return [np.stack(xs, axis=axis).astype(_out_dtype(pl, op))]
    opts = pl.options(op, "ConcatenationOptions")
    axis = opts.i32(0) if opts else 0
    pl.require(all(v.ndim == xs[0].ndim >= 1 for v in xs) and -xs[0].ndim <= axis < xs[0].ndim, "CONCATENATION")
    try:
        return [np.concatenate(xs, axis=axis).astype(_out_dtype(pl, op))]
    except ValueError as e:
        raise pl.fail(f"shapes do not concatenate: {e}") from e


@folds("STRIDED_SLICE", "SLICE")
def fold_slice(pl: Planner, op: OperatorDef) -> list[np.ndarray]:
    starts, steps, counts, keep = slice_geometry(pl, op)
    x = _known(pl, op.inputs[0])
    idx = tuple(np.arange(c) * s + b for b, s, c in zip(starts, steps, counts))
    out = x[np.ix_(*idx)] if idx else x
    return [out.reshape(tuple(c for c, k in zip(counts, keep) if k)).astype(_out_dtype(pl, op))]


@folds("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def fold_reshape(pl: Planner, op: OperatorDef) -> list[np.ndarray]:
    pl.require(len(op.inputs) >= 1 and op.inputs[0] >= 0 and len(op.outputs) == 1, "needs one input and one output")
    return [_known(pl, op.inputs[0]).reshape(reshape_target(pl, op)).astype(_out_dtype(pl, op))]


@folds("ADD", "SUB", "MUL")
def fold_arith(pl: Planner, op: OperatorDef) -> list[np.ndarray]:
    pl.counts(op, (2, 2))
    a, b = _known(pl, op.inputs[0]), _known(pl, op.inputs[1])
    f = {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply}[pl.current_op.split()[-1]]
    try:
        return [f(a, b).astype(_out_dtype(pl, op))]
    except ValueError as e:
        raise pl.fail(f"shapes do not broadcast: {e}") from e
