"""The runner's contract under random interleavings (hypothesis state machine, real threads).

Jobs are submitted, released (to finish or fail), overtaken by deadlines, while the governor's
decision flips between RUN on 1-3 cores, draining, STANDBY and OFF. Checked throughout: no job
starts outside RUN (unless it is already being cancelled); never more uncancelled jobs at once
than the allocation's cores. Checked at the end, after stop(): every accepted job ended in
exactly one outcome, and a job the runner cancelled was never reported FAILED.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from agent.clock import FakeClock
from agent.governor.decision import Decision, Mode
from agent.runner import Cancelled, EventToken, Job, JobOutcome, Outcome, PowerModel, Runner

MODEL = PowerModel(watts_per_core=10.0, cores=3)
DECISIONS = [Decision(Mode.RUN, 10.0, ()), Decision(Mode.RUN, 20.0, ()), Decision(Mode.RUN, 30.0, ()),
             Decision(Mode.RUN, 30.0, (), drain=True), Decision(Mode.STANDBY, 0.0, ()),
             Decision(Mode.OFF, 0.0, ())]
WAIT_S = 5.0


class RunnerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.cv = threading.Condition()
        self.outcomes: list[JobOutcome] = []
        self.runner = Runner(self.clock, self._on_outcome, MODEL, token_factory=EventToken,
                             poll_s=0.005)
        self.runner.start()
        self.accepted: list[str] = []
        self.release: dict[str, threading.Event] = {}
        self.fail: set[str] = set()
        self.bad_starts: list[str] = []
        self.live: set[EventToken] = set()
        self.n = 0

    def _on_outcome(self, o: JobOutcome) -> None:
        with self.cv:
            self.outcomes.append(o)
            self.cv.notify_all()

    def _work(self, job_id: str) -> Any:
        def work(tok: EventToken) -> bytes:
            d = self.runner.decision  # after any cancel that came with it (one lock)
            with self.cv:
                self.live.add(tok)
            try:
                if not tok.cancelled and d.mode is not Mode.RUN:
                    self.bad_starts.append(job_id)
                while not self.release[job_id].is_set():
                    if tok.wait(0.001):
                        raise Cancelled("stopped")
                if job_id in self.fail:
                    raise ValueError("bad input")
                return b"ok"
            finally:
                with self.cv:
                    self.live.discard(tok)
        return work

    @rule(priority=st.integers(-2, 2), deadline=st.one_of(st.none(), st.floats(0.5, 30.0)),
          fail=st.booleans())
    def submit(self, priority: int, deadline: float | None, fail: bool) -> None:
        self.n += 1
        job_id = f"j{self.n}"
        self.release[job_id] = threading.Event()
        if fail:
            self.fail.add(job_id)
        dl = None if deadline is None else self.clock.monotonic() + deadline
        if self.runner.submit(Job(job_id, self._work(job_id), priority, dl)):
            self.accepted.append(job_id)

    @rule(i=st.integers(0, len(DECISIONS) - 1))
    def decide(self, i: int) -> None:
        self.runner.set_decision(DECISIONS[i])

    @rule(k=st.integers(0, 50))
    def finish_one(self, k: int) -> None:
        running = self.runner.running
        if running:
            self.release[running[k % len(running)]].set()

    @rule(dt=st.floats(0.1, 20.0))
    def time_passes(self, dt: float) -> None:
        self.clock.advance(dt)
        self.runner.poke()

    @rule()
    def settle(self) -> None:
        time.sleep(0.01)  # let the dispatcher act on what just happened

    @invariant()
    def starts_only_when_allowed_and_within_the_cores(self) -> None:
        # Only this thread changes the decision, so the allocation is fixed while we look;
        # jobs the runner has cancelled are on their way out and hold no allocation.
        assert not self.bad_starts, self.bad_starts
        with self.cv:
            active = sum(1 for t in self.live if not t.cancelled)
        assert active <= self.runner.allocation.threads

    def teardown(self) -> None:
        for ev in self.release.values():
            ev.set()
        self.runner.stop(timeout=WAIT_S)
        with self.cv:
            assert self.cv.wait_for(lambda: len(self.outcomes) >= len(self.accepted), WAIT_S)
            ids = [o.job_id for o in self.outcomes]
        assert sorted(ids) == sorted(self.accepted), "every job exactly once"
        for o in self.outcomes:
            if o.outcome is Outcome.FAILED:
                assert o.job_id in self.fail and "bad input" in (o.error or "")
            if o.outcome is Outcome.DONE:
                assert o.result == b"ok"


RunnerMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestRunnerMachine = RunnerMachine.TestCase
