"""The dispatcher: the MQTT side of `fleetnode fleet serve`, working through the store.

One dispatcher holds one persistent MQTT 5 session. Results come through a shared subscription
(`$share/<group>/fleetnode/v1/cars/+/results/<submitter>`), so with several dispatchers on one
PostgreSQL database each result goes to one of them, and any of them can store it: the store
locks the task's row. Attempts go out for tasks this dispatcher leased; a dead dispatcher's
leases expire and a peer takes the tasks over.

Nothing is acknowledged to a car before the store committed it: a crash between the two makes
the car's outbox send the result again, and the store knows it as a duplicate (acknowledged,
dropped). Memory of seen job ids is a bounded cache in front of the database.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, Self

import paho.mqtt.client as paho

from agent.fleet import protocol as proto
from agent.fleet.models import chunks_of
from agent.fleet.mqtt import MqttSession, TlsConfig, publish_props
from agent.fleetside.store import Store, StoreError

log = logging.getLogger(__name__)

SEEN_CACHE = 4096  # job ids remembered in memory; the database remembers them all
STORE_BATCH = 256  # results stored in one transaction at most


@dataclass(frozen=True)
class DispatcherConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: TlsConfig | None = None
    pool: str = "default"
    submitter: str = "fleet"  # results come back on cars/<car>/results/<submitter>
    group: str = "dispatchers"  # the shared subscription's group: one result, one dispatcher
    name: str = ""  # this dispatcher (MQTT client id and lease owner); random when empty
    job_timeout_s: float = 30.0
    lease_s: float = 10.0
    tick_s: float = 0.25  # between turns when nothing wakes the pump


class Dispatcher:
    """Runs until stop(): a pump thread sending attempts and grants, and the MQTT callbacks."""

    def __init__(self, store: Store, cfg: DispatcherConfig) -> None:
        self.store = store
        self.cfg = cfg
        self.name = proto.check_id("dispatcher", cfg.name or f"d-{secrets.token_hex(4)}")
        self.counters: Counter[str] = Counter()
        self._classes: dict[str, str] = {}
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._announced: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._storer: threading.Thread | None = None
        # Results wait here between the network thread and the storer (which commits them in
        # groups, then acknowledges them): a crash loses only unacknowledged results.
        self._results: queue.Queue[tuple[str, proto.JobResult] | None] = queue.Queue()
        self._models_checked = -1e18
        self.session = MqttSession(
            f"fleet-{self.name}", cfg.host, cfg.port, tls=cfg.tls, clean_start=False,
            session_expiry_s=3600, on_connect=self._on_connect, on_message=self._on_message)

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        self.session.start()
        self._thread = threading.Thread(target=self._run, name=f"dispatch-{self.name}", daemon=True)
        self._thread.start()
        self._storer = threading.Thread(target=self._store_loop, name=f"store-{self.name}", daemon=True)
        self._storer.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._results.put(None)
        for t in (self._thread, self._storer):
            if t is not None:
                t.join(timeout=10)
        self.session.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def link_health(self) -> dict[str, Any]:
        """The broker link as the dashboard shows it."""
        n = self.session.counters
        return {"connected": self.session.connected, "broker": f"{self.cfg.host}:{self.cfg.port}",
                "connects": n["connects"], "reconnects": max(0, n["connects"] - 1),
                "disconnects": n["disconnects"], "network_errors": n["network_errors"]}

    def wake(self) -> None:
        """Something changed (a new batch): pump now rather than at the next tick."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.session.connected:
                    self.pump()
            except StoreError:
                self.counters["store_errors"] += 1
                log.exception("dispatch: store")
            except Exception:  # one bad turn must not end dispatching
                self.counters["dispatch_errors"] += 1
                log.exception("dispatch")
            self._wake.wait(self.cfg.tick_s)
            self._wake.clear()

    # -- sending ------------------------------------------------------------------------------

    def pump(self) -> int:
        """One turn: announce models, send what the leases allow, send unsent grants."""
        now = time.monotonic()
        if now - self._models_checked > 1.0 or self._wake.is_set():
            self._models_checked = now
            for sha in self.store.active_models():
                if sha not in self._announced:
                    try:
                        self.announce_model(sha)
                    except proto.ProtocolError as e:
                        # No car could fetch the model: its batches fail, the others go on.
                        ended = self.store.fail_model(sha, f"the model's stored manifest is refused: {e}")
                        self.counters["bad_manifests"] += 1
                        log.error("model %s is not announced: its stored manifest is refused (%s); "
                                  "batches failed: %s", sha, e, ", ".join(ended))
        sent = 0
        for d in self.store.lease(self.name, self.cfg.pool, 256, self.cfg.job_timeout_s,
                                  self.cfg.lease_s):
            _, inputs = proto.decode_envelope(d.inputs, b"R", 1 << 30)
            job = proto.JobRequest(d.job_id, self.cfg.submitter, proto.ModelRef(sha256=d.model_sha),
                                   inputs, d.max_run_s, d.exclude, d.task)
            self.session.publish(
                proto.Topics.jobs(self.cfg.pool), job.encode(), proto.QOS_JOB, False,
                publish_props(expiry_s=max(1, int(self.cfg.job_timeout_s)),
                              correlation=d.job_id.encode(), content_type=proto.CT_JOB,
                              user=[(proto.SCHEMA_PROPERTY, "job/1")]))
            sent += 1
        self.counters["jobs_sent"] += sent
        self._send_grants()
        return sent

    def _send_grants(self) -> None:
        grants = self.store.unsent_grants()
        infos = []
        for g in grants:
            info = self.session.publish(proto.Topics.credits(g.car), g.encode(), proto.QOS_GRANT, False,
                                        publish_props(content_type=proto.CT_JSON,
                                                      user=[(proto.SCHEMA_PROPERTY, "grant/1")]))
            if info is None:
                return
            infos.append((g.grant, info))
        done = []
        for gid, info in infos:
            info.wait_for_publish(5)
            if info.is_published():
                done.append(gid)
        if done:
            self.store.grants_sent(done)
            self.counters["grants_sent"] += len(done)

    def announce_model(self, sha256: str) -> None:
        """Offer a batch's model to the cars: signed manifest and chunks, retained."""
        found = self.store.model(sha256)
        if found is None:
            return
        data, manifest = found
        signed = proto.SignedManifest.decode(manifest)
        infos = [self.session.publish(proto.Topics.model_manifest(sha256), manifest, proto.QOS_MODEL,
                                      True, publish_props(content_type=proto.CT_JSON,
                                                          user=[(proto.SCHEMA_PROPERTY, "manifest/1")]))]
        for i, chunk in enumerate(chunks_of(data, signed.manifest.chunk_size)):
            infos.append(self.session.publish(proto.Topics.model_chunk(sha256, i), chunk,
                                              proto.QOS_MODEL, True,
                                              publish_props(content_type=proto.CT_CHUNK)))
        if all(i is not None for i in infos):
            self._announced.add(sha256)

    # -- receiving (network thread) -----------------------------------------------------------

    def _on_connect(self, session_present: bool) -> None:
        self.session.subscribe(proto.Topics.ALL_STATES, proto.QOS_STATE)
        self.session.subscribe(proto.Topics.shared_results(self.cfg.group, self.cfg.submitter),
                               proto.QOS_RESULT)
        self._announced.clear()  # a new broker may have lost the retained models

    def _on_message(self, msg: paho.MQTTMessage) -> None:
        try:
            car, kind = proto.Topics.parse_car_topic(msg.topic)
        except proto.ProtocolError:
            self.counters["bad_topic"] += 1
            return
        try:
            if kind == "state":
                self._on_state(car, bytes(msg.payload))
            elif kind == "results":
                self._on_result(car, msg)
            else:
                self.counters["unexpected"] += 1
        except proto.ProtocolError as e:
            self.counters[f"invalid_{kind}"] += 1
            log.warning("invalid %s from %s: %s", kind, car, e)
            if kind == "results":
                self._ack_by_correlation(car, msg)
        except StoreError:
            # Not acknowledged: the car sends it again once the database answers.
            self.counters["store_errors"] += 1
            log.exception("cannot store a %s from %s", kind, car)

    def _on_state(self, car: str, payload: bytes) -> None:
        if not payload:
            return
        st = proto.CarState.decode(payload)
        if st.car != car:
            raise proto.ProtocolError("forged", f"state on {car}'s topic names {st.car}")
        if st.compute is not None:
            self._classes[car] = st.compute.key
        self.store.upsert_car(st)
        self._wake.set()

    def _on_result(self, car: str, msg: paho.MQTTMessage) -> None:
        res = proto.JobResult.decode(bytes(msg.payload))
        if res.car != car:
            raise proto.ProtocolError("forged", f"result on {car}'s topic names {res.car}")
        self.counters["results_received"] += 1
        with self._lock:
            cached = res.job_id in self._seen
        if cached:  # a resend of a result stored already: acknowledge it again, nothing else
            self.counters["results_duplicate"] += 1
            self._ack(car, res.job_id)
            return
        self._results.put((car, res))

    def _store_loop(self) -> None:
        while True:
            item = self._results.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < STORE_BATCH:
                try:
                    more = self._results.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._results.put(None)
                    break
                batch.append(more)
            try:
                outcomes = self.store.record([(res, self._classes.get(car)) for car, res in batch])
            except StoreError:
                # Not acknowledged: the cars send them again once the database answers.
                self.counters["store_errors"] += 1
                log.exception("cannot store %d results", len(batch))
                continue
            for (car, res), out in zip(batch, outcomes):
                self.counters[f"results_{out.status}"] += 1
                if out.convicted:
                    self.counters["convictions"] += len(out.convicted)
                    log.warning("wrong result from %s (job %s); %d of its lone results re-run",
                                ",".join(out.convicted), res.job_id, out.reopened)
                with self._lock:
                    self._seen[res.job_id] = None
                    while len(self._seen) > SEEN_CACHE:
                        self._seen.popitem(last=False)
                self._ack(car, res.job_id)
            self._wake.set()

    def _ack(self, car: str, job_id: str) -> None:
        self.session.publish(proto.Topics.acks(car), proto.encode_ack([job_id]), proto.QOS_ACK, False,
                             publish_props(correlation=job_id.encode(), content_type=proto.CT_JSON))

    def _ack_by_correlation(self, car: str, msg: paho.MQTTMessage) -> None:
        """An unreadable result is acknowledged by its correlation data, or the car's outbox
        would send it forever; it counts for nothing else."""
        corr = getattr(msg.properties, "CorrelationData", None) if msg.properties else None
        try:
            job_id = proto.check_job_id(bytes(corr).decode("ascii")) if corr else None
        except (proto.ProtocolError, UnicodeDecodeError):
            job_id = None
        if job_id is not None:
            self._ack(car, job_id)

    def seen_cache_size(self) -> int:
        with self._lock:
            return len(self._seen)


def wait_idle(store: Store, batch: str, timeout: float) -> bool:
    """Until the batch is no longer running (done, cancelled or failed), or `timeout` real seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.batch(batch)["state"] != "running":
            return True
        time.sleep(0.05)
    return False
