"""Reductions: MEAN in int8, SUM / REDUCE_PROD / REDUCE_MAX / REDUCE_MIN in int32
(native twin: fn_op_reduce.c).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agent.inference import quant
from agent.inference.errors import UnsupportedOpError
from agent.inference.ops._common import _pad6
from agent.inference.ops._registry import handles
from agent.inference.plan import NativeOp
from agent.inference.tflite import OperatorDef

if TYPE_CHECKING:
    from agent.inference.planner import Planner


def reduce_axes(pl: Planner, op: OperatorDef, rank: int) -> list[int]:
    ax = pl.const(op.inputs[1], "axis")
    pl.expect_type(op.inputs[1], "int32")
    out = []
    for v in ax.ravel().tolist():
        pl.require(-rank <= v < rank, f"axis {v} for rank {rank}")
        v = v % rank
        if v not in out:
            out.append(v)
    return out


def reduce_params(pl: Planner, op: OperatorDef) -> tuple[list[int], list[int], int, bool]:
    """(6 input dims + 6 output strides, reduced axes, element count per output, keep_dims)."""
    x, y = op.inputs[0], op.outputs[0]
    shape = pl.t(x).shape
    rank = len(shape)
    axes = reduce_axes(pl, op, rank)
    opts = pl.options(op, "ReducerOptions")
    keep = opts.boolean(0) if opts else False
    out_shape = tuple((1 if i in axes else d) for i, d in enumerate(shape) if keep or i not in axes)
    pl.expect_shape(y, out_shape)
    pl.require(all(d > 0 for d in shape), "empty tensors are not supported")
    kept = [d if i not in axes else 1 for i, d in enumerate(shape)]
    ostr = [0] * rank
    acc = 1
    for k in range(rank - 1, -1, -1):
        ostr[k] = 0 if k in axes else acc
        acc *= kept[k]
    dims = list(_pad6(shape))
    ostr6 = [0] * (6 - rank) + ostr
    n = 1
    for a in axes:
        n *= shape[a]
    return dims + ostr6, axes, n, keep


@handles("MEAN")
def mean(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (2, 2))
    x, y = op.inputs[0], op.outputs[0]
    s_in, z_in = pl.qp(x)
    s_out, z_out = pl.qp(y)
    rp, axes, n, keep = reduce_params(pl, op)
    if keep and len(pl.t(x).shape) == 4 and sorted(axes) == [1, 2]:
        # optimized_integer_ops::Mean: float32 bias and multiplier over the raw sum
        f = np.float32
        temp = f(f(z_in) * f(s_in)) / f(s_out)
        temp = temp + f(0.5) if temp > 0 else temp - f(0.5)
        bias = z_out - int(temp)
        m, sh = quant.quantize_multiplier(float(f(s_in) / f(f(n) * f(s_out))))
        add = 0
        channels = pl.t(x).shape[3]
        half_up = channels // 16 * 16  # NEON blocks of 16 channels (see fn_reduce.c)
    else:
        # reference QuantizedMeanOrSum: the multiplier of s_in/s_out is divided by N in integers
        m0, sh0 = quant.quantize_multiplier(s_in / s_out)
        k = min(n.bit_length() - 1, 32, 31 + sh0)
        m, sh = (m0 << k) // n if k >= 0 else m0 // n, sh0 - k
        pl.require(m < (1 << 31), "mean multiplier overflow")
        add, bias = -z_in * n, z_out
        channels, half_up = 1, 0
    scratch = pl.add_temp("int32", pl.t(y).shape)
    pl.node(NativeOp.MEAN_S8, [pl.pid(x)], [pl.pid(y), scratch], rp + [add, m, sh, bias, channels, half_up])


@handles("SUM", "REDUCE_PROD", "REDUCE_MAX", "REDUCE_MIN")
def reduce_int(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (2, 2))
    name = pl.current_op.split()[-1]
    x, y = op.inputs[0], op.outputs[0]
    if pl.t(x).type != "int32":
        raise UnsupportedOpError(name, f"{pl.t(x).type} variant (int32 only)")
    pl.expect_type(y, "int32")
    rp, _, _, _ = reduce_params(pl, op)
    kind = {"SUM": 0, "REDUCE_PROD": 1, "REDUCE_MAX": 2, "REDUCE_MIN": 3}[name]
    pl.node(NativeOp.REDUCE_I32, [pl.pid(x)], [pl.pid(y)], rp + [kind])
