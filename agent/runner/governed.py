"""The governed loop: every change of the vehicle state -> a governor decision -> the runner.

Owns the thread that wakes on each StateStore change (and on a tick, so that readings that
stop arriving go stale and stop compute), steps the governor and applies its decision to the
runner at once. This is the stop path of rule 2: frame decoded -> store notifies -> decision
-> cancel tokens set, all without waiting on anything else.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from agent.bus.state import StateStore
from agent.clock import Clock
from agent.governor import Decision, Governor, GridSignal, Inputs, Mode, Reason
from agent.runner.runner import Runner

log = logging.getLogger(__name__)


def _same(a: Decision | None, b: Decision) -> bool:
    return a is not None and (a.mode, a.drain, a.codes, round(a.power_budget_w)) == \
        (b.mode, b.drain, b.codes, round(b.power_budget_w))


class GovernedLoop:
    """Drive `runner` from `store` through `governor`.

    Args:
        inputs: called before each step for what the governor hears besides the car (wall
            time, grid signal, broker and decode health); default: the clock's wall time.
        on_change: called with each decision that differs from the previous one (mode, drain,
            reasons, or the budget by a watt or more): telemetry by exception.
        tick_s: the longest the loop sleeps without a state change (staleness, schedules).
    """

    def __init__(self, store: StateStore, governor: Governor, runner: Runner, clock: Clock, *,
                 inputs: Callable[[], Inputs] | None = None,
                 on_change: Callable[[Decision], None] | None = None,
                 tick_s: float = 0.25) -> None:
        self.store = store
        self.governor = governor
        self.runner = runner
        self.clock = clock
        self._inputs = inputs or (lambda: Inputs(wall=clock.time()))
        self._on_change = on_change
        self.tick_s = tick_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.last: Decision | None = None
        self.steps = 0
        self.callback_errors = 0
        self.step_errors = 0

    def step(self) -> Decision:
        """One look: snapshot, decide, apply. Safe to call from any thread."""
        with self._lock:
            state = self.store.snapshot()
            decision = self.governor.decide(state, self.clock.monotonic(), self._inputs())
            self.runner.set_decision(decision)
            changed = not _same(self.last, decision)
            self.last = decision
            self.steps += 1
        if changed and self._on_change is not None:
            try:
                self._on_change(decision)
            except Exception:  # a telemetry bug must not stop the governor
                self.callback_errors += 1
                log.exception("on_change raised")
        return decision

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="governor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()  # the loop sees it within tick_s
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        generation = self.store.generation
        while not self._stop.is_set():
            try:
                self.step()
            except Exception as e:
                self.step_errors += 1
                log.exception("governor step failed")
                self.runner.set_decision(Decision(Mode.OFF, 0.0, (
                    Reason("internal_error", f"the governor failed: {type(e).__name__}: {e}"),)))
            generation = self.store.wait_changed(generation, self.tick_s)


class InputsFeed:
    """Builds the governor's Inputs from the agent's parts, for GovernedLoop(inputs=feed).

    - decode errors per second: the bus reader's `decode_errors` and its parser's bad lines
      over `window_s`, and among them its `length_mismatches` (said in the reason);
    - broker down since: when the fleet link's `connected` last turned false;
    - today's energy and cost: the ledger sink, if any;
    - the storage fault: the storage monitor's `fault_text`, if any;
    - the grid signal: whatever the fleet last sent through `set_grid`.
    Each part is optional and read through its public attribute only.
    """

    def __init__(self, clock: Clock, *, reader: object = None, link: object = None,
                 ledger: object = None, storage: object = None, window_s: float = 10.0) -> None:
        self.clock = clock
        self.storage = storage
        self.reader = reader
        self.link = link
        self.ledger = ledger
        self.window_s = window_s
        self._lock = threading.Lock()
        self._samples: list[tuple[float, int, int]] = []
        self._down_since: float | None = None
        self._grid: GridSignal | None = None

    def set_grid(self, signal: GridSignal) -> None:
        with self._lock:
            self._grid = signal

    def decode_error_rates(self, now: float) -> tuple[float, float]:
        """(decode errors, length mismatches among them) per second over `window_s`."""
        counters = getattr(self.reader, "counters", None)
        if not isinstance(counters, dict):
            return 0.0, 0.0
        # Undecodable frames plus malformed SLCAN lines: both mean the bus cannot be trusted.
        count = int(counters.get("decode_errors", 0)) + int(getattr(getattr(self.reader, "parser", None),
                                                                    "bad_lines", 0))
        mismatched = int(counters.get("length_mismatches", 0))
        with self._lock:
            self._samples.append((now, count, mismatched))
            self._samples = [s for s in self._samples if now - s[0] <= self.window_s]
            t0, c0, m0 = self._samples[0]
        if now <= t0:
            return 0.0, 0.0
        return (count - c0) / (now - t0), (mismatched - m0) / (now - t0)

    def __call__(self) -> Inputs:
        now = self.clock.monotonic()
        connected = getattr(self.link, "connected", True)
        with self._lock:
            if connected:
                self._down_since = None
            elif self._down_since is None:
                self._down_since = now
            down, grid = self._down_since, self._grid
        energy = cost = None
        today = getattr(self.ledger, "energy_today", None)
        if callable(today):
            energy, cost = today()
        errors, mismatched = self.decode_error_rates(now)
        fault = getattr(self.storage, "fault_text", None)
        return Inputs(wall=self.clock.time(), grid=grid, broker_down_since=down,
                      decode_errors_per_s=errors, length_mismatches_per_s=mismatched,
                      energy_today_wh=energy, cost_today=cost,
                      storage_fault=fault if isinstance(fault, str) else None)
