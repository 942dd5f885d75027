"""`fleetnode fleet simulate`: many lightweight simulated cars against a broker and a fleet service.

Each car is a real MQTT 5 client (agent/fleet/mqtt.py) speaking agent/fleet/protocol.py: a
retained birth state in RUN with a last will that marks it offline, telemetry by exception
through the protocol's TelemetryFilter, jobs taken from the pool's shared subscription and
answered after a configurable service time. A car computes nothing heavy: its answer is
`standin(inputs[0])`, deterministic, so replicas from different cars agree and the fleet's
replication accepts them. Cars are spread over worker processes (one per core by default),
each running its cars' clients and one timer thread for the service times.

The figure helpers at the end (percentiles, per-car-per-day extrapolation) are used by
bench/bench_fleetsim.py.
"""

from __future__ import annotations

import heapq
import math
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import paho.mqtt.client as paho

from agent.fleet import protocol as p
from agent.fleet.link import result_props, state_props
from agent.fleet.mqtt import MqttSession, TlsConfig, Will

COUNTERS = ("connected", "jobs_received", "jobs_invalid", "results_sent", "telemetry_sent",
            "states_sent", "msgs_out", "bytes_out", "msgs_in", "bytes_in")


def standin(x: np.ndarray) -> np.ndarray:
    """The simulated engine: `(x * 3 + 1) mod 256` on int8, the same on every car."""
    return ((x.astype(np.int32) * 3 + 1) % 256).astype(np.uint8).view(np.int8)


@dataclass(frozen=True)
class SimConfig:
    host: str
    port: int
    pool: str = "default"
    service_s: float = 0.02  # the engine's run time per job
    capacity: int = 4  # jobs a car takes at once
    telemetry_s: float = 1.0  # how often a car offers its values to the telemetry filter
    heartbeat_s: float = 60.0
    tls: TlsConfig | None = None
    prefix: str = "sim"


class _Timers:
    """One thread running callbacks at their due time (the cars' service times)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cond = threading.Condition()
        self._n = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="sim-timers", daemon=True)
        self._thread.start()

    def at(self, due: float, fn: Callable[[], None]) -> None:
        with self._cond:
            self._n += 1
            heapq.heappush(self._heap, (due, self._n, fn))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                if self._stop:
                    return
                _, _, fn = heapq.heappop(self._heap)
            fn()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=5)


class LightCar:
    """One simulated car: an MQTT session, a telemetry filter, its counters."""

    def __init__(self, car_id: str, cfg: SimConfig, timers: _Timers) -> None:
        self.car_id = car_id
        self.cfg = cfg
        self.timers = timers
        self.counters = dict.fromkeys(COUNTERS, 0)
        self._lock = threading.Lock()
        self._seq = 0
        self._state_seq = 0
        self._boot = os.urandom(4).hex()
        self._telemetry = p.TelemetryFilter(cfg.heartbeat_s)
        self._tseq = 0
        self._soc = 40.0 + (hash(car_id) % 400) / 10.0
        self.session = MqttSession(
            f"car-{car_id}", cfg.host, cfg.port, tls=cfg.tls, clean_start=True,
            session_expiry_s=0, keepalive_s=60,
            will=Will(p.Topics.state(car_id), p.CarState.offline(car_id, cfg.pool).encode()),
            receive_maximum=cfg.capacity, on_connect=self._on_connect, on_message=self._on_message)

    def _count(self, **kw: int) -> None:
        with self._lock:
            for k, v in kw.items():
                self.counters[k] += v

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool = False,
                 properties: Any = None) -> bool:
        ok = self.session.publish(topic, payload, qos, retain, properties) is not None
        if ok:
            self._count(msgs_out=1, bytes_out=len(topic) + len(payload))
        return ok

    def _on_connect(self, _present: bool) -> None:
        self._state_seq += 1
        st = p.CarState(car=self.car_id, online=True, mode="RUN", reasons=(), available_w=800.0,
                        accepting_jobs=True, soc_percent=round(self._soc, 1), charging=True,
                        pool=self.cfg.pool, seq=self._state_seq, t=time.time(),
                        capacity=self.cfg.capacity, compute=p.ComputeClass("fleetsim-standin", "1"))
        if self._publish(p.Topics.state(self.car_id), st.encode(), p.QOS_STATE, True, state_props()):
            self._count(states_sent=1, connected=1)
        self.session.subscribe(p.Topics.shared_jobs(self.cfg.pool), p.QOS_JOB)
        self.session.subscribe(p.Topics.acks(self.car_id), p.QOS_ACK)

    def _on_message(self, msg: paho.MQTTMessage) -> None:
        payload = bytes(msg.payload)
        self._count(msgs_in=1, bytes_in=len(msg.topic) + len(payload))
        if msg.topic != p.Topics.jobs(self.cfg.pool):
            return  # acks: a simulated car keeps no outbox
        try:
            job = p.JobRequest.decode(payload)
        except p.ProtocolError:
            self._count(jobs_invalid=1)
            return
        self._count(jobs_received=1)
        self.timers.at(time.monotonic() + self.cfg.service_s, lambda: self._answer(job))

    def _answer(self, job: p.JobRequest) -> None:
        outs: list[np.ndarray]
        err: tuple[str | None, str | None]
        if self.car_id in job.exclude:
            outcome, outs, err = "rejected", [], ("excluded", "this car is excluded")
        elif not job.inputs:
            outcome, outs, err = "failed", [], ("no_inputs", "the job has no inputs")
        else:
            outcome, outs, err = "ok", [standin(job.inputs[0])], (None, None)
        with self._lock:
            self._seq += 1
            seq = self._seq
        res = p.JobResult(job.job_id, self.car_id, outcome, seq, outs, error_code=err[0],
                          error_text=err[1], run_s=self.cfg.service_s)
        if self._publish(p.Topics.results(self.car_id, job.submitter), res.encode(), p.QOS_RESULT,
                         False, result_props(self.car_id, job.job_id)):
            self._count(results_sent=1)

    def tick(self) -> None:
        """Offer the car's slowly moving values; the filter sends only what moved (or a heartbeat)."""
        if not self.session.connected:
            return
        self._soc = min(100.0, self._soc + 0.05)
        with self._lock:
            done = self.counters["results_sent"]
        out = self._telemetry.offer({"soc_percent": self._soc, "charging_power_kw": 7.2,
                                     "mode": "RUN", "jobs_done": done}, time.monotonic())
        if out is None:
            return
        self._tseq += 1
        t = p.Telemetry(self.car_id, self._tseq, self._boot, time.time(), out[0], out[1])
        if self._publish(p.Topics.telemetry(self.car_id), t.encode(), p.QOS_TELEMETRY):
            self._count(telemetry_sent=1)

    def close(self) -> None:
        if self.session.connected:  # a clean goodbye; the will covers the other cases
            self._publish(p.Topics.state(self.car_id),
                          p.CarState.offline(self.car_id, self.cfg.pool).encode(), p.QOS_STATE, True)
        self.session.stop()


def _worker(ids: Sequence[str], cfg: SimConfig, stop: Any, out: Any) -> None:
    """A worker process: its cars until `stop` is set, its counter totals on `out` every second."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and sets `stop`
    timers = _Timers()
    cars = [LightCar(i, cfg, timers) for i in ids]
    parent = os.getppid()
    try:
        for c in cars:
            c.session.start()
        while not stop.wait(cfg.telemetry_s) and os.getppid() == parent:  # no orphans
            for c in cars:
                c.tick()
            out.put((os.getpid(), _totals(cars)))
    finally:
        for c in cars:
            c.close()
        timers.stop()
        out.put((os.getpid(), _totals(cars)))


def _totals(cars: Sequence[LightCar]) -> dict[str, int]:
    tot = dict.fromkeys(COUNTERS, 0)
    for c in cars:
        with c._lock:
            for k, v in c.counters.items():
                tot[k] += v
    tot["online"] = sum(1 for c in cars if c.session.connected)
    return tot


def car_ids(n: int, prefix: str = "sim") -> list[str]:
    width = max(4, len(str(n - 1)))
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


def simulate(n: int, cfg: SimConfig, duration_s: float | None = None, processes: int | None = None,
             progress: Callable[[float, dict[str, int]], None] | None = None,
             stop: Any = None) -> dict[str, int]:
    """Runs n cars over `processes` workers until `duration_s` has passed (None: until `stop` is
    set or Ctrl-C). Returns the counter totals over all cars. Workers are always joined."""
    if n < 1:
        raise ValueError("--vehicles must be at least 1")
    procs_n = max(1, min(processes or os.cpu_count() or 1, n))
    ctx = mp.get_context("spawn")
    stop = stop if stop is not None else ctx.Event()
    out: Any = ctx.Queue()
    ids = car_ids(n, cfg.prefix)
    workers = [ctx.Process(target=_worker, args=(ids[k::procs_n], cfg, stop, out), daemon=True,
                           name=f"fleet-sim-{k}") for k in range(procs_n)]
    latest: dict[int, dict[str, int]] = {}
    t0 = time.monotonic()
    for w in workers:
        w.start()

    def drain(timeout: float) -> None:
        try:
            pid, tot = out.get(timeout=timeout)
            latest[pid] = tot
            while True:
                pid, tot = out.get_nowait()
                latest[pid] = tot
        except queue.Empty:
            pass

    try:
        while not stop.is_set():
            if duration_s is not None and time.monotonic() - t0 >= duration_s:
                break
            if not any(w.is_alive() for w in workers):
                break
            drain(0.5)
            if progress is not None:
                progress(time.monotonic() - t0, sum_totals(latest.values()))
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        deadline = time.monotonic() + 15
        while any(w.is_alive() for w in workers) and time.monotonic() < deadline:
            drain(0.2)
        for w in workers:
            w.join(max(0.0, deadline - time.monotonic()))
            if w.is_alive():
                w.kill()
                w.join(5)
        drain(0.1)
    return sum_totals(latest.values())


def sum_totals(parts: Any) -> dict[str, int]:
    tot = dict.fromkeys((*COUNTERS, "online"), 0)
    for part in parts:
        for k, v in part.items():
            tot[k] = tot.get(k, 0) + v
    return tot


# -- figures --------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks; NaN if empty."""
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    return float(np.percentile(values, q)) if len(values) else math.nan


def per_car_per_day(count: float, cars: int, seconds: float) -> float:
    """A count measured over `seconds` for `cars` cars, extrapolated to one car over 24 h."""
    if cars <= 0 or seconds <= 0:
        raise ValueError("cars and seconds must be positive")
    return count / cars / seconds * 86400.0


def per_thousand(value: float, cars: int) -> float:
    """A fleet-wide figure scaled linearly to 1,000 cars."""
    if cars <= 0:
        raise ValueError("cars must be positive")
    return value / cars * 1000.0


def format_progress(elapsed_s: float, tot: Mapping[str, int], n: int) -> str:
    return (f"\r{elapsed_s:6.0f} s  cars online {tot.get('online', 0)}/{n}  "
            f"jobs {tot.get('jobs_received', 0)}  results {tot.get('results_sent', 0)}  "
            f"telemetry {tot.get('telemetry_sent', 0)}  msgs out {tot.get('msgs_out', 0)} "
            f"in {tot.get('msgs_in', 0)}")
