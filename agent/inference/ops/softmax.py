"""SOFTMAX in int8 (native twin: fn_op_softmax.c).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agent.inference import quant
from agent.inference.ops._registry import handles
from agent.inference.plan import NativeOp
from agent.inference.tflite import OperatorDef

if TYPE_CHECKING:
    from agent.inference.planner import Planner


@handles("SOFTMAX")
def softmax(pl: Planner, op: OperatorDef) -> None:
    from agent.inference import _native

    pl.counts(op, (1, 1))
    x, y = op.inputs[0], op.outputs[0]
    s_in, _ = pl.qp(x)
    s_out, z_out = pl.qp(y)
    pl.require(z_out == -128 and abs(s_out - 1 / 256) <= 0.001 / 256, "int8 softmax output must be scale 1/256, zero point -128")
    pl.require(len(pl.t(x).shape) >= 1, "SOFTMAX of a scalar")
    pl.same_shape(x, y)
    opts = pl.options(op, "SoftmaxOptions")
    beta = opts.f32(0, 0.0) if opts else 1.0
    table = _native.softmax_table(s_in, beta)
    pl.require(bool(np.all(np.isfinite(table))), f"beta {beta} gives a non-finite table")
    pl.node(NativeOp.SOFTMAX_S8, [pl.pid(x)], [pl.pid(y)], [z_out, quant.f32_bits(s_out), pl.add_const(table)])
