"""AVERAGE_POOL_2D and MAX_POOL_2D (native twin: fn_op_pool.c).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.inference import quant
from agent.inference.ops._common import _act, conv_geometry
from agent.inference.ops._registry import handles
from agent.inference.plan import NativeOp
from agent.inference.tflite import OperatorDef

if TYPE_CHECKING:
    from agent.inference.planner import Planner


@handles("AVERAGE_POOL_2D", "MAX_POOL_2D")
def pool(pl: Planner, op: OperatorDef) -> None:
    is_max = pl.current_op.endswith("MAX_POOL_2D")
    pl.counts(op, (1, 1))
    x, y = op.inputs[0], op.outputs[0]
    s_in, z_in = pl.qp(x)
    s_out, z_out = pl.qp(y)
    # TFLite requires the same quantization in and out for int8 pooling.
    pl.require(quant.f32(s_in) == quant.f32(s_out) and z_in == z_out, "pooling changes quantization")
    opts = pl.options(op, "Pool2DOptions")
    pl.require(opts is not None, "options missing")
    assert opts is not None
    padding, sw, sh, fw, fh, act = opts.i8(0), opts.i32(1), opts.i32(2), opts.i32(3), opts.i32(4), opts.i8(5)
    xt = pl.t(x)
    pl.require(len(xt.shape) == 4, f"input {xt.shape}")
    pl.require(fw >= 1 and fh >= 1, f"filter {fh}x{fw}")
    n, h, w, c = xt.shape
    oh, pt = conv_geometry(pl, padding, h, fh, sh, 1)
    ow, pleft = conv_geometry(pl, padding, w, fw, sw, 1)
    pl.expect_shape(y, (n, oh, ow, c))
    lo, hi = _act(pl, act, y)
    pl.node(NativeOp.MAX_POOL_S8 if is_max else NativeOp.AVG_POOL_S8, [pl.pid(x)], [pl.pid(y)],
            [sh, sw, fh, fw, pt, pleft, lo, hi])
