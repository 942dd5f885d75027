"""The inference API every backend implements: Model, TensorSpec, CancelToken."""

from __future__ import annotations

import abc
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.inference.errors import InputError, counters


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    scale: float  # 0.0 when the tensor is not quantized
    zero_point: int


@dataclass(frozen=True)
class Output:
    """One output of a run, with the spec (name, dtype, shape, quantization) it was made under."""

    spec: TensorSpec
    array: np.ndarray


@dataclass(frozen=True)
class RunResult:
    """What one run produced: every output with its tensor metadata, in the model's order."""

    outputs: tuple[Output, ...]

    @classmethod
    def of(cls, specs: Sequence[TensorSpec], arrays: Sequence[np.ndarray]) -> RunResult:
        if len(specs) != len(arrays):
            raise ValueError(f"{len(arrays)} arrays for {len(specs)} outputs")
        return cls(tuple(Output(s, a) for s, a in zip(specs, arrays)))

    @property
    def arrays(self) -> list[np.ndarray]:
        return [o.array for o in self.outputs]


class CancelToken:
    """A flag another thread sets to stop a run; the native kernels poll it between tiles."""

    def __init__(self) -> None:
        # The C kernels read this int32 directly while the GIL is released.
        self._flag = np.zeros(1, dtype=np.int32)
        self._event = threading.Event()

    def cancel(self) -> None:
        self._flag[0] = 1
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def flag(self) -> np.ndarray:
        return self._flag


class Model(abc.ABC):
    """A loaded model; run() is serialised per model (one arena), safe from any thread."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @abc.abstractmethod
    def run(self, inputs: Sequence[np.ndarray], cancel: CancelToken | None = None,
            out: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """Runs the model on one array per input (of its spec's dtype and shape).

        Returns one array per output. Without `out` these are fresh arrays the caller owns;
        with `out` (one preallocated array per output, of its spec's dtype and shape, C-contiguous
        and writable) the outputs are written into those arrays, which are returned as a list,
        so a caller can reuse its buffers from run to run. Bad inputs or out arrays raise
        InputError; a cancelled token raises Cancelled."""

    def run_result(self, inputs: Sequence[np.ndarray], cancel: CancelToken | None = None) -> RunResult:
        """run(), with each output paired with its TensorSpec."""
        return RunResult.of(self.outputs, self.run(inputs, cancel=cancel))

    def _check_inputs(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(inputs) != len(self.inputs):
            counters.bump("input_count")
            raise InputError(f"model takes {len(self.inputs)} inputs, got {len(inputs)}")
        return [_fits("input", k, a, spec) for k, (a, spec) in enumerate(zip(inputs, self.inputs))]

    def _check_out(self, out: Sequence[np.ndarray] | None) -> list[np.ndarray] | None:
        if out is None:
            return None
        if len(out) != len(self.outputs):
            counters.bump("out_count")
            raise InputError(f"model has {len(self.outputs)} outputs, got {len(out)} out arrays")
        bufs = []
        for k, (a, spec) in enumerate(zip(out, self.outputs)):
            _fits("out", k, a, spec)
            if not a.flags.c_contiguous:
                counters.bump("out_layout")
                raise InputError(f"out {k} ({spec.name}) is not C-contiguous")
            if not a.flags.writeable:
                counters.bump("out_readonly")
                raise InputError(f"out {k} ({spec.name}) is read-only")
            bufs.append(a)
        return bufs


def _fits(kind: str, k: int, a: object, spec: TensorSpec) -> np.ndarray:
    """Array k of run()'s inputs or out arrays (kind "input" or "out") against its spec; an unfit
    one is an InputError, counted under kind_type, kind_dtype or kind_shape."""
    if not isinstance(a, np.ndarray):
        counters.bump(f"{kind}_type")
        raise InputError(f"{kind} {k} ({spec.name}) is {type(a).__name__}, expected a numpy array")
    if a.dtype != spec.dtype:
        counters.bump(f"{kind}_dtype")
        raise InputError(f"{kind} {k} ({spec.name}) has dtype {a.dtype}, expected {spec.dtype}")
    if tuple(a.shape) != spec.shape:
        counters.bump(f"{kind}_shape")
        raise InputError(f"{kind} {k} ({spec.name}) has shape {tuple(a.shape)}, expected {spec.shape}")
    return a
