"""Test vectors for the C runner (native/tests/fn_vector_runner.c): plans, inputs, LiteRT outputs.

A vector file carries what the C library needs to execute one model without Python: the plan
tables exactly as agent.inference.planner builds them and native_backend hands them to
fn_plan_create (tensor rows, node rows, the constant blob, the arena size), the plan tensor ids
of the graph inputs and outputs, and cases of (random inputs, outputs of LiteRT's builtin kernels
on this x86-64 machine, the whole arena of our engine after the same run here). The plan keeps
every intermediate tensor (no arena reuse), so the arena holds the output of every node and the
runner can name the first node whose bytes differ, not only whether the final answer does. A table file carries the element-wise tables the planner builds at load
(fn_lut_build, fn_softmax_table): their parameters and the bytes this machine computed, so a
machine of another architecture can check that it builds the same tables.

    python -m tests.inference.aarch64_vectors OUT_DIR [--cases N] [--models a,b]

All integers are little-endian (x86-64 and aarch64 Linux both are). Layouts (see the runner):
  plan:   "FNPLAN01" i32 n_tensors i32 n_nodes i64 arena_bytes i64 consts_len i32 n_in i32 n_out
          i32 n_cases i32 name_len, name, i64 rows[n_tensors][11], i32 rows[n_nodes][63],
          consts, i32 in_ids[n_in], i32 out_ids[n_out], then per case the input tensors' bytes,
          LiteRT's output tensors' bytes, and the x86-64 arena (arena_bytes) after the run
  tables: "FNTABL01" i32 n, then per table i32 kind (-1: softmax), f32 fp[2], i32 ip[8], and
          256 int8 (a LUT) or 256 float32 (a softmax table)
"""

from __future__ import annotations

import argparse
import platform
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.inference import _native, tflite
from agent.inference.native_backend import NativeModel
from agent.inference.plan import NODE_IN, NODE_OUT, NODE_PARAMS
from agent.inference.planner import Planner
from tests.inference.oracle import litert_run, random_input

ROOT = Path(__file__).resolve().parents[2]
ZOO = ROOT / "models" / "zoo"
THIN_PATH = ROOT / "agent" / "inference" / "models" / "thin_path.tflite"
PLAN_MAGIC = b"FNPLAN01"
TABLE_MAGIC = b"FNTABL01"
SOFTMAX_KIND = -1
FLOAT_LUT_KINDS = ("LOGISTIC", "TANH", "GELU", "GELU_TANH")


def model_paths() -> list[Path]:
    """The zoo models and the thin-path model, in a stable order."""
    return sorted(ZOO.glob("*.tflite")) + [THIN_PATH]


def op_models() -> dict[str, bytes]:
    """One-op models: one per op family (the fuzzer's seeds), and shapes whose channel counts
    split LiteRT's vector blocks from its scalar tails, where the rounding differs."""
    from tests.inference import fuzz_seeds, models

    rng = np.random.default_rng(42)
    q = (0.03, -7)
    i32 = np.int32
    tails = {
        "dwconv_c20": models.conv2d(rng, h=6, w=6, c=20, depthwise=True, mult=1, padding=0),
        "mean_c37": models.single_op("MEAN", [((1, 4, 4, 37), "int8", q, None), ((2,), "int32", None, np.array([1, 2], i32))],
                                     [((1, 1, 1, 37), "int8", (0.01, 5))], "ReducerOptions", [(0, "bool", True)]),
        "mean_last_axis": models.single_op("MEAN", [((2, 5, 12), "int8", q, None), ((1,), "int32", None, np.array([2], i32))],
                                           [((2, 5), "int8", (0.02, -3))], "ReducerOptions", [(0, "bool", False)]),
        "quantize_f32_13": models.single_op("QUANTIZE", [((3, 13), "float32", None, None)], [((3, 13), "int8", q)]),
        "requantize_13": models.single_op("QUANTIZE", [((3, 13), "int8", q, None)], [((3, 13), "int8", (0.05, 9))]),
        "requantize_u8_s8": models.single_op("QUANTIZE", [((3, 13), "uint8", (0.03, 121), None)],
                                             [((3, 13), "int8", (0.05, 9))]),
        "requantize_s8_u8": models.single_op("QUANTIZE", [((3, 13), "int8", q, None)],
                                             [((3, 13), "uint8", (0.05, 137))]),
        "logistic": models.single_op("LOGISTIC", [((4, 9), "int8", q, None)], [((4, 9), "int8", (1 / 256, -128))]),
        "tanh": models.single_op("TANH", [((4, 9), "int8", q, None)], [((4, 9), "int8", (1 / 128, 0))]),
        "gelu": models.single_op("GELU", [((4, 9), "int8", q, None)], [((4, 9), "int8", (0.02, -20))], "GeluOptions",
                                 [(0, "bool", False)]),
        "gelu_tanh": models.single_op("GELU", [((4, 9), "int8", q, None)], [((4, 9), "int8", (0.02, -20))],
                                      "GeluOptions", [(0, "bool", True)]),
        "leaky_relu": models.single_op("LEAKY_RELU", [((4, 9), "int8", q, None)], [((4, 9), "int8", (0.02, 3))],
                                       "LeakyReluOptions", [(0, "f", 0.2)]),
    }
    seeds = {f"op{k:02d}": m for k, m in enumerate(fuzz_seeds.seed_models())}
    return {**seeds, **tails}


@dataclass
class TableCalls:
    """Every element-wise table the planner asked the binding for, with the bytes it got."""

    entries: list[tuple[int, tuple[float, float], list[int], bytes]] = field(default_factory=list)

    def lut(self, kind: str, s_in: float, s_out: float, iparams: Any) -> np.ndarray:
        out: np.ndarray = _ORIGINAL_LUT(kind, s_in, s_out, iparams)
        ip = [int(v) for v in iparams] + [0] * (8 - len(list(iparams)))
        self.entries.append((_native.LUT_KINDS[kind], (s_in, s_out), ip, out.tobytes()))
        return out

    def softmax(self, s_in: float, beta: float) -> np.ndarray:
        out: np.ndarray = _ORIGINAL_SOFTMAX(s_in, beta)
        self.entries.append((SOFTMAX_KIND, (s_in, beta), [0] * 8, out.tobytes()))
        return out


_ORIGINAL_LUT: Callable[..., np.ndarray] = _native.lut_build
_ORIGINAL_SOFTMAX: Callable[..., np.ndarray] = _native.softmax_table


def _plan_recording(data: bytes, calls: TableCalls, keep: bool) -> NativeModel:
    # The planner reaches the table builders through the module attribute at call time, so
    # swapping the attribute records exactly the tables this model needs.
    _native.lut_build, _native.softmax_table = calls.lut, calls.softmax  # type: ignore[assignment]
    try:
        return NativeModel(tflite.parse(data), keep_intermediates=keep)
    finally:
        _native.lut_build, _native.softmax_table = _ORIGINAL_LUT, _ORIGINAL_SOFTMAX  # type: ignore[assignment]


def plan_vector(data: bytes, name: str, cases: int, rng: np.random.Generator, calls: TableCalls,
                keep: bool = True) -> bytes:
    """One model's plan file: the tables the binding gets, inputs, LiteRT's outputs, our arena.
    keep=False gives the production plan (arena reuse), whose arena shows only the last writers."""
    model = _plan_recording(data, calls, keep)
    # the same tables again, constants included: the model keeps only its plan's own copy of them
    tables = Planner(tflite.parse(data), reuse_memory=not keep).plan()
    ncols = 3 + NODE_IN + NODE_OUT + NODE_PARAMS
    rows = np.ascontiguousarray(tables.tensor_rows, dtype="<i8")
    nodes = np.ascontiguousarray(tables.node_rows, dtype="<i4").reshape(-1, ncols)
    consts = np.ascontiguousarray(tables.consts, dtype=np.uint8)
    raw_name = name.encode()
    out = bytearray(PLAN_MAGIC)
    out += struct.pack("<iiqqiiii", len(rows), len(nodes), tables.arena_bytes, consts.size,
                       len(tables.inputs), len(tables.outputs), cases, len(raw_name))
    out += raw_name + rows.tobytes() + nodes.tobytes() + consts.tobytes()
    out += np.asarray(tables.inputs, dtype="<i4").tobytes() + np.asarray(tables.outputs, dtype="<i4").tobytes()
    for _ in range(cases):
        xs = [random_input(rng, s.dtype, s.shape) for s in model.inputs]
        ref = litert_run(data, xs)
        ours = model.run(xs)
        # The x86-64 build already matches LiteRT; a vector where it does not would test nothing.
        for k, (r, g) in enumerate(zip(ref, ours)):
            if r.tobytes() != g.tobytes():
                raise AssertionError(f"{name}: output {k} differs from LiteRT on x86-64 already")
        for x in xs:
            out += np.ascontiguousarray(x).tobytes()
        for r in ref:
            out += np.ascontiguousarray(r).tobytes()
        out += model._arena[:tables.arena_bytes].tobytes()
    return bytes(out)


def table_sweep(calls: TableCalls, rng: np.random.Generator, per_kind: int) -> None:
    """Float-transform tables over random scales and zero points: they go through libm (expf,
    tanhf, erff), the one place where two machines' C libraries could disagree."""
    for kind in FLOAT_LUT_KINDS:
        for _ in range(per_kind):
            s_in = float(np.float32(10 ** rng.uniform(-3.5, 0)))
            s_out = float(np.float32(10 ** rng.uniform(-3, -0.5)))
            calls.lut(kind, s_in, s_out, [int(rng.integers(-128, 128)), int(rng.integers(-128, 128))])
    for _ in range(per_kind):
        calls.softmax(float(np.float32(10 ** rng.uniform(-3, 0))), float(np.float32(rng.uniform(0.1, 2.0))))


def table_file(calls: TableCalls) -> bytes:
    out = bytearray(TABLE_MAGIC) + struct.pack("<i", len(calls.entries))
    for kind, (a, b), ip, expected in calls.entries:
        out += struct.pack("<iff8i", kind, a, b, *ip) + expected
    return bytes(out)


def write_vectors(out_dir: Path, cases: int = 2, names: list[str] | None = None, seed: int = 1,
                  sweep_per_kind: int = 64, keep: bool = True, extra: dict[str, bytes] | None = None) -> list[Path]:
    """Writes one plan file per model (the zoo and the thin path, or those `names` picks, then
    the `extra` models by name) and one tables file; returns the paths written."""
    if platform.machine() not in ("x86_64", "AMD64"):
        # The oracle is LiteRT's x86-64 builtin kernels; another host would produce other bytes.
        raise RuntimeError(f"vectors are made on x86-64, this is {platform.machine()}")
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    calls = TableCalls()
    written = []
    todo = {p.stem: p.read_bytes() for p in model_paths() if names is None or p.stem in names}
    for name, data in {**todo, **(extra or {})}.items():
        dst = out_dir / f"{name}.plan"
        dst.write_bytes(plan_vector(data, name, cases, rng, calls, keep))
        written.append(dst)
    table_sweep(calls, rng, sweep_per_kind)
    dst = out_dir / "tables.tabl"
    dst.write_bytes(table_file(calls))
    written.append(dst)
    return written


def supported(path: Path) -> bool:
    """Whether the engine loads the model (the planner names the op it lacks otherwise)."""
    try:
        Planner(tflite.parse(path.read_bytes())).plan()
    except Exception:  # noqa: BLE001 - any refusal means "not this engine's model yet"
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--cases", type=int, default=2, help="random inputs per model")
    ap.add_argument("--models", default="", help="comma-separated model names (default: all)")
    ap.add_argument("--reuse-arena", action="store_true", help="the production plan (seeds of the plan fuzzer)")
    ap.add_argument("--op-models", action="store_true", help="also the one-op models (every op family)")
    args = ap.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    if not names:
        names = [p.stem for p in model_paths() if supported(p)]
        skipped = [p.stem for p in model_paths() if p.stem not in names]
        if skipped:
            print(f"not supported by the engine, no vectors: {', '.join(skipped)}", file=sys.stderr)
    extra = op_models() if args.op_models else None
    for p in write_vectors(args.out_dir, args.cases, names, keep=not args.reuse_arena, extra=extra):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
