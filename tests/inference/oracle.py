"""Test helpers: single-op model factories and the LiteRT oracle (BUILTIN_WITHOUT_DEFAULT_DELEGATES)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from agent.inference import _native, load_model
from agent.inference.native_backend import NativeModel


def engines(model: bytes) -> list[tuple[str, NativeModel]]:
    """The model on every instruction set this machine runs, with one thread and with two."""
    out: list[tuple[str, NativeModel]] = []
    before = _native.isa()
    try:
        for isa in _native.supported_isas():
            _native.set_isa(isa)
            for threads in (1, 2):
                m = load_model(model, threads=threads)
                assert isinstance(m, NativeModel) and m.isa == isa
                out.append((f"{isa}/{threads}t", m))
    finally:
        _native.set_isa(before)
    return out


def litert_run(model: bytes, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    it = Interpreter(model_content=model, num_threads=1,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    for d, a in zip(it.get_input_details(), inputs):
        it.set_tensor(d["index"], a)
    it.invoke()
    return [np.array(it.get_tensor(d["index"])) for d in it.get_output_details()]


def random_input(rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == np.float32:
        return rng.uniform(-4, 4, size=shape).astype(np.float32)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=dtype)


def assert_bit_exact(model: bytes, rng: np.random.Generator, runs: int = 3) -> None:
    """Ours and LiteRT's builtin kernels give byte-identical outputs on random inputs, on every
    instruction set this machine runs and with one and two threads."""
    variants = engines(model)
    first = variants[0][1]
    for _ in range(runs):
        xs = [random_input(rng, s.dtype, s.shape) for s in first.inputs]
        ref = litert_run(model, xs)
        for name, m in variants:
            got = m.run(xs)
            assert len(ref) == len(got)
            for k, (r, g) in enumerate(zip(ref, got)):
                assert r.dtype == g.dtype and r.shape == g.shape, (name, k, r.dtype, g.dtype, r.shape, g.shape)
                if r.tobytes() != g.tobytes():
                    diff = np.abs(r.astype(np.float64) - g.astype(np.float64))
                    raise AssertionError(f"{name}: output {k}: {int((diff > 0).sum())} of {r.size} differ, "
                                         f"max |diff| {diff.max()}\nours {g.ravel()[:16]}\nref  {r.ravel()[:16]}")
