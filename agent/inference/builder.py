"""Writes small .tflite models with the flatbuffers builder (no TensorFlow).

Used by the tests (single-op models for property tests, fuzz seeds) and by the thin-path model
script. Only the schema fields the engine reads are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import flatbuffers
import numpy as np

from agent.inference.schema import BUILTIN_OPS, OPTIONS

TYPE_CODES: dict[str, int] = {
    "float32": 0, "float16": 1, "int32": 2, "uint8": 3, "int64": 4, "bool": 6, "int16": 7, "int8": 9, "float64": 10,
}

# (field number, flatbuffers kind, value); kinds: b B h i f bool ivec
OptionField = tuple[int, str, object]


@dataclass
class _Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    buffer: int
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    quantized_dimension: int


@dataclass
class _Op:
    code: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options_name: str | None
    options: list[OptionField] = field(default_factory=list)


class ModelBuilder:
    """Collects tensors and operators of one subgraph, then serialises a model."""

    def __init__(self) -> None:
        self._tensors: list[_Tensor] = []
        self._ops: list[_Op] = []
        self._buffers: list[bytes] = [b""]  # buffer 0: the schema's empty sentinel

    def tensor(self, shape: Sequence[int], dtype: str, *, name: str | None = None,
               scale: float | Sequence[float] | np.ndarray | None = None,
               zero_point: int | Sequence[int] | np.ndarray | None = None,
               data: np.ndarray | None = None, quantized_dimension: int = 0) -> int:
        buffer = 0
        if data is not None:
            arr = np.ascontiguousarray(data, dtype=np.dtype(dtype))
            if tuple(arr.shape) != tuple(shape):
                raise ValueError(f"data shape {arr.shape} != {tuple(shape)}")
            self._buffers.append(arr.tobytes())
            buffer = len(self._buffers) - 1
        scales = () if scale is None else tuple(np.atleast_1d(np.asarray(scale, np.float64)).tolist())
        zps = () if zero_point is None else tuple(int(z) for z in np.atleast_1d(zero_point))
        if scales and not zps:
            zps = (0,) * len(scales)
        idx = len(self._tensors)
        self._tensors.append(_Tensor(name or f"t{idx}", dtype, tuple(int(d) for d in shape), buffer,
                                     scales, zps, quantized_dimension))
        return idx

    def op(self, name: str, inputs: Sequence[int], outputs: Sequence[int],
           options_name: str | None = None, options: Sequence[OptionField] = ()) -> None:
        self._ops.append(_Op(BUILTIN_OPS[name], tuple(inputs), tuple(outputs), options_name,
                             list(options)))

    def build(self, inputs: Sequence[int], outputs: Sequence[int]) -> bytes:
        b = flatbuffers.Builder(1024)
        b.ForceDefaults(True)  # write every field: a schema default may differ from ours
        codes = sorted({op.code for op in self._ops})
        code_index = {c: i for i, c in enumerate(codes)}

        buffer_offs = []
        for data in self._buffers:
            vec = None
            if data:
                b.StartVector(1, len(data), 16)  # 16-byte alignment lets kernels read in place
                b.head = b.head - len(data)
                b.Bytes[b.head:b.head + len(data)] = data
                vec = b.EndVector()
            b.StartObject(3)
            if vec is not None:
                b.PrependUOffsetTRelativeSlot(0, vec, 0)
            buffer_offs.append(b.EndObject())

        tensor_offs = []
        for t in self._tensors:
            name = b.CreateString(t.name)
            shape = _int_vector(b, t.shape)
            quant = None
            if t.scales:
                sv = b.CreateNumpyVector(np.asarray(t.scales, dtype=np.float32))
                zv = b.CreateNumpyVector(np.asarray(t.zero_points, dtype=np.int64))
                b.StartObject(7)
                b.PrependUOffsetTRelativeSlot(2, sv, 0)
                b.PrependUOffsetTRelativeSlot(3, zv, 0)
                b.PrependInt32Slot(6, t.quantized_dimension, 0)
                quant = b.EndObject()
            b.StartObject(8)
            b.PrependUOffsetTRelativeSlot(0, shape, 0)
            b.PrependUint8Slot(1, TYPE_CODES[t.dtype], 0)
            b.PrependUint32Slot(2, t.buffer, 0)
            b.PrependUOffsetTRelativeSlot(3, name, 0)
            if quant is not None:
                b.PrependUOffsetTRelativeSlot(4, quant, 0)
            tensor_offs.append(b.EndObject())

        op_offs = []
        for op in self._ops:
            ins = _int_vector(b, op.inputs)
            outs = _int_vector(b, op.outputs)
            opt = _options(b, op.options) if op.options_name is not None else None
            b.StartObject(5)
            b.PrependUint32Slot(0, code_index[op.code], 0)
            b.PrependUOffsetTRelativeSlot(1, ins, 0)
            b.PrependUOffsetTRelativeSlot(2, outs, 0)
            if opt is not None and op.options_name is not None:
                b.PrependUint8Slot(3, OPTIONS[op.options_name], 0)
                b.PrependUOffsetTRelativeSlot(4, opt, 0)
            op_offs.append(b.EndObject())

        sg_name = b.CreateString("main")
        tv = _offset_vector(b, tensor_offs)
        iv = _int_vector(b, inputs)
        ov = _int_vector(b, outputs)
        opv = _offset_vector(b, op_offs)
        b.StartObject(5)
        b.PrependUOffsetTRelativeSlot(0, tv, 0)
        b.PrependUOffsetTRelativeSlot(1, iv, 0)
        b.PrependUOffsetTRelativeSlot(2, ov, 0)
        b.PrependUOffsetTRelativeSlot(3, opv, 0)
        b.PrependUOffsetTRelativeSlot(4, sg_name, 0)
        sg = b.EndObject()

        code_offs = []
        for c in codes:
            b.StartObject(4)
            b.PrependInt8Slot(0, min(c, 127), 0)
            b.PrependInt32Slot(2, 1, 1)
            b.PrependInt32Slot(3, c, 0)
            code_offs.append(b.EndObject())

        cv = _offset_vector(b, code_offs)
        sgv = _offset_vector(b, [sg])
        bv = _offset_vector(b, buffer_offs)
        desc = b.CreateString("fleetnode builder")
        b.StartObject(5)
        b.PrependUint32Slot(0, 3, 0)
        b.PrependUOffsetTRelativeSlot(1, cv, 0)
        b.PrependUOffsetTRelativeSlot(2, sgv, 0)
        b.PrependUOffsetTRelativeSlot(3, desc, 0)
        b.PrependUOffsetTRelativeSlot(4, bv, 0)
        root = b.EndObject()
        b.Finish(root, file_identifier=b"TFL3")
        return bytes(b.Output())


def _int_vector(b: flatbuffers.Builder, values: Sequence[int]) -> int:
    return int(b.CreateNumpyVector(np.asarray(list(values), dtype=np.int32)))


def _offset_vector(b: flatbuffers.Builder, offs: Sequence[int]) -> int:
    b.StartVector(4, len(offs), 4)
    for o in reversed(offs):
        b.PrependUOffsetTRelative(o)
    return int(b.EndVector())


def _options(b: flatbuffers.Builder, fields: Sequence[OptionField]) -> int:
    vectors = {n: _int_vector(b, v) for n, kind, v in fields if kind == "ivec"}  # type: ignore[arg-type]
    n_fields = max((n for n, _, _ in fields), default=-1) + 1
    b.StartObject(n_fields)
    for n, kind, v in fields:
        if kind == "ivec":
            b.PrependUOffsetTRelativeSlot(n, vectors[n], 0)
        elif kind == "b":
            b.PrependInt8Slot(n, int(v), 0)  # type: ignore[call-overload]
        elif kind == "B":
            b.PrependUint8Slot(n, int(v), 0)  # type: ignore[call-overload]
        elif kind == "bool":
            b.PrependBoolSlot(n, bool(v), False)
        elif kind == "i":
            b.PrependInt32Slot(n, int(v), 0)  # type: ignore[call-overload]
        elif kind == "f":
            b.PrependFloat32Slot(n, float(v), 0.0)  # type: ignore[arg-type]
        else:
            raise ValueError(f"unknown option kind {kind}")
    return int(b.EndObject())


# ---- one-operator models (tests, fuzz seeds, benchmarks) ------------------------------------------

def conv2d(rng: np.random.Generator, *, n: int = 1, h: int = 6, w: int = 6, c: int = 3, o: int = 4,
           kh: int = 3, kw: int = 3, stride: tuple[int, int] = (1, 1), dil: tuple[int, int] = (1, 1),
           padding: int = 0, act: int = 0, s_in: float = 0.05, z_in: int = 0, s_out: float = 0.1,
           z_out: int = 0, per_channel: bool = True, depthwise: bool = False, mult: int = 1,
           groups: int = 1, bias: bool = True) -> bytes:
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
