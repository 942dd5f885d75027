"""Native engine vs LiteRT (builtin kernels, one thread) on the same models in the same run:
median latency of each, their ratio, and how long a cancel takes to stop a native run."""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

import numpy as np

from agent.inference import Cancelled, CancelToken, Model, load_model
from agent.inference import builder as models
from agent.inference.models import make_thin_path

ROOT = Path(__file__).resolve().parents[1]


def _inputs(m: Model, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.integers(-128, 128, size=s.shape, dtype=np.int8) if s.dtype == np.int8
            else rng.standard_normal(s.shape).astype(s.dtype) for s in m.inputs]


def _median_ms(m: Model, xs: list[np.ndarray], budget_s: float = 1.0, max_runs: int = 200) -> float:
    m.run(xs)  # warm up
    times = []
    t_end = time.perf_counter() + budget_s
    while len(times) < 5 or (time.perf_counter() < t_end and len(times) < max_runs):
        t0 = time.perf_counter()
        m.run(xs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def bench_models() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    out = {
        "thin_path": make_thin_path.build(),
        "conv3x3_32x32x16": models.conv2d(rng, h=32, w=32, c=16, o=16, padding=0),
        "dwconv3x3_32x32x32": models.conv2d(rng, h=32, w=32, c=32, depthwise=True, padding=0),
        "fc_256x256_b8": models.fully_connected(rng, batch=8, depth=256, units=256),
    }
    zoo = Path(os.environ.get("FLEETNODE_ZOO_DIR", ROOT / "models" / "zoo"))
    for p in sorted(zoo.glob("*.tflite")) if zoo.is_dir() else []:
        out[p.stem] = p.read_bytes()
    return out


def cancel_latency_ms(trials: int = 20) -> list[float]:
    """Time from cancel() in another thread to run() raising Cancelled, on a long native run."""
    m = load_model(models.conv2d(np.random.default_rng(1), h=160, w=160, c=64, o=64, padding=0))
    x = np.zeros(m.inputs[0].shape, np.int8)
    lat = []
    for _ in range(trials):
        tok = CancelToken()
        done = threading.Event()
        stamp: list[float] = []

        def worker(tok: CancelToken = tok, stamp: list[float] = stamp, done: threading.Event = done) -> None:
            try:
                m.run([x], cancel=tok)
            except Cancelled:
                stamp.append(time.perf_counter())
            done.set()

        t = threading.Thread(target=worker)
        t.start()
        time.sleep(0.02)  # let the run get going (a benchmark, not a test: no race to win)
        t0 = time.perf_counter()
        tok.cancel()
        done.wait(30)
        t.join()
        if stamp:
            lat.append((stamp[0] - t0) * 1e3)
    return lat


def run() -> dict[str, object]:
    rng = np.random.default_rng(0)
    figures: dict[str, object] = {}
    for name, data in bench_models().items():
        native, litert = load_model(data), load_model(data, backend="litert")
        xs = _inputs(native, rng)
        n_ms, l_ms = _median_ms(native, xs), _median_ms(litert, xs)
        figures[f"{name}_native_median_ms"] = round(n_ms, 4)
        figures[f"{name}_litert_median_ms"] = round(l_ms, 4)
        figures[f"{name}_native_over_litert_ratio"] = round(n_ms / l_ms, 2)
    lat = cancel_latency_ms()
    if lat:
        figures["cancel_latency_median_ms"] = round(statistics.median(lat), 3)
        figures["cancel_latency_max_ms"] = round(max(lat), 3)
        figures["cancel_trials"] = len(lat)
    return figures


if __name__ == "__main__":
    for k, v in run().items():
        print(f"{k}: {v}")
