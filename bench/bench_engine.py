"""Native engine vs LiteRT on the same models in the same run, one thread: the median latency of
native, litert-xnnpack and litert-builtin, the ratios, peak RSS, and how long a cancel takes to
stop a native run. Then two figures of the kernels themselves: the int8 multiply-adds per second
of single convolutions beside this machine's measured int8 peak (`_native.int8_peak`, the
microkernel ISA's vpmaddwd / vpdpbusd / sdot issue rate with no loads), and the speed-up of two
threads over one on the largest zoo model.

The measurement is `fleetnode bench`'s (agent.inference.bench.measure): one fresh process per
model and backend, runs interleaved round robin. Models: the builder's single-op models, the
thin-path model, and every models/zoo/*.tflite (FLEETNODE_ZOO_DIR points at another zoo). The
geometric means are over the zoo. Besides bench/results/engine.json, writes the table to
bench/results/engine.md and prints it.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.inference import Cancelled, CancelToken, _native, load_model
from agent.inference import builder as models
from agent.inference.bench import BACKENDS, Target, measure, render_report
from agent.inference.describe import describe
from agent.inference.models import make_thin_path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
# Figure names: <model>_<backend>_median_ms with these backend names.
FIGURE_NAMES = {"native": "native", "litert-xnnpack": "litert_xnnpack",
                "litert-builtin": "litert_builtin"}
BUDGET_S = 1.0  # per model and backend


def builder_models() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {
        "thin_path": make_thin_path.build(),
        "conv3x3_32x32x16": models.conv2d(rng, h=32, w=32, c=16, o=16, padding=0),
        "dwconv3x3_32x32x32": models.conv2d(rng, h=32, w=32, c=32, depthwise=True, padding=0),
        "fc_256x256_b8": models.fully_connected(rng, batch=8, depth=256, units=256),
    }


# Single convolutions of MobileNetV2-224's sizes: (name, builder arguments). Their MACs are
# `fleetnode model show`'s (agent.inference.describe).
KERNEL_LAYERS: dict[str, dict[str, Any]] = {
    "conv1x1_14x14_96to576": {"h": 14, "w": 14, "c": 96, "o": 576, "kh": 1, "kw": 1, "padding": 1},
    "conv1x1_7x7_320to1280": {"h": 7, "w": 7, "c": 320, "o": 1280, "kh": 1, "kw": 1, "padding": 1},
    "conv1x1_7x7_960to320": {"h": 7, "w": 7, "c": 960, "o": 320, "kh": 1, "kw": 1, "padding": 1},
    "conv1x1_56x56_24to144": {"h": 56, "w": 56, "c": 24, "o": 144, "kh": 1, "kw": 1, "padding": 1},
    "conv3x3_16x16_64to64": {"h": 16, "w": 16, "c": 64, "o": 64, "padding": 0},
    "dwconv3x3_56x56_144": {"h": 56, "w": 56, "c": 144, "depthwise": True, "padding": 0},
}


def kernel_efficiency(tmp: Path) -> tuple[dict[str, object], list[str]]:
    """GMAC/s of each KERNEL_LAYERS convolution on native and litert-xnnpack, and native's
    fraction of the int8 peak of the ISA its GEMM runs."""
    rng = np.random.default_rng(0)
    targets, macs = [], {}
    for name, args in KERNEL_LAYERS.items():
        path = tmp / f"{name}.tflite"
        data = models.conv2d(rng, **args)
        path.write_bytes(data)
        targets.append(Target(name, path))
        macs[name] = describe(data).macs or 0
    report = measure(targets, ("native", "litert-xnnpack"), threads=1, budget_s=BUDGET_S)
    isa = report["native_isa"]
    peak = max(_native.int8_peak(isa) for _ in range(3)) / 1e9  # GMAC/s; the best of three
    figures: dict[str, object] = {"int8_peak_gmacs": round(peak, 1), "int8_peak_isa": isa}
    lines = [f"int8 peak of {isa}: {peak:.1f} GMAC/s (one thread)", "",
             "| layer | native GMAC/s | of peak | litert-xnnpack GMAC/s |", "|---|---|---|---|"]
    by = {(r["model"], r["backend"]): r for r in report["results"] if "error" not in r}
    for name in KERNEL_LAYERS:
        g = {b: macs[name] / (by[(name, b)]["median_ms"] * 1e6) for b in ("native", "litert-xnnpack") if (name, b) in by}
        if "native" not in g:
            continue
        figures[f"{name}_native_gmacs"] = round(g["native"], 1)
        figures[f"{name}_native_of_peak"] = round(g["native"] / peak, 3)
        if "litert-xnnpack" in g:
            figures[f"{name}_xnnpack_gmacs"] = round(g["litert-xnnpack"], 1)
        lines.append(f"| {name} | {g['native']:.1f} | {g['native'] / peak:.0%} | "
                     f"{g.get('litert-xnnpack', float('nan')):.1f} |")
    return figures, lines


def thread_scaling(model: Path) -> tuple[dict[str, object], str]:
    """Native median latency with one and with two threads on one model, and their ratio."""
    medians = {}
    for threads in (1, 2):
        report = measure([Target(model.stem, model)], ("native",), threads=threads, budget_s=2 * BUDGET_S)
        rows = [r for r in report["results"] if "error" not in r]
        if rows:
            medians[threads] = rows[0]["median_ms"]
    if len(medians) < 2:
        return {}, f"{model.stem}: thread scaling not measured"
    speedup = medians[1] / medians[2]
    figures: dict[str, object] = {f"{model.stem}_native_1t_median_ms": medians[1],
                                  f"{model.stem}_native_2t_median_ms": medians[2],
                                  f"{model.stem}_native_2t_speedup": round(speedup, 2)}
    return figures, (f"{model.stem}, native: 1 thread {medians[1]:.2f} ms, 2 threads {medians[2]:.2f} ms, "
                     f"speed-up {speedup:.2f}x")


def zoo_models() -> list[Path]:
    zoo = Path(os.environ.get("FLEETNODE_ZOO_DIR", ROOT / "models" / "zoo"))
    return sorted(zoo.glob("*.tflite")) if zoo.is_dir() else []


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


def _geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def figures_of(report: dict[str, Any], zoo: set[str]) -> dict[str, object]:
    """engine.json's figures from a measure() report."""
    figures: dict[str, object] = {}
    medians: dict[str, dict[str, float]] = {}
    for row in report["results"]:
        if "error" in row:
            figures[f"{row['model']}_{FIGURE_NAMES[row['backend']]}_error"] = row["error"]
            continue
        name = f"{row['model']}_{FIGURE_NAMES[row['backend']]}"
        figures[f"{name}_median_ms"] = row["median_ms"]
        figures[f"{name}_p90_ms"] = row["p90_ms"]
        figures[f"{name}_peak_rss_mb"] = row["peak_rss_mb"]
        medians.setdefault(row["model"], {})[row["backend"]] = row["median_ms"]
    for short in ("xnnpack", "builtin"):
        ratios = []
        for model, m in medians.items():
            if "native" in m and m.get(f"litert-{short}"):
                ratio = m["native"] / m[f"litert-{short}"]
                figures[f"{model}_native_over_{short}_ratio"] = round(ratio, 2)
                if model in zoo:
                    ratios.append(ratio)
        if ratios:
            figures[f"geomean_native_over_{short}"] = round(_geomean(ratios), 3)
    return figures


def run() -> dict[str, object]:
    zoo = zoo_models()
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        targets = []
        for name, data in builder_models().items():
            path = Path(tmp) / f"{name}.tflite"
            path.write_bytes(data)
            targets.append(Target(name, path))
        targets += [Target(p.stem, p) for p in zoo]
        report = measure(targets, BACKENDS, threads=1, budget_s=BUDGET_S)
        kfigures, klines = kernel_efficiency(Path(tmp))
    figures = figures_of(report, {p.stem for p in zoo})
    figures["native_isa"] = report["native_isa"]
    figures.update(kfigures)
    scaling = "no zoo model: thread scaling not measured"
    if zoo:
        largest = max(zoo, key=lambda p: p.stat().st_size)
        sfigures, scaling = thread_scaling(largest)
        figures.update(sfigures)
    lat = cancel_latency_ms()
    if lat:
        figures["cancel_latency_median_ms"] = round(statistics.median(lat), 3)
        figures["cancel_latency_max_ms"] = round(max(lat), 3)
        figures["cancel_trials"] = len(lat)
    table = render_report(report, markdown=True)
    geo = ", ".join(f"{k} {figures[k]}" for k in ("geomean_native_over_xnnpack",
                                                  "geomean_native_over_builtin") if k in figures)
    text = (f"# Engine benchmark\n\n{table}\n\nOver the zoo ({len(zoo)} models): {geo}.\n"
            f"Cancel latency: median {figures.get('cancel_latency_median_ms')} ms, "
            f"max {figures.get('cancel_latency_max_ms')} ms ({figures.get('cancel_trials')} trials).\n\n"
            "## Kernels against this machine's int8 peak\n\n" + "\n".join(klines) + "\n\n"
            f"## Threads\n\n{scaling}\n")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "engine.md").write_text(text)
    print(text)
    return figures


if __name__ == "__main__":
    for k, v in run().items():
        print(f"{k}: {v}")
