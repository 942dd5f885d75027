"""Execution planner: validates a parsed model op by op and lowers it to the native plan tables.

For every operator the handler checks input/output counts, types, shapes and quantization
parameters exactly as far as its kernel relies on them, derives the integer parameters with
TFLite's arithmetic (agent.inference.quant), and emits one or more nodes. Activations get offsets
in one static arena, reusing memory between tensors whose lifetimes do not overlap.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from agent.inference.errors import (
    SHOW_HINT,
    ModelError,
    ModelFormatError,
    UnsupportedModelError,
    UnsupportedOpError,
)
from agent.inference.ops import FOLDERS, HANDLERS
from agent.inference.plan import (
    ALIGN,
    DTYPES,
    F64_CODE,
    MAX_DIMS,
    MAX_ELEMENTS,
    NODE_IN,
    NODE_OUT,
    NODE_PARAMS,
    NativeOp,
    PlanTables,
    prod,
)
from agent.inference.schema import BUILTIN_NAMES, OPTIONS
from agent.inference.tflite import ModelDef, OperatorDef, SubgraphDef, Table, TensorDef


@dataclass
class _PTensor:
    dtype: int
    shape: tuple[int, ...]
    region: int  # 0 arena, 1 const
    offset: int
    nbytes: int


def op_name(model: ModelDef, op: OperatorDef) -> str:
    """The builtin name of an operator (CUSTOM(name) for a custom one)."""
    code = model.operator_codes[op.opcode_index]
    name = BUILTIN_NAMES.get(code.builtin, f"builtin code {code.builtin}")
    return f"CUSTOM({code.custom})" if name == "CUSTOM" else name


def tensor_label(model: ModelDef, sg: SubgraphDef, i: int) -> str:
    """'tensor 33 (conv1/w, input 1 of CONV_2D op 4)': a tensor as a person finds it in the model."""
    t = sg.tensors[i]
    where = [t.name] if t.name else []
    use = next(((k, op) for op in sg.operators for k, j in enumerate(op.inputs) if j == i), None)
    if use is not None:
        where.append(f"input {use[0]} of {op_name(model, use[1])} op {use[1].index}")
    return f"tensor {i}" + (f" ({', '.join(where)})" if where else "")


def unsupported(model: ModelDef) -> list[str]:
    """Everything in the model the engine has no kernel or type for, each with where it is used:
    'SVDF (2 uses)', 'float16 tensors (inputs of DEQUANTIZE op 0)', '2 subgraphs (control flow)'.
    Empty when the engine covers every operator and tensor type (its variants are checked later,
    op by op)."""
    out: list[str] = []
    if len(model.subgraphs) != 1:
        out.append(f"{len(model.subgraphs)} subgraphs (control flow)")
    ops: collections.Counter[str] = collections.Counter()
    types: dict[str, list[str]] = {}
    for sg in model.subgraphs:
        for op in sg.operators:
            name = op_name(model, op)
            if name not in HANDLERS:
                ops[name] += 1
            for kind, idx in (("inputs", op.inputs), ("outputs", op.outputs)):
                bad = sorted({sg.tensors[i].type for i in idx if i >= 0} - DTYPES.keys())
                for ty in bad:
                    types.setdefault(ty, []).append(f"{kind} of {name} op {op.index}")
        used = {i for op in sg.operators for i in op.inputs + op.outputs}
        for t in sg.tensors:
            if t.type not in DTYPES and t.index not in used:
                types.setdefault(t.type, []).append(f"tensor {t.index}")
    out += [f"{name} ({n} use{'s' if n > 1 else ''})" for name, n in ops.items()]
    for ty, where in types.items():
        shown = ", ".join(dict.fromkeys(where[:4]))
        more = f" and {len(where) - 4} more" if len(where) > 4 else ""
        out.append(f"{ty} tensors ({shown}{more})")
    return out


class Planner:
    def __init__(self, model: ModelDef, reuse_memory: bool = True) -> None:
        self.reuse_memory = reuse_memory  # False keeps every tensor (for inspecting intermediates)
        missing = unsupported(model)
        if missing:
            raise UnsupportedModelError(missing)
        self.model = model
        self.sg = model.subgraphs[0]
        self.ptensors: list[_PTensor] = []
        self.consts = bytearray()
        self.nodes: list[list[int]] = []
        self.node_ops: list[str] = []
        self.tmap: dict[int, int] = {}
        # Shapes inferred op by op (LiteRT resizes outputs the same way; a file's declared shape
        # for a tensor computed at run time, e.g. after a dynamic-batch RESHAPE, is a placeholder)
        # and int32/int64 values folded at plan time (shape arithmetic on static shapes).
        self.shapes: dict[int, tuple[int, ...]] = {}
        self.values: dict[int, np.ndarray] = {}
        self.current_op = ""
        for t in self.sg.tensors:
            self._check_tensor(t)

    # ---- validation helpers -------------------------------------------------------------
    def _check_tensor(self, t: TensorDef) -> None:
        n = prod(t.shape)
        if n > MAX_ELEMENTS:
            raise ModelFormatError(f"tensor {t.index}: {n} elements")
        if len(t.scales) != len(t.zero_points):
            raise ModelFormatError(f"tensor {t.index}: {len(t.scales)} scales, {len(t.zero_points)} zero points")
        for s in t.scales:
            if not (math.isfinite(s) and s > 0.0):
                raise ModelFormatError(f"tensor {t.index}: scale {s}")
        if len(t.scales) > 1:
            qd = t.quantized_dimension
            if not 0 <= qd < len(t.shape):
                raise ModelFormatError(
                    f"{tensor_label(self.model, self.sg, t.index)}: quantized_dimension {qd} is not a dimension "
                    f"of shape {list(t.shape)} but {len(t.scales)} scales are given; {SHOW_HINT}")
            if t.shape[qd] != len(t.scales):
                raise ModelFormatError(
                    f"{tensor_label(self.model, self.sg, t.index)}: quantized_dimension {qd} has size "
                    f"{t.shape[qd]} but {len(t.scales)} scales; {SHOW_HINT}")
        info = np.iinfo(DTYPES[t.type][1]) if DTYPES[t.type][1].kind in "iu" else None
        for z in t.zero_points:
            if info is not None and t.scales and not (info.min <= z <= info.max):
                raise ModelFormatError(f"tensor {t.index}: zero point {z} out of {t.type} range")
        data = self.model.buffers[t.buffer] if t.buffer < len(self.model.buffers) else b""
        if data and len(data) != n * DTYPES[t.type][1].itemsize:
            raise ModelFormatError(f"tensor {t.index}: buffer of {len(data)} bytes for shape {t.shape} {t.type}")

    def fail(self, msg: str) -> ModelError:
        return ModelFormatError(f"{self.current_op}: {msg}")

    def require(self, cond: bool, msg: str) -> None:
        if not cond:
            raise self.fail(msg)

    def t(self, i: int) -> TensorDef:
        """Tensor i with its inferred shape."""
        self.require(i >= 0, "required input is missing")
        t = self.sg.tensors[i]
        if i in self.shapes and self.shapes[i] != t.shape:
            return dataclasses.replace(t, shape=self.shapes[i])
        return t

    def set_shape(self, i: int, shape: tuple[int, ...]) -> None:
        shape = tuple(int(d) for d in shape)
        self.require(len(shape) <= MAX_DIMS and all(d >= 0 for d in shape), f"shape {shape}")
        self.require(prod(shape) <= MAX_ELEMENTS, f"shape {shape} is too large")
        self.require(i not in self.tmap, f"tensor {i} is written twice")
        self.shapes[i] = shape

    def same_shape(self, x: int, y: int) -> None:
        self.set_shape(y, self.t(x).shape)

    def data(self, i: int) -> np.ndarray | None:
        if i in self.values:
            return self.values[i]
        t = self.t(i)
        raw = self.model.buffers[t.buffer] if t.buffer < len(self.model.buffers) else b""
        if not raw:
            # a tensor without elements has no contents to wait for: it is known now
            return np.zeros(t.shape, DTYPES[t.type][1]) if prod(t.shape) == 0 else None
        return np.frombuffer(raw, dtype=DTYPES[t.type][1]).reshape(t.shape)

    def const(self, i: int, what: str) -> np.ndarray:
        d = self.data(i)
        self.require(d is not None, f"{what} must be a constant tensor")
        assert d is not None
        return d

    def qp(self, i: int, dtype: str = "int8") -> tuple[float, int]:
        """Per-tensor (scale, zero point) of an activation, checked."""
        t = self.t(i)
        self.require(t.type == dtype, f"tensor {i} is {t.type}, expected {dtype}")
        self.require(len(t.scales) == 1, f"tensor {i} needs one quantization scale, has {len(t.scales)}")
        return t.scales[0], t.zero_points[0]

    def expect_type(self, i: int, *types: str) -> TensorDef:
        t = self.t(i)
        self.require(t.type in types, f"tensor {i} is {t.type}, expected {'/'.join(types)}")
        return t

    def expect_shape(self, i: int, shape: tuple[int, ...]) -> None:
        """Records the shape the op gives output i (the file's declared shape is only a hint)."""
        self.set_shape(i, shape)

    def counts(self, op: OperatorDef, n_in: tuple[int, int], n_out: int = 1) -> None:
        self.require(n_in[0] <= len(op.inputs) <= n_in[1], f"{len(op.inputs)} inputs")
        self.require(len(op.outputs) == n_out, f"{len(op.outputs)} outputs")
        for k in range(n_in[0]):
            self.require(op.inputs[k] >= 0, f"input {k} is missing")

    def options(self, op: OperatorDef, name: str) -> Table | None:
        if op.options is None:
            return None
        self.require(op.options_type == OPTIONS[name], f"options type {op.options_type}, expected {name}")
        return op.options

    # ---- emitting ------------------------------------------------------------------------
    def pid(self, i: int) -> int:
        """Plan tensor for model tensor i (constants go to the constant blob)."""
        if i in self.tmap:
            return self.tmap[i]
        t = self.t(i)
        code, dt = DTYPES[t.type]
        d = self.data(i)
        if d is not None:
            pid = self.add_const(np.ascontiguousarray(d, dtype=dt), code)
        else:
            pid = len(self.ptensors)
            self.ptensors.append(_PTensor(code, t.shape, 0, -1, prod(t.shape) * dt.itemsize))
        self.tmap[i] = pid
        return pid

    def add_const(self, arr: np.ndarray, code: int | None = None) -> int:
        arr = np.ascontiguousarray(arr)
        if code is None:
            code = F64_CODE if arr.dtype == np.float64 else DTYPES[str(arr.dtype)][0]
        pad = (-len(self.consts)) % ALIGN
        self.consts.extend(b"\0" * pad)
        off = len(self.consts)
        self.consts.extend(arr.tobytes())
        self.ptensors.append(_PTensor(code, tuple(arr.shape), 1, off, arr.nbytes))
        return len(self.ptensors) - 1

    def add_temp(self, dtype: str, shape: tuple[int, ...]) -> int:
        code, dt = DTYPES[dtype]
        self.ptensors.append(_PTensor(code, shape, 0, -1, prod(shape) * dt.itemsize))
        return len(self.ptensors) - 1

    def node(self, op: NativeOp, ins: list[int], outs: list[int], params: list[int]) -> None:
        assert len(ins) <= NODE_IN and len(outs) <= NODE_OUT and len(params) <= NODE_PARAMS
        for p in params:
            self.require(-(1 << 31) <= p < (1 << 31), f"parameter {p} out of int32 range")
        row = [int(op), len(ins), len(outs)]
        row += ins + [-1] * (NODE_IN - len(ins))
        row += outs + [-1] * (NODE_OUT - len(outs))
        row += params + [0] * (NODE_PARAMS - len(params))
        self.nodes.append(row)
        self.node_ops.append(self.current_op)

    # ---- the whole graph -----------------------------------------------------------------
    def plan(self) -> PlanTables:
        for i in self.sg.inputs:
            self.require(self.data(i) is None, f"graph input {i} has constant data")
            self.pid(i)
        for op in self.sg.operators:
            name = op_name(self.model, op)
            self.current_op = f"op {op.index} {name}"
            handler: Callable[[Planner, OperatorDef], None] | None = HANDLERS.get(name)
            if handler is None:
                raise UnsupportedOpError(name, f"operator {op.index} (no kernel for this op)")
            for o in op.outputs:
                self.require(self.data(o) is None, f"output tensor {o} has constant data")
            folder = FOLDERS.get(name)
            try:
                with np.errstate(all="ignore"):
                    if folder is not None and self._foldable(op, name):
                        for o, v in zip(op.outputs, folder(self, op)):
                            self.set_shape(o, v.shape)
                            self.values[o] = v
                    else:
                        handler(self, op)
            except (ValueError, OverflowError, ZeroDivisionError) as e:
                # quantization arithmetic out of range (e.g. a multiplier that is not finite)
                raise self.fail(str(e)) from e
        for o in self.sg.outputs:
            self.pid(o)
        return self._finish()

    def _foldable(self, op: OperatorDef, name: str) -> bool:
        """Integer shape arithmetic whose inputs are all known is computed here, not at run time."""
        if not op.outputs or not all(self.sg.tensors[o].type in ("int32", "int64") for o in op.outputs):
            return False
        ins = op.inputs[:1] if name == "SHAPE" else op.inputs
        if name == "SHAPE":
            return True
        return all(i >= 0 and self.data(i) is not None for i in ins)

    def _finish(self) -> PlanTables:
        n_nodes = len(self.nodes)
        first = {p: n_nodes + 1 for p in range(len(self.ptensors))}
        last = {p: -2 for p in range(len(self.ptensors))}
        inputs = [self.tmap[i] for i in self.sg.inputs]
        outputs = [self.tmap[i] for i in self.sg.outputs]
        for p in inputs:
            first[p] = -1
        written = set(inputs)
        for k, row in enumerate(self.nodes):
            for p in row[3:3 + row[1]]:
                if p >= 0:
                    last[p] = max(last[p], k)
                    if self.ptensors[p].region == 0 and p not in written:
                        raise ModelFormatError(f"{self.node_ops[k]}: reads a tensor before any op writes it")
            for p in row[3 + NODE_IN:3 + NODE_IN + row[2]]:
                if p in written or self.ptensors[p].region != 0:
                    raise ModelFormatError(f"{self.node_ops[k]}: writes a tensor that is already written")
                written.add(p)
                first[p] = k
        for p in outputs:
            last[p] = n_nodes
            if self.ptensors[p].region == 0 and first[p] > n_nodes:
                raise ModelFormatError("a graph output is never written")
        arena_bytes = self._allocate(first, last)
        rows = np.zeros((len(self.ptensors), 11), dtype=np.int64)
        for p, pt in enumerate(self.ptensors):
            rows[p, 0] = pt.dtype
            rows[p, 1] = len(pt.shape)
            rows[p, 2:2 + len(pt.shape)] = pt.shape
            rows[p, 8] = pt.region
            rows[p, 9] = max(pt.offset, 0)
            rows[p, 10] = pt.nbytes
        nodes = np.array(self.nodes, dtype=np.int64).reshape(-1, 3 + NODE_IN + NODE_OUT + NODE_PARAMS)
        return PlanTables(rows, nodes.astype(np.int32), np.frombuffer(self.consts, np.uint8),
                          arena_bytes, inputs, outputs,
                          [pt.offset if pt.region == 0 else -1 for pt in self.ptensors], self.node_ops,
                          dict(self.tmap), {i: self.t(i).shape for i in list(self.sg.inputs) + list(self.sg.outputs)})

    def _allocate(self, first: dict[int, int], last: dict[int, int]) -> int:
        """Greedy by size (as TFLite's arena planner): biggest tensors first, each at the lowest
        aligned offset that does not overlap a placed tensor whose lifetime overlaps its own."""
        live = [p for p, pt in enumerate(self.ptensors) if pt.region == 0]
        for p in live:
            if last[p] < 0:  # never read: still needs a home while its producer writes it
                last[p] = max(first[p], 0)
        order = sorted(live, key=lambda p: (-self.ptensors[p].nbytes, first[p], p))
        placed: list[tuple[int, int, int, int]] = []  # (offset, end, first, last)
        top = 0
        for p in order:
            size = self.ptensors[p].nbytes
            lo, hi = first[p], last[p]
            busy = sorted((o, e) for o, e, f, l in placed if not (l < lo or f > hi) or not self.reuse_memory)
            off = 0
            for o, e in busy:
                if off + size <= o:
                    break
                off = max(off, (e + ALIGN - 1) // ALIGN * ALIGN)
            self.ptensors[p].offset = off
            placed.append((off, off + size, lo, hi))
            top = max(top, off + size)
        return (top + ALIGN - 1) // ALIGN * ALIGN
