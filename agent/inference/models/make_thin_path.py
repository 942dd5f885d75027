"""Writes thin_path.tflite: int8 [1,16] -> FULLY_CONNECTED(32, RELU) -> FULLY_CONNECTED(4).

The smallest model that exercises the whole native path (loader, planner, arena, two FC
kernels with per-channel weights and a fused activation). Deterministic: a fixed seed, so
re-running the script reproduces the committed file byte for byte.

    python -m agent.inference.models.make_thin_path [OUT.tflite]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from agent.inference.builder import ModelBuilder
from agent.inference.schema import ACT_NONE, ACT_RELU

OUT = Path(__file__).with_name("thin_path.tflite")


def fc(mb: ModelBuilder, rng: np.random.Generator, x: int, s_in: float, units: int, depth: int,
       s_out: float, z_out: int, act: int, name: str) -> int:
    w_scales = rng.uniform(0.002, 0.02, size=units)
    w = rng.integers(-127, 128, size=(units, depth), dtype=np.int8)
    b = rng.integers(-2000, 2000, size=units).astype(np.int32)
    wt = mb.tensor((units, depth), "int8", name=f"{name}/w", scale=w_scales, zero_point=[0] * units,
                   data=w, quantized_dimension=0)
    bt = mb.tensor((units,), "int32", name=f"{name}/b", scale=s_in * w_scales, zero_point=[0] * units,
                   data=b, quantized_dimension=0)
    y = mb.tensor((1, units), "int8", name=f"{name}/out", scale=s_out, zero_point=z_out)
    mb.op("FULLY_CONNECTED", [x, wt, bt], [y], "FullyConnectedOptions",
          [(0, "b", act), (1, "b", 0), (2, "bool", False), (3, "bool", False)])
    return y


def build() -> bytes:
    rng = np.random.default_rng(20261123)
    mb = ModelBuilder()
    x = mb.tensor((1, 16), "int8", name="input", scale=0.05, zero_point=-3)
    h = fc(mb, rng, x, 0.05, 32, 16, 0.04, -128, ACT_RELU, "fc1")
    y = fc(mb, rng, h, 0.04, 4, 32, 0.03, 5, ACT_NONE, "fc2")
    return mb.build([x], [y])


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else OUT
    out.write_bytes(build())
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
