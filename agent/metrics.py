"""The agent's Prometheus endpoint: owns every metric name, its help text and its labels.

Optional (`[metrics] listen = "127.0.0.1:9464"`), on localhost by default, read-only. Two kinds:
events the service reports as they happen (jobs by outcome, inference time, mode changes) are
prometheus-client counters and a histogram; everything that already has an owner (the reader's
counters, the outbox, the ledger, the governor's latest decision) is read from it at scrape time,
so no number is kept twice. A part that cannot be read during a scrape is counted in
`fleetnode_metrics_read_errors_total` and left out of that scrape; a scrape never raises.
docs/operations.md lists every metric; a test keeps that list and METRICS equal.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server

from agent.governor.decision import Mode

log = logging.getLogger(__name__)

# Job run times from 1 ms (a tiny model) to 10 min (a job's longest time limit).
INFERENCE_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                       10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

# name -> (type, labels, help). The exposition adds _total to counters and _bucket/_sum/_count
# to the histogram.
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "fleetnode_info": ("gauge", ("version", "isa", "car"), "always 1; the agent's version, engine ISA and car id"),
    "fleetnode_mode": ("gauge", ("mode",), "1 for the governor's current mode (OFF, STANDBY, RUN), 0 for the others"),
    "fleetnode_reason": ("gauge", ("code",), "1 for each reason the governor gives now (its stable code)"),
    "fleetnode_power_budget_watts": ("gauge", (), "the power the governor allows compute now"),
    "fleetnode_draining": ("gauge", (), "1 while draining before a known departure"),
    "fleetnode_governor_decisions": ("counter", (), "decisions the governor has taken (one per step)"),
    "fleetnode_mode_changes": ("counter", ("mode",), "changes of mode, by the mode entered"),
    "fleetnode_jobs": ("counter", ("outcome",), "jobs that ended on this car: done, preempted, expired, failed, refused"),
    "fleetnode_inference_seconds": ("histogram", (), "run time of each job that completed"),
    "fleetnode_energy_wh": ("counter", (), "energy compute has used, all time (the ledger's total)"),
    "fleetnode_energy_today_wh": ("gauge", (), "energy compute has used today, in the owner's time zone"),
    "fleetnode_grid_energy_wh": ("counter", (), "the part of fleetnode_energy_wh drawn from the charger"),
    "fleetnode_cost_today": ("gauge", (), "what today's compute energy cost under the owner's tariff"),
    "fleetnode_credits": ("counter", (), "credits the fleet granted for validated results, all time"),
    "fleetnode_decode_errors": ("counter", (), "CAN frames of a known id that the DBC could not decode"),
    "fleetnode_slcan_bad_lines": ("counter", (), "SLCAN lines from the shim that were rejected"),
    "fleetnode_serial_connects": ("counter", (), "times the serial port was opened; more than 1 means reconnects"),
    "fleetnode_serial_link_lost": ("counter", (), "times the open serial link failed (cable pulled, device gone)"),
    "fleetnode_serial_read_contention": ("counter", (), "reads that found the port's bytes taken by another reader of it (fleetnode doctor beside the agent)"),
    "fleetnode_serial_link_up": ("gauge", (), "1 while the shim's serial link is up"),
    "fleetnode_broker_connected": ("gauge", (), "1 while the MQTT session is connected"),
    "fleetnode_outbox_depth": ("gauge", (), "results on disk waiting for the fleet's acknowledgement"),
    "fleetnode_outbox_oldest_age_seconds": ("gauge", (), "age of the oldest unacknowledged result (0: none)"),
    "fleetnode_storage_usable": ("gauge", (), "1 while the state dir takes writes and has more free space than its floor"),
    "fleetnode_storage_free_bytes": ("gauge", (), "free space in the state dir's filesystem"),
    "fleetnode_storage_floor_bytes": ("gauge", (), "below this much free space the agent takes no jobs (storage_floor_bytes)"),
    "fleetnode_storage_write_failures": ("counter", (), "writes of the car's state the disk refused (full, read-only, I/O error)"),
    "fleetnode_metrics_read_errors": ("counter", ("part",), "parts of the agent that could not be read for a scrape"),
}


@dataclass
class Sources:
    """What a scrape reads; each is a callable so that a part may come and go (None: absent)."""

    decision: Callable[[], Any] | None = None  # the governor's latest Decision
    steps: Callable[[], int] | None = None
    reader_counters: Callable[[], dict[str, int]] | None = None
    link_up: Callable[[], bool] | None = None
    broker_connected: Callable[[], bool] | None = None
    outbox: Callable[[], tuple[int, float | None]] | None = None  # (depth, age of the oldest s)
    ledger: Callable[[], dict[str, float]] | None = None  # energy_wh, grid_wh, credits, today_wh, cost_today
    storage: Callable[[], tuple[bool, int, int, int]] | None = None  # (usable, free, floor, write failures)


class AgentMetrics:
    """The registry of one agent. `serve(host, port)` starts the endpoint; `close()` stops it."""

    def __init__(self, version: str, isa: str, car_id: str) -> None:
        self.registry = CollectorRegistry()
        self.sources = Sources()
        self.info = {"version": version, "isa": isa, "car": car_id}
        self._read_errors: dict[str, int] = {}
        self._lock = threading.Lock()
        self.jobs = Counter("fleetnode_jobs", METRICS["fleetnode_jobs"][2], ["outcome"], registry=self.registry)
        self.inference = Histogram("fleetnode_inference_seconds", METRICS["fleetnode_inference_seconds"][2],
                                   buckets=INFERENCE_BUCKETS_S, registry=self.registry)
        self.mode_changes = Counter("fleetnode_mode_changes", METRICS["fleetnode_mode_changes"][2], ["mode"],
                                    registry=self.registry)
        for mode in Mode:
            self.mode_changes.labels(mode.value)
        self.registry.register(_Live(self))
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- events, from the service ---------------------------------------------------------------

    def job_ended(self, outcome: str, run_s: float | None = None) -> None:
        self.jobs.labels(outcome).inc()
        if run_s is not None:
            self.inference.observe(run_s)

    def mode_entered(self, mode: str) -> None:
        self.mode_changes.labels(mode).inc()

    # -- the endpoint ---------------------------------------------------------------------------

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint on its own daemon thread; returns the port it listens on."""
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def read_error(self, part: str) -> None:
        with self._lock:
            self._read_errors[part] = self._read_errors.get(part, 0) + 1

    def read_errors(self) -> dict[str, int]:
        with self._lock:
            return dict(self._read_errors)


def _gauge(name: str, value: float = 0.0,
           labelled: Iterable[tuple[tuple[str, ...], float]] = ()) -> GaugeMetricFamily:
    _, names, text = METRICS[name]
    g = GaugeMetricFamily(name, text, labels=list(names) or None)
    if names:
        for label_values, v in labelled:
            g.add_metric(list(label_values), v)
    else:
        g.add_metric([], value)
    return g


def _counter(name: str, value: float) -> CounterMetricFamily:
    c = CounterMetricFamily(name, METRICS[name][2])
    c.add_metric([], value)
    return c


class _Live:
    """The scrape-time collector: reads each part through its owner's own accessors."""

    def __init__(self, metrics: AgentMetrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m, src = self.m, self.m.sources
        info = GaugeMetricFamily("fleetnode_info", METRICS["fleetnode_info"][2], labels=list(m.info))
        info.add_metric(list(m.info.values()), 1.0)
        yield info
        yield from self._part("governor", lambda: self._governor(src))
        yield from self._part("reader", lambda: self._reader(src))
        yield from self._part("broker", lambda: self._broker(src))
        yield from self._part("outbox", lambda: self._outbox(src))
        yield from self._part("ledger", lambda: self._ledger(src))
        yield from self._part("storage", lambda: self._storage(src))
        errors = CounterMetricFamily("fleetnode_metrics_read_errors", METRICS["fleetnode_metrics_read_errors"][2],
                                     labels=["part"])
        for part, n in sorted(m.read_errors().items()):
            errors.add_metric([part], n)
        yield errors

    def _part(self, part: str, read: Callable[[], list[Metric]]) -> list[Metric]:
        try:
            return read()
        except Exception:  # a scrape must not fail because one part is closing or broken
            self.m.read_error(part)
            log.debug("metrics: cannot read %s", part, exc_info=True)
            return []

    @staticmethod
    def _governor(src: Sources) -> list[Metric]:
        out: list[Metric] = []
        if src.steps is not None:
            out.append(_counter("fleetnode_governor_decisions", src.steps()))
        d = src.decision() if src.decision is not None else None
        if d is None:
            return out
        out.append(_gauge("fleetnode_mode", labelled=[((mode.value,), 1.0 if d.mode is mode else 0.0) for mode in Mode]))
        out.append(_gauge("fleetnode_reason", labelled=[((code,), 1.0) for code in dict.fromkeys(d.codes)]))
        out.append(_gauge("fleetnode_power_budget_watts", d.power_budget_w))
        out.append(_gauge("fleetnode_draining", 1.0 if d.drain else 0.0))
        return out

    @staticmethod
    def _reader(src: Sources) -> list[Metric]:
        out: list[Metric] = []
        if src.reader_counters is not None:
            from agent.bus.slcan import BAD_LINE_COUNTERS

            c = src.reader_counters()
            out.append(_counter("fleetnode_decode_errors", c.get("decode_errors", 0)))
            out.append(_counter("fleetnode_slcan_bad_lines", sum(c.get(k, 0) for k in BAD_LINE_COUNTERS)))
            out.append(_counter("fleetnode_serial_connects", c.get("connects", 0)))
            out.append(_counter("fleetnode_serial_link_lost", c.get("link_lost", 0)))
            out.append(_counter("fleetnode_serial_read_contention", c.get("read_contention", 0)))
        if src.link_up is not None:
            out.append(_gauge("fleetnode_serial_link_up", 1.0 if src.link_up() else 0.0))
        return out

    @staticmethod
    def _broker(src: Sources) -> list[Metric]:
        if src.broker_connected is None:
            return []
        return [_gauge("fleetnode_broker_connected", 1.0 if src.broker_connected() else 0.0)]

    @staticmethod
    def _outbox(src: Sources) -> list[Metric]:
        if src.outbox is None:
            return []
        depth, oldest = src.outbox()
        return [_gauge("fleetnode_outbox_depth", depth),
                _gauge("fleetnode_outbox_oldest_age_seconds", oldest or 0.0)]

    @staticmethod
    def _ledger(src: Sources) -> list[Metric]:
        if src.ledger is None:
            return []
        v = src.ledger()
        return [_counter("fleetnode_energy_wh", v["energy_wh"]), _counter("fleetnode_grid_energy_wh", v["grid_wh"]),
                _counter("fleetnode_credits", v["credits"]), _gauge("fleetnode_energy_today_wh", v["today_wh"]),
                _gauge("fleetnode_cost_today", v["cost_today"])]

    @staticmethod
    def _storage(src: Sources) -> list[Metric]:
        if src.storage is None:
            return []
        usable, free, floor, failures = src.storage()
        return [_gauge("fleetnode_storage_usable", 1.0 if usable else 0.0),
                _gauge("fleetnode_storage_free_bytes", free), _gauge("fleetnode_storage_floor_bytes", floor),
                _counter("fleetnode_storage_write_failures", failures)]


def bind(metrics: AgentMetrics, *, governed: Any, reader: Any, store: Any, link: Any, ledger: Any,
         storage: Any, clock: Any) -> None:
    """Point a scrape at the running agent's parts (agent.service.Agent.run calls this)."""

    def ledger_totals() -> dict[str, float]:
        now = clock.time()
        total, today = ledger.summary(0.0, now + 1.0), ledger.today(now)
        return {"energy_wh": total.energy_wh, "grid_wh": total.grid_wh, "credits": total.credits,
                "today_wh": today.energy_wh, "cost_today": today.cost}

    def outbox() -> tuple[int, float | None]:
        oldest = link.outbox.oldest_wall()
        return link.outbox.depth(), None if oldest is None else max(0.0, clock.time() - oldest)

    def storage_state() -> tuple[bool, int, int, int]:
        from agent.storage import free_bytes

        return storage.fault is None, free_bytes(storage.path), storage.floor_bytes, storage.reports

    metrics.sources = Sources(
        decision=lambda: governed.last, steps=lambda: governed.steps,
        reader_counters=lambda: reader.counters, link_up=lambda: store.snapshot().link.up,
        broker_connected=lambda: link.connected, outbox=outbox, ledger=ledger_totals, storage=storage_state)


_ANNOUNCED = re.compile(r"metrics on (http://\S+/metrics)|\"metrics\": \"(http://[^\"]+)\"")


def announcement(url: str) -> str:
    """The agent's one line at start saying where its endpoint is (port 0 picks a free one)."""
    return f"metrics on {url}"


def find_announced(lines: Iterable[str]) -> str | None:
    """The endpoint URL from an agent's output, text or --json (None: not announced yet)."""
    for line in lines:
        m = _ANNOUNCED.search(line)
        if m:
            return m.group(1) or m.group(2)
    return None


def scrape(url: str, timeout_s: float = 5.0) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Read an endpoint: {(sample name, sorted labels): value}. Raises OSError or ValueError."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        text = r.read().decode("utf-8")
    return {(s.name, tuple(sorted(s.labels.items()))): float(s.value)
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float | None:
    """One value of a scrape, by sample name and exactly these labels (None: not in the scrape)."""
    return samples.get((name, tuple(sorted(labels.items()))))


def reference_markdown() -> str:
    """The metrics table of docs/operations.md, made from METRICS."""
    suffix = {"counter": "_total", "histogram": "_bucket, _sum, _count", "gauge": ""}
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for name, (kind, labels, text) in METRICS.items():
        shown = f"`{name}{suffix[kind]}`" if kind == "counter" else f"`{name}` ({suffix[kind]})" \
            if kind == "histogram" else f"`{name}`"
        rows.append(f"| {shown} | {kind} | {', '.join(labels) or '-'} | {text} |")
    return "\n".join(rows) + "\n"
