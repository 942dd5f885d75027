"""FULLY_CONNECTED (native twin: native/src/ops/fn_op_fully_connected.c).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agent.inference import quant
from agent.inference.ops._common import _act, _bias, _per_channel_multipliers, _weight_scales
from agent.inference.ops._registry import handles
from agent.inference.plan import FC_REQUANT, NativeOp, Requant, prod
from agent.inference.tflite import OperatorDef

if TYPE_CHECKING:
    from agent.inference.planner import Planner


@handles("FULLY_CONNECTED")
def fully_connected(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (2, 3))
    x, w, y = op.inputs[0], op.inputs[1], op.outputs[0]
    s_in, z_in = pl.qp(x)
    s_out, z_out = pl.qp(y)
    opts = pl.options(op, "FullyConnectedOptions")
    act = opts.i8(0, 0) if opts else 0
    weights_format = opts.i8(1, 0) if opts else 0
    keep_num_dims = opts.boolean(2) if opts else False
    pl.require(weights_format == 0, "shuffled weights format")
    wt = pl.expect_type(w, "int8")
    pl.const(w, "weights")
    pl.require(len(wt.shape) == 2 and wt.shape[1] > 0, f"weights shape {wt.shape}")
    units, depth = wt.shape
    xt = pl.t(x)
    n_in = prod(xt.shape)
    pl.require(n_in % depth == 0, f"input of {n_in} elements is not a multiple of depth {depth}")
    batch = n_in // depth
    out_shape = tuple(xt.shape[:-1]) + (units,) if keep_num_dims else (batch, units)
    pl.expect_shape(y, out_shape)
    scales = _weight_scales(pl, w, units, 0)
    lo, hi = _act(pl, act, y)
    if FC_REQUANT == Requant.FLOAT64:
        eff = np.array([s_in * s_w / s_out for s_w in scales], np.float64)
        params = [z_in, z_out, lo, hi, int(Requant.FLOAT64), -1, -1, pl.add_const(eff), 0]
    else:
        if len(pl.t(w).scales) == 1:
            # GetQuantizedConvolutionMultipler: the product is float32, the quotient double.
            real = quant.f32(s_in * scales[0]) / s_out
            if len(op.inputs) == 3 and op.inputs[2] >= 0:
                # LiteRT refuses a bias whose scale is not s_in * s_w (within 2% of s_out).
                bt = pl.t(op.inputs[2])
                s_b = bt.scales[0] if bt.scales else 0.0
                pl.require(abs(quant.f32(s_in * scales[0]) - s_b) / s_out <= 0.02,
                           "bias scale is not input scale * weight scale")
            m, sh = quant.quantize_multiplier(real)
            mt, st = pl.add_const(np.full(units, m, np.int32)), pl.add_const(np.full(units, sh, np.int32))
        else:
            mt, st = _per_channel_multipliers(pl, s_in, scales, s_out)
        params = [z_in, z_out, lo, hi, int(FC_REQUANT), mt, st, -1, 0]
    ins = [pl.pid(x), pl.pid(w)] + _bias(pl, op, units)
    pl.node(NativeOp.FULLY_CONNECTED, ins, [pl.pid(y)], params)
