"""Inference: load int8 .tflite models and run them on our native engine or on LiteRT.

    m = load_model(path_or_bytes, backend="native", arena_limit_bytes=None)
    outs = m.run([x], cancel=token)

The native backend validates the whole model before any C code sees it (agent.inference.tflite,
agent.inference.planner) and is bit-exact with LiteRT's builtin kernels.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.inference.errors import (
    Cancelled,
    InputError,
    ModelError,
    ModelFormatError,
    UnsupportedOpError,
    counters,
)
from agent.inference.model import CancelToken, Model, Output, RunResult, TensorSpec

__all__ = [
    "MAX_MODEL_BYTES",
    "CancelToken",
    "Cancelled",
    "InputError",
    "Model",
    "ModelError",
    "ModelFormatError",
    "Output",
    "RunResult",
    "TensorSpec",
    "UnsupportedOpError",
    "counters",
    "load_model",
    "read_model",
]

MAX_MODEL_BYTES = 512 << 20


def read_model(path_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview) -> bytes:
    """The bytes of a model file (or buffer), refused with a ModelError above MAX_MODEL_BYTES."""
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
    else:
        p = Path(path_or_bytes)
        try:
            size = p.stat().st_size
            if size > MAX_MODEL_BYTES:
                raise ModelFormatError(f"{p}: {size} bytes exceeds the {MAX_MODEL_BYTES}-byte limit")
            data = p.read_bytes()
        except OSError as e:
            raise ModelError(f"cannot read model {p}: {e}") from e
    if len(data) > MAX_MODEL_BYTES:
        raise ModelFormatError(f"model of {len(data)} bytes exceeds the {MAX_MODEL_BYTES}-byte limit")
    return data


def load_model(path_or_bytes: str | os.PathLike[str] | bytes | bytearray | memoryview,
               backend: str = "native", arena_limit_bytes: int | None = None,
               delegate: str | None = None, threads: int = 1) -> Model:
    """Loads a model. backend: "native" (ours) or "litert"; delegate: a LiteRT delegate .so.

    threads: how many threads one run uses (the native engine's output bytes are the same for
    every count). The native engine's instruction set is the best this CPU has, or the one
    FLEETNODE_ISA names (scalar, avx2, avx512vnni, neon).

    arena_limit_bytes caps the native engine's activation memory (None: 1 GiB, the default for
    untrusted models); a model that needs more is refused with a ModelError.

    Raises ModelError (ModelFormatError, UnsupportedOpError naming the op) for a model that
    cannot be used; never crashes on malformed input."""
    data = read_model(path_or_bytes)
    if backend == "native":
        if delegate is not None:
            raise ModelError("delegates apply to the litert backend only")
        from agent.inference import tflite
        from agent.inference.native_backend import NativeModel

        try:
            return NativeModel(tflite.parse(data), arena_limit_bytes=arena_limit_bytes, threads=threads)
        except ModelError as e:
            counters.bump(type(e).__name__)
            raise
    if backend == "litert":
        from agent.inference.litert_backend import LiteRTModel

        return LiteRTModel(data, delegate=delegate, num_threads=threads)
    raise ModelError(f"unknown backend {backend!r} (native or litert)")
