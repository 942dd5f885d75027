"""The runner's contract: every job ends in exactly one outcome, stops reach the kernel."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest

from agent.clock import FakeClock, SystemClock
from agent.governor.decision import Decision, Mode
from agent.inference import RunResult
from agent.runner import (
    Cancelled,
    EventToken,
    Job,
    JobOutcome,
    Outcome,
    PowerModel,
    Runner,
    RunnerError,
)
from agent.runner.token import CancelToken

MODEL = PowerModel(watts_per_core=10.0, cores=4)
RUN_ONE = Decision(Mode.RUN, 10.0, ())
RUN_ALL = Decision(Mode.RUN, 40.0, ())
STANDBY = Decision(Mode.STANDBY, 0.0, ())
WAIT_S = 5.0  # a deadline on waiting for a condition, never an expected duration


class Outcomes:
    def __init__(self) -> None:
        self.items: list[JobOutcome] = []
        self._cv = threading.Condition()

    def __call__(self, o: JobOutcome) -> None:
        with self._cv:
            self.items.append(o)
            self._cv.notify_all()

    def wait(self, n: int) -> list[JobOutcome]:
        with self._cv:
            assert self._cv.wait_for(lambda: len(self.items) >= n, WAIT_S), self.items
            return list(self.items)

    def by_id(self) -> dict[str, JobOutcome]:
        with self._cv:
            return {o.job_id: o for o in self.items}


def blocking(started: threading.Event | None = None, exc: type[Exception] = Cancelled
             ) -> Callable[[CancelToken], bytes]:
    """Work that runs until its token is cancelled, then raises `exc`."""
    def work(tok: CancelToken) -> bytes:
        assert isinstance(tok, EventToken)
        if started is not None:
            started.set()
        tok.wait(WAIT_S * 4)
        raise exc("kernel stopped")
    return work


def returns(value: object) -> Callable[[CancelToken], bytes]:
    return lambda tok: value  # type: ignore[return-value]


@pytest.fixture
def make_runner() -> Callable[..., tuple[Runner, Outcomes]]:
    made: list[Runner] = []

    def make(clock: object = None, **kw: object) -> tuple[Runner, Outcomes]:
        out = Outcomes()
        r = Runner(clock or SystemClock(), out, kw.pop("power_model", MODEL),  # type: ignore[arg-type]
                   token_factory=EventToken, **kw)  # type: ignore[arg-type]
        r.start()
        made.append(r)
        return r, out

    yield make
    for r in made:
        r.stop()


def test_job_runs_to_done_under_run_with_its_result_and_energy(make_runner) -> None:
    clock = FakeClock()
    r, out = make_runner(clock)
    gate = threading.Event()

    def work(tok: CancelToken) -> bytes:
        gate.wait(WAIT_S)
        clock.advance(36.0)  # the job "takes" 36 s of the runner's clock
        return b"answer"

    r.set_decision(RUN_ALL)
    assert r.submit(Job("j1", work))
    gate.set()
    [o] = out.wait(1)
    assert (o.outcome, o.result, o.error) == (Outcome.DONE, b"answer", None)
    assert o.duration_s == pytest.approx(36.0)
    assert o.energy_wh == pytest.approx(10.0 * 36.0 / 3600.0)


def test_nothing_starts_until_the_governor_says_run(make_runner) -> None:
    r, out = make_runner()
    assert r.submit(Job("j1", returns(b"x")))
    r.poke()
    assert r.running == [] and r.queued == ["j1"] and out.items == []
    r.set_decision(RUN_ONE)
    assert out.wait(1)[0].outcome is Outcome.DONE


def test_stop_decision_preempts_running_job_before_set_decision_returns(make_runner) -> None:
    r, out = make_runner()
    started = threading.Event()
    r.set_decision(RUN_ALL)
    r.submit(Job("long", blocking(started)))
    assert started.wait(WAIT_S)
    tokens_before = r.running
    r.set_decision(STANDBY)
    [o] = out.wait(1)
    assert tokens_before == ["long"]
    assert o.outcome is Outcome.PREEMPTED and o.result is None
    assert r.stats.preempted == 1 and r.stats.failed == 0


def test_any_exception_after_our_cancel_is_preemption_not_failure(make_runner) -> None:
    r, out = make_runner()
    started = threading.Event()
    r.set_decision(RUN_ALL)
    r.submit(Job("j", blocking(started, exc=RuntimeError)))
    assert started.wait(WAIT_S)
    r.set_decision(Decision(Mode.OFF, 0.0, ()))
    [o] = out.wait(1)
    assert o.outcome is Outcome.PREEMPTED
    assert "RuntimeError" in (o.error or "")


def test_work_that_raises_on_its_own_is_failed(make_runner) -> None:
    r, out = make_runner()
    r.set_decision(RUN_ALL)

    def boom(tok: CancelToken) -> bytes:
        raise ValueError("bad tensor")

    r.submit(Job("bad", boom))
    r.submit(Job("notbytes", returns(42)))
    got = {o.job_id: o for o in out.wait(2)}
    assert got["bad"].outcome is Outcome.FAILED and "bad tensor" in (got["bad"].error or "")
    assert got["notbytes"].outcome is Outcome.FAILED and "int" in (got["notbytes"].error or "")


def test_higher_priority_starts_first_on_one_core(make_runner) -> None:
    r, out = make_runner()
    order: list[str] = []

    def rec(name: str) -> Callable[[CancelToken], bytes]:
        def w(tok: CancelToken) -> bytes:
            order.append(name)
            return b""
        return w

    for name, prio in [("low", 0), ("high", 5), ("mid", 2), ("high2", 5)]:
        r.submit(Job(name, rec(name), priority=prio))
    r.set_decision(RUN_ONE)
    out.wait(4)
    assert order == ["high", "high2", "mid", "low"]


def test_queued_job_past_deadline_expires_without_running(make_runner) -> None:
    clock = FakeClock()
    r, out = make_runner(clock)
    ran = threading.Event()

    def w(tok: CancelToken) -> bytes:
        ran.set()
        return b""

    r.submit(Job("late", w, deadline=clock.monotonic() + 10.0))
    clock.advance(11.0)
    r.poke()
    [o] = out.wait(1)
    assert o.outcome is Outcome.EXPIRED and not ran.is_set()


def test_running_job_past_deadline_is_cancelled_as_expired(make_runner) -> None:
    clock = FakeClock()
    r, out = make_runner(clock)
    started = threading.Event()
    r.set_decision(RUN_ALL)
    r.submit(Job("slow", blocking(started), deadline=clock.monotonic() + 5.0))
    assert started.wait(WAIT_S)
    clock.advance(6.0)
    r.poke()
    [o] = out.wait(1)
    assert o.outcome is Outcome.EXPIRED


def test_full_queue_pushes_back_and_duplicates_are_held_once(make_runner) -> None:
    r, _ = make_runner(max_queue=2)
    assert r.submit(Job("a", returns(b"")))
    assert r.submit(Job("b", returns(b"")))
    assert r.submit(Job("a", returns(b"")))  # already held: accepted once
    assert not r.submit(Job("c", returns(b"")))
    assert (r.stats.rejected_full, r.stats.duplicates) == (1, 1)
    for bad in (Job("", returns(b"")), Job("p", returns(b""), priority="high"),  # type: ignore[arg-type]
                Job("d", returns(b""), deadline=float("nan")), Job("w", "not callable")):  # type: ignore[arg-type]
        with pytest.raises(RunnerError):
            r.submit(bad)


def test_lower_budget_preempts_lowest_priority_running_jobs(make_runner) -> None:
    r, out = make_runner()
    started = {n: threading.Event() for n in ("p0", "p1", "p2")}
    r.set_decision(RUN_ALL)
    for prio, name in enumerate(started):
        r.submit(Job(name, blocking(started[name]), priority=prio))
    assert all(e.wait(WAIT_S) for e in started.values())
    r.set_decision(Decision(Mode.RUN, 20.0, ()))  # two cores
    [o] = out.wait(1)
    assert o.job_id == "p0" and o.outcome is Outcome.PREEMPTED
    assert sorted(r.running) == ["p1", "p2"]


def test_drain_lets_running_jobs_finish_and_starts_none(make_runner) -> None:
    r, out = make_runner()
    started, release = threading.Event(), threading.Event()

    def w(tok: CancelToken) -> bytes:
        started.set()
        release.wait(WAIT_S)
        return b"finished"

    r.set_decision(RUN_ALL)
    r.submit(Job("inflight", w))
    assert started.wait(WAIT_S)
    r.set_decision(Decision(Mode.RUN, 40.0, (), drain=True))
    r.submit(Job("new", returns(b"")))
    [back] = out.wait(1)  # the car is leaving: a queued job goes back to the fleet, unstarted
    assert (back.job_id, back.outcome, back.energy_wh) == ("new", Outcome.PREEMPTED, 0.0)
    release.set()
    [o] = out.wait(2)[1:]
    assert (o.job_id, o.outcome, o.result) == ("inflight", Outcome.DONE, b"finished")
    assert r.wait_idle(WAIT_S) and r.queued == []


def test_stop_hands_back_every_job_exactly_once(make_runner) -> None:
    r, out = make_runner()
    started = threading.Event()
    r.set_decision(RUN_ONE)
    r.submit(Job("running", blocking(started), priority=9))
    assert started.wait(WAIT_S)
    for i in range(5):
        r.submit(Job(f"q{i}", returns(b"")))
    r.stop()
    got = out.wait(6)
    assert sorted(o.job_id for o in got) == ["q0", "q1", "q2", "q3", "q4", "running"]
    assert {o.outcome for o in got} == {Outcome.PREEMPTED}
    assert not r.submit(Job("after", returns(b"")))


def test_a_raising_outcome_consumer_does_not_kill_the_runner() -> None:
    seen = Outcomes()

    def consumer(o: JobOutcome) -> None:
        seen(o)
        raise RuntimeError("consumer bug")

    r = Runner(SystemClock(), consumer, MODEL, token_factory=EventToken)
    r.start()
    try:
        r.set_decision(RUN_ONE)
        r.submit(Job("a", returns(b"")))
        r.submit(Job("b", returns(b"")))
        assert [o.job_id for o in seen.wait(2)] == ["a", "b"]
        assert r.wait_idle(WAIT_S)
        assert r.stats.done == 2
    finally:
        r.stop()
    assert r.stats.callback_errors == 2


def test_fractional_budget_holds_the_queue_for_the_duty_cycle_rest(make_runner) -> None:
    clock = FakeClock()
    r, out = make_runner(clock)
    ran: list[str] = []

    def w(name: str) -> Callable[[CancelToken], bytes]:
        def f(tok: CancelToken) -> bytes:
            ran.append(name)
            clock.advance(4.0)
            return b""
        return f

    r.set_decision(Decision(Mode.RUN, 5.0, ()))  # half a core: duty 0.5
    assert r.allocation.duty == pytest.approx(0.5)
    r.submit(Job("first", w("first"), priority=1))
    r.submit(Job("second", w("second")))
    out.wait(1)
    r.poke()
    assert r.queued == ["second"]  # owes 4 s of rest after 4 s busy
    clock.advance(4.0)
    r.poke()
    assert [o.job_id for o in out.wait(2)] == ["first", "second"]


def test_job_threads_can_run_at_a_lower_priority_than_the_stop_path(make_runner) -> None:
    import os
    r, out = make_runner(job_nice=10)
    seen: list[int] = []

    def w(tok: CancelToken) -> bytes:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return b""

    r.set_decision(RUN_ALL)
    r.submit(Job("nice", w))
    out.wait(1)
    assert seen == [min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)]


def stubborn(started: threading.Event, release: threading.Event) -> Callable[[CancelToken], bytes]:
    """Work that ignores its token (a kernel without cancel checks) until released."""
    def work(tok: CancelToken) -> bytes:
        started.set()
        release.wait(WAIT_S * 4)
        return b"too late"
    return work


def test_a_job_that_ignores_its_cancel_is_handed_back_and_keeps_its_core(make_runner) -> None:
    clock = FakeClock()
    r, out = make_runner(clock, stop_grace_s=2.0)
    started, release = threading.Event(), threading.Event()
    r.set_decision(RUN_ONE)
    r.submit(Job("stuck", stubborn(started, release)))
    assert started.wait(WAIT_S)
    r.set_decision(STANDBY)
    clock.advance(2.5)
    r.poke()
    [o] = out.wait(1)  # reported while its thread is still inside the work
    assert o.outcome is Outcome.PREEMPTED and "did not stop" in (o.error or "")
    assert r.stats.stuck == 1 and r.running == []
    # Its thread still burns the one core the budget allows: nothing else may start.
    r.set_decision(RUN_ONE)
    r.submit(Job("next", returns(b"ok")))
    r.poke()
    assert not r.wait_idle(0.0) and r.queued == ["next"]
    release.set()
    got = out.wait(2)
    assert [x.job_id for x in got] == ["stuck", "next"]  # the late result is dropped, not reported
    assert r.stats.late_returns == 1


def test_stop_hands_back_a_job_that_never_returns(make_runner) -> None:
    r, out = make_runner()
    started, release = threading.Event(), threading.Event()
    r.set_decision(RUN_ONE)
    r.submit(Job("stuck", stubborn(started, release)))
    assert started.wait(WAIT_S)
    r.stop(timeout=0.2)
    [o] = out.wait(1)
    assert o.outcome is Outcome.PREEMPTED and "did not stop" in (o.error or "")
    release.set()


def test_jobs_get_the_engines_token_and_its_cancelled_is_preemption() -> None:
    import numpy as np

    from agent.inference import Cancelled as EngineCancelled
    from agent.inference import CancelToken as EngineToken
    from agent.inference import load_model
    from bench.bench_preempt import conv_model

    model = load_model(conv_model(h=64, w=64, c=32, o=32))
    x = np.zeros(model.inputs[0].shape, dtype=np.int8)
    out, started = Outcomes(), threading.Event()
    seen: list[object] = []

    def work(tok: CancelToken) -> bytes:
        seen.append(tok)
        started.set()
        while True:
            model.run([x], cancel=tok)  # type: ignore[arg-type]

    r = Runner(SystemClock(), out, MODEL)  # default token factory
    r.start()
    try:
        r.set_decision(RUN_ONE)
        r.submit(Job("engine", work))
        assert started.wait(WAIT_S)
        r.set_decision(STANDBY)
        [o] = out.wait(1)
    finally:
        r.stop()
    assert isinstance(seen[0], EngineToken)
    assert o.outcome is Outcome.PREEMPTED and EngineCancelled.__name__ in (o.error or "")


def test_an_engine_run_reaches_the_outcome_with_its_tensor_metadata(make_runner) -> None:
    from agent.inference import load_model
    from agent.inference.models import make_thin_path

    model = load_model(make_thin_path.build())
    x = np.arange(16, dtype=np.int8).reshape(1, 16)
    r, out = make_runner()
    r.set_decision(RUN_ALL)
    assert r.submit(Job("engine", lambda tok: model.run_result([x])))
    [o] = out.wait(1)
    assert o.outcome is Outcome.DONE and isinstance(o.result, RunResult)
    assert [res.spec for res in o.result.outputs] == model.outputs
    assert [a.tobytes() for a in o.result.arrays] == [a.tobytes() for a in model.run([x])]
