"""The .tflite wire format: a bounds-checked flatbuffers reader of the TFLite schema.

Owns every byte-level access to a model file. Every offset, length, vtable and vector is checked
against the buffer before use, and every failure is a ModelFormatError; the rest of the engine
works on the typed records returned here (ModelDef, SubgraphDef, TensorDef, OperatorDef).
Field numbers follow the official schema (tensorflow/compiler/mlir/lite/schema/schema.fbs).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from agent.inference.errors import ModelFormatError

FILE_IDENTIFIER = b"TFL3"
MAX_VECTOR = 1 << 24  # no sane model has more entries in one table or scalar vector (bytes excepted)
MAX_RANK = 6

# TensorType enum of the schema
TENSOR_TYPES: dict[int, str] = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
    7: "int16", 8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64",
    13: "resource", 14: "variant", 15: "uint32", 16: "uint16", 17: "int4",
}


class Table:
    """A flatbuffers table at `pos`, with checked accessors by field number."""

    __slots__ = ("_buf", "_pos", "_vt", "_vt_len")

    def __init__(self, buf: memoryview, pos: int) -> None:
        self._buf = buf
        self._pos = pos
        _need(buf, pos, 4)
        vt = pos - struct.unpack_from("<i", buf, pos)[0]
        _need(buf, vt, 4)
        vt_len, obj_len = struct.unpack_from("<HH", buf, vt)
        if vt_len < 4 or vt_len % 2:
            raise ModelFormatError(f"bad vtable length {vt_len} at {vt}")
        _need(buf, vt, vt_len)
        _need(buf, pos, max(obj_len, 4))
        self._vt = vt
        self._vt_len = vt_len

    def _field(self, field: int, size: int) -> int | None:
        slot = 4 + 2 * field
        if slot + 2 > self._vt_len:
            return None
        off = int(struct.unpack_from("<H", self._buf, self._vt + slot)[0])
        if off == 0:
            return None
        _need(self._buf, self._pos + off, size)
        return self._pos + off

    def scalar(self, field: int, fmt: str, default: float | bool) -> int | float | bool:
        pos = self._field(field, struct.calcsize(fmt))
        if pos is None:
            return default
        return struct.unpack_from("<" + fmt, self._buf, pos)[0]  # type: ignore[no-any-return]

    def i32(self, field: int, default: int = 0) -> int:
        return int(self.scalar(field, "i", default))

    def u32(self, field: int, default: int = 0) -> int:
        return int(self.scalar(field, "I", default))

    def u8(self, field: int, default: int = 0) -> int:
        return int(self.scalar(field, "B", default))

    def i8(self, field: int, default: int = 0) -> int:
        return int(self.scalar(field, "b", default))

    def u64(self, field: int, default: int = 0) -> int:
        return int(self.scalar(field, "Q", default))

    def f32(self, field: int, default: float = 0.0) -> float:
        return float(self.scalar(field, "f", default))

    def boolean(self, field: int, default: bool = False) -> bool:
        return bool(self.scalar(field, "B", int(default)))

    def _indirect(self, field: int) -> int | None:
        pos = self._field(field, 4)
        if pos is None:
            return None
        target = pos + int(struct.unpack_from("<I", self._buf, pos)[0])
        _need(self._buf, target, 4)
        return target

    def table(self, field: int) -> Table | None:
        pos = self._indirect(field)
        return None if pos is None else Table(self._buf, pos)

    def _vector(self, field: int, elem: int) -> tuple[int, int] | None:
        pos = self._indirect(field)
        if pos is None:
            return None
        n = struct.unpack_from("<I", self._buf, pos)[0]
        if elem > 1 and n > MAX_VECTOR:
            raise ModelFormatError(f"vector of {n} elements")
        _need(self._buf, pos + 4, n * elem)
        return pos + 4, n

    def scalars(self, field: int, fmt: str) -> tuple[int | float, ...] | None:
        v = self._vector(field, struct.calcsize(fmt))
        if v is None:
            return None
        start, n = v
        return struct.unpack_from(f"<{n}{fmt}", self._buf, start)

    def ints(self, field: int) -> tuple[int, ...] | None:
        v = self.scalars(field, "i")
        return None if v is None else tuple(int(x) for x in v)

    def raw_bytes(self, field: int) -> memoryview | None:
        v = self._vector(field, 1)
        if v is None:
            return None
        start, n = v
        return self._buf[start:start + n]

    def string(self, field: int) -> str | None:
        raw = self.raw_bytes(field)
        if raw is None:
            return None
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ModelFormatError("string is not UTF-8") from e

    def tables(self, field: int) -> list[Table]:
        v = self._vector(field, 4)
        if v is None:
            return []
        start, n = v
        out = []
        for i in range(n):
            p = start + 4 * i
            target = p + struct.unpack_from("<I", self._buf, p)[0]
            out.append(Table(self._buf, target))
        return out


def _need(buf: memoryview, pos: int, size: int) -> None:
    if pos < 0 or size < 0 or pos + size > len(buf):
        raise ModelFormatError(f"offset {pos}+{size} outside the {len(buf)}-byte model")


@dataclass(frozen=True)
class TensorDef:
    index: int
    name: str
    type: str  # a TENSOR_TYPES value
    shape: tuple[int, ...]
    buffer: int
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    quantized_dimension: int
    is_variable: bool


@dataclass(frozen=True)
class OperatorDef:
    index: int
    opcode_index: int
    inputs: tuple[int, ...]  # -1 marks an omitted optional input
    outputs: tuple[int, ...]
    options_type: int
    options: Table | None


@dataclass(frozen=True)
class OperatorCode:
    builtin: int
    custom: str | None
    version: int


@dataclass(frozen=True)
class SubgraphDef:
    tensors: tuple[TensorDef, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    operators: tuple[OperatorDef, ...]
    name: str


@dataclass(frozen=True)
class ModelDef:
    version: int
    operator_codes: tuple[OperatorCode, ...]
    subgraphs: tuple[SubgraphDef, ...]
    # read-only views into the model's bytes, never copies; index 0 is the schema's empty sentinel
    buffers: tuple[memoryview, ...]


def parse(data: bytes) -> ModelDef:
    """Parses and structurally validates a .tflite model; raises ModelFormatError."""
    buf = memoryview(bytes(data))
    if len(buf) < 8:
        raise ModelFormatError("file too short for a flatbuffer")
    if bytes(buf[4:8]) != FILE_IDENTIFIER:
        raise ModelFormatError("not a TFLite model (file identifier is not TFL3)")
    try:
        root = Table(buf, struct.unpack_from("<I", buf, 0)[0])
        return _model(root, buf)
    except (struct.error, IndexError, ValueError, OverflowError, RecursionError) as e:
        raise ModelFormatError(f"malformed flatbuffer: {e}") from e


def _model(root: Table, buf: memoryview) -> ModelDef:
    version = root.u32(0)
    if version != 3:
        raise ModelFormatError(f"schema version {version}, expected 3")
    codes = []
    for t in root.tables(1):
        deprecated = t.i8(0, 0)
        builtin = t.i32(3, 0)
        # Models before schema 2.x only set the deprecated int8 field.
        code = max(builtin, deprecated)
        codes.append(OperatorCode(builtin=code, custom=t.string(1), version=t.i32(2, 1)))
    buffers = []
    for i, b in enumerate(root.tables(4)):
        data = b.raw_bytes(0)
        offset, size = b.u64(1), b.u64(2)
        if offset > 1:
            # Large models keep buffers after the flatbuffer, addressed from the file start.
            if offset + size > len(buf):
                raise ModelFormatError(f"buffer {i} [{offset}, +{size}) outside the file")
            data = buf[offset:offset + size]
        buffers.append(data if data is not None else memoryview(b""))
    subgraphs = []
    for sg in root.tables(2):
        subgraphs.append(_subgraph(sg, len(buffers), len(codes)))
    if not subgraphs:
        raise ModelFormatError("model has no subgraph")
    return ModelDef(version, tuple(codes), tuple(subgraphs), tuple(buffers))


def _subgraph(sg: Table, n_buffers: int, n_codes: int) -> SubgraphDef:
    tensors = []
    for i, t in enumerate(sg.tables(0)):
        type_code = t.u8(1, 0)
        if type_code not in TENSOR_TYPES:
            raise ModelFormatError(f"tensor {i}: unknown type {type_code}")
        shape = t.ints(0) or ()
        if len(shape) > MAX_RANK:
            raise ModelFormatError(f"tensor {i}: rank {len(shape)} > {MAX_RANK}")
        if any(d < 0 for d in shape):
            raise ModelFormatError(f"tensor {i}: dynamic or negative dimension in {shape}")
        buffer = t.u32(2, 0)
        if buffer >= max(n_buffers, 1):
            raise ModelFormatError(f"tensor {i}: buffer {buffer} of {n_buffers}")
        scales: tuple[float, ...] = ()
        zps: tuple[int, ...] = ()
        qdim = 0
        q = t.table(4)
        if q is not None:
            scales = tuple(float(s) for s in (q.scalars(2, "f") or ()))
            zps = tuple(int(z) for z in (q.scalars(3, "q") or ()))
            qdim = q.i32(6, 0)
            if q.u8(4, 0) != 0:
                raise ModelFormatError(f"tensor {i}: custom quantization details are not supported")
        tensors.append(TensorDef(i, t.string(3) or "", TENSOR_TYPES[type_code], tuple(shape), buffer,
                                 scales, zps, qdim, t.boolean(5)))
    n_t = len(tensors)

    def indices(v: tuple[int, ...] | None, what: str, optional: bool) -> tuple[int, ...]:
        v = v or ()
        for x in v:
            if not (0 <= x < n_t or (optional and x == -1)):
                raise ModelFormatError(f"{what}: tensor index {x} of {n_t}")
        return v

    ops = []
    for i, op in enumerate(sg.tables(3)):
        oc = op.u32(0, 0)
        if oc >= n_codes:
            raise ModelFormatError(f"operator {i}: opcode index {oc} of {n_codes}")
        opt_type = op.u8(3, 0)
        ops.append(OperatorDef(i, oc, indices(op.ints(1), f"operator {i} inputs", True),
                               indices(op.ints(2), f"operator {i} outputs", False), opt_type,
                               op.table(4) if opt_type else None))
    return SubgraphDef(tuple(tensors), indices(sg.ints(1), "subgraph inputs", False),
                       indices(sg.ints(2), "subgraph outputs", False), tuple(ops), sg.string(4) or "")
