"""Op handlers: per TFLite builtin, validate the operator and emit native plan nodes.

Each handler mirrors what the TFLite kernel's Prepare checks and computes (multipliers, shifts,
activation ranges, padding) and hands the kernel only integers it can trust.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from agent.inference import quant
from agent.inference.planner import CONV_REQUANT, DWCONV_REQUANT, FC_REQUANT, NativeOp, Planner, Requant, _prod
from agent.inference.schema import ACT_NONE, ACT_RELU, ACT_RELU6, ACT_RELU_N1_TO_1, PAD_SAME, PAD_VALID
from agent.inference.tflite import OperatorDef

Handler = Callable[[Planner, OperatorDef], None]
HANDLERS: dict[str, Handler] = {}


def handles(*names: str) -> Callable[[Handler], Handler]:
    def deco(f: Handler) -> Handler:
        for n in names:
            HANDLERS[n] = f
        return f
    return deco


def _act(pl: Planner, act: int, out: int) -> tuple[int, int]:
    pl.require(act in (ACT_NONE, ACT_RELU, ACT_RELU6, ACT_RELU_N1_TO_1), f"fused activation {act}")
    s, z = pl.qp(out)
    return quant.activation_range_s8(act, s, z)


def _weight_scales(pl: Planner, w: int, channels: int, qdim: int) -> list[float]:
    t = pl.t(w)
    pl.require(len(t.scales) in (1, channels), f"weights have {len(t.scales)} scales for {channels} channels")
    if len(t.scales) > 1:
        pl.require(t.quantized_dimension == qdim, f"weights quantized along dimension {t.quantized_dimension}")
    pl.require(all(z == 0 for z in t.zero_points), "int8 weights need zero point 0")
    return list(t.scales) * (channels if len(t.scales) == 1 else 1)


def _per_channel_multipliers(pl: Planner, s_in: float, scales: list[float], s_out: float) -> tuple[int, int]:
    """PopulateConvolutionQuantizationParams: double(s_in) * double(s_w[c]) / double(s_out)."""
    ms, shs = [], []
    for s_w in scales:
        m, sh = quant.quantize_multiplier(s_in * s_w / s_out)
        ms.append(m)
        shs.append(sh)
    return pl.add_const(np.array(ms, np.int32)), pl.add_const(np.array(shs, np.int32))


def _bias(pl: Planner, op: OperatorDef, channels: int) -> list[int]:
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        return []
    b = op.inputs[2]
    pl.expect_type(b, "int32")
    pl.require(_prod(pl.t(b).shape) == channels, f"bias has shape {pl.t(b).shape} for {channels} channels")
    pl.const(b, "bias")
    return [pl.pid(b)]


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
    n_in = _prod(xt.shape)
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
            m, sh = quant.quantize_multiplier(real)
            mt, st = pl.add_const(np.full(units, m, np.int32)), pl.add_const(np.full(units, sh, np.int32))
        else:
            mt, st = _per_channel_multipliers(pl, s_in, scales, s_out)
        params = [z_in, z_out, lo, hi, int(FC_REQUANT), mt, st, -1, 0]
    ins = [pl.pid(x), pl.pid(w)] + _bias(pl, op, units)
    pl.node(NativeOp.FULLY_CONNECTED, ins, [pl.pid(y)], params)


def conv_geometry(pl: Planner, padding: int, size: int, k: int, stride: int, dil: int) -> tuple[int, int]:
    """(output size, padding before) as TFLite's ComputePaddingHeightWidth."""
    pl.require(stride >= 1 and dil >= 1, f"stride {stride}, dilation {dil}")
    eff = (k - 1) * dil + 1
    if padding == PAD_SAME:
        out = (size + stride - 1) // stride
    elif padding == PAD_VALID:
        out = (size + stride - eff) // stride if size >= eff else 0
    else:
        raise pl.fail(f"padding {padding}")
    pl.require(out >= 1, f"input {size} too small for kernel {k} (dilation {dil})")
    total = max(0, (out - 1) * stride + eff - size)
    return out, total // 2


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
        pl.require(wt.shape[0] == 1, f"depthwise filter {wt.shape}")
        out_c = wt.shape[3]
        # TFLite infers the multiplier from the shapes; the option may be stale (0 or wrong).
        pl.require(c > 0 and out_c % c == 0, f"filter channels {out_c} vs input channels {c}")
        mult = out_c // c
        kh, kw = wt.shape[1], wt.shape[2]
    else:
        out_c, kh, kw, cg = wt.shape
        pl.require(cg > 0 and c % cg == 0 and out_c % (c // cg) == 0, f"filter {wt.shape} vs input {xt.shape}")
    oh, pad_t = conv_geometry(pl, padding, h, kh, stride_h, dil_h)
    ow, pad_l = conv_geometry(pl, padding, wd, kw, stride_w, dil_w)
    pl.expect_shape(y, (n, oh, ow, out_c))
    scales = _weight_scales(pl, w, out_c, 3 if dw else 0)
    mt, st = _per_channel_multipliers(pl, s_in, scales, s_out)
    lo, hi = _act(pl, act, y)
    ins = [pl.pid(x), pl.pid(w)] + _bias(pl, op, out_c)
    params = [z_in, z_out, lo, hi, stride_h, stride_w, dil_h, dil_w, pad_t, pad_l, mt, st, mult,
              int(DWCONV_REQUANT if dw else CONV_REQUANT)]
    pl.node(NativeOp.DEPTHWISE_CONV_2D if dw else NativeOp.CONV_2D, ins, [pl.pid(y)], params)


@handles("QUANTIZE")
def quantize(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (1, 1))
    x, y = op.inputs[0], op.outputs[0]
    pl.require(pl.t(x).shape == pl.t(y).shape, "input and output shapes differ")
    s_out, z_out = pl.qp(y)
    if pl.t(x).type == "float32":
        pl.node(NativeOp.QUANTIZE_F32_S8, [pl.pid(x)], [pl.pid(y)], [z_out, quant.f32_bits(s_out)])
        return
    s_in, z_in = pl.qp(x)
    m, sh = quant.quantize_multiplier(s_in / s_out)
    pl.node(NativeOp.REQUANTIZE_S8, [pl.pid(x)], [pl.pid(y)], [z_in, z_out, m, sh])


@handles("DEQUANTIZE")
def dequantize(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (1, 1))
    x, y = op.inputs[0], op.outputs[0]
    pl.require(pl.t(x).shape == pl.t(y).shape, "input and output shapes differ")
    pl.expect_type(y, "float32")
    s_in, z_in = pl.qp(x)
    pl.node(NativeOp.DEQUANTIZE_S8_F32, [pl.pid(x)], [pl.pid(y)], [z_in, quant.f32_bits(s_in)])


@handles("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def reshape(pl: Planner, op: OperatorDef) -> None:
    pl.require(len(op.inputs) >= 1 and op.inputs[0] >= 0 and len(op.outputs) == 1, "needs one input and one output")
    x, y = op.inputs[0], op.outputs[0]
    xt, yt = pl.t(x), pl.t(y)
    pl.require(xt.type == yt.type, f"type {xt.type} -> {yt.type}")
    pl.require(_prod(xt.shape) == _prod(yt.shape), f"{xt.shape} -> {yt.shape} changes the element count")
    if xt.scales or yt.scales:
        pl.require(xt.scales[:1] == yt.scales[:1] and xt.zero_points[:1] == yt.zero_points[:1],
                   "quantization differs between input and output")
    pl.node(NativeOp.COPY, [pl.pid(x)], [pl.pid(y)], [])
