"""Quantization arithmetic done once at plan time, with TFLite's exact float/double semantics.

Scales in a .tflite file are float32; TFLite mixes float32 and double arithmetic when it derives
multipliers, and which one it uses changes results, so each helper names its precision.
"""

from __future__ import annotations

import math

import numpy as np

INT8_MIN, INT8_MAX = -128, 127


def round_half_away(x: float) -> float:
    """std::round / TfLiteRound: half away from zero (Python's round() is half to even)."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def f32(x: float) -> float:
    """Rounds a Python float to float32 precision and back."""
    return float(np.float32(x))


def quantize_multiplier(d: float) -> tuple[int, int]:
    """QuantizeMultiplier: d ~= M * 2^(shift - 31), M in [2^30, 2^31); (0, 0) for tiny d."""
    if not math.isfinite(d) or d < 0.0:
        raise ValueError(f"multiplier {d} is not a finite non-negative number")
    if d == 0.0:
        return 0, 0
    q, shift = math.frexp(d)
    qf = int(round_half_away(q * (1 << 31)))
    if qf == (1 << 31):
        qf //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return qf, shift


def quantize_multiplier_smaller_than_one_exp(d: float) -> tuple[int, int]:
    """QuantizeMultiplierSmallerThanOneExp: as above, requires d < 1 (shift <= 0)."""
    m, shift = quantize_multiplier(d)
    if shift > 0:
        raise ValueError(f"multiplier {d} is not smaller than one")
    return m, shift


def quantize_f32(f: float, scale: float, zero_point: int) -> int:
    """zp + (int)TfLiteRound(f / scale) with float32 division, as activation ranges use."""
    q = np.float32(f) / np.float32(scale)
    return zero_point + int(round_half_away(float(q)))


def activation_range_s8(act: int, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 outputs; act is an ActivationFunctionType."""
    from agent.inference.schema import ACT_NONE, ACT_RELU, ACT_RELU6, ACT_RELU_N1_TO_1

    lo, hi = INT8_MIN, INT8_MAX
    if act == ACT_NONE:
        return lo, hi
    if act == ACT_RELU:
        return max(lo, quantize_f32(0.0, scale, zero_point)), hi
    if act == ACT_RELU6:
        return (max(lo, quantize_f32(0.0, scale, zero_point)),
                min(hi, quantize_f32(6.0, scale, zero_point)))
    if act == ACT_RELU_N1_TO_1:
        return (max(lo, quantize_f32(-1.0, scale, zero_point)),
                min(hi, quantize_f32(1.0, scale, zero_point)))
    raise ValueError(f"fused activation {act}")


def f32_bits(x: float) -> int:
    """The int32 bit pattern of float32(x), to carry a float through an int32 parameter."""
    with np.errstate(over="ignore"):
        return int(np.array([x], dtype=np.float32).view(np.int32)[0])


def downscale_to_int16(m: int) -> int:
    """DownScaleInt32ToInt16Multiplier: round a Q31 multiplier to Q15, saturating."""
    if m >= (1 << 31) - (1 << 15):
        return (1 << 15) - 1
    return (m + (1 << 15)) >> 16
