"""Element-wise ops served by a 256-entry table (LOGISTIC, TANH, GELU, RSQRT, HARD_SWISH, the
RELU family, NEG) and their float32 / int32 variants (native twin: fn_op_lut.c).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agent.inference import quant
from agent.inference.errors import UnsupportedOpError
from agent.inference.ops._common import _pad6, _strides6
from agent.inference.ops._registry import handles
from agent.inference.plan import NativeOp
from agent.inference.tflite import OperatorDef

if TYPE_CHECKING:
    from agent.inference.planner import Planner


def _lut_node(pl: Planner, op: OperatorDef, kind: str, s_in: float, s_out: float, ip: list[int],
              min_valid: int = -128) -> None:
    from agent.inference import _native

    x, y = op.inputs[0], op.outputs[0]
    pl.same_shape(x, y)
    try:
        table = _native.lut_build(kind, s_in, s_out, ip)
    except ValueError as e:
        raise pl.fail(str(e)) from e
    pl.node(NativeOp.LUT_S8, [pl.pid(x)], [pl.pid(y)], [pl.add_const(table), min_valid])


@handles("LOGISTIC", "TANH", "GELU", "RSQRT")
def float_lut(pl: Planner, op: OperatorDef) -> None:
    name = pl.current_op.split()[-1]
    pl.counts(op, (1, 1))
    x, y = op.inputs[0], op.outputs[0]
    if pl.t(x).type == "float32":
        if name != "RSQRT":
            # LiteRT's float TANH/LOGISTIC/GELU are vectorized approximations we do not reproduce.
            raise UnsupportedOpError(name, "float32 variant (only int8 is bit-exact here)")
        pl.expect_type(y, "float32")
        pl.same_shape(x, y)
        pl.node(NativeOp.UNARY_F32, [pl.pid(x)], [pl.pid(y)], [1])
        return
    s_in, z_in = pl.qp(x)
    s_out, z_out = pl.qp(y)
    kind = name
    if name == "RSQRT":
        # elementwise.cc: 1 / (sqrt(s_in) * s_out), sqrt and product in float32
        f = np.float32
        m, sh = quant.quantize_multiplier(1.0 / float(f(np.sqrt(f(s_in))) * f(s_out)))
        _lut_node(pl, op, "RSQRT", s_in, s_out, [z_in, z_out, m, sh], min_valid=z_in)
        return
    if name == "GELU":
        opts = pl.options(op, "GeluOptions")
        kind = "GELU_TANH" if (opts and opts.boolean(0)) else "GELU"
    _lut_node(pl, op, kind, s_in, s_out, [z_in, z_out])


@handles("HARD_SWISH")
def hard_swish(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (1, 1))
    x, y = op.inputs[0], op.outputs[0]
    s_in, z_in = pl.qp(x)
    s_out, z_out = pl.qp(y)
    f = np.float32
    hires = f(f(1.0) / f(128.0)) * f(s_in)
    out_mult = float(hires / f(s_out))
    relu_mult = float(hires / f(f(3.0) / f(32768.0)))
    m_out, e_out = quant.quantize_multiplier(out_mult)
    m_relu, e_relu = quant.quantize_multiplier(relu_mult)
    # With s_in / 128 >= s_out LiteRT's scalar path shifts by a negative amount (undefined), so
    # there is no defined answer to match: refuse.
    pl.require(e_out <= 0, "HARD_SWISH with input scale / 128 >= output scale is not supported")
    # LiteRT's vector path (blocks of 8, NEON emulated with SSE on x86-64) was checked to give
    # the scalar path's answers for every int8 input, so one table serves all elements.
    _lut_node(pl, op, "HARD_SWISH", s_in, s_out,
              [z_in, z_out, quant.downscale_to_int16(m_out), e_out, quant.downscale_to_int16(m_relu), e_relu])


@handles("RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU")
def relu(pl: Planner, op: OperatorDef) -> None:
    name = pl.current_op.split()[-1]
    pl.counts(op, (1, 1))
    x, y = op.inputs[0], op.outputs[0]
    if pl.t(x).type == "float32":
        pl.require(name in ("RELU", "RELU6"), f"float32 {name}")
        pl.expect_type(y, "float32")
        pl.same_shape(x, y)
        pl.node(NativeOp.UNARY_F32, [pl.pid(x)], [pl.pid(y)], [2 if name == "RELU" else 3])
        return
    s_in, z_in = pl.qp(x)
    s_out, z_out = pl.qp(y)
    f = np.float32
    if name == "LEAKY_RELU":
        opts = pl.options(op, "LeakyReluOptions")
        alpha = opts.f32(0, 0.0) if opts else 0.0
        m_id, sh_id = quant.quantize_multiplier(float(f(s_in) / f(s_out)))
        m_a, sh_a = quant.quantize_multiplier(float(f(f(s_in) * f(alpha)) / f(s_out)))
        _lut_node(pl, op, "LEAKY_RELU", s_in, s_out, [z_in, z_out, m_id, sh_id, -128, 127, m_a, sh_a])
        return
    lo_f, hi_f = {"RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}[name]

    def q(v: float) -> int:
        return z_out + int(quant.round_half_away(float(f(v) / f(s_out))))

    lo = max(-128, q(lo_f))
    hi = 127 if hi_f is None else min(127, q(hi_f))
    m, sh = quant.quantize_multiplier(float(f(s_in) / f(s_out)))  # float32 quotient, as ReluPrepare
    _lut_node(pl, op, "REQUANT_CLAMP", s_in, s_out, [z_in, z_out, m, sh, lo, hi])


@handles("NEG")
def neg(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (1, 1))
    x, y = op.inputs[0], op.outputs[0]
    t = pl.expect_type(x, "float32", "int8", "int32").type
    pl.expect_type(y, t)
    pl.same_shape(x, y)
    if t == "float32":
        pl.node(NativeOp.UNARY_F32, [pl.pid(x)], [pl.pid(y)], [0])
    elif t == "int8":
        # neg.cc negates the raw int8 values (quantization is ignored); -(-128) wraps to -128
        table = (-np.arange(-128, 128, dtype=np.int32)).astype(np.int8)
        table = np.roll(table, -128)  # index by the uint8 bits of the input
        pl.node(NativeOp.LUT_S8, [pl.pid(x)], [pl.pid(y)], [pl.add_const(table), -128])
    else:  # int32: 0 - x, wrapping
        zero = pl.add_const(np.zeros((), np.int32))
        dims = list(_pad6(pl.t(x).shape))
        pl.node(NativeOp.BINARY_I32, [zero, pl.pid(x)], [pl.pid(y)], dims + [0] * 6 + _strides6(dims) + [1])
