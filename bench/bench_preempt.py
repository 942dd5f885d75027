"""Preemption benchmark: from the unsafe CAN frame on the serial port to the kernel returning.

Rule 2 of the design: STOP reaches the running kernel within a bounded time (target: p99 under
20 ms). The chain measured is the real one: an SLCAN frame with gear D written to a pty ->
BusReader (pyserial, SLCAN parser, DBC decode) -> StateStore -> GovernedLoop -> Governor ->
Runner.set_decision -> the engine's cancel token -> the native CONV_2D kernel notices it between
tiles and raises Cancelled -> the job's work function returns. 1,000 trials; each one waits for
RUN, starts a job that runs the model in a loop, lets it get into a kernel, then writes the frame.

Figures:
- preempt_p50_ms, preempt_p99_ms, preempt_max_ms: frame written -> kernel returned;
- store_to_return_p50_ms, store_to_return_p99_ms: the same without the serial port and the
  engine (StateStore write -> a Python job polling its token), the governor/runner share;
- trials, preempted_outcomes (must equal trials: no preemption is reported as anything else).
"""

from __future__ import annotations

import os
import pty
import random
import statistics
import threading
import time
import tty
from collections.abc import Callable
from typing import Any

import numpy as np

from agent.bus.state import StateStore
from agent.clock import SystemClock
from agent.governor import Governor, Mode, Policy
from agent.governor.policy import Dwell
from agent.runner import Job, JobOutcome, Outcome, PowerModel, Runner
from agent.runner.governed import GovernedLoop

TRIALS = 1000
SAFE: dict[str, Any] = {
    "soc_percent": 70.0, "gear": "P", "speed_kph": 0.0, "driver_present": False,
    "door_open": False, "charge_cable": True, "charging_power_kw": 7.0, "pack_temp_min_c": 20.0,
    "pack_temp_max_c": 25.0, "vehicle_awake": True, "departure_event": False,
    "cabin_preconditioning": False, "charge_limit_reached": False, "pack_voltage_v": 380.0,
    "pack_current_a": 10.0, "compute_temp_c": 45.0,
}
# Every default rule, minus what would slow the trials down: no dwell, no schedule, no caps.
POLICY = Policy(dwell=Dwell(min_off_s=0.0, min_run_s=0.0))


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


class _TimedStore(StateStore):
    """A StateStore that notes when an unsafe gear arrives: splits the chain at the bus."""

    def __init__(self) -> None:
        super().__init__()
        self.unsafe_at: list[float] = []

    def update_many(self, values: Any, t: float) -> None:
        if values.get("gear") not in (None, "P"):
            self.unsafe_at.append(time.perf_counter())
        super().update_many(values, t)


class _Rig:
    """Runner + governed loop on a store, with one-outcome-at-a-time bookkeeping."""

    def __init__(self, store: StateStore) -> None:
        self.clock = SystemClock()
        self.store = store
        self.outcomes: list[JobOutcome] = []
        self.stopped_at: list[float] = []  # when a stop decision had been applied to the runner
        self._cv = threading.Condition()
        self.runner = Runner(self.clock, self._done, PowerModel(watts_per_core=10.0, cores=1))
        self.loop = GovernedLoop(store, Governor(POLICY), self.runner, self.clock, tick_s=0.05,
                                 on_change=self._changed)

    def _changed(self, d: Any) -> None:
        if d.mode is not Mode.RUN:
            self.stopped_at.append(time.perf_counter())
        with self._cv:  # wakes a trial waiting for RUN, without it polling
            self._cv.notify_all()

    def _done(self, o: JobOutcome) -> None:
        with self._cv:
            self.outcomes.append(o)
            self._cv.notify_all()

    def start(self) -> None:
        self.runner.start()
        self.loop.start()

    def stop(self) -> None:
        self.loop.stop()
        self.runner.stop()

    def wait_for(self, pred: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        with self._cv:
            while not pred():
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"bench_preempt: timed out waiting for {what}")
                self._cv.wait(left)

    def trial(self, job_id: str, work: Callable[[Any], bytes], started: threading.Event,
              trigger: Callable[[], None], returned: list[float], rng: random.Random,
              triggered: list[float] | None = None) -> float:
        """Start a job, let it get into its kernel, trigger the stop; ms from trigger to return."""
        self.wait_for(lambda: self.loop.last is not None and self.loop.last.mode is Mode.RUN, "RUN")
        n = len(self.outcomes)
        started.clear()
        if not self.runner.submit(Job(job_id, work)):
            raise RuntimeError("bench_preempt: runner refused a job")
        if not started.wait(5.0):
            raise TimeoutError("bench_preempt: the job did not start")
        time.sleep(rng.uniform(0.0005, 0.004))  # land anywhere inside a kernel
        t0 = time.perf_counter()
        if triggered is not None:
            triggered.append(t0)
        trigger()
        self.wait_for(lambda: len(self.outcomes) > n, "the preempted outcome")
        return (returned[-1] - t0) * 1000.0


def _run_trials(rig: _Rig, feed: Callable[[], None], stop_feed: threading.Event, trials: int,
                prefix: str, work: Callable[[Any], bytes], started: threading.Event,
                trigger: Callable[[], None], reset: Callable[[], None], returned: list[float],
                seed: int, triggered: list[float] | None = None) -> list[float]:
    """Feed the car, start the rig, run the trials; stops the feed and the rig on the way out."""
    threading.Thread(target=feed, daemon=True).start()
    rig.start()
    rng = random.Random(seed)
    lat: list[float] = []
    try:
        for i in range(trials):
            lat.append(rig.trial(f"{prefix}{i}", work, started, trigger, returned, rng, triggered))
            reset()
    finally:
        stop_feed.set()
        rig.stop()
    return lat


def _split(triggered: list[float], arrived: list[float], stopped: list[float]
           ) -> tuple[list[float], list[float]]:
    """Per trial: frame written -> unsafe gear in the store, and store -> stop decision applied."""
    bus, gov = [], []
    for t0 in triggered:
        a = next((t for t in arrived if t >= t0), None)
        s = next((t for t in stopped if a is not None and t >= a), None)
        if a is not None and s is not None:
            bus.append((a - t0) * 1000.0)
            gov.append((s - a) * 1000.0)
    return bus or [0.0], gov or [0.0]


def store_to_return(trials: int = TRIALS) -> dict[str, float]:
    """The governor and runner's share: StateStore write -> a token-polling job returns."""
    clock = SystemClock()
    store = StateStore()
    store.set_link(True, "", clock.monotonic())
    rig = _Rig(store)
    started = threading.Event()
    returned: list[float] = []
    scratch = np.arange(4096, dtype=np.int32)
    stop_feed = threading.Event()

    def feed() -> None:  # keep readings fresh, as the bus does
        while not stop_feed.wait(0.05):
            for role, v in SAFE.items():
                if role != "gear":
                    store.update(role, v, clock.monotonic())

    def work(tok: Any) -> bytes:
        started.set()
        while not tok.cancelled:
            scratch.sum()  # a "tile"
        returned.append(time.perf_counter())
        raise RuntimeError("cancelled")

    for role, v in SAFE.items():
        store.update(role, v, clock.monotonic())
    lat = _run_trials(rig, feed, stop_feed, trials, "s", work, started,
                      lambda: store.update("gear", "D", clock.monotonic()),
                      lambda: store.update("gear", "P", clock.monotonic()), returned, seed=5)
    return {"store_to_return_p50_ms": round(statistics.median(lat), 3),
            "store_to_return_p99_ms": round(_pct(lat, 0.99), 3)}


def conv_model(h: int = 48, w: int = 48, c: int = 32, o: int = 32, seed: int = 1) -> bytes:
    """A 3x3 int8 CONV_2D big enough that a run spans many tiles (tens of MMACs)."""
    from agent.inference.builder import ModelBuilder

    rng = np.random.default_rng(seed)
    mb = ModelBuilder()
    x = mb.tensor((1, h, w, c), "int8", scale=0.05, zero_point=0)
    scales = [float(v) for v in rng.uniform(0.001, 0.02, size=o)]
    wt = mb.tensor((o, 3, 3, c), "int8", scale=scales, zero_point=[0] * o,
                   data=rng.integers(-127, 128, size=(o, 3, 3, c), dtype=np.int8), quantized_dimension=0)
    b = mb.tensor((o,), "int32", scale=[0.05 * v for v in scales], zero_point=[0] * o,
                  data=rng.integers(-3000, 3000, size=o).astype(np.int32))
    y = mb.tensor((1, h, w, o), "int8", scale=0.1, zero_point=0)
    mb.op("CONV_2D", [x, wt, b], [y], "Conv2DOptions",
          [(0, "b", 0), (1, "i", 1), (2, "i", 1), (3, "b", 0), (4, "i", 1), (5, "i", 1)])
    return mb.build([x], [y])


def frame_to_kernel(trials: int = TRIALS) -> dict[str, float]:
    """The full chain: SLCAN frame on a pty -> bus -> governor -> runner -> native kernel."""
    from agent.bus.profile import VehicleProfile
    from agent.bus.reader import BusReader
    from agent.bus.slcan import encode_frame
    from agent.inference import Cancelled, load_model

    profile = VehicleProfile.load("reference")
    model = load_model(conv_model())
    x = np.random.default_rng(2).integers(-128, 128, size=model.inputs[0].shape, dtype=np.int8)
    t = time.perf_counter()
    model.run([x])
    run_ms = (time.perf_counter() - t) * 1000.0

    def wire(state: dict[str, Any], only: str | None = None) -> bytes:
        frames = profile.encode(state)
        if only is not None:
            frames = [f for f in frames if only in profile.decode(f)]
        return b"".join(encode_frame(f) for f in frames)

    safe_wire = wire(SAFE)
    unsafe_gear = wire({**SAFE, "gear": "D"}, only="gear")
    safe_gear = wire(SAFE, only="gear")
    master, slave = pty.openpty()
    tty.setraw(slave)
    store = _TimedStore()
    clock = SystemClock()
    reader = BusReader(os.ttyname(slave), profile, store, clock, silence_limit_s=5.0)
    rig = _Rig(store)
    write_lock = threading.Lock()
    current = {"gear": safe_gear}
    stop_feed = threading.Event()
    started = threading.Event()
    returned: list[float] = []

    def send(data: bytes) -> None:
        with write_lock:
            os.write(master, data)

    def feed() -> None:  # the car keeps talking: every role every 50 ms, gear as it now is
        while not stop_feed.wait(0.05):
            send(safe_wire + current["gear"])

    def work(tok: Any) -> bytes:
        started.set()
        try:
            while True:
                model.run([x], cancel=tok)
        except Cancelled:
            returned.append(time.perf_counter())
            raise

    def gear(wire_: bytes) -> Callable[[], None]:
        def set_gear() -> None:
            current["gear"] = wire_
            send(wire_)
        return set_gear

    reader.start()
    send(safe_wire)
    triggered: list[float] = []
    try:
        lat = _run_trials(rig, feed, stop_feed, trials, "f", work, started, gear(unsafe_gear),
                          gear(safe_gear), returned, seed=7, triggered=triggered)
    finally:
        reader.stop()
        os.close(master)
        os.close(slave)
    preempted = sum(1 for o in rig.outcomes if o.outcome is Outcome.PREEMPTED)
    bus_ms, stop_ms = _split(triggered, store.unsafe_at, rig.stopped_at)
    return {
        "pty_to_store_p99_ms": round(_pct(bus_ms, 0.99), 3),
        "store_to_stop_applied_p99_ms": round(_pct(stop_ms, 0.99), 3),
        "preempt_p50_ms": round(statistics.median(lat), 3),
        "preempt_p99_ms": round(_pct(lat, 0.99), 3),
        "preempt_max_ms": round(max(lat), 3),
        "kernel_run_ms": round(run_ms, 2),
        "trials": trials,
        "preempted_outcomes": preempted,
    }


def run() -> dict[str, object]:
    figures: dict[str, object] = {}
    figures.update(store_to_return())
    try:
        figures.update(frame_to_kernel())
    except ImportError as e:  # a tree without the bus reader or the engine: say which
        figures["preempt_unavailable"] = f"{type(e).__name__}: {e}"
    return figures


if __name__ == "__main__":
    import json
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else TRIALS
    print(json.dumps({**store_to_return(n), **frame_to_kernel(n)}, indent=2))
