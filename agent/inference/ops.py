"""Op handlers: per TFLite builtin, validate the operator and emit native plan nodes.

Each handler mirrors what the TFLite kernel's Prepare checks and computes (multipliers, shifts,
activation ranges, padding) and hands the kernel only integers it can trust.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np

from agent.inference import quant
from agent.inference.errors import UnsupportedOpError
from agent.inference.planner import (
    BMM_REQUANT,
    CONV_REQUANT,
    DWCONV_REQUANT,
    FC_REQUANT,
    NativeOp,
    Planner,
    Requant,
    _prod,
)
from agent.inference.schema import (
    ACT_NONE,
    ACT_RELU,
    ACT_RELU6,
    ACT_RELU_N1_TO_1,
    PAD_SAME,
    PAD_VALID,
)
from agent.inference.tflite import OperatorDef

F = TypeVar("F")
Handler = Callable[[Planner, OperatorDef], None]
HANDLERS: dict[str, Handler] = {}


def _register(table: dict[str, F], names: tuple[str, ...]) -> Callable[[F], F]:
    def deco(f: F) -> F:
        for n in names:
            table[n] = f
        return f
    return deco


def handles(*names: str) -> Callable[[Handler], Handler]:
    return _register(HANDLERS, names)


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


@handles("QUANTIZE")
def quantize(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (1, 1))
    x, y = op.inputs[0], op.outputs[0]
    pl.same_shape(x, y)
    out_type = pl.expect_type(y, "int8", "uint8").type
    s_out, z_out = pl.qp(y, out_type)
    if pl.t(x).type == "float32":
        pl.require(out_type == "int8", "float32 -> uint8 QUANTIZE is not supported")
        count = _prod(pl.t(x).shape)
        pl.node(NativeOp.QUANTIZE_F32_S8, [pl.pid(x)], [pl.pid(y)],
                [z_out, quant.f32_bits(s_out), quant.f32_bits(1.0 / s_out), count // 8 * 8])
        return
    in_type = pl.expect_type(x, "int8", "uint8").type
    s_in, z_in = pl.qp(x, in_type)
    m, sh = quant.quantize_multiplier(s_in / s_out)
    count = _prod(pl.t(x).shape)
    pl.node(NativeOp.REQUANTIZE_S8, [pl.pid(x)], [pl.pid(y)], [z_in, z_out, m, sh, count // 16 * 16])


@handles("DEQUANTIZE")
def dequantize(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (1, 1))
    x, y = op.inputs[0], op.outputs[0]
    pl.same_shape(x, y)
    pl.expect_type(y, "float32")
    s_in, z_in = pl.qp(x)
    count = _prod(pl.t(x).shape)
    pl.node(NativeOp.DEQUANTIZE_S8_F32, [pl.pid(x)], [pl.pid(y)],
            [z_in, quant.f32_bits(s_in), quant.f32_bits(-z_in * s_in), count // 8 * 8])


def reshape_target(pl: Planner, op: OperatorDef) -> tuple[int, ...]:
    """The output shape of RESHAPE / SQUEEZE / EXPAND_DIMS, as LiteRT's Prepare computes it."""
    name = pl.current_op.split()[-1]
    shape = pl.t(op.inputs[0]).shape
    n = _prod(shape)
    if name == "SQUEEZE":
        opts = pl.options(op, "SqueezeOptions")
        dims = [d % len(shape) for d in (opts.ints(0) or ())] if opts and shape else []
        pl.require(all(shape[d] == 1 for d in dims), f"squeezing a dimension that is not 1 in {shape}")
        return tuple(d for i, d in enumerate(shape) if (i not in dims if dims else d != 1))
    if name == "EXPAND_DIMS":
        pl.require(len(op.inputs) == 2, "EXPAND_DIMS needs an axis input")
        ax = pl.const(op.inputs[1], "axis")
        pl.require(ax.size == 1, "axis must be a single value")
        axis = int(ax.ravel()[0])
        axis = axis + len(shape) + 1 if axis < 0 else axis
        pl.require(0 <= axis <= len(shape), f"axis {axis} for rank {len(shape)}")
        return shape[:axis] + (1,) + shape[axis:]
    shape_in = op.inputs[1] if len(op.inputs) > 1 and op.inputs[1] >= 0 else -1
    if shape_in >= 0 and len(pl.t(shape_in).shape) == 1 and pl.t(shape_in).shape[0] > 0:
        # reshape.cc: a non-empty 1-D shape tensor wins; otherwise the options' new_shape
        v = pl.data(shape_in)
        pl.require(v is not None, "the new shape must be known at load time")
        assert v is not None
        spec = [int(d) for d in v.ravel()]
    else:
        opts = pl.options(op, "ReshapeOptions")
        spec = list(opts.ints(0) or ()) if opts and opts.ints(0) is not None else list(pl.sg.tensors[op.outputs[0]].shape)
    pl.require(spec.count(-1) <= 1 and all(d >= -1 for d in spec), f"new shape {spec}")
    known = _prod(tuple(d for d in spec if d != -1))
    if -1 in spec:
        pl.require(known > 0 and n % known == 0, f"{shape} cannot be reshaped to {spec}")
        spec[spec.index(-1)] = n // known
    pl.require(_prod(tuple(spec)) == n, f"{shape} -> {spec} changes the element count")
    return tuple(spec)


@handles("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def reshape(pl: Planner, op: OperatorDef) -> None:
    pl.require(len(op.inputs) >= 1 and op.inputs[0] >= 0 and len(op.outputs) == 1, "needs one input and one output")
    x, y = op.inputs[0], op.outputs[0]
    xt, yt = pl.t(x), pl.t(y)
    pl.require(xt.type == yt.type, f"type {xt.type} -> {yt.type}")
    if xt.scales or yt.scales:
        pl.require(xt.scales[:1] == yt.scales[:1] and xt.zero_points[:1] == yt.zero_points[:1],
                   "quantization differs between input and output")
    pl.expect_shape(y, reshape_target(pl, op))
    pl.node(NativeOp.COPY, [pl.pid(x)], [pl.pid(y)], [])


# ---- broadcasting binary ops ---------------------------------------------------------------------

def _pad6(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1,) * (6 - len(shape)) + tuple(shape)


def _strides6(dims: tuple[int, ...] | list[int]) -> list[int]:
    """Row-major element strides of 6 padded dims; 0 where a dimension is 1 (broadcast)."""
    st, acc = [0] * 6, 1
    for k in range(5, -1, -1):
        st[k] = 0 if dims[k] == 1 else acc
        acc *= dims[k]
    return st


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
    if pl.t(x).type != "int32":
        raise UnsupportedOpError(name, f"{pl.t(x).type} variant (int32 only)")
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
    pl.require(len(pl.t(x).shape) >= 1, "SOFTMAX of a scalar")
    pl.same_shape(x, y)
    opts = pl.options(op, "SoftmaxOptions")
    beta = opts.f32(0, 0.0) if opts else 1.0
    table = _native.softmax_table(s_in, beta)
    pl.require(bool(np.all(np.isfinite(table))), f"beta {beta} gives a non-finite table")
    pl.node(NativeOp.SOFTMAX_S8, [pl.pid(x)], [pl.pid(y)], [z_out, quant.f32_bits(s_out), pl.add_const(table)])


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


# ---- data movement -----------------------------------------------------------------------------

def _strides(shape: tuple[int, ...]) -> list[int]:
    st, acc = [0] * len(shape), 1
    for k in range(len(shape) - 1, -1, -1):
        st[k] = acc
        acc *= shape[k]
    return st


def _strided_copy(pl: Planner, x: int, y: int, dims: list[int], in_off: int, in_str: list[int],
                  out_off: int, out_str: list[int], fill: int | None = None) -> None:
    pad = 6 - len(dims)
    pl.require(pad >= 0, "rank above 6")
    params = ([1] * pad + dims + [in_off] + [0] * pad + in_str + [out_off] + [0] * pad + out_str
              + [0 if fill is None else 1, 0 if fill is None else fill])
    pl.node(NativeOp.STRIDED_COPY, [pl.pid(x)], [pl.pid(y)], params)


def _same_quant(pl: Planner, a: int, b: int) -> None:
    ta, tb = pl.t(a), pl.t(b)
    pl.require(ta.type == tb.type, f"type {ta.type} vs {tb.type}")
    if ta.type in ("int8", "uint8", "int16") and (ta.scales or tb.scales):
        pl.require(quant.f32(ta.scales[0] if ta.scales else 0.0) == quant.f32(tb.scales[0] if tb.scales else 0.0)
                   and (ta.zero_points[:1] or (0,)) == (tb.zero_points[:1] or (0,)),
                   "input and output quantization differ")


@handles("TRANSPOSE")
def transpose(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (2, 2))
    x, y = op.inputs[0], op.outputs[0]
    _same_quant(pl, x, y)
    shape = pl.t(x).shape
    perm = [int(v) for v in pl.const(op.inputs[1], "permutation").ravel()]
    pl.require(sorted(perm) == list(range(len(shape))), f"permutation {perm} for rank {len(shape)}")
    out_shape = tuple(shape[p] for p in perm)
    pl.expect_shape(y, out_shape)
    ist = _strides(shape)
    _strided_copy(pl, x, y, list(out_shape), 0, [ist[p] for p in perm], 0, _strides(out_shape))


@handles("PAD", "PADV2")
def pad(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (2, 3))
    x, y = op.inputs[0], op.outputs[0]
    _same_quant(pl, x, y)
    xt = pl.t(x)
    pads = pl.const(op.inputs[1], "paddings")
    pl.expect_type(op.inputs[1], "int32", "int64")
    pl.require(pads.shape == (len(xt.shape), 2), f"paddings shape {pads.shape}")
    pads_l = [[int(a), int(b)] for a, b in pads.tolist()]
    pl.require(all(a >= 0 and b >= 0 for a, b in pads_l), "negative padding")
    out_shape = tuple(d + a + b for d, (a, b) in zip(xt.shape, pads_l))
    pl.expect_shape(y, out_shape)
    if len(op.inputs) == 3 and op.inputs[2] >= 0:
        cv = pl.const(op.inputs[2], "constant value")
        pl.require(cv.size == 1 and pl.t(op.inputs[2]).type == xt.type, "constant value")
        fill_arr = np.ascontiguousarray(cv.ravel()[:1])
    else:
        zp = xt.zero_points[0] if xt.zero_points else 0
        fill_arr = np.array([zp if xt.type in ("int8", "uint8", "int16") else 0], dtype=DTYPE_OF[xt.type])
    raw = fill_arr.tobytes()
    pl.require(len(raw) <= 4, f"PAD of {xt.type}")
    fill = int(np.frombuffer((raw * 4)[:4], dtype=np.int32)[0])
    ost = _strides(out_shape)
    out_off = sum(a * s for (a, _), s in zip(pads_l, ost))
    _strided_copy(pl, x, y, list(xt.shape), 0, _strides(xt.shape), out_off, ost, fill)


def slice_geometry(pl: Planner, op: OperatorDef) -> tuple[list[int], list[int], list[int], list[bool]]:
    """(start, step, count, kept) per axis of SLICE / STRIDED_SLICE (strided_slice_logic.h)."""
    is_slice = pl.current_op.endswith(" SLICE")
    pl.counts(op, (3, 3) if is_slice else (4, 4))
    x = op.inputs[0]
    shape = pl.t(x).shape
    rank = len(shape)
    begin = [int(v) for v in pl.const(op.inputs[1], "begin").ravel()]
    pl.require(len(begin) == rank, "begin has the wrong length")
    if is_slice:
        size = [int(v) for v in pl.const(op.inputs[2], "size").ravel()]
        pl.require(len(size) == rank, "size has the wrong length")
        starts, steps, counts, keep = [], [], [], []
        for d in range(rank):
            b = begin[d]
            n = shape[d] - b if size[d] == -1 else size[d]
            pl.require(0 <= b and n >= 0 and b + n <= shape[d], f"slice [{b}, +{n}) of {shape[d]}")
            starts.append(b)
            steps.append(1)
            counts.append(n)
            keep.append(True)
    else:
        end = [int(v) for v in pl.const(op.inputs[2], "end").ravel()]
        stride = [int(v) for v in pl.const(op.inputs[3], "strides").ravel()]
        pl.require(len(end) == rank and len(stride) == rank, "end/strides have the wrong length")
        opts = pl.options(op, "StridedSliceOptions")
        bm, em, elm, nam, sam = ((opts.i32(0), opts.i32(1), opts.i32(2), opts.i32(3), opts.i32(4))
                                 if opts else (0, 0, 0, 0, 0))
        pl.require(not (opts.boolean(5) if opts else False), "the offset attribute is not supported")
        pl.require(elm == 0 and nam == 0, "ellipsis and new-axis masks are not supported")
        starts, steps, counts, keep = [], [], [], []
        for d in range(rank):
            st_, dim = stride[d], shape[d]
            pl.require(st_ != 0, "zero stride")
            # strided_slice_logic.h StartForAxis / StopForAxis
            lo_hi = (0, dim) if st_ > 0 else (-1, dim - 1)
            b = begin[d] if not bm >> d & 1 else (-(1 << 31) if st_ > 0 else (1 << 31) - 1)
            b = b + dim if b < 0 else b
            b = min(max(b, lo_hi[0]), lo_hi[1])
            if sam >> d & 1:
                pl.require(st_ > 0 and 0 <= b < dim, f"shrunk axis {d} index {begin[d]} out of range")
                starts.append(b)
                steps.append(1)
                counts.append(1)
                keep.append(False)
                continue
            e = end[d] if not em >> d & 1 else ((1 << 31) - 1 if st_ > 0 else -(1 << 31))
            e = e + dim if e < 0 else e
            e = min(max(e, lo_hi[0]), lo_hi[1])
            n = max(0, -((b - e) // st_)) if st_ > 0 else max(0, -((e - b) // -st_))
            starts.append(b)
            steps.append(st_)
            counts.append(n)
            keep.append(True)
    pl.require(all(c > 0 for c in counts), "empty slices are not supported")
    return starts, steps, counts, keep


@handles("STRIDED_SLICE", "SLICE")
def strided_slice(pl: Planner, op: OperatorDef) -> None:
    is_slice = pl.current_op.endswith(" SLICE")
    pl.counts(op, (3, 3) if is_slice else (4, 4))
    x, y = op.inputs[0], op.outputs[0]
    _same_quant(pl, x, y)
    shape = pl.t(x).shape
    starts, steps, counts, keep = slice_geometry(pl, op)
    out_shape = tuple(c for c, k in zip(counts, keep) if k)
    pl.expect_shape(y, out_shape)
    ist = _strides(shape)
    in_off = sum(b * s for b, s in zip(starts, ist))
    full_out = _strides(tuple(counts))
    _strided_copy(pl, x, y, counts, in_off, [st * s for st, s in zip(steps, ist)], 0, full_out)


@handles("CONCATENATION", "PACK")
def concatenation(pl: Planner, op: OperatorDef) -> None:
    is_pack = pl.current_op.endswith("PACK")
    pl.require(1 <= len(op.inputs) <= 8 and len(op.outputs) == 1, f"{len(op.inputs)} inputs (at most 8)")
    y = op.outputs[0]
    for i in op.inputs:
        _same_quant(pl, i, y)
    shapes = [pl.t(i).shape for i in op.inputs]
    if is_pack:
        opts = pl.options(op, "PackOptions")
        axis = opts.i32(1) if opts else 0
        rank = len(shapes[0]) + 1
        pl.require(all(s == shapes[0] for s in shapes), "PACK inputs differ in shape")
        axis = axis + rank if axis < 0 else axis
        pl.require(0 <= axis < rank, f"axis {axis}")
        out_shape = shapes[0][:axis] + (len(shapes),) + shapes[0][axis:]
        per_in = [_prod(shapes[0][axis:]) for _ in shapes]
        outer = _prod(shapes[0][:axis])
    else:
        opts = pl.options(op, "ConcatenationOptions")
        axis = opts.i32(0) if opts else 0
        pl.require((opts.i8(1) if opts else 0) == ACT_NONE, "fused activation on CONCATENATION")
        rank = len(shapes[0])
        axis = axis + rank if axis < 0 else axis
        pl.require(0 <= axis < rank, f"axis {axis}")
        for s in shapes:
            pl.require(len(s) == rank and s[:axis] == shapes[0][:axis] and s[axis + 1:] == shapes[0][axis + 1:],
                       f"shapes {shapes} do not concatenate on axis {axis}")
        out_shape = shapes[0][:axis] + (sum(s[axis] for s in shapes),) + shapes[0][axis + 1:]
        per_in = [_prod(s[axis:]) for s in shapes]
        outer = _prod(shapes[0][:axis])
    pl.expect_shape(y, out_shape)
    pl.require(outer >= 1, "empty tensors are not supported")
    pl.node(NativeOp.CONCAT, [pl.pid(i) for i in op.inputs], [pl.pid(y)], [outer] + per_in)


@handles("GATHER")
def gather(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (2, 2))
    x, idx, y = op.inputs[0], op.inputs[1], op.outputs[0]
    _same_quant(pl, x, y)
    pl.expect_type(idx, "int32", "int64")
    opts = pl.options(op, "GatherOptions")
    axis = opts.i32(0) if opts else 0
    pl.require((opts.i32(1) if opts else 0) == 0, "batch_dims is not supported")
    shape, ishape = pl.t(x).shape, pl.t(idx).shape
    axis = axis + len(shape) if axis < 0 else axis
    pl.require(0 <= axis < len(shape), f"axis {axis}")
    out_shape = shape[:axis] + ishape + shape[axis + 1:]
    pl.expect_shape(y, out_shape)
    outer, inner = _prod(shape[:axis]), _prod(shape[axis + 1:])
    pl.require(outer >= 1 and inner >= 1 and shape[axis] >= 1, "empty tensors are not supported")
    d = pl.data(idx)
    if d is not None:
        pl.require(bool(np.all((d >= 0) & (d < shape[axis]))), "gather index out of range")
    pl.node(NativeOp.GATHER, [pl.pid(x), pl.pid(idx)], [pl.pid(y)], [outer, shape[axis], inner])


@handles("SHAPE")
def shape_op(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (1, 1))
    x, y = op.inputs[0], op.outputs[0]
    yt = pl.expect_type(y, "int32", "int64")
    shape: np.ndarray = np.array(pl.t(x).shape, dtype=DTYPE_OF[yt.type])
    pl.expect_shape(y, (len(shape),))
    # Shapes are static here, so SHAPE is a copy of a constant.
    pl.node(NativeOp.COPY, [pl.add_const(shape)], [pl.pid(y)], [])


@handles("BATCH_MATMUL")
def batch_matmul(pl: Planner, op: OperatorDef) -> None:
    pl.counts(op, (2, 2))
    a, b, y = op.inputs[0], op.inputs[1], op.outputs[0]
    s_a, z_a = pl.qp(a)
    s_b, z_b = pl.qp(b)
    s_out, z_out = pl.qp(y)
    opts = pl.options(op, "BatchMatMulOptions")
    adj_x, adj_y = (opts.boolean(0), opts.boolean(1)) if opts else (False, False)
    sa, sb = pl.t(a).shape, pl.t(b).shape
    pl.require(2 <= len(sa) <= 6 and 2 <= len(sb) <= 6, f"ranks {len(sa)}, {len(sb)}")
    m, k = (sa[-1], sa[-2]) if adj_x else (sa[-2], sa[-1])
    k2, n = (sb[-1], sb[-2]) if adj_y else (sb[-2], sb[-1])
    pl.require(k == k2, f"inner dimensions {k} and {k2} differ")
    ba, bb = sa[:-2], sb[:-2]
    nb = max(len(ba), len(bb))
    pl.require(nb <= 4, "more than 4 batch dimensions")
    pa, pb = (1,) * (4 - len(ba)) + ba, (1,) * (4 - len(bb)) + bb
    batch = []
    for x1, x2 in zip(pa, pb):
        pl.require(x1 == x2 or x1 == 1 or x2 == 1, f"batch dims {ba} and {bb} do not broadcast")
        batch.append(max(x1, x2))
    pl.expect_shape(y, tuple(batch[4 - nb:]) + (m, n))

    def bstr(dims: tuple[int, ...], mat: int) -> list[int]:
        st, acc = [0] * 4, mat
        for i in range(3, -1, -1):
            st[i] = 0 if dims[i] == 1 else acc
            acc *= dims[i]
        return st

    la, lb = bstr(pa, m * k), bstr(pb, k * n)
    l_ms, l_ks = (1, m) if adj_x else (k, 1)
    r_ks, r_ns = (1, k) if adj_y else (n, 1)
    # batch_matmul.cc: GetQuantizedConvolutionMultipler (float32 product, double quotient)
    mult, sh = quant.quantize_multiplier(quant.f32(s_a * s_b) / s_out)
    pl.node(NativeOp.BATCH_MATMUL_S8, [pl.pid(a), pl.pid(b)], [pl.pid(y)],
            batch + la + lb + [m, n, k, l_ms, l_ks, r_ks, r_ns, z_a, z_b, z_out, mult, sh,
                               int(BMM_REQUANT), -128, 127])


DTYPE_OF: dict[str, type] = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32,
                             "int64": np.int64, "float32": np.float32, "bool": np.bool_}


# ---- plan-time folding of integer shape arithmetic ------------------------------------------------
# Models with a dynamic batch compute RESHAPE targets at run time (SHAPE -> GATHER -> REDUCE_PROD
# -> PACK ...). Shapes are static here, so those int32 chains are evaluated once at load.

Folder = Callable[[Planner, OperatorDef], list[np.ndarray]]
FOLDERS: dict[str, Folder] = {}


def folds(*names: str) -> Callable[[Folder], Folder]:
    return _register(FOLDERS, names)


def _out_dtype(pl: Planner, op: OperatorDef, k: int = 0) -> type:
    return DTYPE_OF[pl.sg.tensors[op.outputs[k]].type]


def _known(pl: Planner, i: int) -> np.ndarray:
    v = pl.data(i)
    assert v is not None
    return v


@folds("SHAPE")
def fold_shape(pl: Planner, op: OperatorDef) -> list[np.ndarray]:
    pl.counts(op, (1, 1))
    return [np.array(pl.t(op.inputs[0]).shape, dtype=_out_dtype(pl, op))]


@folds("GATHER")
def fold_gather(pl: Planner, op: OperatorDef) -> list[np.ndarray]:
    pl.counts(op, (2, 2))
    x, idx = _known(pl, op.inputs[0]), _known(pl, op.inputs[1])
    opts = pl.options(op, "GatherOptions")
    axis = opts.i32(0) if opts else 0
    axis = axis + x.ndim if axis < 0 else axis
    pl.require(0 <= axis < max(x.ndim, 1) and (opts.i32(1) if opts else 0) == 0, "gather axis")
    pl.require(bool(np.all((idx >= 0) & (idx < x.shape[axis]))), "gather index out of range")
    return [np.take(x, idx.astype(np.int64), axis=axis).astype(_out_dtype(pl, op))]


@folds("REDUCE_PROD", "SUM", "REDUCE_MAX", "REDUCE_MIN")
def fold_reduce(pl: Planner, op: OperatorDef) -> list[np.ndarray]:
    pl.counts(op, (2, 2))
    x = _known(pl, op.inputs[0])
    axes = tuple(_axes(pl, op, x.ndim)) if x.ndim else ()
    opts = pl.options(op, "ReducerOptions")
    keep = opts.boolean(0) if opts else False
    reducers: dict[str, Callable[..., np.ndarray]] = {"REDUCE_PROD": np.prod, "SUM": np.sum, "REDUCE_MAX": np.max,
                                                      "REDUCE_MIN": np.min}
    f = reducers[pl.current_op.split()[-1]]
    return [np.asarray(f(x, axis=axes, keepdims=keep)).astype(_out_dtype(pl, op))]


@folds("PACK", "CONCATENATION")
def fold_pack(pl: Planner, op: OperatorDef) -> list[np.ndarray]:
    xs = [_known(pl, i) for i in op.inputs]
    pl.require(len(xs) >= 1, "no inputs")
    if pl.current_op.endswith("PACK"):
        opts = pl.options(op, "PackOptions")
        axis = opts.i32(1) if opts else 0
        pl.require(all(v.shape == xs[0].shape for v in xs) and -xs[0].ndim - 1 <= axis <= xs[0].ndim, "PACK")
        return [np.stack(xs, axis=axis).astype(_out_dtype(pl, op))]
    opts = pl.options(op, "ConcatenationOptions")
    axis = opts.i32(0) if opts else 0
    pl.require(all(v.ndim == xs[0].ndim >= 1 for v in xs) and -xs[0].ndim <= axis < xs[0].ndim, "CONCATENATION")
    try:
        return [np.concatenate(xs, axis=axis).astype(_out_dtype(pl, op))]
    except ValueError as e:
        raise pl.fail(f"shapes do not concatenate: {e}") from e


@folds("STRIDED_SLICE", "SLICE")
def fold_slice(pl: Planner, op: OperatorDef) -> list[np.ndarray]:
    starts, steps, counts, keep = slice_geometry(pl, op)
    x = _known(pl, op.inputs[0])
    idx = tuple(np.arange(c) * s + b for b, s, c in zip(starts, steps, counts))
    out = x[np.ix_(*idx)] if idx else x
    return [out.reshape(tuple(c for c, k in zip(counts, keep) if k)).astype(_out_dtype(pl, op))]


@folds("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def fold_reshape(pl: Planner, op: OperatorDef) -> list[np.ndarray]:
    pl.require(len(op.inputs) >= 1 and op.inputs[0] >= 0 and len(op.outputs) == 1, "needs one input and one output")
    return [_known(pl, op.inputs[0]).reshape(reshape_target(pl, op)).astype(_out_dtype(pl, op))]


@folds("ADD", "SUB", "MUL")
def fold_arith(pl: Planner, op: OperatorDef) -> list[np.ndarray]:
    pl.counts(op, (2, 2))
    a, b = _known(pl, op.inputs[0]), _known(pl, op.inputs[1])
    f = {"ADD": np.add, "SUB": np.subtract, "MUL": np.multiply}[pl.current_op.split()[-1]]
    try:
        return [f(a, b).astype(_out_dtype(pl, op))]
    except ValueError as e:
        raise pl.fail(f"shapes do not broadcast: {e}") from e
