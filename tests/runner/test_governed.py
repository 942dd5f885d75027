"""The governed loop: a state change reaches the running job's cancel token; staleness too."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from agent.bus.state import ROLES, StateStore
from agent.clock import FakeClock, SystemClock
from agent.governor import Decision, Governor, Mode, Policy
from agent.governor.policy import Dwell
from agent.runner import EventToken, Job, Outcome, PowerModel, Runner
from agent.runner.governed import GovernedLoop
from agent.runner.token import CancelToken
from tests.governor.world import SAFE
from tests.runner.test_runner import WAIT_S, Outcomes

POLICY = Policy(dwell=Dwell(min_off_s=0.0, min_run_s=0.0))


def fill(store: StateStore, t: float, **over: object) -> None:
    store.set_link(True, "", t)
    for role, v in {**SAFE, **over}.items():
        assert role in ROLES
        store.update(role, v, t)  # type: ignore[arg-type]


def until_cancelled(started: threading.Event) -> object:
    def work(tok: CancelToken) -> bytes:
        started.set()
        assert isinstance(tok, EventToken)
        tok.wait(WAIT_S * 4)
        raise RuntimeError("stopped")
    return work


@contextlib.contextmanager
def job_under_loop(clock: Any, tick_s: float) -> Iterator[tuple[StateStore, GovernedLoop, Outcomes, list[Decision]]]:
    """A safe parked car in a store, the loop and runner started, one job running until cancelled."""
    store, out, changes = StateStore(), Outcomes(), []
    runner = Runner(clock, out, PowerModel(watts_per_core=10, cores=2), token_factory=EventToken)
    loop = GovernedLoop(store, Governor(POLICY), runner, clock, on_change=changes.append, tick_s=tick_s)
    fill(store, clock.monotonic())
    runner.start()
    loop.start()
    try:
        started = threading.Event()
        runner.submit(Job("j", until_cancelled(started)))  # type: ignore[arg-type]
        assert started.wait(WAIT_S)
        yield store, loop, out, changes
    finally:
        loop.stop()
        runner.stop()


def test_a_gear_change_preempts_the_running_job() -> None:
    clock = SystemClock()
    with job_under_loop(clock, tick_s=0.05) as (store, loop, out, changes):
        store.update("gear", "D", clock.monotonic())
        [o] = out.wait(1)
        assert o.outcome is Outcome.PREEMPTED
        assert loop.last is not None and "not_parked" in loop.last.codes
        assert [d.mode for d in changes][:1] == [Mode.RUN] and changes[-1].mode is Mode.STANDBY


def test_readings_that_stop_arriving_stop_compute_on_the_tick() -> None:
    clock = FakeClock()
    with job_under_loop(clock, tick_s=0.01) as (_, loop, out, _changes):
        clock.advance(POLICY.max_input_age_s + 0.5)  # the bus went quiet; nothing is written
        [o] = out.wait(1)
        assert o.outcome is Outcome.PREEMPTED and "stale_input" in loop.last.codes  # type: ignore[union-attr]


def test_a_raising_change_callback_is_counted_and_the_loop_goes_on() -> None:
    clock = FakeClock()
    store = StateStore()
    fill(store, clock.monotonic())
    runner = Runner(clock, Outcomes(), token_factory=EventToken)

    def bad(d: Decision) -> None:
        raise ValueError("dashboard bug")

    loop = GovernedLoop(store, Governor(POLICY), runner, clock, on_change=bad)
    assert loop.step().mode is Mode.RUN
    store.update("driver_present", True, clock.monotonic())
    assert loop.step().mode is Mode.STANDBY
    assert loop.callback_errors == 2 and runner.decision.mode is Mode.STANDBY
