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


def test_inputs_feed_turns_counters_and_link_state_into_inputs(tmp_path: Any) -> None:
    from types import SimpleNamespace

    from agent.governor import GridSignal
    from agent.governor.policy import Policy as P
    from agent.ledger import Ledger, LedgerSink
    from agent.runner.governed import InputsFeed

    # The public surfaces the feed reads: BusReader.counters and FleetLink.connected.
    reader = SimpleNamespace(counters={"decode_errors": 0})
    link = SimpleNamespace(connected=True)
    clock = FakeClock()
    with Ledger(tmp_path / "l.sqlite") as led:
        feed = InputsFeed(clock, reader=reader, link=link, ledger=LedgerSink(led, clock, P()))
        assert feed().decode_errors_per_s == 0.0 and feed().broker_down_since is None
        clock.advance(5.0)
        reader.counters = {"decode_errors": 50}
        link.connected = False
        got = feed()
        assert got.decode_errors_per_s == 10.0 and got.broker_down_since == clock.monotonic()
        clock.advance(3.0)
        assert feed().broker_down_since == clock.monotonic() - 3.0  # since it went down, not now
        feed.set_grid(GridSignal(t=clock.monotonic(), price_per_kwh=0.5))
        assert feed().grid is not None and feed().energy_today_wh == 0.0
        d = Governor(POLICY).decide(StateStore().snapshot(), clock.monotonic(), feed())
        assert d.mode is Mode.OFF  # no link yet, and 10 decode errors/s over the limit


def test_a_failing_governor_stops_compute_and_says_why() -> None:
    clock = SystemClock()
    with job_under_loop(clock, tick_s=0.02) as (_store, loop, out, _changes):
        def broken(*_: object, **__: object) -> Decision:
            raise ZeroDivisionError("a bug in a rule")
        loop.governor.decide = broken  # type: ignore[method-assign]
        [o] = out.wait(1)
        assert o.outcome is Outcome.PREEMPTED
        assert loop.step_errors >= 1
        assert loop.runner.decision.mode is Mode.OFF
        assert "internal_error" in loop.runner.decision.codes
