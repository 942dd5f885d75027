"""The car's side of the fleet link: what the rest of the agent sees of MQTT.

`FleetLink` is a context manager around one MQTT 5 session (agent/fleet/mqtt.py). Upward it
offers `publish_state`, `publish_telemetry`, `set_accepting_jobs`, `jobs()` and `send_result`;
sockets, callbacks and retries stay inside. Its promises:

- state is retained, and a last will marks the car offline when the connection dies;
- telemetry goes out by exception (deadbands) with a heartbeat, each message numbered;
- jobs arrive through the pool's shared subscription, held only while accepting, so the broker
  sends work only to cars that may compute; the state advertises the car's capacity, which
  the dispatcher honours, and a job's PUBLISH is acknowledged only once the job is answered;
- every accepted job ends in exactly one reply (result, failure, preempted or rejected), stored
  in the SQLite outbox before the job's PUBLISH is acknowledged, and re-sent until the fleet
  acknowledges it, across broker outages and agent restarts;
- a payload that is too large or breaks the schema gets an error reply and a counter;
- a disk that refuses writes (agent/storage.py) never kills the link: answers that cannot be
  stored wait in memory and are stored once it can be written (with the caller's rows of the
  same transaction), acknowledgements and retry times likewise; a job that arrives meanwhile
  is handed back at once, not stored; each refusal goes to `on_storage_error`, not to a log.
"""

from __future__ import annotations

import logging
import queue
import secrets
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import paho.mqtt.client as paho

from agent.clock import Clock, SystemClock
from agent.fleet import protocol as p
from agent.fleet.audit import AuditLog
from agent.fleet.models import ModelAssembly, ModelCache, ModelRefused, TrustStore
from agent.fleet.mqtt import MqttSession, TlsConfig, Will, publish_props
from agent.fleet.outbox import ACCEPTED, ANSWERED, Outbox
from agent.storage import StorageError, storage_error

log = logging.getLogger(__name__)

__all__ = ["FleetLink", "JobQueue", "TlsConfig"]


class JobQueue:
    """Bounded, thread-safe queue of validated jobs. Iterating blocks until the link closes."""

    def __init__(self, maxsize: int) -> None:
        self._q: queue.Queue[p.JobRequest | None] = queue.Queue(maxsize)
        self.maxsize = maxsize

    def put_nowait(self, job: p.JobRequest) -> bool:
        try:
            self._q.put_nowait(job)
            return True
        except queue.Full:
            return False

    def get(self, timeout: float | None = None) -> p.JobRequest | None:
        try:
            return self._q.get(timeout=timeout)
        except queue.Empty:
            return None

    def drain(self) -> list[p.JobRequest]:
        out: list[p.JobRequest] = []
        while True:
            try:
                j = self._q.get_nowait()
            except queue.Empty:
                return out
            if j is not None:
                out.append(j)

    def close(self) -> None:
        try:
            self._q.put_nowait(None)
        except queue.Full:
            pass

    def qsize(self) -> int:
        return self._q.qsize()

    def __iter__(self) -> Iterator[p.JobRequest]:
        while True:
            j = self._q.get()
            if j is None:
                self._q.put(None)  # wake the next reader too
                return
            yield j


@dataclass
class _Pending:
    generation: int  # the connection the job's PUBLISH came in on
    mid: int


@dataclass
class _Deferred:
    """An answer the disk refused, kept until it can be stored."""

    outcome: str
    outputs: Sequence[np.ndarray] | bytes | None
    error: tuple[str, str] | None
    run_s: float | None
    submitter: str | None
    also: Callable[[sqlite3.Connection], object] | None


RETRY_STORAGE_S = 0.5  # how often answers the disk refused are tried again


def state_props() -> Any:
    """MQTT 5 properties of a car's retained state message."""
    return publish_props(content_type=p.CT_JSON, user=[(p.SCHEMA_PROPERTY, "state/1")])


def result_props(car_id: str, job_id: str, expiry_s: int = 86400, acked: bool = True) -> Any:
    """MQTT 5 properties of a car's result: the job id as correlation data and, when the car
    keeps it until acknowledged (acked), the car's ack topic as the response topic."""
    kw: dict[str, Any] = {"response_topic": p.Topics.acks(car_id)} if acked else {}
    return publish_props(expiry_s=expiry_s, correlation=job_id.encode(), content_type=p.CT_RESULT,
                         user=[(p.SCHEMA_PROPERTY, "result/1")], **kw)


class FleetLink:
    """The car's MQTT link. Use as a context manager; every method is thread-safe."""

    def __init__(
        self,
        car_id: str,
        host: str,
        port: int,
        clock: Clock | None = None,
        outbox_path: str | Path = "fleetnode-outbox.sqlite",
        pool: str = "default",
        tls: TlsConfig | None = None,
        *,
        audit_path: str | Path | None = None,
        job_queue_size: int = 8,
        outbox_limit: int = 10_000,
        ack_timeout_s: float = 10.0,
        max_ack_timeout_s: float = 120.0,
        heartbeat_s: float = 900.0,
        keepalive_s: int = 120,
        session_expiry_s: int = 3600,
        max_job_bytes: int = p.MAX_JOB_BYTES,
        model_dir: str | Path | None = None,
        model_cache_bytes: int = 256 << 20,
        trusted_keys: TrustStore | None = None,
        model_fetch_timeout_s: float = 120.0,
        on_storage_error: Callable[[StorageError], None] | None = None,
        compute: p.ComputeClass | None = None,
        on_grant: Callable[[p.CreditGrant], None] | None = None,
    ) -> None:
        self.car_id = p.check_id("car_id", car_id)
        self.pool = p.check_id("pool", pool)
        self.clock = clock or SystemClock()
        self.outbox = Outbox(outbox_path)
        # The owner's audit log is always on: next to the outbox unless placed elsewhere.
        self.audit = AuditLog(audit_path if audit_path is not None
                              else Path(outbox_path).parent / "audit.sqlite")
        self.counters: Counter[str] = Counter()
        self.on_storage_error = on_storage_error
        # What the disk refused, kept in memory until it takes writes again (job id -> ...).
        self._deferred: dict[str, _Deferred] = {}
        self._acked_unstored: set[str] = set()  # acknowledged by the fleet, row not yet deleted
        self._held: dict[str, float] = {}  # sent, retry time not stored: job id -> monotonic
        self._last_storage_retry = -1e18
        self._last_depth = 0
        # Called (network thread) with each valid grid signal of this car's pool.
        self.on_grid: Callable[[p.GridMessage], None] | None = None
        self.max_job_bytes = max_job_bytes
        self.ack_timeout_s = ack_timeout_s
        self.max_ack_timeout_s = max_ack_timeout_s
        self.outbox_limit = outbox_limit
        self.boot = secrets.token_hex(4)
        # Models by sha256: jobs wait (unacknowledged, so they count against Receive Maximum)
        # while the model's manifest and chunks arrive on its retained topics.
        self.models = ModelCache(model_dir, model_cache_bytes) if model_dir is not None else None
        self.trust = trusted_keys or TrustStore()
        self.model_fetch_timeout_s = model_fetch_timeout_s
        self.compute = compute or p.engine_class()
        # Credits the fleet granted: handed to the owner's ledger; a grant is acknowledged to the
        # broker only once the callback returned, so a grant the ledger could not take comes again.
        self.on_grant = on_grant
        self._model_waiters: dict[str, list[p.JobRequest]] = {}
        self._model_started: dict[str, float] = {}
        self._assembly: dict[str, ModelAssembly] = {}
        self._early_chunks: dict[str, dict[int, bytes]] = {}
        # Flow control: the state advertises `job_queue_size` as the car's capacity and the
        # dispatcher keeps no more jobs in flight than the available cars' capacities add up to.
        # The CONNECT also asks for Receive Maximum = job_queue_size, but mosquitto 2.0.11 was
        # measured sending far past it once acks flow, so it is not relied on. The queue holds
        # twice the capacity (two dispatchers, retries crossing); beyond that a job is answered
        # "preempted"/"busy" and goes elsewhere.
        self.job_queue_size = job_queue_size
        self._jobs = JobQueue(2 * job_queue_size)
        # Lock order: `_lock` guards plain fields and is never held while calling paho (paho
        # calls back into us holding its own mutexes). `_sub_lock` serialises subscription
        # changes and state publishes; only API threads and the sender thread take it, never a
        # paho callback.
        self._lock = threading.RLock()
        self._sub_lock = threading.Lock()
        self._resync = False  # set by on_connect: the sender re-applies subscriptions and state
        self._pending: dict[str, _Pending] = {}
        self._want_accepting = False
        self._subscribed = False
        self._state: p.CarState | None = None
        self._state_seq = 0
        self._state_generation = -1  # the connection the state was last published on
        self._state_dirty = False  # changed since last published
        self._telemetry = p.TelemetryFilter(heartbeat_s)
        self._telemetry_seq = 0
        self._sub_generation = -1  # the connection the subscription was last (re)made on
        self._alias_generation = -1  # the connection the telemetry alias was registered on
        self._error_seq = 0
        self._last_prune = -1e18
        self._inflight: list[paho.MQTTMessageInfo] = []  # results not yet PUBACKed
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._sender: threading.Thread | None = None
        self.session = MqttSession(
            f"car-{self.car_id}", host, port, tls=tls, clean_start=False,
            session_expiry_s=session_expiry_s, keepalive_s=keepalive_s,
            will=Will(p.Topics.state(self.car_id), p.CarState.offline(self.car_id, pool).encode()),
            receive_maximum=job_queue_size, maximum_packet_size=max(4 * max_job_bytes, 1 << 20),
            manual_ack=True, on_connect=self._on_connect, on_disconnect=self._on_disconnect,
            on_message=self._on_message, on_publish=self._on_publish, clock=self.clock)

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> Self:
        # Jobs accepted by a previous run and never answered (a crash, a kill): their inputs
        # are gone, so each gets its one reply now, "preempted", and the fleet sends it elsewhere.
        for job_id, _ in self.outbox.accepted():
            self.counters["jobs_preempted_by_restart"] += 1
            self._answer(job_id, "preempted", None, ("restarted", "the agent restarted"), None)
        self.session.start()
        self._sender = threading.Thread(target=self._send_loop, name=f"outbox-{self.car_id}",
                                        daemon=True)
        self._sender.start()
        return self

    def close(self, publish_offline: bool = True) -> None:
        """Say goodbye (retained offline state), stop threads, close files."""
        self._closing.set()
        self._wake.set()
        self._jobs.close()
        if publish_offline and self.session.connected:
            # Sent before the DISCONNECT that session.stop() queues behind it.
            st = p.CarState.offline(self.car_id, self.pool)
            self._publish(p.Topics.state(self.car_id), st.encode(), p.QOS_STATE, True)
        if self._sender is not None:
            self._sender.join(timeout=5)
        self.session.stop()
        self.outbox.close()
        if self.audit is not None:
            self.audit.close()

    def wait_connected(self, timeout: float) -> bool:
        return self.session.wait_connected(timeout)

    @property
    def connected(self) -> bool:
        return self.session.connected

    # -- upward API ----------------------------------------------------------------------------

    def jobs(self) -> JobQueue:
        return self._jobs

    def publish_state(self, decision: Mapping[str, Any], vehicle: Mapping[str, Any]) -> bool:
        """Publish the retained state if it changed. `decision` is Decision.as_dict(),
        `vehicle` VehicleState.as_dict(now); only the documented fields leave the car."""
        mode = str(decision.get("mode", "OFF"))
        reasons = tuple(str(r.get("code", "?")) if isinstance(r, Mapping) else str(r)
                        for r in decision.get("reasons", ()))
        budget = float(decision.get("power_budget_w", 0.0) or 0.0)
        soc = vehicle.get("soc_percent")
        kw = vehicle.get("charging_power_kw")
        with self._lock:
            accepting = self._subscribed
            st = p.CarState(
                car=self.car_id, online=True, mode=mode if mode in p.MODES else "OFF",
                reasons=reasons, available_w=budget if mode == "RUN" else 0.0,
                accepting_jobs=accepting, capacity=self.job_queue_size,
                soc_percent=None if soc is None else max(0.0, min(100.0, float(soc))),
                charging=None if kw is None else float(kw) > 0.0, pool=self.pool,
                compute=self.compute)
            if self._state is not None and _same_state(self._state, st):
                return False
            self._state = st
            self._state_dirty = True
        with self._sub_lock:
            # The sender thread may have published it meanwhile (on a reconnect).
            return self._send_state() if self._state_dirty else True

    def apply_decision(self, decision: Mapping[str, Any], vehicle: Mapping[str, Any]) -> None:
        """The governor's decision in one call: take jobs only in RUN (and not while draining
        before a departure), and publish the state."""
        self.set_accepting_jobs(decision.get("mode") == "RUN" and not decision.get("drain"))
        self.publish_state(decision, vehicle)

    def _send_state(self) -> bool:
        """Publish the current state (caller holds `_sub_lock`)."""
        with self._lock:
            if self._state is None or not self.session.connected:
                return False
            self._state_seq += 1
            st = p.CarState(**{**self._state.__dict__, "accepting_jobs": self._subscribed,
                               "seq": self._state_seq, "t": self.clock.time()})
            self._state = st
            self._state_generation = self.session.generation
            self._state_dirty = False
        return self._publish(p.Topics.state(self.car_id), st.encode(), p.QOS_STATE, True,
                             state_props()) is not None

    def publish_telemetry(self, values: Mapping[str, float | int | str | None]) -> bool:
        """Offer current values; sends only what moved beyond its deadband, or a heartbeat.
        While disconnected nothing is offered, so what changed meanwhile goes out on return."""
        known = {k: v for k, v in values.items() if k in p.TELEMETRY_FIELDS}
        if len(known) != len(values):  # nothing undocumented leaves the car
            self.counters["telemetry_fields_dropped"] += len(values) - len(known)
        if not self.session.connected:
            return False
        out = self._telemetry.offer(known, self.clock.monotonic())
        if out is None:
            return False
        hb, fields = out
        topic = p.Topics.telemetry(self.car_id)
        with self._lock:
            self._telemetry_seq += 1
            msg = p.Telemetry(self.car_id, self._telemetry_seq, self.boot, self.clock.time(), hb, fields)
            # Telemetry is the car's most frequent message: it carries no properties but a topic
            # alias (MQTT 5), the full topic only on a connection's first telemetry message.
            gen = self.session.generation
            use_alias = self.session.topic_alias_max >= p.TELEMETRY_TOPIC_ALIAS
            first = self._alias_generation != gen
        props = publish_props()
        if use_alias:
            props.TopicAlias = p.TELEMETRY_TOPIC_ALIAS
        wire_topic = "" if use_alias and not first else topic
        self.counters["telemetry_sent"] += 1
        info = self._publish(topic, msg.encode(), p.QOS_TELEMETRY, False, props, wire_topic)
        if info is not None and use_alias:
            with self._lock:
                self._alias_generation = gen
        return info is not None

    def set_accepting_jobs(self, accepting: bool) -> None:
        """Hold the pool's shared subscription (True) or give it up (False). Giving it up also
        answers every queued, not yet started job "preempted" so the fleet sends it elsewhere."""
        with self._lock:
            self._want_accepting = accepting
        self._apply_subscription()
        if not accepting:
            with self._lock:
                waiting = [j for js in self._model_waiters.values() for j in js]
                for js in self._model_waiters.values():
                    js.clear()
            for job in waiting + self._jobs.drain():
                self.send_result(job.job_id, "preempted", error=("not_accepting", "the car stopped taking jobs"))

    @property
    def accepting_jobs(self) -> bool:
        return self._subscribed

    def send_result(self, job_id: str, outcome: str,
                    outputs: Sequence[np.ndarray] | bytes | None = None,
                    error: tuple[str, str] | str | None = None,
                    run_s: float | None = None,
                    also: Callable[[sqlite3.Connection], object] | None = None) -> int | None:
        """Answer an accepted job, once. `outputs`: the output tensors, or raw bytes (sent as
        one uint8 tensor). `also(db)` writes more rows (the job's ledger entry) in the
        transaction that stores the answer, so both are committed or neither. Returns the
        result's sequence number; None if it was already answered, or if the disk refused it
        (it is kept and stored, with `also`, once the disk takes writes).
        Raises KeyError for a job id this car never accepted."""
        if outcome not in p.OUTCOMES:
            raise ValueError(f"outcome must be one of {p.OUTCOMES}")
        try:
            status = self.outbox.status(job_id)
        except StorageError as e:  # cannot look now: keep the answer, stored once we can
            self._storage_failed(e)
            status = ACCEPTED
        if status == "new":
            raise KeyError(f"job {job_id!r} was never accepted by this car")
        if isinstance(error, str):
            error = (outcome, error)
        return self._answer(job_id, outcome, outputs, error, run_s, also=also)

    def stats(self) -> dict[str, int]:
        out = dict(self.counters)
        for k, v in self.session.counters.items():
            out[f"mqtt_{k}"] = v
        out["outbox_depth"] = self._depth()
        out["jobs_queued"] = self._jobs.qsize()
        with self._lock:
            out["answers_unstored"] = len(self._deferred)
        return out

    # -- internals: answers and the outbox --------------------------------------------------

    def _answer(self, job_id: str, outcome: str, outputs: Sequence[np.ndarray] | bytes | None,
                error: tuple[str, str] | None, run_s: float | None,
                submitter: str | None = None,
                also: Callable[[sqlite3.Connection], object] | None = None) -> int | None:
        try:
            return self._store_answer(job_id, outcome, outputs, error, run_s, submitter, also)
        except StorageError as e:
            with self._lock:
                self._deferred.setdefault(job_id, _Deferred(outcome, outputs, error, run_s,
                                                            submitter, also))
            self.counters["answers_deferred"] += 1
            self._storage_failed(e)
            return None

    def _depth(self) -> int:
        """The outbox's depth; the last one read while the disk cannot be read."""
        try:
            self._last_depth = self.outbox.depth()
        except StorageError as e:
            self._storage_failed(e)
        return self._last_depth

    def _storage_failed(self, e: StorageError) -> None:
        self.counters["storage_errors"] += 1
        if self.on_storage_error is not None:
            self.on_storage_error(e)
        else:
            log.warning("fleet link: %s", e)

    def _retry_unstored(self) -> None:
        """Store what the disk refused before, oldest first; stop at the first refusal."""
        now = self.clock.monotonic()
        with self._lock:
            if not (self._deferred or self._acked_unstored or self._held) \
                    or now - self._last_storage_retry < RETRY_STORAGE_S:
                return
            self._last_storage_retry = now
            deferred = list(self._deferred.items())
            acked = list(self._acked_unstored)
        try:
            if acked:
                self.outbox.acknowledge(acked)
                with self._lock:
                    self._acked_unstored.difference_update(acked)
            for job_id, d in deferred:
                self._store_answer(job_id, d.outcome, d.outputs, d.error, d.run_s, d.submitter, d.also)
                with self._lock:
                    self._deferred.pop(job_id, None)
                self.counters["answers_stored_late"] += 1
            with self._lock:
                held = list(self._held.items())
            for job_id, at in held:
                self.outbox.sent(job_id, at)
                with self._lock:
                    self._held.pop(job_id, None)
        except StorageError as e:
            self._storage_failed(e)

    def _store_answer(self, job_id: str, outcome: str, outputs: Sequence[np.ndarray] | bytes | None,
                      error: tuple[str, str] | None, run_s: float | None,
                      submitter: str | None,
                      also: Callable[[sqlite3.Connection], object] | None) -> int | None:
        sub = submitter or self.outbox.submitter(job_id)
        if sub is None:
            return None  # answered already
        arrays: list[np.ndarray]
        if outputs is None:
            arrays = []
        elif isinstance(outputs, (bytes, bytearray, memoryview)):
            arrays = [np.frombuffer(bytes(outputs), dtype=np.uint8)]
        else:
            arrays = list(outputs)
        topic = p.Topics.results(self.car_id, sub)
        size = sum(a.nbytes for a in arrays)
        if size > p.MAX_RESULT_BYTES - p.MAX_HEADER_BYTES:
            # The fleet would refuse it, never acknowledge it, and the outbox would resend it
            # forever: it becomes a failure with a reason instead.
            self.counters["results_too_large"] += 1
            outcome, arrays = "failed", []
            error = ("result_too_large", f"outputs of {size} bytes exceed the result limit")

        def build(seq: int) -> bytes:
            return p.JobResult(job_id, self.car_id, outcome, seq, arrays,
                               error[0] if error else None, error[1] if error else None,
                               run_s).encode()

        seq = self.outbox.answer(job_id, topic, build, self.clock.time(), also)
        if seq is None:
            self.counters["answers_duplicate"] += 1
            return None
        self.counters[f"jobs_{outcome}"] += 1
        self._ack_job(job_id)
        self._wake.set()  # the sender sends it, and re-checks backpressure
        return seq

    def _ack_job(self, job_id: str) -> None:
        """The job is answered durably: now the broker may forget its PUBLISH."""
        with self._lock:
            pend = self._pending.pop(job_id, None)
        if pend is not None and pend.generation == self.session.generation and self.session.connected:
            self.session.ack(pend.mid, 1)

    def _send_loop(self) -> None:
        while not self._closing.is_set():
            try:
                if self.session.connected:
                    with self._lock:
                        resync, self._resync = self._resync, False
                    if resync:
                        self._apply_subscription(force=True)
                        with self._sub_lock:
                            # After a reconnect the will may have replaced it with "offline".
                            if (self._state_generation != self.session.generation
                                    or self._state_dirty):
                                self._send_state()
                    else:
                        self._apply_subscription()
                self._expire_model_fetches()
                self._retry_unstored()
                self._housekeeping()
                self._send_due()
            except StorageError as e:  # said once by the storage monitor; tried again soon
                self._storage_failed(e)
            except Exception:  # the sender must outlive a bad row or a full paho queue
                self.counters["sender_errors"] += 1
                log.exception("outbox sender")
            self._wake.wait(0.2)
            self._wake.clear()

    def _housekeeping(self) -> None:
        """Hourly: forget answered job ids past the dedup window; restart a dead network thread."""
        now = self.clock.monotonic()
        if now - self._last_prune >= 3600.0:
            self._last_prune = now
            try:
                self.outbox.prune(self.clock.time())
                if self.audit is not None:
                    self.audit.prune(self.clock.time())
            except StorageError as e:
                self._last_prune = now - 3600.0 + 60.0  # again in a minute
                self._storage_failed(e)
        if not self._closing.is_set() and not self.session.alive:
            self.counters["network_thread_restarts"] += 1
            self.session.start()

    def health(self) -> dict[str, object]:
        """For the service's watchdog: is every part of the link making progress?"""
        loop_age = time.monotonic() - self.session.last_loop
        sender_alive = self._sender is not None and self._sender.is_alive()
        return {"ok": sender_alive and self.session.alive and loop_age < 10.0,
                "connected": self.session.connected, "network_loop_age_s": round(loop_age, 3),
                "sender_alive": sender_alive, "outbox_depth": self._depth(),
                "last_error": self.session.last_error}

    def _send_due(self) -> None:
        if not self.session.connected:
            return
        with self._lock:
            self._inflight = [i for i in self._inflight if not i.is_published()]
            room = 20 - len(self._inflight)
        if room <= 0:
            return
        now = self.clock.monotonic()
        with self._lock:
            skip = self._acked_unstored | {j for j, t in self._held.items() if t > now}
        for rec in self.outbox.due(now, room + len(skip)):
            if rec.job_id in skip:
                continue
            info = self._publish(rec.topic, rec.payload, p.QOS_RESULT, False,
                                 result_props(self.car_id, rec.job_id))
            if info is None:
                return
            with self._lock:
                self._inflight.append(info)
            backoff = min(self.ack_timeout_s * (2 ** min(rec.attempts, 8)), self.max_ack_timeout_s)
            try:
                self.outbox.sent(rec.job_id, now + backoff)
            except StorageError as e:
                with self._lock:
                    self._held[rec.job_id] = now + backoff
                self._storage_failed(e)
            self.counters["results_sent"] += 1
            if rec.attempts:
                self.counters["results_resent"] += 1

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool,
                 properties: Any = None, wire_topic: str | None = None) -> paho.MQTTMessageInfo | None:
        info = self.session.publish(topic if wire_topic is None else wire_topic, payload, qos,
                                    retain, properties)
        if info is not None and self.audit is not None:
            try:
                self.audit.record(self.clock.time(), topic, qos, retain, payload)
            except sqlite3.Error as e:
                err = storage_error(e, self.audit.path)
                if err is None:
                    raise
                self.counters["audit_unrecorded"] += 1
                self._storage_failed(err)
        return info

    # -- internals: subscriptions ----------------------------------------------------------------

    def _apply_subscription(self, force: bool = False) -> None:
        """Hold the shared subscription iff accepting is wanted and the outbox has room."""
        with self._sub_lock:
            with self._lock:
                # Backpressure: with the outbox full the car takes no work until the fleet acks.
                want = self._want_accepting and self._depth() < self.outbox_limit
                changed = want != self._subscribed
                # After a reconnect (force) the subscription is renewed once per connection, in
                # case the broker lost the session; not again for every state change.
                fresh = force and self._sub_generation != self.session.generation
                if (not changed and not fresh) or not self.session.connected:
                    return
                self._subscribed = want
                self._sub_generation = self.session.generation
            if want:
                self.session.subscribe(p.Topics.shared_jobs(self.pool), p.QOS_JOB)
            else:
                self.session.unsubscribe(p.Topics.shared_jobs(self.pool))
            if changed:
                self._send_state()  # accepting_jobs is part of the state

    # -- callbacks (network thread; MqttSession guards them) -------------------------------------

    def _on_connect(self, session_present: bool) -> None:
        self.session.subscribe(p.Topics.acks(self.car_id), p.QOS_ACK)
        self.session.subscribe(p.Topics.credits(self.car_id), p.QOS_GRANT)
        self.session.subscribe(p.Topics.grid(self.pool), p.QOS_GRID)
        with self._lock:
            self._inflight.clear()
            self._resync = True
        self.outbox.retry_all_now()
        self._wake.set()

    def _on_disconnect(self) -> None:
        self.counters["disconnects"] += 1

    def _on_publish(self, mid: int, ok: bool) -> None:
        self._wake.set()  # room for the next result

    def _on_message(self, msg: paho.MQTTMessage) -> None:
        if msg.topic == p.Topics.acks(self.car_id):
            self._on_ack(msg)
        elif msg.topic == p.Topics.jobs(self.pool):
            self._on_job(msg)
        elif msg.topic == p.Topics.credits(self.car_id):
            self._on_grant(msg)
        elif msg.topic.startswith(f"{p.ROOT}/models/"):
            self._on_model_message(msg)
            self._ack_mid(msg)
        elif msg.topic == p.Topics.grid(self.pool):
            self._on_grid(msg)
            self._ack_mid(msg)
        else:
            self.counters["messages_unexpected"] += 1
            self._ack_mid(msg)

    def _ack_mid(self, msg: paho.MQTTMessage) -> None:
        if msg.qos > 0:
            self.session.ack(msg.mid, msg.qos)

    def _on_grid(self, msg: paho.MQTTMessage) -> None:
        """The pool's grid signal: handed to `on_grid` (the governor's inputs) if it parses."""
        if not msg.payload:  # the fleet deleted the retained signal: it lifts the last one
            signal = p.GridMessage(self.clock.time(), 0, 1.0)
        else:
            try:
                signal = p.GridMessage.decode(bytes(msg.payload))
            except p.ProtocolError as e:
                self.counters["grid_invalid"] += 1
                log.warning("ignoring a grid signal: %s", e)
                return
        self.counters["grid_received"] += 1
        if self.on_grid is not None:
            self.on_grid(signal)

    def _on_ack(self, msg: paho.MQTTMessage) -> None:
        try:
            ids = p.decode_ack(bytes(msg.payload))
        except p.ProtocolError:
            self.counters["acks_invalid"] += 1
        else:
            try:
                self.counters["acks_received"] += self.outbox.acknowledge(ids)
            except StorageError as e:
                with self._lock:
                    self._acked_unstored.update(ids)  # deleted once the disk takes writes
                self._storage_failed(e)
            self._wake.set()
        self._ack_mid(msg)

    def _on_grant(self, msg: paho.MQTTMessage) -> None:
        try:
            grant = p.CreditGrant.decode(bytes(msg.payload))
            if grant.car != self.car_id:
                raise p.ProtocolError("forged", f"a grant for {grant.car} on {self.car_id}'s topic")
        except p.ProtocolError:
            self.counters["grants_invalid"] += 1
            self._ack_mid(msg)
            return
        if self.on_grant is not None:
            try:
                self.on_grant(grant)
            except Exception:  # not acknowledged: the broker sends it again
                self.counters["grants_unrecorded"] += 1
                log.exception("cannot record grant %s", grant.grant)
                return
        self.counters["grants_received"] += 1
        self._ack_mid(msg)

    def _on_job(self, msg: paho.MQTTMessage) -> None:
        self.counters["jobs_received"] += 1
        payload = bytes(msg.payload)
        corr = getattr(msg.properties, "CorrelationData", None) if msg.properties else None
        try:
            if len(payload) > self.max_job_bytes:
                raise p.ProtocolError("too_large", f"job of {len(payload)} bytes exceeds {self.max_job_bytes}")
            job = p.JobRequest.decode(payload, self.max_job_bytes)
        except p.ProtocolError as e:
            self.counters[f"jobs_invalid_{e.code}"] += 1
            self._reject(msg, payload, e.code, e.text, corr)
            return
        try:
            status = self.outbox.status(job.job_id)
        except StorageError as e:
            self._storage_failed(e)
            self._hand_back_unstored(msg, job)
            return
        if status == ANSWERED:
            self.counters["jobs_duplicate"] += 1
            self._ack_mid(msg)
            return
        if status == ACCEPTED:  # redelivered while still running: ack it when answered
            self.counters["jobs_duplicate"] += 1
            with self._lock:
                self._pending[job.job_id] = _Pending(self.session.generation, msg.mid)
            return
        refusal = None
        if self.car_id in job.exclude:
            refusal = ("excluded", "the fleet asked for a different car for this job")
        elif not self._subscribed:
            refusal = ("not_accepting", "the car is not taking jobs now")
        try:
            taken = self.outbox.accept(job.job_id, job.submitter, self.clock.time())
        except StorageError as e:
            self._storage_failed(e)
            self._hand_back_unstored(msg, job)
            return
        if not taken:
            self._ack_mid(msg)
            return
        with self._lock:
            self._pending[job.job_id] = _Pending(self.session.generation, msg.mid)
        if refusal is None and job.model.sha256 is not None:
            refusal = self._need_model(job)
            if refusal is None and not self.models.has(job.model.sha256):  # type: ignore[union-attr]
                return  # waits for the model; _model_ready() queues it
        if refusal is None and not self._jobs.put_nowait(job):
            refusal = ("busy", "the car's job queue is full")
        if refusal is not None:
            self.counters[f"jobs_refused_{refusal[0]}"] += 1
            self._answer(job.job_id, "preempted", None, refusal, None, job.submitter)
        else:
            self.counters["jobs_accepted"] += 1

    def _hand_back_unstored(self, msg: paho.MQTTMessage, job: p.JobRequest) -> None:
        """A job the disk would not let us record: hand it back now with a reply that is not
        stored (seq 0, so never resent), and let the broker forget it. Lost in transit, the
        fleet's job timeout sends it elsewhere all the same."""
        self.counters["jobs_refused_storage"] += 1
        reply = p.JobResult(job.job_id, self.car_id, "preempted", 0, [], "storage",
                            "the car cannot write its state now")
        self._publish(p.Topics.results(self.car_id, job.submitter), reply.encode(), p.QOS_RESULT,
                      False, result_props(self.car_id, job.job_id, expiry_s=3600, acked=False))
        self._ack_mid(msg)

    # -- models -------------------------------------------------------------------------------

    def _need_model(self, job: p.JobRequest) -> tuple[str, str] | None:
        """None if the job can run or wait for its model; else the refusal."""
        sha = job.model.sha256
        assert sha is not None
        if self.models is None or len(self.trust) == 0:
            return ("unsigned", "this car accepts no fleet models (no cache or no trusted keys)")
        if self.models.has(sha):
            return None
        with self._lock:
            waiting = sum(len(v) for v in self._model_waiters.values())
            # A waiting job is not acknowledged, so it holds a slot of our Receive Maximum
            # (job_queue_size): one slot stays free for the model's own QoS 1 messages, or a
            # broker that honours the limit could never deliver them.
            room = waiting < self.job_queue_size - 1
            first = sha not in self._model_waiters
            waiters = self._model_waiters.setdefault(sha, [])
            if room:
                waiters.append(job)
            if first:
                self._model_started[sha] = self.clock.monotonic()
        if first:
            self.counters["model_fetches"] += 1
            self.session.subscribe(p.Topics.model_all(sha), p.QOS_MODEL)
        return None if room else ("busy", "too many jobs waiting for models")

    def _on_model_message(self, msg: paho.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        try:
            sha = p.check_sha256(parts[3]) if len(parts) >= 5 else ""
        except p.ProtocolError:
            self.counters["model_bad_topic"] += 1
            return
        with self._lock:
            if sha not in self._model_waiters:
                return  # a model nobody here waits for (e.g. retained, after a refusal)
        try:
            if parts[4:] == ["manifest"]:
                self._on_manifest(sha, bytes(msg.payload))
            elif len(parts) == 6 and parts[4] == "chunks" and parts[5].isdigit():
                self._on_chunk(sha, int(parts[5]), bytes(msg.payload))
            else:
                self.counters["model_bad_topic"] += 1
        except ModelRefused as e:
            self._model_failed(sha, e.code, e.text)
        except p.ProtocolError as e:
            self._model_failed(sha, "unsigned" if e.code == "unsigned" else "bad_manifest", e.text)

    def _on_manifest(self, sha: str, payload: bytes) -> None:
        signed = p.SignedManifest.decode(payload)
        m = signed.manifest
        if m.sha256 != sha:
            raise ModelRefused("tampered", "the manifest names another model than its topic")
        self.trust.verify(signed)
        assert self.models is not None
        self.models.check(m, self.clock.time())
        asm = ModelAssembly(m)
        with self._lock:
            self._assembly[sha] = asm
            early = self._early_chunks.pop(sha, {})
        for i, data in sorted(early.items()):
            if asm.add(i, data):
                return self._model_complete(sha, asm)
        return None

    def _on_chunk(self, sha: str, index: int, data: bytes) -> None:
        with self._lock:
            asm = self._assembly.get(sha)
            if asm is None:  # before its manifest: keep it, within the cache's size cap
                early = self._early_chunks.setdefault(sha, {})
                held = sum(len(b) for b in early.values())
                cap = self.models.max_bytes if self.models else 0
                if held + len(data) > cap or index > p.MAX_MODEL_CHUNKS:
                    raise ModelRefused("too_large", "chunks beyond the cache cap before a manifest")
                early[index] = data
                return
        if asm.add(index, data):
            self._model_complete(sha, asm)

    def _model_complete(self, sha: str, asm: ModelAssembly) -> None:
        assert self.models is not None
        self.models.put(asm.manifest, asm.data())  # checks size and sha256 ("tampered")
        self.counters["models_stored"] += 1
        self.session.unsubscribe(p.Topics.model_all(sha))
        with self._lock:
            jobs = self._model_waiters.pop(sha, [])
            self._model_started.pop(sha, None)
            self._assembly.pop(sha, None)
        for job in jobs:
            if not self._jobs.put_nowait(job):
                self._answer(job.job_id, "preempted", None, ("busy", "the car's job queue is full"),
                             None, job.submitter)

    def _model_failed(self, sha: str, code: str, text: str) -> None:
        self.counters[f"models_refused_{code}"] += 1
        self.session.unsubscribe(p.Topics.model_all(sha))
        with self._lock:
            jobs = self._model_waiters.pop(sha, [])
            self._model_started.pop(sha, None)
            self._assembly.pop(sha, None)
            self._early_chunks.pop(sha, None)
        for job in jobs:
            self._answer(job.job_id, "rejected", None, (f"model_{code}", f"model {sha[:12]}: {text}"),
                         None, job.submitter)

    def _expire_model_fetches(self) -> None:
        now = self.clock.monotonic()
        with self._lock:
            late = [s for s, t in self._model_started.items() if now - t > self.model_fetch_timeout_s]
        for sha in late:
            self._model_failed(sha, "unavailable", f"not received within {self.model_fetch_timeout_s:g} s")

    def _reject(self, msg: paho.MQTTMessage, payload: bytes, code: str, text: str,
                corr: bytes | None) -> None:
        job_id, submitter = p.peek_job_ids(payload)
        # Enough of the job survives to answer it like any other: through the outbox.
        try:
            stored = (job_id is not None and submitter is not None
                      and self.outbox.status(job_id) == "new"
                      and self.outbox.accept(job_id, submitter, self.clock.time()))
        except StorageError as e:  # answered by an error reply instead, which needs no disk
            self._storage_failed(e)
            stored = False
        if stored:
            assert job_id is not None and submitter is not None
            with self._lock:
                self._pending[job_id] = _Pending(self.session.generation, msg.mid)
            self._answer(job_id, "rejected", None, (code, text), None, submitter)
            return
        with self._lock:
            self._error_seq += 1
            seq = self._error_seq
        reply = p.ErrorReply(self.car_id, seq, code, text, job_id,
                             corr[:p.MAX_CORRELATION_BYTES].hex() if corr else None)
        self._publish(p.Topics.errors(self.car_id), reply.encode(), p.QOS_ERROR, False,
                      publish_props(expiry_s=3600, content_type=p.CT_JSON,
                                    correlation=corr[:p.MAX_CORRELATION_BYTES] if corr else None,
                                    user=[(p.SCHEMA_PROPERTY, "error/1")]))
        self._ack_mid(msg)


def _same_state(a: p.CarState, b: p.CarState) -> bool:
    def key(s: p.CarState) -> tuple[object, ...]:
        # SoC in the retained state moves in 5 % steps; telemetry carries it to 1 %.
        soc = None if s.soc_percent is None else round(s.soc_percent / 5.0)
        return (s.online, s.mode, s.reasons, round(s.available_w / 50.0), s.accepting_jobs,
                soc, s.charging, s.pool)
    return key(a) == key(b)
