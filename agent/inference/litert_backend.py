"""The LiteRT backend: ai-edge-litert's interpreter, builtin kernels or an NPU delegate.

Without a delegate it uses BUILTIN_WITHOUT_DEFAULT_DELEGATES, the resolver the native engine is
bit-exact with. LiteRT cannot be interrupted inside invoke(): a cancel is honoured before the
run starts and its outputs are dropped if it arrives during the run.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from agent.inference.errors import Cancelled, ModelError, counters
from agent.inference.model import CancelToken, Model, TensorSpec


def _spec(d: dict[str, object]) -> TensorSpec:
    q = d.get("quantization", (0.0, 0))
    scale, zp = q if isinstance(q, tuple) else (0.0, 0)
    shape = tuple(int(x) for x in d["shape"])  # type: ignore[attr-defined]
    return TensorSpec(str(d["name"]), np.dtype(d["dtype"]), shape, float(scale), int(zp))  # type: ignore[call-overload]


class LiteRTModel(Model):
    def __init__(self, data: bytes, delegate: str | None = None, num_threads: int = 1) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType, load_delegate
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ModelError("the litert backend needs ai-edge-litert (pip install fleetnode[litert])") from e
        delegates = [load_delegate(delegate)] if delegate else None
        try:
            self._it = Interpreter(
                model_content=bytes(data), experimental_delegates=delegates, num_threads=num_threads,
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            self._it.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            counters.bump("litert_load")
            raise ModelError(f"LiteRT refused the model: {e}") from e
        self._in = self._it.get_input_details()
        self._out = self._it.get_output_details()
        self.inputs = [_spec(d) for d in self._in]
        self.outputs = [_spec(d) for d in self._out]
        self._lock = threading.Lock()

    def run(self, inputs: Sequence[np.ndarray], cancel: CancelToken | None = None,
            out: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """Runs the interpreter; see Model.run. get_tensor() already returns a fresh copy of an
        output, so that copy is what is returned without `out`; with `out` each output is copied
        once, from a view of the interpreter's buffer that is dropped before the next invoke()."""
        arrays = self._check_inputs(inputs)
        bufs = self._check_out(out)
        with self._lock:
            if cancel is not None and cancel.cancelled:
                raise Cancelled("cancelled before the run started")
            for d, a in zip(self._in, arrays):
                self._it.set_tensor(d["index"], a)
            try:
                self._it.invoke()
            except RuntimeError as e:
                raise ModelError(f"LiteRT failed: {e}") from e
            if cancel is not None and cancel.cancelled:
                counters.bump("cancelled")
                raise Cancelled("cancelled during the run")
            if bufs is None:
                return [self._it.get_tensor(d["index"]) for d in self._out]
            for d, b in zip(self._out, bufs):
                b[...] = self._it.tensor(d["index"])()
            return bufs
