"""Mutated .tflite files against the native loader and engine: typed refusal or a clean run.

Owns the model mutator (bit flips, byte changes, truncation, corrupted offsets, inflated vector
lengths, corrupted vtables, shapes, indices, scales and option fields) and the one property every
mutant must satisfy (`check`): load_model either raises a ModelError subclass with a message, or
returns a model whose run on valid inputs either works or raises a ModelError subclass. Any
other exception is a bug; a crash, a sanitizer report or a hang is a bug.

tests/inference/test_loader_fuzz.py runs 3,000 mutants of the zoo and thin-path models
in-process. `make fuzz` runs this module as a program over 100,000 mutants of those and of the
one-op models of every op family, in worker processes that load the binding and the C library
built with AddressSanitizer and UndefinedBehaviorSanitizer (native/Makefile):

    python -m tests.inference.loader_fuzz --models 100000 --jobs 2 --native-dir DIR --preload LIBS

Mutant i of seed s is a pure function of (s, i), so a failure is reproduced from its index:
`--replay I` rebuilds it, writes it to a file and checks it in this process.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SEEDS = sorted((ROOT / "models" / "zoo").glob("*.tflite")) + [ROOT / "agent" / "inference" / "models" / "thin_path.tflite"]


def seed_models(op_models: bool = False) -> dict[str, bytes]:
    """The zoo and thin-path models by name; with op_models, also the one-op model of every op
    family (tests.inference.fuzz_seeds), which reach kernels and checks the zoo does not use."""
    seeds = {p.stem: p.read_bytes() for p in SEEDS}
    if op_models:
        from tests.inference import fuzz_seeds

        seeds.update({f"op{k:02d}": m for k, m in enumerate(fuzz_seeds.seed_models())})
    return seeds
ARENA_LIMIT = 8 << 20  # a car's loader sets one; the seeds need at most a few hundred KiB
# The seeds run in milliseconds. A mutant may still be a valid model with much more work (a batch
# of 1000): after RUN_DEADLINE_S the run is cancelled, and it must then stop within
# CANCEL_GRACE_S, or it counts as a hang.
RUN_DEADLINE_S = 10.0
CANCEL_GRACE_S = 5.0
INTERESTING_U32 = (0, 1, 2, 3, 4, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF,
                   0x80000000, 0xFFFFFFFF, 0xFFFFFFFE, 0x0FFFFFFF, 0x10000000)
INTERESTING_I32 = (-1, 0, 1, 2, 3, -2147483648, 2147483647, 65535, 65536, 1 << 20, -129, 128, 255)
INTERESTING_F32 = (float("nan"), float("inf"), -float("inf"), 0.0, -0.0, -1.0, 1e-45, 1e-38, 3e38, 1.0)


@dataclass
class Layout:
    """Where a well-formed model keeps its flatbuffer structure, recorded while our reader parses
    it: so mutations can aim at offsets, lengths and fields instead of mostly hitting weights."""

    soffsets: list[int] = field(default_factory=list)  # table -> vtable (int32)
    uoffsets: list[int] = field(default_factory=list)  # field -> table/vector, vector -> table (uint32)
    lengths: list[int] = field(default_factory=list)  # vector lengths (uint32)
    vt_entries: list[int] = field(default_factory=list)  # vtable field offsets (uint16)
    scalars: list[tuple[int, int]] = field(default_factory=list)  # (pos, size) of scalar fields
    i32_elems: list[int] = field(default_factory=list)  # shapes, tensor indices
    i64_elems: list[int] = field(default_factory=list)  # zero points
    f32_elems: list[int] = field(default_factory=list)  # scales
    data: list[tuple[int, int]] = field(default_factory=list)  # (start, n) of byte vectors (weights)

    def structural(self) -> list[int]:
        """Every byte position that belongs to structure, not to a weight buffer."""
        inside = np.zeros(max([s + n for s, n in self.data] + [0]) + 1, dtype=bool)
        for s, n in self.data:
            inside[s:s + n] = True
        pos = set(self.soffsets + self.uoffsets + self.lengths + self.vt_entries + self.i32_elems + self.f32_elems)
        pos.update(p for p, _ in self.scalars)
        return sorted(p for p in pos if p >= len(inside) or not inside[p])


def layout_of(data: bytes) -> Layout:
    """Parses `data` with agent.inference.tflite while recording every structural position read."""
    from agent.inference import tflite

    lay = Layout()
    T = tflite.Table
    orig = {n: getattr(T, n) for n in ("__init__", "_field", "_indirect", "_vector", "scalars", "raw_bytes", "tables")}

    def init(self: Any, buf: memoryview, pos: int) -> None:
        orig["__init__"](self, buf, pos)
        lay.soffsets.append(pos)

    def field_(self: Any, fld: int, size: int) -> int | None:
        pos: int | None = orig["_field"](self, fld, size)
        if pos is not None:
            lay.vt_entries.append(self._vt + 4 + 2 * fld)
            lay.scalars.append((pos, size))
        return pos

    def indirect(self: Any, fld: int) -> int | None:
        pos = orig["_field"](self, fld, 4)
        if pos is not None:
            lay.uoffsets.append(pos)
        target: int | None = orig["_indirect"](self, fld)
        return target

    def vector(self: Any, fld: int, elem: int) -> tuple[int, int] | None:
        v: tuple[int, int] | None = orig["_vector"](self, fld, elem)
        if v is not None:
            lay.lengths.append(v[0] - 4)
        return v

    def tables(self: Any, fld: int) -> Any:
        v = orig["_vector"](self, fld, 4)
        if v is not None:  # a vector of tables holds one uoffset per element
            lay.uoffsets.extend(v[0] + 4 * k for k in range(min(v[1], 4096)))
        return orig["tables"](self, fld)

    def scalars(self: Any, fld: int, fmt: str) -> Any:
        v = orig["_vector"](self, fld, {"i": 4, "f": 4, "q": 8}.get(fmt, 1))
        if v is not None:
            dst = {"i": lay.i32_elems, "f": lay.f32_elems, "q": lay.i64_elems}.get(fmt)
            if dst is not None:
                dst.extend(v[0] + (8 if fmt == "q" else 4) * k for k in range(min(v[1], 4096)))
        return orig["scalars"](self, fld, fmt)

    def raw_bytes(self: Any, fld: int) -> Any:
        v = orig["_vector"](self, fld, 1)
        if v is not None:
            lay.data.append(v)
        return orig["raw_bytes"](self, fld)

    patched: dict[str, Callable[..., Any]] = {"__init__": init, "_field": field_, "_indirect": indirect,
                                              "_vector": vector, "scalars": scalars, "raw_bytes": raw_bytes,
                                              "tables": tables}
    try:
        for n, f in patched.items():
            setattr(T, n, f)
        tflite.parse(data)
    finally:
        for n, f in orig.items():
            setattr(T, n, f)
    return lay


class Mutator:
    """Applies 1-3 random mutations of the kinds below to a seed model."""

    def __init__(self, seeds: dict[str, bytes]) -> None:
        self.seeds = list(seeds.values())
        self.names = list(seeds)
        self.layouts = [layout_of(d) for d in self.seeds]
        self.structure = [lay.structural() for lay in self.layouts]
        # Half the mutants come from the big models (the zoo: real graphs, real weights), half
        # from the small ones (the thin path, one-op models: cheap, and every op's checks).
        big = np.array([len(d) >= 16384 for d in self.seeds])
        w = np.where(big, 0.5 / max(int(big.sum()), 1), 0.5 / max(int((~big).sum()), 1))
        self.weights = w / w.sum()
        self.kinds: list[Callable[[np.random.Generator, bytearray, int], str]] = [
            self.bit_flip, self.byte_set, self.truncate, self.offset, self.length, self.vtable,
            self.int_elem, self.float_elem, self.scalar, self.structural_flip]

    def mutant(self, seed: int, index: int) -> tuple[bytes, str]:
        """Mutant `index` of run `seed`: the bytes and a description of what was changed."""
        rng = np.random.default_rng([seed, index])
        s = int(rng.choice(len(self.seeds), p=self.weights))
        data = bytearray(self.seeds[s])
        done = []
        for _ in range(int(rng.integers(1, 4))):
            kind = self.kinds[int(rng.integers(len(self.kinds)))]
            done.append(kind(rng, data, s))
        return bytes(data), f"{self.names[s]}: " + "; ".join(done)

    @staticmethod
    def _put(data: bytearray, pos: int, fmt: str, value: float) -> None:
        import struct

        size = struct.calcsize(fmt)
        if 0 <= pos <= len(data) - size:
            struct.pack_into("<" + fmt, data, pos, value)

    @staticmethod
    def _pick(rng: np.random.Generator, xs: Sequence[Any]) -> Any:
        return xs[int(rng.integers(len(xs)))] if len(xs) else None

    def bit_flip(self, rng: np.random.Generator, data: bytearray, s: int) -> str:
        if not data:
            return "flip (empty)"
        pos = int(rng.integers(len(data)))
        data[pos] ^= 1 << int(rng.integers(8))
        return f"flip bit at {pos}"

    def byte_set(self, rng: np.random.Generator, data: bytearray, s: int) -> str:
        if not data:
            return "byte (empty)"
        pos = int(rng.integers(len(data)))
        data[pos] = int(self._pick(rng, (0, 0xFF, 0x7F, 0x80, int(rng.integers(256)))))
        return f"byte {data[pos]} at {pos}"

    def truncate(self, rng: np.random.Generator, data: bytearray, s: int) -> str:
        n = int(rng.integers(len(data) + 1)) if rng.random() < 0.5 else max(0, len(data) - int(rng.integers(1, 64)))
        del data[n:]
        return f"truncate to {n}"

    def offset(self, rng: np.random.Generator, data: bytearray, s: int) -> str:
        lay = self.layouts[s]
        if rng.random() < 0.3:
            pos = int(self._pick(rng, lay.soffsets))
            old = int.from_bytes(data[pos:pos + 4], "little", signed=True) if pos + 4 <= len(data) else 0
            new = old + int(rng.integers(-64, 65)) * 2 if rng.random() < 0.5 else int(self._pick(rng, INTERESTING_I32))
            self._put(data, pos, "i", max(-(1 << 31), min((1 << 31) - 1, new)))
            return f"soffset at {pos} := {new}"
        pos = int(self._pick(rng, lay.uoffsets))
        old = int.from_bytes(data[pos:pos + 4], "little") if pos + 4 <= len(data) else 0
        choice = rng.random()
        if choice < 0.4:
            new = (old + int(rng.integers(-16, 17)) * 4) & 0xFFFFFFFF
        elif choice < 0.6:
            new = (len(data) - pos - int(rng.integers(0, 8))) & 0xFFFFFFFF  # at or just before the end
        else:
            new = int(self._pick(rng, INTERESTING_U32))
        self._put(data, pos, "I", new)
        return f"uoffset at {pos} := {new}"

    def length(self, rng: np.random.Generator, data: bytearray, s: int) -> str:
        pos = int(self._pick(rng, self.layouts[s].lengths))
        old = int.from_bytes(data[pos:pos + 4], "little") if pos + 4 <= len(data) else 0
        new = int(self._pick(rng, (old + 1, old * 2 + 1, old + 1000, old + int(rng.integers(1, 1 << 16)),
                                   (len(data) // 4) & 0xFFFFFFFF, *INTERESTING_U32)))
        self._put(data, pos, "I", new & 0xFFFFFFFF)
        return f"vector length at {pos}: {old} -> {new & 0xFFFFFFFF}"

    def vtable(self, rng: np.random.Generator, data: bytearray, s: int) -> str:
        pos = int(self._pick(rng, self.layouts[s].vt_entries))
        new = int(self._pick(rng, (0, 2, 4, 0xFFFF, 0x8000, int(rng.integers(0, 1 << 16)), int(rng.integers(0, 64)))))
        self._put(data, pos, "H", new)
        return f"vtable entry at {pos} := {new}"

    def int_elem(self, rng: np.random.Generator, data: bytearray, s: int) -> str:
        lay = self.layouts[s]
        if lay.i64_elems and rng.random() < 0.2:
            pos = int(self._pick(rng, lay.i64_elems))
            new = int(self._pick(rng, (-129, 128, 255, -(1 << 63), (1 << 63) - 1, int(rng.integers(-300, 300)))))
            self._put(data, pos, "q", new)
            return f"zero point at {pos} := {new}"
        pos = int(self._pick(rng, lay.i32_elems))
        old = int.from_bytes(data[pos:pos + 4], "little", signed=True) if pos + 4 <= len(data) else 0
        new = int(self._pick(rng, (old + 1, old - 1, old * 2, old * 1000, *INTERESTING_I32)))
        new = max(-(1 << 31), min((1 << 31) - 1, new))
        self._put(data, pos, "i", new)
        return f"int32 element at {pos}: {old} -> {new}"

    def float_elem(self, rng: np.random.Generator, data: bytearray, s: int) -> str:
        pos = int(self._pick(rng, self.layouts[s].f32_elems))
        new = float(self._pick(rng, (*INTERESTING_F32, float(10 ** rng.uniform(-12, 12)))))
        self._put(data, pos, "f", new)
        return f"float32 element at {pos} := {new}"

    def scalar(self, rng: np.random.Generator, data: bytearray, s: int) -> str:
        pos, size = self._pick(rng, self.layouts[s].scalars)
        pool = {1: (0, 1, 2, 3, 6, 7, 0x7F, 0x80, 0xFF), 2: (0, 1, 0x7FFF, 0x8000, 0xFFFF),
                4: INTERESTING_U32, 8: (0, 1, 1 << 40, (1 << 64) - 1)}.get(size, (0,))
        new = int(self._pick(rng, pool)) if rng.random() < 0.7 else int(rng.integers(0, 1 << min(8 * size, 62)))
        self._put(data, pos, {1: "B", 2: "H", 4: "I", 8: "Q"}.get(size, "B"), new)
        return f"field of {size} bytes at {pos} := {new}"

    def structural_flip(self, rng: np.random.Generator, data: bytearray, s: int) -> str:
        pos = int(self._pick(rng, self.structure[s]))
        if pos >= len(data):
            return "structural flip (past a truncation)"
        data[pos] ^= 1 << int(rng.integers(8))
        return f"flip structural bit at {pos}"


def valid_inputs(model: Any, rng: np.random.Generator) -> list[np.ndarray]:
    """Inputs that fit the model's specs exactly (so any failure is the model's, not ours)."""
    xs = []
    for spec in model.inputs:
        if np.dtype(spec.dtype).kind == "f":
            xs.append(rng.standard_normal(spec.shape).astype(spec.dtype))
        else:
            xs.append(rng.integers(-128, 128, size=spec.shape).astype(spec.dtype))
    return xs


def _refusal(outcome: str, e: Exception) -> str:
    """A ModelError subclass with a message is the outcome; anything else is a failure."""
    from agent.inference import ModelError

    if not isinstance(e, ModelError):
        raise AssertionError(f"{outcome}: {type(e).__name__} is not a ModelError: {e}") from e  # noqa: TRY004
    if not str(e).strip():
        raise AssertionError(f"{type(e).__name__} without a message") from e
    return f"{outcome}: {type(e).__name__}"


def check(data: bytes, rng: np.random.Generator) -> str:
    """The property. Returns the outcome ("refused: <error>", "ran", "run refused: <error>",
    "cancelled ..."); raises AssertionError for anything else."""
    from agent.inference import Cancelled, CancelToken, load_model

    try:
        model = load_model(data, arena_limit_bytes=ARENA_LIMIT)
    except Exception as e:  # noqa: BLE001 - every exception is classified, only ModelError passes
        return _refusal("refused", e)
    try:
        xs = valid_inputs(model, rng)
    except (ValueError, MemoryError) as e:  # a spec numpy cannot even build is the model's fault
        raise AssertionError(f"loaded a model whose input specs are unusable: {e}") from e
    token = CancelToken()
    watchdog = threading.Timer(RUN_DEADLINE_S, token.cancel)
    started = time.monotonic()
    watchdog.start()
    try:
        outs = model.run(xs, cancel=token)
    except Cancelled as e:
        late = time.monotonic() - started - RUN_DEADLINE_S
        if late > CANCEL_GRACE_S:
            raise AssertionError(f"the run went on {late:.1f} s after its cancel") from e
        return f"cancelled after {RUN_DEADLINE_S:.0f} s (a big valid model)"
    except Exception as e:  # noqa: BLE001 - as above
        return _refusal("run refused", e)
    finally:
        watchdog.cancel()
    if len(outs) != len(model.outputs) or any(o.shape != s.shape for o, s in zip(outs, model.outputs)):
        raise AssertionError("run returned outputs that do not match the model's specs")
    return "ran"


# ---- the program `make fuzz` runs --------------------------------------------------------------

def _use_native(native_dir: str | None) -> str:
    """Imports the binding, from native_dir first when given (the sanitizer build)."""
    import agent.inference

    if native_dir:
        agent.inference.__path__.insert(0, native_dir)
    from agent.inference import _native

    path = str(Path(_native.__file__).resolve())
    if native_dir and not path.startswith(str(Path(native_dir).resolve())):
        raise SystemExit(f"imported {path}, not the build in {native_dir}")
    return path


MAX_REPORTED = 20  # failures kept in full per worker; all are counted


def worker(seed: int, start: int, count: int, status: Path) -> dict[str, Any]:
    """Checks mutants [start, start+count); returns outcome counts and the failures seen."""
    mut = Mutator(seed_models(op_models=True))
    outcomes: collections.Counter[str] = collections.Counter()
    failures: list[dict[str, Any]] = []
    fd = os.open(status, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for i in range(start, start + count):
            # The index goes to the status file before the model is touched, so the parent can
            # name the mutant that killed the process and resume after it.
            os.pwrite(fd, f"{i:012d}\n".encode(), 0)
            data, what = mut.mutant(seed, i)
            try:
                outcomes[check(data, np.random.default_rng([seed, i, 1]))] += 1
            except AssertionError:
                outcomes["FAILED"] += 1
                if len(failures) < MAX_REPORTED:
                    failures.append({"index": i, "mutation": what, "error": traceback.format_exc(limit=-6)})
    finally:
        os.close(fd)
    return {"counts": dict(outcomes), "failures": failures}


def _worker_main(args: argparse.Namespace) -> int:
    native = _use_native(args.native_dir)
    report = worker(args.seed, args.start, args.count, Path(args.status))
    print(json.dumps({"native": native, **report}), flush=True)
    return 0


def _canary(args: argparse.Namespace) -> int:
    """Writes one float past a 255-float heap buffer through the library: a sanitizer build must
    abort here. The parent runs this first, so a campaign cannot pass with the sanitizer off."""
    import ctypes

    lib = ctypes.CDLL(_use_native(args.native_dir))
    short = np.zeros(255, dtype=np.float32)  # fn_softmax_table writes 256
    lib.fn_softmax_table(ctypes.c_float(0.1), ctypes.c_float(1.0), short.ctypes.data_as(ctypes.c_void_p))
    print("canary: the out-of-bounds write went unnoticed", flush=True)
    return 0


def _replay(args: argparse.Namespace) -> int:
    _use_native(args.native_dir)
    data, what = Mutator(seed_models(op_models=True)).mutant(args.seed, args.replay)
    out = Path(f"mutant-{args.seed}-{args.replay}.tflite")
    out.write_bytes(data)
    print(f"{out}: {what}")
    print(check(data, np.random.default_rng([args.seed, args.replay, 1])))
    return 0


@dataclass
class _Job:
    """One worker slot: runs its index range in a subprocess, again after the mutant that
    crashed it, until the range is done or the deadline passes."""

    number: int
    start: int
    end: int
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    crashes: int = 0
    native: str = "?"

    def run(self, args: argparse.Namespace, env: dict[str, str], work_dir: Path, deadline: float) -> None:
        status = work_dir / f"worker{self.number}.status"
        errfile = work_dir / f"worker{self.number}.stderr"
        pos = self.start
        while pos < self.end:
            cmd = [sys.executable, "-m", "tests.inference.loader_fuzz", "--worker", "--seed", str(args.seed),
                   "--start", str(pos), "--count", str(self.end - pos), "--status", str(status)]
            if args.native_dir:
                cmd += ["--native-dir", args.native_dir]
            status.unlink(missing_ok=True)
            with open(errfile, "w+") as err:
                p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
                try:
                    out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
                    hung = False
                except subprocess.TimeoutExpired:
                    p.kill()
                    out, _ = p.communicate()
                    hung = True
                err.seek(0)
                stderr = err.read()
            last = out.strip().splitlines()[-1] if out.strip() else ""
            report = json.loads(last) if last.startswith("{") else {}
            reports = [ln for ln in stderr.splitlines() if "Sanitizer" in ln or "runtime error:" in ln]
            if p.returncode == 0 and not reports and "counts" in report:
                self.native = report["native"]
                self.counts.update(report["counts"])
                self.failures += [f"mutant {f['index']} ({f['mutation']}):\n{f['error']}" for f in report["failures"]]
                return
            idx = int(status.read_text()) if status.exists() and status.read_text().strip() else pos
            what = "hung" if hung else f"exit status {p.returncode}"
            self.crashes += 1
            self.counts["CRASHED"] += 1
            self.failures.append(f"mutant {idx}: {what} (replay: --replay {idx} --seed {args.seed})\n"
                                 + "\n".join(stderr.splitlines()[-40:]))
            if hung:
                return
            pos = idx + 1  # the models before idx passed; resume after the one that crashed


def _parent_main(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    env = dict(os.environ)
    if args.preload:
        env["LD_PRELOAD"] = " ".join([args.preload, env.get("LD_PRELOAD", "")]).strip()
    # Leak checking is off: CPython keeps allocations alive until exit by design.
    env.setdefault("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1:allocator_may_return_null=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    if args.native_dir:
        canary = subprocess.run([sys.executable, "-m", "tests.inference.loader_fuzz", "--canary", "--native-dir",
                                 args.native_dir], env=env, capture_output=True, text=True, check=False, timeout=120)
        if canary.returncode == 0 or "AddressSanitizer: heap-buffer-overflow" not in canary.stderr:
            print("the sanitizer is not active in the workers (the canary overflow was not reported):",
                  canary.stdout, canary.stderr[-2000:], sep="\n")
            return 1
        print("canary: a one-float heap overflow in the library is reported and aborts the worker")
    chunk = -(-args.models // args.jobs)
    jobs = [_Job(j, j * chunk, min(args.models, (j + 1) * chunk)) for j in range(args.jobs) if j * chunk < args.models]
    deadline = t0 + args.timeout
    threads = [threading.Thread(target=job.run, args=(args, env, work_dir, deadline)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    total: collections.Counter[str] = collections.Counter()
    for job in jobs:
        total.update(job.counts)
    checked = sum(total.values())
    loaded = sum(v for k, v in total.items() if k == "ran" or k.startswith("run refused"))
    print(f"binding: {jobs[0].native if jobs else '?'}")
    print(f"{checked} of {args.models} mutants checked in {elapsed:.1f} s by {len(jobs)} workers: "
          f"{total.get('ran', 0)} loaded and ran, {loaded - total.get('ran', 0)} loaded and refused the run, "
          f"{sum(v for k, v in total.items() if k.startswith('refused'))} refused at load")
    for k, v in sorted(total.items(), key=lambda kv: -kv[1]):
        print(f"  {v:8d}  {k}")
    failures = [f for job in jobs for f in job.failures]
    if failures or checked != args.models:
        print(f"FAILED: {total.get('FAILED', 0)} unexpected exceptions, {total.get('CRASHED', 0)} crashes, "
              f"sanitizer reports or hangs; {args.models - checked} mutants not checked", *failures, sep="\n")
        return 1
    print("0 crashes, 0 sanitizer reports, 0 unexpected exceptions, 0 hangs")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=int, default=100_000, help="number of mutants")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--native-dir", default=None, help="directory holding the _native module to test (sanitizer build)")
    ap.add_argument("--preload", default="", help="libraries for LD_PRELOAD of the workers (libasan first)")
    ap.add_argument("--work-dir", default=str(ROOT / "native" / "build" / "fuzz"), help="worker status and stderr files")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds for the whole run; a worker still going then is hung")
    ap.add_argument("--replay", type=int, default=None, help="rebuild mutant I, write it out and check it here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--canary", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--status", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return _worker_main(args)
    if args.canary:
        return _canary(args)
    if args.replay is not None:
        return _replay(args)
    return _parent_main(args)


if __name__ == "__main__":
    sys.exit(main())
