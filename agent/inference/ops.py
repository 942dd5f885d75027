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
              int(DWCONV_REQUANT if dw else CONV_REQUANT), out_c // 8 * 8 if dw else 0]
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


# ---- broadcasting binary ops ---------------------------------------------------------------------

def _pad6(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1,) * (6 - len(shape)) + tuple(shape)


def broadcast_params(pl: Planner, a: int, b: int, y: int) -> list[int]:
    """Output dims and per-input strides (0 where broadcast), all padded to 6 dimensions."""
    sa, sb, sy = pl.t(a).shape, pl.t(b).shape, pl.t(y).shape
    pl.require(max(len(sa), len(sb)) <= 6, "rank above 6")
    da, db = _pad6(sa), _pad6(sb)
    out = []
    for x, z in zip(da, db):
        pl.require(x == z or x == 1 or z == 1, f"shapes {sa} and {sb} do not broadcast")
        out.append(max(x, z) if min(x, z) > 0 else 0)
    pl.require(all(d > 0 for d in out), "empty tensors are not supported")
    want = tuple(out[6 - max(len(sa), len(sb)):])
    pl.expect_shape(y, want)

    def strides(d: tuple[int, ...]) -> list[int]:
        st, acc = [0] * 6, 1
        for k in range(5, -1, -1):
            st[k] = 0 if d[k] == 1 else acc
            acc *= d[k]
        return st

    return list(out) + strides(da) + strides(db)


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
        _binary_float(pl, op, kind, None if name == "SQUARED_DIFFERENCE" else f"{name.title()}Options")
        return
    if pl.t(a).type == "int32":
        pl.require(name != "SQUARED_DIFFERENCE", "int32 SQUARED_DIFFERENCE")
        _binary_int(pl, op, {"ADD": 0, "SUB": 1}[name], f"{name.title()}Options")
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
        _binary_float(pl, op, 2, "MulOptions")
        return
    if pl.t(a).type == "int32":
        _binary_int(pl, op, 2, "MulOptions")
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


def _binary_float(pl: Planner, op: OperatorDef, kind: int, options: str | None) -> None:
    a, b, y = op.inputs[0], op.inputs[1], op.outputs[0]
    for i in (a, b, y):
        pl.expect_type(i, "float32")
    if options is not None:
        pl.require(_fused_act(pl, op, options) == ACT_NONE, "fused activation on a float op")
    bc = broadcast_params(pl, a, b, y)
    pl.node(NativeOp.BINARY_F32, [pl.pid(a), pl.pid(b)], [pl.pid(y)], bc + [kind])


def _binary_int(pl: Planner, op: OperatorDef, kind: int, options: str | None) -> None:
    a, b, y = op.inputs[0], op.inputs[1], op.outputs[0]
    for i in (a, b, y):
        pl.expect_type(i, "int32")
    if options is not None:
        pl.require(_fused_act(pl, op, options) == ACT_NONE, "fused activation on an int32 op")
    bc = broadcast_params(pl, a, b, y)
    pl.node(NativeOp.BINARY_I32, [pl.pid(a), pl.pid(b)], [pl.pid(y)], bc + [kind])


# ---- pooling ----------------------------------------------------------------------------------

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


# ---- reductions --------------------------------------------------------------------------------

def _axes(pl: Planner, op: OperatorDef, rank: int) -> list[int]:
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
    axes = _axes(pl, op, rank)
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
    pl.expect_type(x, "int32")
    pl.expect_type(y, "int32")
    rp, _, _, _ = reduce_params(pl, op)
    kind = {"SUM": 0, "REDUCE_PROD": 1, "REDUCE_MAX": 2, "REDUCE_MIN": 3}[name]
    pl.node(NativeOp.REDUCE_I32, [pl.pid(x)], [pl.pid(y)], rp + [kind])


# ---- softmax and element-wise tables ----------------------------------------------------------

@handles("SOFTMAX")
def softmax(pl: Planner, op: OperatorDef) -> None:
    from agent.inference import _native

    pl.counts(op, (1, 1))
    x, y = op.inputs[0], op.outputs[0]
    s_in, _ = pl.qp(x)
    s_out, z_out = pl.qp(y)
    pl.require(z_out == -128 and abs(s_out - 1 / 256) <= 0.001 / 256, "int8 softmax output must be scale 1/256, zero point -128")
    pl.require(pl.t(x).shape == pl.t(y).shape and len(pl.t(x).shape) >= 1, "shape mismatch")
    opts = pl.options(op, "SoftmaxOptions")
    beta = opts.f32(0, 0.0) if opts else 1.0
    table = _native.softmax_table(s_in, beta)
    pl.require(bool(np.all(np.isfinite(table))), f"beta {beta} gives a non-finite table")
    pl.node(NativeOp.SOFTMAX_S8, [pl.pid(x)], [pl.pid(y)], [z_out, quant.f32_bits(s_out), pl.add_const(table)])


def _lut_node(pl: Planner, op: OperatorDef, kind: str, s_in: float, s_out: float, ip: list[int]) -> None:
    from agent.inference import _native

    x, y = op.inputs[0], op.outputs[0]
    pl.require(pl.t(x).shape == pl.t(y).shape, "input and output shapes differ")
    try:
        table = _native.lut_build(kind, s_in, s_out, ip)
    except ValueError as e:
        raise pl.fail(str(e)) from e
    pl.node(NativeOp.LUT_S8, [pl.pid(x)], [pl.pid(y)], [pl.add_const(table)])


@handles("LOGISTIC", "TANH", "GELU", "RSQRT")
def float_lut(pl: Planner, op: OperatorDef) -> None:
    name = pl.current_op.split()[-1]
    pl.counts(op, (1, 1))
    x, y = op.inputs[0], op.outputs[0]
    if pl.t(x).type == "float32":
        pl.require(name in ("RSQRT", "TANH", "LOGISTIC"), f"float32 {name}")
        pl.expect_type(y, "float32")
        pl.require(pl.t(x).shape == pl.t(y).shape, "input and output shapes differ")
        pl.node(NativeOp.UNARY_F32, [pl.pid(x)], [pl.pid(y)], [{"RSQRT": 1, "TANH": 5, "LOGISTIC": 6}[name]])
        return
    s_in, z_in = pl.qp(x)
    s_out, z_out = pl.qp(y)
    kind = name
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
    pl.require(e_out <= 0, "HARD_SWISH output multiplier above one")
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
        pl.require(pl.t(x).shape == pl.t(y).shape, "input and output shapes differ")
        pl.node(NativeOp.UNARY_F32, [pl.pid(x)], [pl.pid(y)], [7 if name == "RELU" else 8])
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
    pl.expect_type(x, "float32")
    pl.expect_type(y, "float32")
    pl.require(pl.t(x).shape == pl.t(y).shape, "input and output shapes differ")
    pl.node(NativeOp.UNARY_F32, [pl.pid(x)], [pl.pid(y)], [0])
