"""Model refusals speak of the model in its own terms, say everything wrong at once, and point to
`fleetnode model show`. Each model here is built for its test."""

from __future__ import annotations

import numpy as np
import pytest

from agent.inference import ModelFormatError, UnsupportedOpError, load_model
from agent.inference.builder import ModelBuilder

HINT = "fleetnode model show"


def _conv_with_scales(n_scales: int, qdim: int) -> bytes:
    rng = np.random.default_rng(0)
    mb = ModelBuilder()
    x = mb.tensor((1, 4, 4, 3), "int8", scale=0.05, zero_point=0)
    w = mb.tensor((8, 3, 3, 3), "int8", name="conv weights", scale=[0.01] * n_scales,
                  zero_point=[0] * n_scales, quantized_dimension=qdim,
                  data=rng.integers(-127, 128, size=(8, 3, 3, 3), dtype=np.int8))
    b = mb.tensor((8,), "int32", scale=[0.0005] * 8, zero_point=[0] * 8,
                  data=np.zeros(8, np.int32))
    y = mb.tensor((1, 4, 4, 8), "int8", scale=0.1, zero_point=0)
    mb.op("CONV_2D", [x, w, b], [y], "Conv2DOptions",
          [(0, "b", 0), (1, "i", 1), (2, "i", 1), (3, "b", 0), (4, "i", 1), (5, "i", 1)])
    return mb.build([x], [y])


def test_per_channel_scales_that_do_not_fit_the_quantized_dimension_name_field_value_and_size() -> None:
    load_model(_conv_with_scales(8, 0))  # the same model, quantized along its 8 output channels
    with pytest.raises(ModelFormatError) as err:
        load_model(_conv_with_scales(8, 3))
    msg = str(err.value)
    assert msg.startswith("tensor 1 (conv weights, input 1 of CONV_2D op 0): "
                          "quantized_dimension 3 has size 3 but 8 scales")
    assert HINT in msg


def test_a_quantized_dimension_outside_the_shape_is_named() -> None:
    with pytest.raises(ModelFormatError, match="quantized_dimension 7 is not a dimension of shape "
                                               r"\[8, 3, 3, 3\] but 8 scales"):
        load_model(_conv_with_scales(8, 7))


def test_every_unsupported_operator_and_tensor_type_is_listed_at_once() -> None:
    mb = ModelBuilder()
    x = mb.tensor((1, 4), "float32")
    h = mb.tensor((1, 4), "float32")
    y = mb.tensor((1, 4), "float32")
    z = mb.tensor((1, 4), "float32")
    half = mb.tensor((1, 4), "float16", data=np.ones((1, 4), np.float16))
    wide = mb.tensor((1, 4), "float64")
    mb.op("SIN", [x], [h])
    mb.op("DEQUANTIZE", [half], [wide])
    mb.op("SVDF", [h], [y])
    mb.op("SVDF", [y], [z])
    # A per-channel tensor that does not fit would be refused too, but only after all of the above.
    mb.tensor((2, 4), "int8", scale=[0.1] * 3, zero_point=[0] * 3)
    with pytest.raises(UnsupportedOpError) as err:
        load_model(mb.build([x], [z]))
    msg = str(err.value)
    assert msg.startswith("unsupported: SIN (1 use), SVDF (2 uses), "
                          "float16 tensors (inputs of DEQUANTIZE op 1), "
                          "float64 tensors (outputs of DEQUANTIZE op 1)")
    assert HINT in msg
    assert "quantized_dimension" not in msg
    assert err.value.op == "SIN"


def test_control_flow_is_listed_with_the_rest() -> None:
    mb = ModelBuilder()
    x = mb.tensor((1, 4), "float32")
    y = mb.tensor((1, 4), "float32")
    mb.op("WHILE", [x], [y])
    with pytest.raises(UnsupportedOpError, match=r"^unsupported: WHILE \(1 use\); "):
        load_model(mb.build([x], [y]))
