"""Test vectors for the C library alone: a model's plan tables, inputs, LiteRT's outputs (x86-64)
and the load-time tables (LUTs, softmax) the x86-64 build made. native/test/fn_vector_runner.c
reads them; the aarch64 test runs that reader under qemu-user."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agent.inference import _native, tflite
from agent.inference.planner import Planner
from tests.inference.oracle import litert_run, random_input


def _recording(fn: Callable[..., np.ndarray], log: list[tuple[tuple[Any, ...], np.ndarray]]) -> Callable[..., np.ndarray]:
    def wrapper(*args: Any) -> np.ndarray:
        out = fn(*args)
        log.append((args, out.copy()))
        return out
    return wrapper


def write_vectors(model: bytes, path: Path, rng: np.random.Generator, cases: int = 3) -> None:
    luts: list[tuple[tuple[Any, ...], np.ndarray]] = []
    softmax: list[tuple[tuple[Any, ...], np.ndarray]] = []
    orig_lut, orig_soft = _native.lut_build, _native.softmax_table
    _native.lut_build = _recording(orig_lut, luts)  # type: ignore[attr-defined]
    _native.softmax_table = _recording(orig_soft, softmax)  # type: ignore[attr-defined]
    try:
        md = tflite.parse(model)
        tables = Planner(md).plan()
    finally:
        _native.lut_build = orig_lut  # type: ignore[attr-defined]
        _native.softmax_table = orig_soft  # type: ignore[attr-defined]
    sg = md.subgraphs[0]
    specs = [(sg.tensors[i], p) for i, p in zip(sg.inputs, tables.inputs)]
    out_ids = list(tables.outputs)
    b = bytearray(b"FNV1")
    b += struct.pack("<IIqq", len(tables.tensor_rows), len(tables.node_rows), len(tables.consts), tables.arena_bytes)
    b += np.ascontiguousarray(tables.tensor_rows, "<i8").tobytes()
    b += np.ascontiguousarray(tables.node_rows, "<i4").tobytes()
    b += tables.consts.tobytes()
    b += struct.pack("<I", cases)
    for _ in range(cases):
        xs = [random_input(rng, np.dtype(_np_dtype(t.type)), t.shape) for t, _ in specs]
        ref = litert_run(model, xs)
        b += struct.pack("<I", len(xs))
        for (_, pid), x in zip(specs, xs):
            raw = np.ascontiguousarray(x).tobytes()
            b += struct.pack("<qq", tables.offsets[pid], len(raw)) + raw
        b += struct.pack("<I", len(ref))
        for pid, r in zip(out_ids, ref):
            raw = np.ascontiguousarray(r).tobytes()
            b += struct.pack("<qq", tables.offsets[pid], len(raw)) + raw
    b += struct.pack("<I", len(luts))
    for (kind, s_in, s_out, ip), table in luts:
        ints = list(ip) + [0] * (8 - len(ip))
        b += struct.pack("<i2f8i", _native.LUT_KINDS[kind], s_in, s_out, *ints) + table.tobytes()
    b += struct.pack("<I", len(softmax))
    for (s_in, beta), table in softmax:
        b += struct.pack("<2f", s_in, beta) + table.astype("<f4").tobytes()
    path.write_bytes(bytes(b))


def _np_dtype(t: str) -> type:
    return {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32, "float32": np.float32,
            "int64": np.int64, "bool": np.bool_}[t]
