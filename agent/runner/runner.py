"""The job runner: a priority queue with deadlines, run within the governor's power budget.

Owns the threads that run jobs. The governor's Decision is the only switch: RUN lets jobs
start (as many at once as the power model allows for the budget), a draining RUN lets running
jobs finish but starts none, anything else cancels every running job through its cancel token
and holds the queue. Draining and OFF also hand queued jobs back (PREEMPTED): the car is
leaving, or cannot compute, and the fleet can run them elsewhere. Cancelling happens in the caller's thread, inside `set_decision`, so a
stop reaches the kernels without waiting for the dispatcher.

Every job submitted ends in exactly one JobOutcome: DONE, PREEMPTED (handed back, the caller
may requeue it), FAILED (the work itself raised) or EXPIRED (its deadline passed). A job the
runner cancelled is PREEMPTED whatever exception the kernel raised on its way out: stopping is
our decision, not the job's failure.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.clock import Clock
from agent.governor.decision import Decision, Mode
from agent.inference.model import RunResult
from agent.runner.power import Allocation, PowerModel
from agent.runner.token import CancelToken, TokenFactory, default_token_factory

log = logging.getLogger(__name__)


class RunnerError(ValueError):
    """A job the runner cannot accept (bad id, no callable, bad deadline)."""


class Outcome(enum.Enum):
    DONE = "done"
    PREEMPTED = "preempted"  # stopped or never started by our decision; safe to requeue
    FAILED = "failed"  # the work raised on its own
    EXPIRED = "expired"  # the deadline passed before it could finish


@dataclass(frozen=True)
class Job:
    job_id: str
    work: Callable[[CancelToken], bytes | RunResult]  # an engine run returns its RunResult
    priority: int = 0  # higher runs first
    deadline: float | None = None  # monotonic seconds, on the runner's clock


@dataclass(frozen=True)
class JobOutcome:
    job_id: str
    outcome: Outcome
    result: bytes | RunResult | None  # what the work returned (None unless DONE)
    error: str | None
    started: float  # monotonic seconds; equal to ended for a job that never started
    ended: float
    energy_wh: float

    @property
    def duration_s(self) -> float:
        return max(0.0, self.ended - self.started)


@dataclass
class RunnerStats:
    submitted: int = 0
    rejected_full: int = 0
    duplicates: int = 0
    done: int = 0
    preempted: int = 0
    failed: int = 0
    expired: int = 0
    callback_errors: int = 0
    stuck: int = 0  # cancelled jobs that did not return within stop_grace_s: handed back anyway
    late_returns: int = 0  # stuck jobs whose thread finally returned (their result is dropped)


@dataclass
class _Running:
    job: Job
    token: CancelToken
    started: float
    seq: int
    cancel_as: Outcome | None = None
    cancelled_at: float | None = None
    thread: threading.Thread | None = field(default=None, repr=False)


_STANDBY = Decision(Mode.STANDBY, 0.0, ())


def _lower_priority(nice: int) -> None:
    """Make the calling job thread yield the CPU to the bus reader and the governor.

    On Linux a thread's id names it for setpriority, so this lowers this thread only; raising
    niceness needs no privilege. Off by default (job_nice=0): a niced job thread that is
    descheduled while it holds the GIL (between kernel calls) stalls every Python thread of
    the agent, the bus reader included, for as long as busier processes keep it off the CPU,
    and a sleeping reader already preempts CPU-bound compute on wake-up under CFS.
    """
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (OSError, ValueError, OverflowError):
        pass  # a priority we cannot lower is a slower stop, not a reason to lose the job


class Runner:
    """Runs jobs within the governor's power budget; see the module docstring for the contract."""

    def __init__(
        self,
        clock: Clock,
        on_outcome: Callable[[JobOutcome], None],
        power_model: PowerModel | None = None,
        *,
        max_queue: int = 256,
        token_factory: TokenFactory | None = None,
        poll_s: float = 0.05,
        job_nice: int = 0,
        stop_grace_s: float = 2.0,
        on_power: Callable[[float, float], None] | None = None,
    ) -> None:
        if max_queue < 1:
            raise RunnerError("max_queue must be >= 1")
        self._clock = clock
        self._on_outcome = on_outcome
        self._model = power_model or PowerModel.default()
        self._max_queue = max_queue
        self._new_token = token_factory or default_token_factory()
        self._poll_s = poll_s
        self._job_nice = job_nice
        self._stop_grace_s = stop_grace_s
        # Told (compute power by the power model, monotonic time) at every change of busy cores,
        # with the same times the jobs' energy is reckoned from, for a meter.
        self._on_power = on_power
        self._cv = threading.Condition()
        self._heap: list[tuple[int, float, int, Job]] = []
        self._queued_ids: set[str] = set()
        self._running: dict[str, _Running] = {}
        # Cancelled jobs that overran stop_grace_s: reported and handed back, but their threads
        # still hold a core until they return, so they still count against the allocation.
        self._stuck: dict[int, _Running] = {}
        self._seq = itertools.count()
        self._decision: Decision = _STANDBY
        self._alloc = Allocation(0, 0.0)
        self._hold_until = -math.inf  # duty cycle: no new start before this monotonic time
        self._started = False
        self._stopping = False
        self._dispatcher: threading.Thread | None = None
        self._workers: set[threading.Thread] = set()  # alive until their outcome is reported
        self.stats = RunnerStats()

    # -- public API ---------------------------------------------------------------------------

    def start(self) -> None:
        with self._cv:
            if self._started:
                return
            self._started = True
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="runner-dispatch",
                                            daemon=True)
        self._dispatcher.start()

    def submit(self, job: Job) -> bool:
        """Queue a job. False when the queue is full (backpressure) or the runner has stopped.

        A job id already queued or running is accepted once only: True, and counted as a
        duplicate (at-least-once delivery repeats jobs).
        """
        if not isinstance(job.job_id, str) or not job.job_id:
            raise RunnerError("job_id must be a non-empty string")
        if not callable(job.work):
            raise RunnerError(f"job {job.job_id!r}: work is not callable")
        if isinstance(job.priority, bool) or not isinstance(job.priority, int):
            raise RunnerError(f"job {job.job_id!r}: priority must be an integer")
        if job.deadline is not None and (isinstance(job.deadline, bool)
                                         or not isinstance(job.deadline, (int, float))
                                         or not math.isfinite(job.deadline)):
            raise RunnerError(f"job {job.job_id!r}: deadline must be a finite number")
        with self._cv:
            if self._stopping:
                return False
            if job.job_id in self._queued_ids or job.job_id in self._running:
                self.stats.duplicates += 1
                return True
            if len(self._heap) >= self._max_queue:
                self.stats.rejected_full += 1
                return False
            deadline = job.deadline if job.deadline is not None else math.inf
            heapq.heappush(self._heap, (-job.priority, deadline, next(self._seq), job))
            self._queued_ids.add(job.job_id)
            self.stats.submitted += 1
            self._cv.notify_all()
        return True

    def set_decision(self, decision: Decision) -> None:
        """Apply the governor's decision now. Cancels running jobs before returning."""
        with self._cv:
            self._decision = decision
            if decision.mode is Mode.RUN:
                self._alloc = self._model.allocate(decision.power_budget_w)
            else:
                self._alloc = Allocation(0, 0.0)
            excess = min(len(self._running), self._busy() - self._alloc.threads)
            if excess > 0:
                # Keep the most valuable work: drop the lowest priority, the latest started first.
                victims = sorted(self._running.values(),
                                 key=lambda r: (r.job.priority, -r.seq))[:excess]
                for r in victims:
                    self._cancel(r, Outcome.PREEMPTED)
            self._cv.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel running jobs, hand back queued ones (PREEMPTED), and end the threads."""
        with self._cv:
            self._stopping = True
            for r in list(self._running.values()):
                self._cancel(r, Outcome.PREEMPTED)
            handed_back = [entry[3] for entry in sorted(self._heap)]
            self.stats.preempted += len(handed_back)
            self._heap.clear()
            self._queued_ids.clear()
            self._cv.notify_all()
        now = self._clock.monotonic()
        for job in handed_back:
            self._report(JobOutcome(job.job_id, Outcome.PREEMPTED, None,
                                    "runner stopped before the job started", now, now, 0.0))
        with self._cv:
            workers = list(self._workers)
        end = time.monotonic() + timeout
        for t in workers:
            t.join(max(0.0, end - time.monotonic()))
        with self._cv:  # whatever ignored its cancel until now is handed back, not lost
            leftovers = self._hand_back_stuck(self._clock.monotonic(), force=True)
        for outcome in leftovers:
            self._report(outcome)
        if self._dispatcher is not None:
            self._dispatcher.join(max(0.0, end - time.monotonic()))

    def poke(self) -> None:
        """Wake the dispatcher now (after a fake clock moved, for instance)."""
        with self._cv:
            self._cv.notify_all()

    @property
    def decision(self) -> Decision:
        with self._cv:
            return self._decision

    @property
    def allocation(self) -> Allocation:
        with self._cv:
            return self._alloc

    @property
    def queued(self) -> list[str]:
        """Ids of the jobs waiting, in the order they would start."""
        with self._cv:
            return [entry[3].job_id for entry in sorted(self._heap)]

    @property
    def running(self) -> list[str]:
        """Ids of the jobs running now (empty, hence false, when nothing runs)."""
        with self._cv:
            return list(self._running)

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing runs (queued jobs may remain); True if that happened in time."""
        with self._cv:
            return self._cv.wait_for(lambda: self._busy() == 0, timeout)

    # -- internals ----------------------------------------------------------------------------

    def _busy(self) -> int:
        """Threads holding a core: running jobs and stuck ones."""
        return len(self._running) + len(self._stuck)

    def _cancel(self, r: _Running, as_outcome: Outcome) -> None:
        if r.cancel_as is None:
            r.cancel_as = as_outcome
            r.cancelled_at = self._clock.monotonic()
        r.token.cancel()

    def _hand_back_stuck(self, now: float, force: bool = False) -> list[JobOutcome]:
        """Report cancelled jobs that overran the grace time (all cancelled ones if force)."""
        out = []
        for r in list(self._running.values()):
            if r.cancel_as is None or r.cancelled_at is None:
                continue
            if not force and now - r.cancelled_at < self._stop_grace_s:
                continue
            del self._running[r.job.job_id]
            self._stuck[id(r)] = r
            self.stats.stuck += 1
            counter = r.cancel_as.value
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
            out.append(JobOutcome(
                r.job.job_id, r.cancel_as, None,
                f"did not stop within {now - r.cancelled_at:.1f} s of its cancel: handed back",
                r.started, now, self._model.job_energy_wh(now - r.started)))
        return out

    def _power_changed(self, at: float) -> None:
        """Called under the lock whenever a core starts or stops being busy, at `at`."""
        if self._on_power is None:
            return
        try:
            self._on_power(self._model.power_w(self._busy()), at)
        except Exception:  # a broken meter must not stop a job
            self.stats.callback_errors += 1
            log.exception("on_power raised")

    def _may_start(self, now: float) -> bool:
        return (
            not self._stopping
            and self._decision.mode is Mode.RUN
            and not getattr(self._decision, "drain", False)
            and self._busy() < self._alloc.threads
            and now >= self._hold_until
            and bool(self._heap)
        )

    def _dispatch_loop(self) -> None:
        expired: list[JobOutcome] = []
        while True:
            with self._cv:
                if self._stopping:
                    return
                now = self._clock.monotonic()
                expired = self._expire(now) + self._hand_back_queued(now)
                while self._may_start(now):
                    _, _, seq, job = heapq.heappop(self._heap)
                    self._queued_ids.discard(job.job_id)
                    self._launch(job, seq, now)
                if not expired:
                    self._cv.wait(self._poll_s)
            for outcome in expired:
                self._report(outcome)

    def _hand_back_queued(self, now: float) -> list[JobOutcome]:
        """Queued jobs go back to the fleet when the car is leaving (a draining RUN) or cannot
        compute at all (OFF): held here they would wait for a car that is driving away."""
        if not self._heap or not (self._decision.mode is Mode.OFF or getattr(self._decision, "drain", False)):
            return []
        jobs = [entry[3] for entry in sorted(self._heap)]
        self._heap.clear()
        self._queued_ids.clear()
        self.stats.preempted += len(jobs)
        why = "the car is leaving" if getattr(self._decision, "drain", False) else "the car cannot compute now"
        return [JobOutcome(j.job_id, Outcome.PREEMPTED, None, f"{why}: handed back before it started",
                           now, now, 0.0) for j in jobs]

    def _expire(self, now: float) -> list[JobOutcome]:
        """Queued jobs past their deadline leave as EXPIRED; running ones are cancelled so."""
        out: list[JobOutcome] = []
        if any(entry[1] <= now for entry in self._heap):
            keep = []
            for entry in self._heap:
                if entry[1] <= now:
                    job = entry[3]
                    self._queued_ids.discard(job.job_id)
                    self.stats.expired += 1
                    out.append(JobOutcome(job.job_id, Outcome.EXPIRED, None,
                                          "deadline passed before the job started", now, now, 0.0))
                else:
                    keep.append(entry)
            heapq.heapify(keep)
            self._heap = keep
        for r in self._running.values():
            if r.job.deadline is not None and r.job.deadline <= now:
                self._cancel(r, Outcome.EXPIRED)
        return out + self._hand_back_stuck(now)

    def _launch(self, job: Job, seq: int, now: float) -> None:
        r = _Running(job, self._new_token(), now, seq)
        t = threading.Thread(target=self._work, args=(r,), name=f"job-{job.job_id[:32]}",
                             daemon=True)
        r.thread = t
        self._running[job.job_id] = r
        self._workers.add(t)
        self._power_changed(now)
        t.start()

    def _work(self, r: _Running) -> None:
        result: bytes | RunResult | None = None
        error: str | None = None
        raised = False
        _lower_priority(self._job_nice)
        try:
            value = r.job.work(r.token)
            if isinstance(value, RunResult):
                result = value
            elif isinstance(value, (bytes, bytearray, memoryview)):
                result = bytes(value)
            else:
                raised = True
                error = f"work returned {type(value).__name__}, not bytes or a RunResult"
        except Exception as e:  # noqa: BLE001 -- outside code: whatever it raises ends this job only
            raised = True
            error = f"{type(e).__name__}: {e}"
        with self._cv:
            # Read under the lock, as launches read theirs: the times of busy-core changes then
            # come in order, so a power meter integrates exactly what the jobs are charged.
            ended = self._clock.monotonic()
            if self._stuck.pop(id(r), None) is not None:  # already handed back: drop the result
                self.stats.late_returns += 1
                self._power_changed(ended)
                self._workers.discard(threading.current_thread())
                self._cv.notify_all()
                return
            del self._running[r.job.job_id]
            self._power_changed(ended)
            if not raised:
                outcome = Outcome.DONE
            elif r.cancel_as is not None:
                outcome = r.cancel_as
                result = None
            else:
                outcome = Outcome.FAILED
            busy = max(0.0, ended - r.started)
            duty = self._alloc.duty
            if 0.0 < duty < 1.0:
                # One core busy for `busy` seconds at duty d owes busy*(1-d)/d seconds of rest.
                self._hold_until = max(self._hold_until, ended + busy * (1.0 - duty) / duty)
            counter = outcome.value
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)
            self._cv.notify_all()
        try:
            self._report(JobOutcome(r.job.job_id, outcome, result, error, r.started, ended,
                                    self._model.job_energy_wh(busy)))
        finally:
            with self._cv:
                self._workers.discard(threading.current_thread())

    def _report(self, outcome: JobOutcome) -> None:
        try:
            self._on_outcome(outcome)
        except Exception:  # a broken consumer must not kill a worker or the dispatcher
            with self._cv:
                self.stats.callback_errors += 1
            log.exception("on_outcome raised for job %s", outcome.job_id)
