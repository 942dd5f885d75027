"""Single-op int8 model factories for the tests, written with agent.inference.builder."""

from __future__ import annotations

import numpy as np

from agent.inference.builder import ModelBuilder


def conv2d(rng: np.random.Generator, *, n: int = 1, h: int = 6, w: int = 6, c: int = 3, o: int = 4,
           kh: int = 3, kw: int = 3, stride: tuple[int, int] = (1, 1), dil: tuple[int, int] = (1, 1),
           padding: int = 0, act: int = 0, s_in: float = 0.05, z_in: int = 0, s_out: float = 0.1,
           z_out: int = 0, per_channel: bool = True, depthwise: bool = False, mult: int = 1,
           groups: int = 1, bias: bool = True) -> bytes:
    from agent.inference.ops import conv_geometry  # noqa: F401 - shapes follow TFLite's rules

    mb = ModelBuilder()
    x = mb.tensor((n, h, w, c), "int8", scale=s_in, zero_point=z_in)
    out_c = c * mult if depthwise else o
    wshape = (1, kh, kw, out_c) if depthwise else (out_c, kh, kw, c // groups)
    qdim = 3 if depthwise else 0
    scales = rng.uniform(0.001, 0.05, size=out_c) if per_channel else np.array([0.01])
    wt = mb.tensor(wshape, "int8", scale=scales, zero_point=[0] * len(scales),
                   data=rng.integers(-127, 128, size=wshape, dtype=np.int8), quantized_dimension=qdim)
    ins = [x, wt]
    if bias:
        bs = s_in * (scales if per_channel else np.full(out_c, scales[0]))
        ins.append(mb.tensor((out_c,), "int32", scale=bs, zero_point=[0] * out_c,
                             data=rng.integers(-5000, 5000, size=out_c).astype(np.int32)))

    def out(size: int, k: int, s: int, d: int) -> int:
        eff = (k - 1) * d + 1
        return (size + s - 1) // s if padding == 0 else (size - eff + s) // s

    oh, ow = out(h, kh, stride[0], dil[0]), out(w, kw, stride[1], dil[1])
    y = mb.tensor((n, oh, ow, out_c), "int8", scale=s_out, zero_point=z_out)
    if depthwise:
        mb.op("DEPTHWISE_CONV_2D", ins, [y], "DepthwiseConv2DOptions",
              [(0, "b", padding), (1, "i", stride[1]), (2, "i", stride[0]), (3, "i", mult), (4, "b", act),
               (5, "i", dil[1]), (6, "i", dil[0])])
    else:
        mb.op("CONV_2D", ins, [y], "Conv2DOptions",
              [(0, "b", padding), (1, "i", stride[1]), (2, "i", stride[0]), (3, "b", act),
               (4, "i", dil[1]), (5, "i", dil[0])])
    return mb.build([x], [y])


def fully_connected(rng: np.random.Generator, *, batch: int = 2, depth: int = 8, units: int = 5,
                    s_in: float = 0.05, z_in: int = 0, s_out: float = 0.1, z_out: int = 0, act: int = 0,
                    per_channel: bool = True, bias: bool = True, keep_num_dims: bool = False) -> bytes:
    mb = ModelBuilder()
    x = mb.tensor((batch, depth), "int8", scale=s_in, zero_point=z_in)
    scales = rng.uniform(0.001, 0.05, size=units) if per_channel else np.array([0.01])
    wt = mb.tensor((units, depth), "int8", scale=scales, zero_point=[0] * len(scales),
                   data=rng.integers(-127, 128, size=(units, depth), dtype=np.int8))
    ins = [x, wt]
    if bias:
        bs = s_in * scales
        ins.append(mb.tensor((units,), "int32", scale=bs, zero_point=[0] * len(bs),
                             data=rng.integers(-5000, 5000, size=units).astype(np.int32)))
    y = mb.tensor((batch, units), "int8", scale=s_out, zero_point=z_out)
    mb.op("FULLY_CONNECTED", ins, [y], "FullyConnectedOptions",
          [(0, "b", act), (1, "b", 0), (2, "bool", keep_num_dims), (3, "bool", False)])
    return mb.build([x], [y])


QParams = tuple[float, int]


def single_op(op: str, inputs: list[tuple[tuple[int, ...], str, QParams | None, np.ndarray | None]],
              outputs: list[tuple[tuple[int, ...], str, QParams | None]], options_name: str | None = None,
              options: list[tuple[int, str, object]] | None = None) -> bytes:
    """A one-operator model; inputs without data become graph inputs, with data constants."""
    mb = ModelBuilder()
    ins, graph_ins = [], []
    for shape, dtype, q, data in inputs:
        t = mb.tensor(shape, dtype, scale=q[0] if q else None, zero_point=q[1] if q else None, data=data)
        ins.append(t)
        if data is None:
            graph_ins.append(t)
    outs = [mb.tensor(shape, dtype, scale=q[0] if q else None, zero_point=q[1] if q else None)
            for shape, dtype, q in outputs]
    mb.op(op, ins, outs, options_name, options or [])
    return mb.build(graph_ins, outs)
