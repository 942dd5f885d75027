"""Per-call overhead of NativeModel.run: what a call costs beyond the kernels themselves.

For each model: the median time of one `run()` (fresh outputs, and with `out=` when the API has
it), of the bare plan (`Plan.run` on a flag: the kernels, nothing copied), and, for reference,
LiteRT with its default XNNPACK delegate timed as set_tensor + invoke + get_tensor. The
"overhead" is run() minus the bare plan. "one_op" is a graph of a single RELU on four int8
values, so its run() time is almost all overhead.

Timing: calls are timed in batches (one perf_counter pair per batch, so the clock's own cost is
spread out), and the figure is the median over batches of the mean per call.
"""

from __future__ import annotations

import inspect
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agent.inference import Model, load_model
from agent.inference import builder as models

ROOT = Path(__file__).resolve().parents[1]
ZOO = Path(os.environ.get("FLEETNODE_ZOO_DIR", ROOT / "models" / "zoo"))


def medians_us(fns: dict[str, Callable[[], object]], budget_s: float = 3.0,
               target_batch_s: float = 0.001, max_rounds: int = 1000) -> dict[str, float]:
    """Median over batches of the mean time of one call of each fn, in microseconds.

    The functions' batches are interleaved round by round, so a slow patch of the machine (other
    processes on a shared host) falls on all of them alike rather than on whichever ran then."""
    sizes = {}
    for k, fn in fns.items():
        fn()  # warm up
        t0 = time.perf_counter()
        fn()
        once = max(time.perf_counter() - t0, 1e-7)
        sizes[k] = max(1, min(10_000, int(target_batch_s / once)))
    means: dict[str, list[float]] = {k: [] for k in fns}
    t_end = time.perf_counter() + budget_s
    rounds = 0
    while rounds < 11 or (time.perf_counter() < t_end and rounds < max_rounds):
        for k, fn in fns.items():
            n = sizes[k]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            means[k].append((time.perf_counter() - t0) / n)
        rounds += 1
    return {k: statistics.median(v) * 1e6 for k, v in means.items()}


def one_op_model() -> bytes:
    q = (0.1, 0)
    return models.single_op("RELU", [((1, 4), "int8", q, None)], [((1, 4), "int8", q)])


def _inputs(m: Model, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.integers(-128, 128, size=s.shape, dtype=np.int8) if s.dtype == np.int8
            else rng.standard_normal(s.shape).astype(s.dtype) for s in m.inputs]


def _litert_xnnpack(data: bytes, xs: list[np.ndarray]) -> Callable[[], object] | None:
    """The reference figure's call, or None without ai-edge-litert."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    it = Interpreter(model_content=data, num_threads=1)  # default resolver: XNNPACK applied
    it.allocate_tensors()
    ins = [d["index"] for d in it.get_input_details()]
    outs = [d["index"] for d in it.get_output_details()]

    def call() -> object:
        for i, x in zip(ins, xs):
            it.set_tensor(i, x)
        it.invoke()
        return [it.get_tensor(o) for o in outs]

    return call


def figures_for(name: str, data: bytes, rng: np.random.Generator) -> dict[str, float]:
    m = load_model(data)
    xs = _inputs(m, rng)
    plan, flag = m._plan, np.zeros(1, np.int32)  # type: ignore[attr-defined]
    fns: dict[str, Callable[[], object]] = {"run": lambda: m.run(xs), "plan_only": lambda: plan.run(flag)}
    if "out" in inspect.signature(m.run).parameters:
        bufs = [np.empty(s.shape, s.dtype) for s in m.outputs]
        fns["run_out"] = lambda: m.run(xs, out=bufs)
    litert = _litert_xnnpack(data, xs)
    if litert is not None:
        fns["litert_xnnpack"] = litert
    med = medians_us(fns)
    med["overhead"] = med["run"] - med["plan_only"]
    if "run_out" in med:
        med["overhead_out"] = med["run_out"] - med["plan_only"]
    return {f"{name}_{k}_us": round(v, 2) for k, v in med.items()}


def run() -> dict[str, object]:
    rng = np.random.default_rng(0)
    figures: dict[str, object] = {}
    figures.update(figures_for("one_op", one_op_model(), rng))
    for stem in ("fc_autoencoder", "transformer_tiny"):
        p = ZOO / f"{stem}.tflite"
        if p.is_file():
            figures.update(figures_for(stem, p.read_bytes(), rng))
    return figures


if __name__ == "__main__":
    for k, v in run().items():
        print(f"{k}: {v}")
