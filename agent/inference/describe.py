"""What a .tflite model is, in its own terms: the facts `fleetnode model show` prints.

Inputs and outputs (names, shapes, types, quantization), the operators with their counts and
whether the engine has a kernel for each, the arena the native engine would need, the MAC count,
and the signature a fleet job's inputs must match. A model the engine refuses is still described
as far as the file allows, with the refusal; only bytes that are not a model are an error.
"""

from __future__ import annotations

import collections
import hashlib
from dataclasses import dataclass, field
from typing import Any

from agent.inference.errors import ModelError
from agent.inference.ops import HANDLERS
from agent.inference.plan import prod
from agent.inference.planner import Planner, op_name
from agent.inference.tflite import ModelDef, OperatorDef, TensorDef, parse


@dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    scales: tuple[float, ...]  # empty when the tensor is not quantized
    zero_points: tuple[int, ...]
    quantized_dimension: int

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"index": self.index, "name": self.name, "dtype": self.dtype,
                             "shape": list(self.shape)}
        if len(self.scales) == 1:
            d["quantization"] = {"scale": self.scales[0], "zero_point": self.zero_points[0]}
        elif self.scales:
            d["quantization"] = {"scales": list(self.scales), "zero_points": list(self.zero_points),
                                 "quantized_dimension": self.quantized_dimension}
        else:
            d["quantization"] = None
        return d

    def text(self) -> str:
        if len(self.scales) == 1:
            q = f"scale {self.scales[0]:.9g} zero_point {self.zero_points[0]}"
        elif self.scales:
            q = f"{len(self.scales)} scales along dimension {self.quantized_dimension}"
        else:
            q = "not quantized"
        return f"{self.name or '(unnamed)'}: {self.dtype}{list(self.shape)}, {q}"


@dataclass(frozen=True)
class OpCount:
    op: str
    count: int
    supported: bool  # the engine has a kernel for this operator (its variants are checked per use)


@dataclass
class ModelInfo:
    size_bytes: int
    sha256: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    operators: list[OpCount]
    refusal: str | None  # why the native engine refuses the model; None when it accepts it
    arena_bytes: int | None  # None when the model is refused
    macs: int | None
    macs_by_op: dict[str, int] = field(default_factory=dict)

    @property
    def signature(self) -> list[dict[str, Any]]:
        """What a fleet job's input tensors must be, in order: the envelope's tensor specs."""
        return [{"dtype": t.dtype, "shape": list(t.shape)} for t in self.inputs]

    def as_dict(self) -> dict[str, Any]:
        return {
            "size_bytes": self.size_bytes, "sha256": self.sha256,
            "supported": self.refusal is None, "refusal": self.refusal,
            "inputs": [t.as_dict() for t in self.inputs],
            "outputs": [t.as_dict() for t in self.outputs],
            "operators": [{"op": o.op, "count": o.count, "supported": o.supported}
                          for o in self.operators],
            "arena_bytes": self.arena_bytes, "macs": self.macs, "macs_by_op": self.macs_by_op,
            "job_signature": self.signature,
        }


def describe(data: bytes) -> ModelInfo:
    """Describes a model; raises ModelFormatError only for bytes that are not a readable model."""
    model = parse(data)
    sg = model.subgraphs[0]
    counts = collections.Counter(op_name(model, op) for s in model.subgraphs for op in s.operators)
    operators = [OpCount(name, n, name in HANDLERS) for name, n in counts.items()]
    planned: Planner | None = None
    refusal: str | None = None
    arena: int | None = None
    try:
        planner = Planner(model)
        arena = planner.plan().arena_bytes
        planned = planner
    except ModelError as e:
        refusal = str(e)

    def info(i: int) -> TensorInfo:
        t = planned.t(i) if planned is not None else sg.tensors[i]
        return TensorInfo(i, t.name, t.type, t.shape, t.scales, t.zero_points, t.quantized_dimension)

    macs: int | None = None
    by_op: dict[str, int] = {}
    if planned is not None:
        for op in sg.operators:
            n = _macs(model, planned, op)
            if n:
                name = op_name(model, op)
                by_op[name] = by_op.get(name, 0) + n
        macs = sum(by_op.values())
    return ModelInfo(len(data), hashlib.sha256(data).hexdigest(), [info(i) for i in sg.inputs],
                     [info(i) for i in sg.outputs], operators, refusal, arena, macs,
                     dict(sorted(by_op.items())))


def _macs(model: ModelDef, pl: Planner, op: OperatorDef) -> int:
    """Multiply-accumulates of one matrix or convolution op, on the shapes the plan inferred."""
    name = op_name(model, op)
    if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL"):
        return 0
    if op.outputs[0] in pl.values:  # folded at plan time: no arithmetic at run time
        return 0
    out = prod(pl.t(op.outputs[0]).shape)
    second: TensorDef = pl.t(op.inputs[1])
    if name == "CONV_2D":  # filter [out_c, kh, kw, in_c per group]
        return out * prod(second.shape[1:])
    if name == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, out_c]
        return out * prod(second.shape[1:3])
    if name == "FULLY_CONNECTED":  # weights [units, depth]
        return out * second.shape[-1]
    a = pl.t(op.inputs[0]).shape
    adj_x = op.options.boolean(0) if op.options is not None else False
    return out * (a[-2] if adj_x else a[-1])


def text_report(path: str, m: ModelInfo) -> str:
    """The human-readable form of ModelInfo, as `fleetnode model show` prints it."""
    lines = [f"{path}: {m.size_bytes:,} bytes, sha256 {m.sha256}"]
    lines.append("engine: supported" if m.refusal is None else f"engine: refused: {m.refusal}")
    for title, tensors in (("inputs", m.inputs), ("outputs", m.outputs)):
        lines.append(f"{title}:")
        lines += [f"  {k}  {t.text()}" for k, t in enumerate(tensors)]
    total = sum(o.count for o in m.operators)
    lines.append(f"operators ({total}):")
    width = max((len(o.op) for o in m.operators), default=0)
    lines += [f"  {o.op:<{width}}  {o.count:>4}  {'supported' if o.supported else 'NOT SUPPORTED'}"
              for o in m.operators]
    lines.append(f"arena: {m.arena_bytes:,} bytes" if m.arena_bytes is not None
                 else "arena: unknown (the model is refused)")
    if m.macs is not None:
        detail = ", ".join(f"{k} {v:,}" for k, v in m.macs_by_op.items())
        lines.append(f"MACs: {m.macs:,}" + (f" ({detail})" if detail else ""))
    else:
        lines.append("MACs: unknown (the model is refused)")
    sig = ", ".join(f"{s['dtype']}{s['shape']}" for s in m.signature)
    lines.append(f"job signature (a fleet job's input tensors, in order): {sig or 'none'}")
    return "\n".join(lines)
