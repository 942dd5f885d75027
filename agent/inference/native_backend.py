"""The native backend: a validated plan executed by our C kernels (agent.inference._native)."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Sequence

import numpy as np

from agent.inference import _native
from agent.inference.errors import Cancelled, ModelError, ModelFormatError, counters
from agent.inference.model import CancelToken, Model, TensorSpec
from agent.inference.plan import DTYPES, PlanTables
from agent.inference.planner import Planner
from agent.inference.tflite import ModelDef, TensorDef


class ArenaLimitError(ModelError):
    """The model's activations need more memory than the configured cap."""


# A model is untrusted input: without an explicit cap, its arena may not exceed this.
DEFAULT_ARENA_LIMIT_BYTES = 1 << 30

ISA_ENV = "FLEETNODE_ISA"


def apply_isa_env() -> str:
    """Forces the instruction set FLEETNODE_ISA names, if set; returns the one in use.

    An unknown name, or one this machine cannot run, is an error at once (ModelError), never a
    silent fallback: the variable exists to test a given path."""
    want = os.environ.get(ISA_ENV, "").strip()
    if want:
        try:
            _native.set_isa(want)
        except ValueError as e:
            raise ModelError(f"{ISA_ENV}={want}: {e}") from e
    return _native.isa()


def isa() -> str:
    """The instruction set the native engine's plans use now."""
    return _native.isa()


def spec_of(t: TensorDef, shape: tuple[int, ...]) -> TensorSpec:
    return TensorSpec(t.name, DTYPES[t.type][1], shape, t.scales[0] if t.scales else 0.0,
                      t.zero_points[0] if t.zero_points else 0)


class NativeModel(Model):
    def __init__(self, model: ModelDef, arena_limit_bytes: int | None = None,
                 keep_intermediates: bool = False, threads: int = 1) -> None:
        if not isinstance(threads, int) or not 1 <= threads <= _native.MAX_THREADS:
            raise ModelError(f"threads must be an integer in 1..{_native.MAX_THREADS}, got {threads!r}")
        apply_isa_env()
        tables: PlanTables = Planner(model, reuse_memory=not keep_intermediates).plan()
        if arena_limit_bytes is None:
            arena_limit_bytes = DEFAULT_ARENA_LIMIT_BYTES
        self._tables = tables
        self._keep = keep_intermediates
        if arena_limit_bytes is not None and tables.arena_bytes > arena_limit_bytes:
            counters.bump("arena_limit")
            raise ArenaLimitError(f"model needs a {tables.arena_bytes}-byte arena, limit is {arena_limit_bytes}")
        self.arena_bytes = tables.arena_bytes
        try:
            self._arena = np.zeros(max(tables.arena_bytes, 1), dtype=np.uint8)
        except MemoryError as e:
            counters.bump("arena_alloc")
            raise ArenaLimitError(f"cannot allocate a {tables.arena_bytes}-byte arena") from e
        try:
            self._plan = _native.Plan(tables.tensor_rows, tables.node_rows, self._arena, tables.consts)
        except _native.PlanError as e:
            # The planner should never emit a table the C side refuses; if it does, the model
            # reached a corner our validation missed, and it is still refused cleanly.
            counters.bump("plan_rejected")
            where = tables.op_names[e.index] if e.status == -2 and 0 <= e.index < len(tables.op_names) else ""
            raise ModelFormatError(f"native plan rejected (status {e.status}) {where}") from e
        self._plan.set_threads(threads)
        self.threads = threads
        self.isa = self._plan.isa
        sg = model.subgraphs[0]
        self.inputs = [spec_of(sg.tensors[i], tables.io_shapes[i]) for i in sg.inputs]
        self.outputs = [spec_of(sg.tensors[i], tables.io_shapes[i]) for i in sg.outputs]
        self._in_views = [self._view(tables, p, s) for p, s in zip(tables.inputs, self.inputs)]
        self._out_views = [self._view(tables, p, s) for p, s in zip(tables.outputs, self.outputs)]
        self.node_ops = tables.op_names
        # The plan copied the constants its kernels read; the packed filters were the bulk of them.
        self._tables = dataclasses.replace(tables, consts=np.zeros(0, dtype=np.uint8))
        self._lock = threading.Lock()
        # Polled by the kernels when run() is given no token; nothing ever sets it.
        self._idle_flag = np.zeros(1, dtype=np.int32)

    def intermediate(self, index: int) -> np.ndarray | None:
        """Model tensor `index` after the last run (needs keep_intermediates=True); None if absent."""
        if not self._keep or index not in self._tables.model_tensors:
            return None
        pid = self._tables.model_tensors[index]
        row = self._tables.tensor_rows[pid]
        dtype = next(dt for code, dt in DTYPES.values() if code == row[0])
        shape = tuple(int(d) for d in row[2:2 + int(row[1])])
        if self._tables.offsets[pid] < 0:
            return None
        off = self._tables.offsets[pid]
        return self._arena[off:off + int(row[10])].view(dtype).reshape(shape).copy()

    def _view(self, tables: PlanTables, pid: int, spec: TensorSpec) -> np.ndarray:
        off = tables.offsets[pid]
        nbytes = int(tables.tensor_rows[pid, 10])
        if off < 0:  # a graph output that is a constant: serve a copy of it
            coff = int(tables.tensor_rows[pid, 9])
            return tables.consts[coff:coff + nbytes].view(spec.dtype).reshape(spec.shape).copy()
        return self._arena[off:off + nbytes].view(spec.dtype).reshape(spec.shape)

    def run(self, inputs: Sequence[np.ndarray], cancel: CancelToken | None = None,
            out: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """Runs the plan; see Model.run. One call into the binding does the checks, then, with the
        GIL released, copies the inputs in, runs the kernels and copies the outputs out.

        What is copied, and why (each copy is one memmove of a contiguous buffer):
        - each input, once, into its place in the arena. fn_plan_create resolved and bounds-checked
          every tensor's address once, inside the arena, so the kernels cannot read the caller's
          array in place. A contiguous input is the copy's source as it is; a non-contiguous one
          is first made contiguous (one more copy).
        - each output, once, out of the arena into `out`'s arrays, or into fresh arrays without
          `out`. Never a view into the arena: the next run overwrites it.
        Nothing else is copied. A call allocates no token (without one the kernels poll this
        model's idle flag), and no arrays with `out`: only the fresh outputs without it.
        """
        with self._lock:
            if cancel is not None and cancel.cancelled:
                self._check_inputs(inputs)  # bad input is reported before a cancel, as always
                self._check_out(out)
                raise Cancelled("cancelled before the run started")
            flag = self._idle_flag if cancel is None else cancel.flag
            try:
                rc, node, outs = self._plan.run_io(self._in_views, inputs, self._out_views, out, flag)
            except (TypeError, ValueError):
                # The binding takes only lists or tuples of arrays that fit exactly, and refuses
                # anything else before copying. The full checks name (and count) what is wrong,
                # and turn any other sequence into a list for a second try.
                arrays = self._check_inputs(inputs)
                bufs = self._check_out(out)
                rc, node, outs = self._plan.run_io(self._in_views, arrays, self._out_views, bufs, flag)
            if rc == 1:
                counters.bump("cancelled")
                raise Cancelled("cancelled during the run")
            if rc != 0:
                counters.bump("run_failed")
                op = self.node_ops[node] if 0 <= node < len(self.node_ops) else "?"
                raise ModelError(f"kernel failed with status {rc} in {op}")
            return outs
