"""CONV_2D and DEPTHWISE_CONV_2D (native twins: fn_op_conv2d.c, fn_op_dwconv2d.c).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.inference.ops._common import (
    _act,
    _bias,
    _per_channel_multipliers,
    _weight_scales,
    conv_geometry,
)
from agent.inference.ops._registry import handles
from agent.inference.plan import CONV_REQUANT, DWCONV_REQUANT, NativeOp, Requant
from agent.inference.tflite import OperatorDef

if TYPE_CHECKING:
    from agent.inference.planner import Planner


@handles("CONV_2D", "DEPTHWISE_CONV_2D")
def conv2d(pl: Planner, op: OperatorDef) -> None:
    dw = pl.current_op.endswith("DEPTHWISE_CONV_2D")
    pl.counts(op, (2, 3))
    x, w, y = op.inputs[0], op.inputs[1], op.outputs[0]
    s_in, z_in = pl.qp(x)
    s_out, z_out = pl.qp(y)
    opts = pl.options(op, "DepthwiseConv2DOptions" if dw else "Conv2DOptions")
    pl.require(opts is not None, "options missing")
    assert opts is not None
    padding, stride_w, stride_h = opts.i8(0), opts.i32(1), opts.i32(2)
    if dw:
        mult, act, dil_w, dil_h = opts.i32(3), opts.i8(4), opts.i32(5, 1), opts.i32(6, 1)
    else:
        mult, act, dil_w, dil_h = 1, opts.i8(3), opts.i32(4, 1), opts.i32(5, 1)
    xt, wt = pl.t(x), pl.expect_type(w, "int8")
    pl.const(w, "filter")
    pl.require(len(xt.shape) == 4 and len(wt.shape) == 4, f"input {xt.shape}, filter {wt.shape}")
    n, h, wd, c = xt.shape
    if dw:
        # LiteRT 2.3.0's builtin int8 DEPTHWISE_CONV_2D dereferences a missing bias (SIGSEGV), so
        # there is no reference answer to be exact with: refuse the model instead.
        pl.require(len(op.inputs) == 3 and op.inputs[2] >= 0, "DEPTHWISE_CONV_2D needs a bias tensor")
        pl.require(wt.shape[0] == 1, f"depthwise filter {wt.shape}")
        out_c = wt.shape[3]
        # TFLite infers the multiplier from the shapes; the option may be stale (0 or wrong).
        pl.require(c > 0 and out_c % c == 0, f"filter channels {out_c} vs input channels {c}")
        mult = out_c // c
        kh, kw = wt.shape[1], wt.shape[2]
        cg = c
    else:
        # conv.cc: "the optimized versions require 'bias'", so LiteRT refuses a CONV_2D without one.
        pl.require(len(op.inputs) == 3 and op.inputs[2] >= 0, "CONV_2D needs a bias tensor")
        out_c, kh, kw, cg = wt.shape
        pl.require(cg > 0 and c % cg == 0 and out_c % (c // cg) == 0, f"filter {wt.shape} vs input {xt.shape}")
    oh, pad_t = conv_geometry(pl, padding, h, kh, stride_h, dil_h)
    ow, pad_l = conv_geometry(pl, padding, wd, kw, stride_w, dil_w)
    pl.expect_shape(y, (n, oh, ow, out_c))
    scales = _weight_scales(pl, w, out_c, 3 if dw else 0)
    mt, st = _per_channel_multipliers(pl, s_in, scales, s_out)
    lo, hi = _act(pl, act, y)
    ins = [pl.pid(x), pl.pid(w)] + _bias(pl, op, out_c)
    # The C side packs the filter for its microkernel at plan creation (fn_gemm_prepare); the
    # P_PACKED slot is reserved and must be -1, so the constants hold one copy of the filter.
    packed = -1
    # Grouped CONV_2D is not ruy's: LiteRT runs it through the reference kernel (double rounding).
    mode = DWCONV_REQUANT if dw else (CONV_REQUANT if cg == c else Requant.DOUBLE_ROUND)
    params = [z_in, z_out, lo, hi, stride_h, stride_w, dil_h, dil_w, pad_t, pad_l, mt, st, mult,
              int(mode), out_c // 8 * 8 if dw else 0, packed]
    pl.node(NativeOp.DEPTHWISE_CONV_2D if dw else NativeOp.CONV_2D, ins, [pl.pid(y)], params)
