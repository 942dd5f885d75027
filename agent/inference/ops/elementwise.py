"""Broadcasting binary ops: ADD, SUB, SQUARED_DIFFERENCE, MUL in int8, float32 and int32
(native twin: fn_op_elementwise.c).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.inference import quant
from agent.inference.ops._common import _act, _pad6, _strides6
from agent.inference.ops._registry import handles
from agent.inference.plan import NativeOp
from agent.inference.schema import ACT_NONE
from agent.inference.tflite import OperatorDef

if TYPE_CHECKING:
    from agent.inference.planner import Planner


def broadcast_params(pl: Planner, a: int, b: int, y: int) -> list[int]:
    """Output dims and per-input strides (0 where broadcast), all padded to 6 dimensions."""
    sa, sb = pl.t(a).shape, pl.t(b).shape
    pl.require(max(len(sa), len(sb)) <= 6, "rank above 6")
    da, db = _pad6(sa), _pad6(sb)
    out = []
    for x, z in zip(da, db):
        pl.require(x == z or x == 1 or z == 1, f"shapes {sa} and {sb} do not broadcast")
        out.append(max(x, z) if min(x, z) > 0 else 0)
    pl.require(all(d > 0 for d in out), "empty tensors are not supported")
    want = tuple(out[6 - max(len(sa), len(sb)):])
    pl.expect_shape(y, want)

    return list(out) + _strides6(da) + _strides6(db)


def _fused_act(pl: Planner, op: OperatorDef, options: str, field: int = 0) -> int:
    opts = pl.options(op, options)
    return opts.i8(field, 0) if opts else 0


@handles("ADD", "SUB", "SQUARED_DIFFERENCE")
def add_sub(pl: Planner, op: OperatorDef) -> None:
    name = pl.current_op.split()[-1]
    pl.counts(op, (2, 2))
    a, b, y = op.inputs[0], op.inputs[1], op.outputs[0]
    if pl.t(a).type == "float32":
        kind = {"ADD": 0, "SUB": 1, "SQUARED_DIFFERENCE": 4}[name]
        _binary_plain(pl, op, kind, None if name == "SQUARED_DIFFERENCE" else f"{name.title()}Options", "float32")
        return
    if pl.t(a).type == "int32":
        pl.require(name != "SQUARED_DIFFERENCE", "int32 SQUARED_DIFFERENCE")
        _binary_plain(pl, op, {"ADD": 0, "SUB": 1}[name], f"{name.title()}Options", "int32")
        return
    s1, z1 = pl.qp(a)
    s2, z2 = pl.qp(b)
    s_out, z_out = pl.qp(y)
    bc = broadcast_params(pl, a, b, y)
    if name == "SQUARED_DIFFERENCE":
        act = 0
        left_shift = 7
        twice_max = 2.0 * max(s1, s2)
        m1, sh1 = quant.quantize_multiplier_smaller_than_one_exp(s1 / twice_max)
        m2, sh2 = quant.quantize_multiplier_smaller_than_one_exp(s2 / twice_max)
        mo, sho = quant.quantize_multiplier(twice_max * twice_max / ((1 << (2 * left_shift)) * s_out))
        kind = 2
    else:
        act = _fused_act(pl, op, "AddOptions" if name == "ADD" else "SubOptions")
        left_shift = 20
        twice_max = 2.0 * max(s1, s2)
        m1, sh1 = quant.quantize_multiplier_smaller_than_one_exp(s1 / twice_max)
        m2, sh2 = quant.quantize_multiplier_smaller_than_one_exp(s2 / twice_max)
        mo, sho = quant.quantize_multiplier_smaller_than_one_exp(twice_max / ((1 << left_shift) * s_out))
        kind = 0 if name == "ADD" else 1
    lo, hi = _act(pl, act, y)
    params = bc + [kind, z1, z2, z_out, left_shift, m1, sh1, m2, sh2, mo, sho, lo, hi]
    pl.node(NativeOp.ADD_S8, [pl.pid(a), pl.pid(b)], [pl.pid(y)], params)


@handles("MUL")
def mul(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (2, 2))
    a, b, y = op.inputs[0], op.inputs[1], op.outputs[0]
    if pl.t(a).type == "float32":
        _binary_plain(pl, op, 2, "MulOptions", "float32")
        return
    if pl.t(a).type == "int32":
        _binary_plain(pl, op, 2, "MulOptions", "int32")
        return
    s1, z1 = pl.qp(a)
    s2, z2 = pl.qp(b)
    s_out, z_out = pl.qp(y)
    bc = broadcast_params(pl, a, b, y)
    # mul.cc: input1 scale * input2 scale / output scale, evaluated in float32
    real = quant.f32(quant.f32(s1 * s2) / s_out)
    m, sh = quant.quantize_multiplier(real)
    lo, hi = _act(pl, _fused_act(pl, op, "MulOptions"), y)
    pl.node(NativeOp.MUL_S8, [pl.pid(a), pl.pid(b)], [pl.pid(y)], bc + [0, z1, z2, z_out, m, sh, lo, hi])


def _binary_plain(pl: Planner, op: OperatorDef, kind: int, options: str | None, dtype: str) -> None:
    """float32 / int32 ADD, SUB, MUL, SQUARED_DIFFERENCE: no quantization, no fused activation."""
    a, b, y = op.inputs[0], op.inputs[1], op.outputs[0]
    for i in (a, b, y):
        pl.expect_type(i, dtype)
    if options is not None:
        pl.require(_fused_act(pl, op, options) == ACT_NONE, f"fused activation on a {dtype} op")
    bc = broadcast_params(pl, a, b, y)
    native = NativeOp.BINARY_F32 if dtype == "float32" else NativeOp.BINARY_I32
    pl.node(native, [pl.pid(a), pl.pid(b)], [pl.pid(y)], bc + [kind])
