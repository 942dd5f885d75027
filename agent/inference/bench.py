"""`fleetnode bench`: our engine's latency and peak memory beside LiteRT's, measured in one run.

    fleetnode bench MODEL.tflite... [--backend native|litert-xnnpack|litert-builtin]...
                    [--threads N] [--runs N] [--profile] [--json]

Every (model, backend) pair runs in a fresh child process (`python -m agent.inference.bench
--child ...`) that imports the same modules whatever its backend, notes its peak RSS, loads the
model and waits for orders. The parent then asks the children of one model for bursts of timed
runs in turn (round robin, the starting backend rotating each round), so machine noise falls on
every backend alike; only one child computes at a time. When all runs are done each child
reports its peak RSS again: the difference is what loading and running that model on that
backend cost, free of anything another backend allocated.

`measure()` is the library entry point; bench/bench_engine.py (`make bench`) uses it too.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import resource
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from agent.inference.errors import ModelError

BACKENDS = ("native", "litert-xnnpack", "litert-builtin")
REFERENCE_BACKEND = "litert-xnnpack"  # the ratio column divides by this backend's median
BURST_S = 0.02  # each turn of the round robin: about this long, and at least one run
WARMUP_RUNS = 2
DEFAULT_BUDGET_S = 2.0  # without --runs: about this long per backend and model
MIN_RUNS, MAX_RUNS = 5, 200
TOP_NODES = 10
INPUT_SEED = 0
CHILD_TIMEOUT_S = 600.0  # a child silent this long is taken for hung

HELP = """\
Time int8 .tflite models on our native engine and on LiteRT, side by side in one run, and
report for each model and backend the median and 90th-percentile latency, the ratio of the
median to litert-xnnpack's, and the peak RSS.

backends:
  native           agent.inference.load_model(data), timed as model.run(inputs)
  litert-xnnpack   ai_edge_litert Interpreter, default resolver (XNNPACK) with num_threads=N
  litert-builtin   Interpreter with BUILTIN_WITHOUT_DEFAULT_DELEGATES (the kernels the native
                   engine is bit-exact with), num_threads=N
  A LiteRT run is timed as set_tensor + invoke + get_tensor. Every backend gets the same
  seeded random inputs.

how it is measured:
  Each (model, backend) pair lives in a fresh child process. After two warm-up runs the
  children of one model run in turn, round robin, one burst of about 20 ms (at least one run)
  at a time, the starting backend rotating every round, so that machine noise hits every
  backend alike. Each run is timed on its own (perf_counter_ns inside the child).
  peak RSS: the child imports the same modules whatever its backend (numpy, agent.inference,
  ai_edge_litert), resets its peak to its current RSS (writing 5 to /proc/self/clear_refs)
  and notes that RSS as its baseline before it reads the model. The figure is its peak RSS
  after all its runs (VmHWM in /proc/self/status) minus that baseline: the memory that
  loading and running the model on that backend added, at its peak, to an interpreter that
  had only imported those modules (inputs, outputs and code pages touched included).
  getrusage's ru_maxrss is not used where /proc is there: a child started by fork or vfork
  and exec starts with its parent's peak in ru_maxrss, so a big parent would hide a small
  child. Without /proc, ru_maxrss is the fallback, and the report says so (rss_method).

threads:
  --threads N is passed to LiteRT as num_threads, and to load_model(data, threads=N) when the
  installed native engine accepts a threads argument; otherwise native runs single-threaded
  and a warning says so.

--profile:
  also time each plan node of the native engine (Plan.run_profile, when the native binding
  has it) and print the time per op type and the 10 slowest nodes.

exit status: 0 when every model ran on every backend, 1 when some failed (the rest is still
reported), 2 for bad arguments.
"""


# --------------------------------------------------------------------------------------------
# What both sides need
# --------------------------------------------------------------------------------------------


def native_isa() -> str | None:
    """The instruction set the native kernels were built for, if the binding says."""
    try:
        from agent.inference import _native
    except ImportError:
        return None
    isa = getattr(_native, "isa", None)
    if callable(isa):
        return str(isa())
    return str(isa) if isinstance(isa, str) else None


def native_takes_threads() -> bool:
    from agent.inference import load_model

    return "threads" in inspect.signature(load_model).parameters


def machine() -> dict[str, object]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def bench_inputs(specs: Sequence[tuple[np.dtype[Any], tuple[int, ...]]]) -> list[np.ndarray]:
    """The same seeded inputs for every backend: integers over their full range, floats N(0,1)."""
    rng = np.random.default_rng(INPUT_SEED)
    out = []
    for dtype, shape in specs:
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            out.append(rng.integers(info.min, info.max + 1, size=shape, dtype=dtype))
        else:
            out.append(rng.standard_normal(shape).astype(dtype))
    return out


def _status_kb() -> dict[str, int]:
    """Peak and current resident set, the latter split into anonymous and file-backed pages,
    in kB from /proc/self/status (Linux); {} where there is no such file."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0])
    except (OSError, ValueError, IndexError):
        return {}
    return out


def _reset_peak_rss() -> bool:
    """Lower this process's peak RSS (VmHWM) to its current RSS; False if the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class _PeakRSS:
    """This process's peak RSS from now on, in kB: see HELP's "peak RSS"."""

    def __init__(self) -> None:
        reset = _reset_peak_rss()
        self.start = _status_kb()
        if "VmHWM" in self.start:
            self.method = "VmHWM after clear_refs" if reset else "VmHWM (no clear_refs)"
            self.baseline_kb = self.start["VmRSS"] if reset else self.start["VmHWM"]
        else:
            self.method = "ru_maxrss (includes the parent's peak)"
            self.baseline_kb = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)

    def report(self) -> dict[str, Any]:
        now = _status_kb()
        if "VmHWM" in now:
            peak_kb = now["VmHWM"]
        else:
            peak_kb = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        return {"rss_method": self.method, "baseline_rss_kb": self.baseline_kb,
                "peak_rss_kb": peak_kb,
                "rss_delta_kb": {k: now[k] - self.start[k] for k in ("RssAnon", "RssFile")
                                 if k in now and k in self.start}}


# --------------------------------------------------------------------------------------------
# The child: one model on one backend
# --------------------------------------------------------------------------------------------


class _Runner:
    """One loaded model; once() runs it and returns the nanoseconds the timed part took."""

    native_threads: int | None = None

    def once(self) -> int:
        raise NotImplementedError

    def profile(self, runs: int) -> dict[str, Any]:
        return {"available": False, "reason": "per-node times exist for the native backend only"}


class _NativeRunner(_Runner):
    def __init__(self, data: bytes, threads: int) -> None:
        from agent.inference import load_model

        if native_takes_threads():
            self.model = load_model(data, threads=threads)  # type: ignore[call-arg, unused-ignore]
            self.native_threads = threads
        else:
            self.model = load_model(data)
            self.native_threads = 1
        self.inputs = bench_inputs([(s.dtype, s.shape) for s in self.model.inputs])

    def once(self) -> int:
        t0 = time.perf_counter_ns()
        self.model.run(self.inputs)
        return time.perf_counter_ns() - t0

    def profile(self, runs: int) -> dict[str, Any]:
        model = self.model
        plan = getattr(model, "_plan", None)
        views = getattr(model, "_in_views", None)
        if plan is None or not hasattr(plan, "run_profile") or views is None:
            return {"available": False,
                    "reason": "this build of the native binding has no Plan.run_profile"}
        flag = np.zeros(1, dtype=np.int32)
        per_run = []
        for _ in range(runs):
            with model._lock:  # type: ignore[attr-defined]
                for view, x in zip(views, self.inputs):
                    view[...] = x  # an earlier node may have reused the inputs' arena bytes
                status, node, ns = plan.run_profile(flag)
            if status != 0:
                return {"available": False,
                        "reason": f"run_profile returned status {status} at node {node}"}
            per_run.append(np.asarray(ns, dtype=np.int64))
        node_ns = np.median(np.stack(per_run), axis=0)
        return {"available": True, "runs": runs, "node_ops": list(getattr(model, "node_ops", [])),
                "node_ns": [float(v) for v in node_ns]}


class _LiteRTRunner(_Runner):
    def __init__(self, data: bytes, threads: int, builtin: bool) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        kwargs: dict[str, Any] = {}
        if builtin:
            kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self.it = Interpreter(model_content=data, num_threads=threads, **kwargs)
        self.it.allocate_tensors()
        self.ins = [d["index"] for d in self.it.get_input_details()]
        self.outs = [d["index"] for d in self.it.get_output_details()]
        self.inputs = bench_inputs([(np.dtype(d["dtype"]), tuple(int(s) for s in d["shape"]))
                                    for d in self.it.get_input_details()])

    def once(self) -> int:
        it = self.it
        t0 = time.perf_counter_ns()
        for index, x in zip(self.ins, self.inputs):
            it.set_tensor(index, x)
        it.invoke()
        for index in self.outs:
            it.get_tensor(index)
        return time.perf_counter_ns() - t0


def _open_runner(backend: str, data: bytes, threads: int) -> _Runner:
    if backend == "native":
        return _NativeRunner(data, threads)
    if backend in ("litert-xnnpack", "litert-builtin"):
        return _LiteRTRunner(data, threads, builtin=backend == "litert-builtin")
    raise ValueError(f"unknown backend {backend!r}")


def child_main(path: str, backend: str, threads: int) -> int:
    """Serve one (model, backend) pair: JSON lines in on stdin, JSON lines out on stdout."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the replies

    def reply(obj: dict[str, Any]) -> None:
        proto.write(json.dumps(obj) + "\n")

    # The same imports for every backend, and the shared code paths touched once (numpy loads
    # numpy.random lazily), so that every baseline is the same interpreter state.
    import agent.inference.native_backend  # noqa: F401

    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:  # an install without the litert extra: its backends report the error
        pass

    native_takes_threads()
    bench_inputs([(np.dtype(np.int8), (1,)), (np.dtype(np.float32), (1,))])
    json.dumps({"ns": [time.perf_counter_ns()]})
    rss = _PeakRSS()
    try:
        runner = _open_runner(backend, Path(path).read_bytes(), threads)
        warm = [runner.once() for _ in range(WARMUP_RUNS)]
    except (ModelError, ImportError, ValueError, RuntimeError, OSError) as e:  # the others go on
        reply({"error": f"{type(e).__name__}: {e}"})
        return 1
    reply({"ready": True, "warmup_ns": warm, "native_threads": runner.native_threads})
    for line in sys.stdin:
        order = json.loads(line)
        if order["cmd"] == "runs":
            reply({"ns": [runner.once() for _ in range(int(order["n"]))]})
        elif order["cmd"] == "finish":
            memory = rss.report()
            profile = runner.profile(int(order["profile_runs"])) if order["profile_runs"] else None
            reply({**memory, "profile": profile})
            return 0
    return 1


# --------------------------------------------------------------------------------------------
# The parent: round robin over one model's children
# --------------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    path: Path


@dataclass
class Measurement:
    model: str
    backend: str
    ns: list[int] = field(default_factory=list)
    baseline_rss_kb: int | None = None
    peak_rss_kb: int | None = None
    native_threads: int | None = None
    rss_delta_kb: dict[str, int] = field(default_factory=dict)
    rss_method: str | None = None
    profile: dict[str, Any] | None = None
    error: str | None = None

    @property
    def median_ms(self) -> float:
        return float(np.median(self.ns)) / 1e6

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.ns, 90)) / 1e6

    @property
    def peak_rss_mb(self) -> float | None:
        if self.peak_rss_kb is None or self.baseline_rss_kb is None:
            return None
        return (self.peak_rss_kb - self.baseline_rss_kb) / 1024


class _Child:
    """One child process and its measurement."""

    def __init__(self, target: Target, backend: str, threads: int) -> None:
        self.m = Measurement(target.name, backend)
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        env = dict(os.environ)
        # The child must import this very agent package, not another install of it.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.inference.bench", "--child", str(target.path), backend,
             str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env)
        self.warm_s = 0.0

    def _stderr_tail(self) -> str:
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no message"

    def ask(self, order: dict[str, Any] | None) -> dict[str, Any] | None:
        """Send an order (None: only read) and return the reply; None (error set) if it died."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            if order is not None:
                self.proc.stdin.write(json.dumps(order) + "\n")
                self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], CHILD_TIMEOUT_S)
            line = self.proc.stdout.readline() if ready else ""
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            self.proc.kill()
            self.proc.wait()
            self.m.error = f"child exited ({self.proc.returncode}): {self._stderr_tail()}"
            return None
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            self.m.error = str(reply["error"])
            return None
        return reply

    def close(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.stderr.close()


class Progress:
    """A progress line on stderr: rewritten in place on a terminal; elsewhere a line every 5 s
    once a run has lasted that long. Short runs print nothing."""

    def __init__(self, stream: IO[str] | None = None, enabled: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.t0 = self.last = time.monotonic()
        self.shown = False

    def update(self, text: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if now - self.last < 0.1 and self.shown:
                return
            self.stream.write(f"\r\x1b[K{text}")
        else:
            if now - self.last < 5.0:
                return
            self.stream.write(f"bench: {text} ({now - self.t0:.0f} s)\n")
        self.stream.flush()
        self.last = now
        self.shown = True

    def done(self) -> None:
        if self.enabled and self.tty and self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _runs_for(children: list[_Child], runs: int | None, budget_s: float) -> int:
    if runs is not None:
        return runs
    slowest = max(c.warm_s for c in children)
    return max(MIN_RUNS, min(MAX_RUNS, int(budget_s / max(slowest, 1e-6))))


def _measure_target(target: Target, backends: Sequence[str], threads: int, runs: int | None,
                    profile_runs: int, budget_s: float,
                    progress: Callable[[str], None]) -> list[Measurement]:
    children = [_Child(target, b, threads) for b in backends]
    try:
        live = []
        for c in children:
            ready = c.ask(None)
            if ready is not None:
                c.warm_s = min(ready["warmup_ns"]) / 1e9
                c.m.native_threads = ready.get("native_threads")
                live.append(c)
        total = _runs_for(live, runs, budget_s) if live else 0
        start = 0
        while live and any(len(c.m.ns) < total for c in live):
            order = live[start % len(live):] + live[:start % len(live)]
            start += 1
            for c in order:
                want = total - len(c.m.ns)
                if want <= 0:
                    continue
                burst = max(1, min(want, int(BURST_S / max(c.warm_s, 1e-9))))
                reply = c.ask({"cmd": "runs", "n": burst})
                if reply is None:
                    continue
                c.m.ns.extend(int(v) for v in reply["ns"])
                progress(f"{target.name}: {c.m.backend} run {len(c.m.ns)}/{total}")
            live = [c for c in live if c.m.error is None]
        for c in live:
            p = profile_runs if c.m.backend == "native" else 0
            reply = c.ask({"cmd": "finish", "profile_runs": p})
            if reply is not None:
                c.m.baseline_rss_kb = int(reply["baseline_rss_kb"])
                c.m.peak_rss_kb = int(reply["peak_rss_kb"])
                c.m.rss_delta_kb = {k: int(v) for k, v in reply["rss_delta_kb"].items()}
                c.m.rss_method = str(reply["rss_method"])
                c.m.profile = aggregate_profile(reply["profile"]) if reply["profile"] else None
    finally:
        for c in children:
            c.close()
    return [c.m for c in children]


def aggregate_profile(raw: dict[str, Any]) -> dict[str, Any]:
    """Per-node median nanoseconds -> time per op type and the slowest nodes."""
    if not raw.get("available"):
        return {"available": False, "reason": raw.get("reason", "")}
    ns = [float(v) for v in raw["node_ns"]]
    ops = list(raw["node_ops"])
    ops += ["?"] * (len(ns) - len(ops))
    total = sum(ns) or 1.0
    by_op: dict[str, list[float]] = {}
    for op, t in zip(ops, ns):
        # A node's label may carry its model op ("op 7 DEPTHWISE_CONV_2D"): group by the op type.
        by_op.setdefault(op.split()[-1] if op.split() else "?", []).append(t)
    op_rows = sorted(({"op": op, "nodes": len(ts), "ms": sum(ts) / 1e6, "share": sum(ts) / total}
                      for op, ts in by_op.items()), key=lambda r: -float(r["ms"]))  # type: ignore[arg-type]
    top = sorted(range(len(ns)), key=lambda i: -ns[i])[:TOP_NODES]
    return {
        "available": True,
        "runs": raw["runs"],
        "nodes": len(ns),
        "total_ms": sum(ns) / 1e6,
        "by_op": op_rows,
        "top_nodes": [{"node": i, "op": ops[i], "ms": ns[i] / 1e6, "share": ns[i] / total}
                      for i in top],
    }


def measure(targets: Sequence[Target], backends: Sequence[str] = BACKENDS, threads: int = 1,
            runs: int | None = None, profile: bool = False, budget_s: float = DEFAULT_BUDGET_S,
            show_progress: bool = True) -> dict[str, Any]:
    """Measure every target on every backend; returns the report `--json` prints.

    runs: timed runs per backend (None: as many as fit budget_s for the slowest backend of
    that model, from 5 to 200)."""
    try:
        from ai_edge_litert import __version__ as litert_version
    except ImportError:
        litert_version = "not installed"
    progress = Progress(enabled=show_progress)
    warnings = []
    takes_threads = native_takes_threads()
    if "native" in backends and threads > 1 and not takes_threads:
        warnings.append("this native engine's load_model takes no threads argument: "
                        "native runs single-threaded")
    results: list[Measurement] = []
    for k, target in enumerate(targets, 1):
        def show(text: str, k: int = k) -> None:
            progress.update(f"[{k}/{len(targets)}] {text}")

        results += _measure_target(target, backends, threads, runs,
                                   max(3, min(runs or 10, 20)) if profile else 0, budget_s, show)
    progress.done()
    return _report(results, backends, threads, takes_threads, warnings, litert_version)


def _mb(kb: int | None) -> float | None:
    return None if kb is None else round(kb / 1024, 2)


def _report(results: list[Measurement], backends: Sequence[str], threads: int,
            takes_threads: bool, warnings: list[str], litert_version: str) -> dict[str, Any]:
    reference = {m.model: m.median_ms for m in results
                 if m.backend == REFERENCE_BACKEND and m.error is None and m.ns}
    rows = []
    for m in results:
        row: dict[str, Any] = {"model": m.model, "backend": m.backend}
        if m.error is not None or not m.ns:
            row["error"] = m.error or "no runs"
        else:
            ref = reference.get(m.model)
            row.update({
                "runs": len(m.ns),
                "median_ms": round(m.median_ms, 4),
                "p90_ms": round(m.p90_ms, 4),
                "min_ms": round(min(m.ns) / 1e6, 4),
                "ratio_to_xnnpack": round(m.median_ms / ref, 3) if ref else None,
                "peak_rss_mb": None if m.peak_rss_mb is None else round(m.peak_rss_mb, 2),
                "baseline_rss_mb": (None if m.baseline_rss_kb is None
                                    else round(m.baseline_rss_kb / 1024, 2)),
                # Not peaks: the resident set after the runs minus the baseline's, by kind.
                "anon_rss_added_mb": _mb(m.rss_delta_kb.get("RssAnon")),
                "file_rss_added_mb": _mb(m.rss_delta_kb.get("RssFile")),
                "rss_method": m.rss_method,
            })
            if m.backend == "native":
                row["threads"] = m.native_threads
            else:
                row["threads"] = threads
            if m.profile is not None:
                row["profile"] = m.profile
        rows.append(row)
    return {
        "native_isa": native_isa(),
        "threads": threads,
        "native_threads": threads if takes_threads else 1,
        "litert": litert_version,
        "backends": list(backends),
        "reference_backend": REFERENCE_BACKEND,
        "machine": machine(),
        "warnings": warnings,
        "results": rows,
    }


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------

COLUMNS = ("model", "backend", "median ms", "p90 ms", "x xnnpack", "peak RSS MB")


def _fmt(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    out = []
    for r in report["results"]:
        if "error" in r:
            out.append([r["model"], r["backend"], f"error: {r['error']}", "", "", ""])
            continue
        out.append([r["model"], r["backend"], _fmt(r["median_ms"], 3), _fmt(r["p90_ms"], 3),
                    _fmt(r["ratio_to_xnnpack"], 2), _fmt(r["peak_rss_mb"], 1)])
    return out


def render_table(header: Sequence[str], rows: list[list[str]], markdown: bool = False) -> str:
    """Plain text aligned in columns (numbers right), or a markdown table."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


def summary_line(report: dict[str, Any]) -> str:
    isa = report["native_isa"] or "not reported by this build"
    return (f"native ISA: {isa}; threads: LiteRT {report['threads']}, native "
            f"{report['native_threads']}; LiteRT {report['litert']}; "
            f"{report['machine']['cpu'] or report['machine']['arch']}")


def render_profile(row: dict[str, Any], markdown: bool = False) -> str:
    p = row["profile"]
    title = f"native per-op time on {row['model']}"
    if not p.get("available"):
        return f"{title}: not available ({p.get('reason', '')})"
    head = (f"{title} (median of {p['runs']} profiled runs per node; nodes sum to "
            f"{p['total_ms']:.3f} ms, run median {row['median_ms']:.3f} ms):")
    by_op = render_table(("op", "nodes", "ms", "share"),
                         [[r["op"], str(r["nodes"]), f"{r['ms']:.3f}", f"{100 * r['share']:.1f}%"]
                          for r in p["by_op"]], markdown)
    top = render_table(("node", "op", "ms", "share"),
                       [[str(r["node"]), r["op"], f"{r['ms']:.3f}", f"{100 * r['share']:.1f}%"]
                        for r in p["top_nodes"]], markdown)
    return f"{head}\n{by_op}\n\n{len(p['top_nodes'])} slowest nodes:\n{top}"


def render_report(report: dict[str, Any], markdown: bool = False) -> str:
    parts = [summary_line(report), "", render_table(COLUMNS, table_rows(report), markdown)]
    for w in report["warnings"]:
        parts.insert(1, f"warning: {w}")
    for row in report["results"]:
        if "profile" in row:
            parts += ["", render_profile(row, markdown)]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench", help="time models on the native engine and LiteRT, side by side",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(p)
    p.set_defaults(func=run)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", type=Path, metavar="MODEL.tflite", help="model files")
    p.add_argument("--backend", dest="backends", action="append", choices=BACKENDS,
                   help="a backend to measure; repeat for several (default: all three)")
    p.add_argument("--threads", type=_positive, default=1, metavar="N",
                   help="threads for LiteRT (num_threads) and, if it supports them, native "
                        "(default 1)")
    p.add_argument("--runs", type=_positive, default=None, metavar="N",
                   help=f"timed runs per model and backend (default: as many as fit about "
                        f"{DEFAULT_BUDGET_S:g} s for the slowest backend, {MIN_RUNS} to {MAX_RUNS})")
    p.add_argument("--profile", action="store_true",
                   help="also print the native engine's time per op type and its slowest nodes")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead")


def run(args: argparse.Namespace) -> int:
    for path in args.models:
        if not path.is_file():
            print(f"fleetnode bench: error: {path}: no such file", file=sys.stderr)
            return 2
    backends = list(dict.fromkeys(args.backends or BACKENDS))
    targets = [Target(p.stem, p) for p in args.models]
    report = measure(targets, backends, threads=args.threads, runs=args.runs,
                     profile=args.profile)
    if args.json:
        print(json.dumps(report, indent=2))
        for w in report["warnings"]:
            print(f"fleetnode bench: warning: {w}", file=sys.stderr)
    else:
        print(render_report(report))
    return 1 if any("error" in r for r in report["results"]) else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"] and len(argv) == 4:
        return child_main(argv[1], argv[2], int(argv[3]))
    p = argparse.ArgumentParser(prog="fleetnode bench", description=HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
