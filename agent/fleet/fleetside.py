"""The fleet side of the link: see which cars can compute, send them work, collect every result.

`FleetClient` holds one MQTT 5 session for a dispatcher or a dashboard. It keeps the table of
cars from their retained state, and, for a submitter, runs tasks to completion:

- each task is sent as `redundancy` replicas through the pool's shared subscription, so the
  broker picks the cars; replicas of one task must come from different cars (a replica that
  lands on a car that already answered the task is sent again with that car excluded);
- a replica whose car answers "preempted", or which times out, goes out again as a new attempt
  (new job id), so every task completes while any car is available; work is only sent while at
  least one car says it accepts jobs, since the broker discards a message nobody subscribes to;
- every result is acknowledged to the car (that empties its outbox), duplicates included, and
  handed up once: at-least-once delivery on the wire, exactly once at the consumer;
- when all replicas are in, their output bytes are compared and a mismatch is flagged.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Self

import numpy as np
import paho.mqtt.client as paho

from agent.clock import Clock, SystemClock
from agent.fleet import protocol as p
from agent.fleet.models import chunks_of
from agent.fleet.mqtt import MqttSession, TlsConfig, publish_props, wait_until

log = logging.getLogger(__name__)

SEEN_JOBS = 100_000  # job ids remembered for the exactly-once hand-up


@dataclass
class Replica:
    index: int
    attempt: int = 0
    job_id: str = ""
    sent_at: float | None = None  # monotonic; None while waiting for an available car
    not_before: float = 0.0  # monotonic: a resend after a refusal waits a little
    exclude: set[str] = field(default_factory=set)
    done: bool = False
    car: str | None = None
    outputs: list[np.ndarray] = field(default_factory=list)
    output_bytes: bytes = b""


@dataclass
class Task:
    task_id: str
    model: p.ModelRef
    inputs: list[np.ndarray]
    redundancy: int
    max_run_s: float
    replicas: list[Replica]
    status: str = "pending"  # pending | ok | mismatch | rejected | failed
    error: str | None = None
    attempts: int = 0

    @property
    def finished(self) -> bool:
        return self.status != "pending"

    @property
    def cars(self) -> list[str]:
        return [r.car for r in self.replicas if r.car is not None]

    @property
    def outputs(self) -> list[np.ndarray]:
        return self.replicas[0].outputs if self.replicas and self.replicas[0].done else []


@dataclass(frozen=True)
class Delivery:
    """One result as the consumer receives it (exactly once per job id)."""

    result: p.JobResult
    duplicate_count: int = 0


class FleetClient:
    """A fleet-side MQTT session: the cars table, and (with a submitter id) task dispatch."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        submitter: str | None = None,
        pool: str = "default",
        tls: TlsConfig | None = None,
        clock: Clock | None = None,
        client_id: str | None = None,
        job_timeout_s: float = 30.0,
        max_attempts: int = 20,
        persistent: bool | None = None,
        session_expiry_s: int = 3600,
        watch_telemetry: bool = False,
        watch_results: bool = False,
    ) -> None:
        self.submitter = p.check_id("submitter", submitter) if submitter else None
        self.pool = p.check_id("pool", pool)
        self.clock = clock or SystemClock()
        self.job_timeout_s = job_timeout_s
        self.max_attempts = max_attempts
        self.counters: Counter[str] = Counter()
        self.cars: dict[str, p.CarState] = {}
        self.telemetry: dict[str, dict[str, object]] = {}
        self.errors: list[p.ErrorReply] = []
        self.tasks: dict[str, Task] = {}
        self.deliveries: list[Delivery] = []  # every first arrival of a job id, in order
        self.completed: list[str] = []  # task ids as they finish, each once: the consumer's view
        # Job ids already handed up, newest last: bounded, since a resend older than this window
        # still finds its replica done (results_late) and is not handed up again.
        self._seen_jobs: OrderedDict[str, None] = OrderedDict()
        self._job_index: dict[str, tuple[str, int]] = {}  # job id -> (task, replica)
        self._cond = threading.Condition(threading.RLock())
        self._watch_telemetry = watch_telemetry
        self._watch_results = watch_results
        # Results seen passively (a watcher): never acknowledged, only shown; the newest last.
        self.seen_results: deque[tuple[str, str, str, float | None]] = deque(maxlen=50)
        self._closing = threading.Event()
        self._pumper: threading.Thread | None = None
        # A submitter keeps its session across disconnects: results published while it is away
        # wait at the broker (the cars' outboxes would resend them anyway).
        persistent = bool(self.submitter) if persistent is None else persistent
        self.session = MqttSession(
            client_id or (f"fleet-{self.submitter}" if self.submitter else f"watch-{secrets.token_hex(4)}"),
            host, port, tls=tls, clean_start=not persistent,
            session_expiry_s=session_expiry_s if persistent else 0,
            on_connect=self._on_connect, on_message=self._on_message, clock=self.clock)

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.session.start()
        if self.submitter:
            self._pumper = threading.Thread(target=self._pump_loop, name="fleet-dispatch", daemon=True)
            self._pumper.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        if self._pumper is not None:
            self._pumper.join(timeout=5)
        self.session.stop()

    def _pump_loop(self) -> None:
        """Dispatch in the background: on every change (result, state) and every 0.2 s."""
        while not self._closing.is_set():
            try:
                self.pump()
            except Exception:  # keep dispatching whatever one bad task does
                self.counters["dispatch_errors"] += 1
                log.exception("dispatch")
            with self._cond:
                self._cond.wait(0.2)

    def wait_connected(self, timeout: float) -> bool:
        return self.session.wait_connected(timeout)

    # -- the cars table -------------------------------------------------------------------------

    def available(self) -> list[p.CarState]:
        with self._cond:
            return [c for c in self.cars.values()
                    if c.online and c.mode == "RUN" and c.accepting_jobs and c.pool == self.pool]

    def totals(self) -> dict[str, float]:
        av = self.available()
        with self._cond:
            online = sum(1 for c in self.cars.values() if c.online)
        return {"cars": len(self.cars), "cars_online": online, "cars_available": len(av),
                "kw_available": round(sum(c.available_w for c in av) / 1000.0, 3)}

    def car_states(self) -> list[p.CarState]:
        with self._cond:
            return sorted(self.cars.values(), key=lambda c: c.car)

    @property
    def states_received(self) -> int:
        return self.counters["states"]

    def wait_states(self, seen: int, timeout: float) -> int:
        """Block until more than `seen` state messages arrived (or timeout); returns the count."""
        with self._cond:
            self._cond.wait_for(lambda: self.counters["states"] != seen, timeout)
            return self.counters["states"]

    def wait_for(self, predicate: Callable[[FleetClient], bool], timeout: float) -> bool:
        """Wait until predicate(self) holds or `timeout` passes. Re-checked on every message and
        at least every 0.1 s, since a predicate may look at things this client is not told of."""
        return wait_until(self._cond, lambda: predicate(self), timeout)

    # -- dispatch -------------------------------------------------------------------------------

    def submit(self, task_id: str, model: p.ModelRef, inputs: Sequence[np.ndarray],
               redundancy: int = 1, max_run_s: float = 60.0) -> Task:
        if self.submitter is None:
            raise RuntimeError("a FleetClient needs a submitter id to submit work")
        p.check_job_id(task_id)
        if not 1 <= redundancy <= 8:
            raise ValueError("redundancy must be within 1..8")
        task = Task(task_id, model, list(inputs), redundancy, max_run_s,
                    [Replica(i) for i in range(redundancy)])
        with self._cond:
            if task_id in self.tasks:
                raise ValueError(f"task {task_id!r} submitted twice")
            self.tasks[task_id] = task
        self.pump()
        return task

    def pump(self) -> None:
        """Send what is waiting and resend what timed out (the dispatch thread calls this)."""
        now = self.clock.monotonic()
        to_send: list[tuple[Task, Replica]] = []
        with self._cond:
            available = self.available()
            if not self.session.connected or not available:
                return
            # Credit-based flow control: no more jobs in flight than the available cars
            # advertise they take at once (their queues), so none is refused for a full queue.
            in_flight = sum(1 for t in self.tasks.values() if not t.finished for r in t.replicas
                            if not r.done and r.sent_at is not None
                            and now - r.sent_at < self.job_timeout_s)
            credit = sum(max(1, c.capacity) for c in available) - in_flight
            for task in self.tasks.values():
                if task.finished:
                    continue
                for r in task.replicas:
                    if r.done or now < r.not_before:
                        continue
                    if r.sent_at is not None and now - r.sent_at < self.job_timeout_s:
                        continue
                    if credit <= 0:
                        break
                    credit -= 1
                    if r.sent_at is not None:
                        self.counters["attempts_timed_out"] += 1
                    if task.attempts >= self.max_attempts * task.redundancy:
                        task.status, task.error = "failed", "no car finished it within the attempts"
                        break
                    to_send.append((task, r))
            for task, r in to_send:
                r.attempt += 1
                task.attempts += 1
                r.job_id = f"{task.task_id}.r{r.index}.a{r.attempt}"
                r.sent_at = now
                self._job_index[r.job_id] = (task.task_id, r.index)
            self._cond.notify_all()
        for task, r in to_send:
            others = {o.car for o in task.replicas if o is not r and o.car is not None}
            job = p.JobRequest(r.job_id, self.submitter or "", task.model, task.inputs,
                               task.max_run_s, tuple(sorted(others | r.exclude)), task.task_id)
            self.session.publish(p.Topics.jobs(self.pool), job.encode(), p.QOS_JOB, False,
                                 publish_props(expiry_s=max(1, int(self.job_timeout_s)),
                                               correlation=r.job_id.encode(),
                                               content_type=p.CT_JOB,
                                               user=[(p.SCHEMA_PROPERTY, "job/1")]))
            self.counters["jobs_sent"] += 1

    def publish_grid(self, signal: p.GridMessage) -> None:
        """Tell the pool's cars what the grid asks now (retained, expiring with the signal), and
        wait until the broker has it."""
        info = self.session.publish(p.Topics.grid(self.pool), signal.encode(), p.QOS_GRID, True,
                                    publish_props(expiry_s=max(1, int(signal.valid_s)), content_type=p.CT_JSON,
                                                  user=[(p.SCHEMA_PROPERTY, "grid/1")]))
        if info is None:
            raise RuntimeError("the broker connection did not take the grid signal")
        info.wait_for_publish(30)

    def publish_model(self, model: bytes, signed: p.SignedManifest) -> None:
        """Offer a model to the cars: its signed manifest and its chunks, retained, so a car
        that needs it subscribes and gets it whenever it comes. Blocks until the broker has it."""
        m = signed.manifest
        infos = [self.session.publish(p.Topics.model_manifest(m.sha256), signed.encode(), p.QOS_MODEL,
                                      True, publish_props(content_type=p.CT_JSON,
                                                          user=[(p.SCHEMA_PROPERTY, "manifest/1")]))]
        for i, chunk in enumerate(chunks_of(model, m.chunk_size)):
            infos.append(self.session.publish(p.Topics.model_chunk(m.sha256, i), chunk, p.QOS_MODEL,
                                              True, publish_props(content_type=p.CT_CHUNK)))
        for info in infos:
            if info is None:
                raise RuntimeError("the broker connection did not take the model")
            info.wait_for_publish(60)

    def wait(self, timeout: float, task_ids: Sequence[str] | None = None) -> bool:
        """Run dispatch until the tasks (default: all) finish or `timeout` real seconds pass."""
        deadline = time.monotonic() + timeout
        ids = list(task_ids) if task_ids is not None else None
        while True:
            with self._cond:
                tasks = [self.tasks[i] for i in ids] if ids is not None else list(self.tasks.values())
                if all(t.finished for t in tasks):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))

    # -- callbacks (network thread) -------------------------------------------------------------

    def _on_connect(self, session_present: bool) -> None:
        self.session.subscribe(p.Topics.ALL_STATES, 1)
        if self._watch_telemetry:
            self.session.subscribe(p.Topics.ALL_TELEMETRY, 0)
        if self._watch_results and not self.submitter:
            # QoS 0 and no ack: a watcher must never take a result from its submitter's car outbox.
            self.session.subscribe(p.Topics.ALL_RESULTS, 0)
        if self.submitter:
            self.session.subscribe(p.Topics.all_results(self.submitter), 1)
            self.session.subscribe(p.Topics.ALL_ERRORS, 1)

    def _on_message(self, msg: paho.MQTTMessage) -> None:
        try:
            car, kind = p.Topics.parse_car_topic(msg.topic)
        except p.ProtocolError:
            self.counters["bad_topic"] += 1
            return
        try:
            if kind == "state":
                self._on_state(car, msg)
            elif kind == "telemetry":
                t = p.Telemetry.decode(bytes(msg.payload))
                with self._cond:
                    self.telemetry.setdefault(car, {}).update(t.fields)
                    self._cond.notify_all()
            elif kind == "results" and not self.submitter:
                res = p.JobResult.decode(bytes(msg.payload))
                with self._cond:
                    self.seen_results.append((car, res.job_id, res.outcome, res.run_s))
                    self.counters["results_seen"] += 1
                    self._cond.notify_all()
            elif kind == "results":
                self._on_result(car, msg)
            elif kind == "errors":
                e = p.ErrorReply.decode(bytes(msg.payload))
                with self._cond:
                    self.errors.append(e)
                    self.counters["error_replies"] += 1
                    self._cond.notify_all()
        except p.ProtocolError as e:
            self.counters[f"invalid_{kind}"] += 1
            log.warning("invalid %s from %s: %s", kind, car, e)
            if kind == "results":
                self._ack_unreadable(car, msg)

    def _ack_unreadable(self, car: str, msg: paho.MQTTMessage) -> None:
        """A result we cannot read is still acknowledged, by its correlation data, or the car's
        outbox would send it forever; it counts as nothing else."""
        corr = getattr(msg.properties, "CorrelationData", None) if msg.properties else None
        try:
            job_id = p.check_job_id(bytes(corr).decode("ascii")) if corr else None
        except (p.ProtocolError, UnicodeDecodeError):
            job_id = None
        if job_id is not None:
            self.session.publish(p.Topics.acks(car), p.encode_ack([job_id]), p.QOS_ACK, False)

    def _on_state(self, car: str, msg: paho.MQTTMessage) -> None:
        if not msg.payload:  # a cleared retained state: the car is gone from the fleet
            with self._cond:
                self.cars.pop(car, None)
                self._cond.notify_all()
            return
        st = p.CarState.decode(bytes(msg.payload))
        if st.car != car:
            raise p.ProtocolError("forged", f"state on {car}'s topic names {st.car}")
        with self._cond:
            self.cars[car] = st
            self.counters["states"] += 1
            self._cond.notify_all()

    def _on_result(self, car: str, msg: paho.MQTTMessage) -> None:
        res = p.JobResult.decode(bytes(msg.payload))
        if res.car != car:
            raise p.ProtocolError("forged", f"result on {car}'s topic names {res.car}")
        # Acknowledge first, duplicates included: that is what empties the car's outbox. The ack
        # goes to the response topic only if it is this car's ack topic: a car cannot steer the
        # fleet into publishing elsewhere.
        rt = getattr(msg.properties, "ResponseTopic", None) if msg.properties else None
        ack_topic = p.Topics.acks(car)
        if rt is not None and rt != ack_topic:
            self.counters["bad_response_topic"] += 1
        self.session.publish(ack_topic, p.encode_ack([res.job_id]), p.QOS_ACK, False,
                             publish_props(correlation=res.job_id.encode(), content_type=p.CT_JSON))
        with self._cond:
            self.counters["results_received"] += 1
            if res.job_id in self._seen_jobs:
                self.counters["results_duplicate"] += 1
                return
            self._seen_jobs[res.job_id] = None
            while len(self._seen_jobs) > SEEN_JOBS:
                self._seen_jobs.popitem(last=False)
            self.deliveries.append(Delivery(res))
            where = self._job_index.get(res.job_id)
            was_finished = where is not None and self.tasks[where[0]].finished
            self._apply_result(res)
            if where is not None and not was_finished and self.tasks[where[0]].finished:
                self.completed.append(where[0])
            self._cond.notify_all()

    def _apply_result(self, res: p.JobResult) -> None:
        where = self._job_index.get(res.job_id)
        if where is None:
            self.counters["results_unknown_job"] += 1
            return
        task = self.tasks[where[0]]
        r = task.replicas[where[1]]
        if task.finished or r.done:
            self.counters["results_late"] += 1
            return
        if res.outcome == "ok":
            other_cars = {o.car for o in task.replicas if o is not r and o.done}
            if res.car in other_cars:  # the broker gave two replicas to one car: not a cross-check
                self.counters["replica_same_car"] += 1
                r.exclude.add(res.car)
                r.sent_at = None
                return
            r.done, r.car, r.outputs = True, res.car, res.outputs
            r.output_bytes = res.output_bytes
            if all(o.done for o in task.replicas):
                first = task.replicas[0].output_bytes
                task.status = "ok" if all(o.output_bytes == first for o in task.replicas) else "mismatch"
                if task.status == "mismatch":
                    self.counters["mismatches"] += 1
                    task.error = "replicas disagree: " + ", ".join(
                        f"{o.car}={_short_hash(o.output_bytes)}" for o in task.replicas)
        elif res.outcome in ("rejected", "failed"):  # final: the job or the engine said no
            task.status, task.error = res.outcome, f"{res.error_code}: {res.error_text}"
        else:  # preempted: the car could not run it now; another car (or later) can
            self.counters[f"attempts_{res.outcome}"] += 1
            r.sent_at = None
            # A car that refuses (busy, stopping) is not asked again at once: no ping-pong.
            r.not_before = self.clock.monotonic() + min(0.05 * r.attempt, 2.0)


def _short_hash(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()[:12]
