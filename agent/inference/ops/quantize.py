"""QUANTIZE and DEQUANTIZE (native twin: fn_op_quantize.c).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.inference import quant
from agent.inference.ops._registry import handles
from agent.inference.plan import NativeOp, prod
from agent.inference.tflite import OperatorDef

if TYPE_CHECKING:
    from agent.inference.planner import Planner


@handles("QUANTIZE")
def quantize(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (1, 1))
    x, y = op.inputs[0], op.outputs[0]
    pl.same_shape(x, y)
    out_type = pl.expect_type(y, "int8", "uint8").type
    s_out, z_out = pl.qp(y, out_type)
    if pl.t(x).type == "float32":
        pl.require(out_type == "int8", "float32 -> uint8 QUANTIZE is not supported")
        count = prod(pl.t(x).shape)
        pl.node(NativeOp.QUANTIZE_F32_S8, [pl.pid(x)], [pl.pid(y)],
                [z_out, quant.f32_bits(s_out), quant.f32_bits(1.0 / s_out), count // 8 * 8])
        return
    in_type = pl.expect_type(x, "int8", "uint8").type
    s_in, z_in = pl.qp(x, in_type)
    m, sh = quant.quantize_multiplier(s_in / s_out)
    count = prod(pl.t(x).shape)
    pl.node(NativeOp.REQUANTIZE_S8, [pl.pid(x)], [pl.pid(y)], [z_in, z_out, m, sh, count // 16 * 16])


@handles("DEQUANTIZE")
def dequantize(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (1, 1))
    x, y = op.inputs[0], op.outputs[0]
    pl.same_shape(x, y)
    pl.expect_type(y, "float32")
    s_in, z_in = pl.qp(x)
    count = prod(pl.t(x).shape)
    pl.node(NativeOp.DEQUANTIZE_S8_F32, [pl.pid(x)], [pl.pid(y)],
            [z_in, quant.f32_bits(s_in), quant.f32_bits(-z_in * s_in), count // 8 * 8])
