"""`fleetnode bench`: the report's structure, every backend measured; no timed assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from agent.inference import bench

ROOT = Path(__file__).resolve().parents[2]
SMALL = ROOT / "models" / "zoo" / "ds_cnn_kws.tflite"


def fleetnode(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True,
                          text=True, check=False, timeout=240, env=env)


def test_bench_json_reports_every_backend() -> None:
    r = fleetnode("bench", str(SMALL), "--runs", "3", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    for key in ("native_isa", "threads", "native_threads", "litert", "backends", "machine",
                "warnings", "results"):
        assert key in report, key
    assert report["threads"] == 1 and report["native_threads"] == 1
    assert report["backends"] == list(bench.BACKENDS)
    rows = report["results"]
    assert [(row["model"], row["backend"]) for row in rows] == [
        ("ds_cnn_kws", b) for b in bench.BACKENDS]
    for row in rows:
        assert "error" not in row, row
        assert row["runs"] == 3
        assert row["median_ms"] > 0 and row["p90_ms"] >= row["median_ms"] >= row["min_ms"] > 0
        assert isinstance(row["peak_rss_mb"], float) and row["peak_rss_mb"] >= 0
        assert row["baseline_rss_mb"] > 0
        assert row["rss_method"] == "VmHWM after clear_refs" or sys.platform != "linux"
        assert row["ratio_to_xnnpack"] > 0
    assert rows[1]["ratio_to_xnnpack"] == 1.0


def test_bench_table_names_isa_threads_and_columns() -> None:
    r = fleetnode("bench", str(SMALL), "--runs", "2", "--backend", "native",
                  "--backend", "litert-builtin")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("native ISA: ") and "threads: LiteRT 1, native 1" in lines[0]
    header = next(line for line in lines if line.startswith("model"))
    for column in bench.COLUMNS:
        assert column in header
    rows = [line.split() for line in lines if line.startswith("ds_cnn_kws")]
    assert [row[1] for row in rows] == ["native", "litert-builtin"]
    assert all(row[4] == "-" for row in rows)  # no litert-xnnpack run to divide by


def test_bench_refuses_a_missing_model_and_help_answers(tmp_path: Path) -> None:
    r = fleetnode("bench", str(tmp_path / "missing.tflite"))
    assert r.returncode == 2 and "no such file" in r.stderr
    r = fleetnode("bench", "--help")
    assert r.returncode == 0
    for text in ("--backend", "--threads", "--runs", "--profile", "--json", "round robin",
                 "VmHWM", "clear_refs", "set_tensor + invoke + get_tensor"):
        assert text in r.stdout, text


def test_a_model_one_backend_refuses_is_reported_and_the_others_measured(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"TFL3" * 64)
    report = bench.measure([bench.Target("bad", bad), bench.Target("ds", SMALL)],
                           ("native", "litert-builtin"), runs=2, show_progress=False)
    by = {(r["model"], r["backend"]): r for r in report["results"]}
    assert "error" in by[("bad", "native")] and "error" in by[("bad", "litert-builtin")]
    assert by[("ds", "native")]["median_ms"] > 0 and by[("ds", "litert-builtin")]["median_ms"] > 0


class _TimedPlan:
    """The real plan, with the run_profile API the native binding is gaining: per-node ns."""

    def __init__(self, plan: Any, nodes: int) -> None:
        self.plan, self.nodes, self.calls = plan, nodes, 0

    def run(self, flag: np.ndarray) -> tuple[int, int]:
        return self.plan.run(flag)  # type: ignore[no-any-return]

    def run_profile(self, flag: np.ndarray) -> tuple[int, int, np.ndarray]:
        self.calls += 1
        status, node = self.plan.run(flag)
        return status, node, np.arange(1, self.nodes + 1, dtype=np.int64) * 1000


def test_profile_aggregates_per_op_and_top_nodes() -> None:
    runner = bench._NativeRunner(SMALL.read_bytes(), threads=1)
    ops = runner.model.node_ops  # type: ignore[attr-defined]
    fake = _TimedPlan(runner.model._plan, len(ops))  # type: ignore[attr-defined]
    runner.model._plan = fake  # type: ignore[attr-defined]
    p = bench.aggregate_profile(runner.profile(3))
    assert fake.calls == 3 and p["available"] and p["runs"] == 3 and p["nodes"] == len(ops)
    n = len(ops)
    assert abs(p["total_ms"] - n * (n + 1) / 2 * 1e-3) < 1e-9
    assert sum(r["nodes"] for r in p["by_op"]) == n
    assert abs(sum(r["ms"] for r in p["by_op"]) - p["total_ms"]) < 1e-9
    assert [r["ms"] for r in p["by_op"]] == sorted((r["ms"] for r in p["by_op"]), reverse=True)
    top = p["top_nodes"]
    assert len(top) == min(10, n) and top[0]["node"] == n - 1 and top[0]["op"] == ops[-1]
    assert [r["ms"] for r in top] == sorted((r["ms"] for r in top), reverse=True)
    text = bench.render_profile({"model": "ds", "median_ms": 1.0, "profile": p})
    assert "slowest nodes" in text and ops[-1] in text


def test_profile_without_run_profile_says_why() -> None:
    runner = bench._NativeRunner(SMALL.read_bytes(), threads=1)
    if hasattr(runner.model._plan, "run_profile"):  # type: ignore[attr-defined]
        assert bench.aggregate_profile(runner.profile(2))["available"]
    else:
        p = bench.aggregate_profile(runner.profile(2))
        assert not p["available"] and "run_profile" in p["reason"]


def test_peak_rss_is_the_childs_own_not_its_parents() -> None:
    # A child started by vfork + exec inherits its parent's peak in ru_maxrss: hold 200 MB
    # here, and the children must still report their own few MB.
    ballast = np.ones(200 << 20, dtype=np.uint8)
    report = bench.measure([bench.Target("ds", SMALL)], ("native",), runs=2, show_progress=False)
    row = report["results"][0]
    assert ballast.sum() == ballast.size
    assert row["baseline_rss_mb"] < 150 and row["peak_rss_mb"] < 100
