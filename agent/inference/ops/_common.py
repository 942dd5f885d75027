"""Helpers the op families share: fused activations, per-channel weight scales and
multipliers, bias checks, conv/pool geometry, 6-D padded shapes and strides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from agent.inference import quant
from agent.inference.plan import prod
from agent.inference.schema import (
    ACT_NONE,
    ACT_RELU,
    ACT_RELU6,
    ACT_RELU_N1_TO_1,
    PAD_SAME,
    PAD_VALID,
)
from agent.inference.tflite import OperatorDef

if TYPE_CHECKING:
    from agent.inference.planner import Planner


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
    pl.require(prod(pl.t(b).shape) == channels, f"bias has shape {pl.t(b).shape} for {channels} channels")
    pl.const(b, "bias")
    return [pl.pid(b)]


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


def _pad6(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1,) * (6 - len(shape)) + tuple(shape)


def _strides6(dims: tuple[int, ...] | list[int]) -> list[int]:
    """Row-major element strides of 6 padded dims; 0 where a dimension is 1 (broadcast)."""
    st, acc = [0] * 6, 1
    for k in range(5, -1, -1):
        st[k] = 0 if dims[k] == 1 else acc
        acc *= dims[k]
    return st


def _strides(shape: tuple[int, ...]) -> list[int]:
    st, acc = [0] * len(shape), 1
    for k in range(len(shape) - 1, -1, -1):
        st[k] = acc
        acc *= shape[k]
    return st


DTYPE_OF: dict[str, type] = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32,
                             "int64": np.int64, "float32": np.float32, "bool": np.bool_}
