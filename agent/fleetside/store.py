"""The fleet service's database: batches, tasks, attempts, results, cars, credits, tokens.

Owns the schema and every query. Two backends with one schema and one set of statements:
SQLite (a file, one dispatcher; `BEGIN IMMEDIATE` serialises writers) and PostgreSQL through
psycopg 3 (several dispatchers on one database; tasks are leased with `FOR UPDATE SKIP LOCKED`
and an expiry, a result locks its task's row, so any dispatcher may die and another carries
on). Every change is one transaction; a result is acknowledged to its car only after the
transaction that stored it committed, so a crash loses nothing and a resend is a duplicate.

Tables: batches, models, tasks (one per input), attempts (one per job sent to a car),
results (one per task, by primary key: a task's result is stored once), cars (reputation and
credits), grants (credits per validated result, until sent to the car), tokens (hashed).
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.fleet import protocol as proto
from agent.fleetside.replication import CreditRate, Rule

SCHEMA_VERSION = 1
ADAPTIVE = 0  # batches.redundancy for "adaptive"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    name TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, quota INTEGER NOT NULL, created {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS models (sha256 TEXT PRIMARY KEY, data {blob} NOT NULL,
    manifest {blob} NOT NULL, inputs TEXT NOT NULL, outputs INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, token TEXT NOT NULL, model TEXT NOT NULL, redundancy INTEGER NOT NULL,
    state TEXT NOT NULL, created {real} NOT NULL, deadline {real}, max_run_s {real} NOT NULL,
    tasks INTEGER NOT NULL, finished {real}
);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, batch TEXT NOT NULL, idx INTEGER NOT NULL, name TEXT NOT NULL,
    inputs {blob} NOT NULL, state TEXT NOT NULL, quorum INTEGER NOT NULL,
    agree INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    mismatches INTEGER NOT NULL DEFAULT 0, not_before {real} NOT NULL DEFAULT 0,
    lease_owner TEXT, lease_until {real}, error TEXT
);
CREATE INDEX IF NOT EXISTS tasks_open ON tasks (state, batch, idx);
CREATE TABLE IF NOT EXISTS attempts (
    job_id TEXT PRIMARY KEY, task TEXT NOT NULL, dispatcher TEXT NOT NULL, sent {real} NOT NULL,
    state TEXT NOT NULL, car TEXT, class TEXT, digest TEXT, outputs {blob}, run_s {real},
    received {real}, verdict TEXT
);
CREATE INDEX IF NOT EXISTS attempts_task ON attempts (task);
CREATE INDEX IF NOT EXISTS attempts_open ON attempts (state, sent);
CREATE INDEX IF NOT EXISTS attempts_car ON attempts (car, verdict);
CREATE TABLE IF NOT EXISTS results (
    task TEXT PRIMARY KEY, batch TEXT NOT NULL, job_id TEXT NOT NULL, digest TEXT NOT NULL,
    outputs {blob} NOT NULL, replicas INTEGER NOT NULL, state TEXT NOT NULL, stored {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS results_batch ON results (batch);
CREATE TABLE IF NOT EXISTS cars (
    id TEXT PRIMARY KEY, class TEXT, mode TEXT NOT NULL, reasons TEXT NOT NULL,
    online INTEGER NOT NULL, accepting INTEGER NOT NULL, capacity INTEGER NOT NULL,
    pool TEXT NOT NULL, reputation INTEGER NOT NULL DEFAULT 0, validated INTEGER NOT NULL DEFAULT 0,
    wrong INTEGER NOT NULL DEFAULT 0, credits {real} NOT NULL DEFAULT 0, updated {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
    id TEXT PRIMARY KEY, car TEXT NOT NULL, job_id TEXT NOT NULL, task TEXT NOT NULL,
    credits {real} NOT NULL, energy_wh {real} NOT NULL, t {real} NOT NULL, sent INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS grants_unsent ON grants (sent);
CREATE INDEX IF NOT EXISTS grants_t ON grants (t);
CREATE INDEX IF NOT EXISTS attempts_received ON attempts (received);
CREATE TABLE IF NOT EXISTS car_modes (
    car TEXT NOT NULL, t {real} NOT NULL, mode TEXT NOT NULL, reasons TEXT NOT NULL,
    online INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS car_modes_car ON car_modes (car, t);
"""


class StoreError(Exception):
    """The database cannot be opened, is not ours, or a request names something unknown."""


class QuotaError(StoreError):
    pass


class UnknownBatch(StoreError):
    pass


@dataclass(frozen=True)
class Dispatch:
    """One attempt to send: the job and where it must not go."""

    job_id: str
    task: str
    model_sha: str
    inputs: bytes  # the task's tensors, canonical envelope bytes (protocol.tensor_bytes)
    max_run_s: float
    exclude: tuple[str, ...]


@dataclass
class Outcome:
    """What storing one result did."""

    status: str  # unknown | duplicate | late | retry | same_car | stored | settled
    settled_task: str | None = None
    convicted: list[str] = field(default_factory=list)
    reopened: int = 0


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    """Thread-safe: one connection, one lock; each public method is one transaction."""

    def __init__(self, url: str, rule: Rule | None = None, rate: CreditRate | None = None,
                 rng: random.Random | None = None) -> None:
        self.url = url
        self.rule = rule or Rule()
        self.rate = rate or CreditRate()
        self.rng = rng or random.Random()
        self._lock = threading.RLock()
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        try:
            if self.postgres:
                import psycopg

                self._pg = psycopg.connect(url, autocommit=True)
                self._errors: tuple[type[Exception], ...] = (psycopg.Error,)
                self._db: Any = None
            else:
                path = url.removeprefix("sqlite://").removeprefix("sqlite:")
                self._db = sqlite3.connect(path, check_same_thread=False, timeout=30.0,
                                           isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._errors = (sqlite3.Error,)
            self._migrate()
        except StoreError:
            raise
        except Exception as e:  # any driver error at open is "cannot open"
            raise StoreError(f"cannot open the fleet database {self._safe_url()}: {e}") from e

    def _safe_url(self) -> str:
        if "@" in self.url:  # no password in messages
            scheme, rest = self.url.split("://", 1)
            return f"{scheme}://…@{rest.split('@', 1)[1]}"
        return self.url

    def close(self) -> None:
        with self._lock:
            (self._pg if self.postgres else self._db).close()

    # -- transactions -----------------------------------------------------------------------

    @contextmanager
    def tx(self) -> Iterator[_Cursor]:
        with self._lock:
            try:
                if self.postgres:
                    with self._pg.transaction():
                        yield _Cursor(self._pg.cursor(), True)
                else:
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        yield _Cursor(self._db.cursor(), False)
                        self._db.execute("COMMIT")
                    except BaseException:
                        self._db.execute("ROLLBACK")
                        raise
            except self._errors as e:
                raise StoreError(f"database: {e}") from e

    @property
    def _for_update(self) -> str:
        return " FOR UPDATE" if self.postgres else ""

    def _migrate(self) -> None:
        ddl = _SCHEMA.format(blob="BYTEA" if self.postgres else "BLOB",
                             real="DOUBLE PRECISION" if self.postgres else "REAL")
        with self.tx() as c:
            if self.postgres:  # one migrator at a time when dispatchers start together
                c.execute("SELECT pg_advisory_xact_lock(7013)")
            for stmt in filter(None, (s.strip() for s in ddl.split(";"))):
                c.execute(stmt)
            row = c.one("SELECT value FROM meta WHERE key='schema'")
            if row is None:
                c.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise StoreError(f"fleet database schema {row[0]}, this service reads {SCHEMA_VERSION}")

    # -- tokens -----------------------------------------------------------------------------

    def add_token(self, name: str, quota: int) -> str:
        """A new bearer token for `name` (returned once; only its hash is stored)."""
        proto.check_id("token name", name)
        if quota < 1:
            raise StoreError("the quota must be at least 1 task in flight")
        token = f"fn_{secrets.token_urlsafe(24)}"
        with self.tx() as c:
            if c.one("SELECT 1 FROM tokens WHERE name=?", (name,)):
                raise StoreError(f"a token named {name!r} exists already")
            c.execute("INSERT INTO tokens VALUES (?,?,?,?)", (name, hash_token(token), quota, time.time()))
        return token

    def token_name(self, token: str) -> str | None:
        with self.tx() as c:
            row = c.one("SELECT name FROM tokens WHERE hash=?", (hash_token(token),))
        return None if row is None else str(row[0])

    def tokens(self) -> list[tuple[str, int]]:
        with self.tx() as c:
            return [(str(r[0]), int(r[1])) for r in c.all("SELECT name, quota FROM tokens ORDER BY name")]

    # -- batches ----------------------------------------------------------------------------

    def put_model(self, sha256: str, data: bytes, manifest: bytes, inputs: list[dict[str, Any]],
                  outputs: int) -> None:
        with self.tx() as c:
            if c.one("SELECT 1 FROM models WHERE sha256=?", (sha256,)) is None:
                c.execute("INSERT INTO models VALUES (?,?,?,?,?)",
                          (sha256, data, manifest, json.dumps(inputs), outputs))

    def model(self, sha256: str) -> tuple[bytes, bytes] | None:
        with self.tx() as c:
            row = c.one("SELECT data, manifest FROM models WHERE sha256=?", (sha256,))
        return None if row is None else (bytes(row[0]), bytes(row[1]))

    def active_models(self) -> list[str]:
        with self.tx() as c:
            return [str(r[0]) for r in c.all(
                "SELECT DISTINCT model FROM batches WHERE state='running'")]

    def create_batch(self, token: str, model_sha: str, redundancy: int, tasks: Sequence[tuple[str, bytes]],
                     max_run_s: float = 60.0, deadline: float | None = None) -> str:
        """A batch of one task per (input name, input tensors). redundancy: ADAPTIVE or 1..8."""
        if redundancy != ADAPTIVE and not 1 <= redundancy <= 8:
            raise StoreError("redundancy must be 1..8 or adaptive")
        bid = secrets.token_hex(6)
        now = time.time()
        with self.tx() as c:
            row = c.one("SELECT quota FROM tokens WHERE name=?", (token,))
            if row is None:
                raise StoreError(f"no token named {token!r}")
            busy = c.one("SELECT COUNT(*) FROM tasks t JOIN batches b ON b.id=t.batch "
                         "WHERE b.token=? AND t.state='pending'", (token,))
            in_flight = int(busy[0]) if busy else 0
            if in_flight + len(tasks) > int(row[0]):
                raise QuotaError(f"quota: {in_flight} tasks in flight + {len(tasks)} new exceeds "
                                 f"this token's quota of {int(row[0])}")
            c.execute("INSERT INTO batches VALUES (?,?,?,?,?,?,?,?,?,?)",
                      (bid, token, model_sha, redundancy, "running", now, deadline, max_run_s,
                       len(tasks), None))
            quorum = 1 if redundancy == ADAPTIVE else redundancy
            c.many("INSERT INTO tasks (id, batch, idx, name, inputs, state, quorum) "
                   "VALUES (?,?,?,?,?,?,?)",
                   [(f"{bid}-{i}", bid, i, name, data, "pending", quorum)
                    for i, (name, data) in enumerate(tasks)])
        return bid

    def batch(self, bid: str) -> dict[str, Any]:
        with self.tx() as c:
            b = c.one("SELECT id, token, model, redundancy, state, created, deadline, tasks, finished "
                      "FROM batches WHERE id=?", (bid,))
            if b is None:
                raise UnknownBatch(f"no batch {bid!r}")
            groups = c.all("SELECT state, COUNT(*), MIN(error) FROM tasks WHERE batch=? GROUP BY state", (bid,))
            mism = c.one("SELECT COALESCE(SUM(mismatches), 0) FROM tasks WHERE batch=?", (bid,))
            flying = c.one("SELECT COUNT(*) FROM attempts a JOIN tasks t ON t.id=a.task "
                           "WHERE t.batch=? AND a.state='sent'", (bid,))
            work = c.one("SELECT COUNT(*) FROM attempts a JOIN tasks t ON t.id=a.task "
                         "WHERE t.batch=? AND a.state='ok'", (bid,))
        counts = {state: n for state, n, _ in groups}
        err = next((e for state, _, e in groups if state == "failed"), None)
        done = int(counts.get("done", 0))
        return {"id": b[0], "token": b[1], "model": b[2],
                "redundancy": "adaptive" if b[3] == ADAPTIVE else int(b[3]), "state": b[4],
                "created": b[5], "deadline": b[6], "tasks": int(b[7]), "done": done,
                "failed": int(counts.get("failed", 0)), "pending": int(counts.get("pending", 0)),
                "in_flight": int(flying[0]) if flying else 0,
                "mismatches": int(mism[0]) if mism else 0,
                "replicas_run": int(work[0]) if work else 0, "finished": b[8],
                "error": None if err is None else str(err)}

    def results(self, bid: str) -> list[tuple[str, bytes]]:
        """(input name, outputs envelope) of every settled task of the batch, in input order."""
        with self.tx() as c:
            if c.one("SELECT 1 FROM batches WHERE id=?", (bid,)) is None:
                raise UnknownBatch(f"no batch {bid!r}")
            rows = c.all("SELECT t.name, r.outputs FROM results r JOIN tasks t ON t.id=r.task "
                         "WHERE r.batch=? AND r.state='final' ORDER BY t.idx", (bid,))
        return [(str(n), bytes(o)) for n, o in rows]

    def cancel(self, bid: str) -> dict[str, Any]:
        now = time.time()
        with self.tx() as c:
            if c.one("SELECT 1 FROM batches WHERE id=?", (bid,)) is None:
                raise UnknownBatch(f"no batch {bid!r}")
            self._end(c, bid, "cancelled", now)
        return self.batch(bid)

    @staticmethod
    def _end(c: _Cursor, bid: str, state: str, now: float, error: str | None = None) -> None:
        """A running batch ends in `state` (cancelled, failed): its open tasks take that state
        (with `error`), its attempts in flight are cancelled, nothing of it is sent again."""
        c.execute("UPDATE batches SET state=?, finished=? WHERE id=? AND state='running'", (state, now, bid))
        c.execute("UPDATE tasks SET state=?, error=? WHERE batch=? AND state='pending'", (state, error, bid))
        c.execute("UPDATE attempts SET state='cancelled' WHERE state='sent' AND task IN "
                  "(SELECT id FROM tasks WHERE batch=?)", (bid,))

    def fail_model(self, sha256: str, reason: str) -> list[str]:
        """End every running batch of a model no car can be given (its stored manifest is
        refused): open tasks fail with `reason`, attempts in flight are cancelled. The ids of
        the batches ended."""
        now = time.time()
        with self.tx() as c:
            ids = [str(r[0]) for r in c.all(
                "SELECT id FROM batches WHERE model=? AND state='running'" + self._for_update,
                (sha256,))]
            for bid in ids:
                self._end(c, bid, "failed", now, reason)
        return ids

    def cancelled_jobs(self, since: float) -> list[str]:
        """Job ids of attempts cancelled in batches finished after `since` (to tell the cars)."""
        with self.tx() as c:
            return [str(r[0]) for r in c.all(
                "SELECT a.job_id FROM attempts a JOIN tasks t ON t.id=a.task JOIN batches b "
                "ON b.id=t.batch WHERE b.state='cancelled' AND b.finished>=? AND a.state='cancelled'",
                (since,))]

    def attempts(self, bid: str) -> list[dict[str, Any]]:
        """Every attempt of a batch's tasks: who ran it, how it ended, what became of it."""
        with self.tx() as c:
            rows = c.all("SELECT a.job_id, a.task, a.car, a.class, a.state, a.verdict, a.digest, "
                         "a.sent, a.received FROM attempts a JOIN tasks t ON t.id=a.task "
                         "WHERE t.batch=? ORDER BY a.sent", (bid,))
        keys = ("job_id", "task", "car", "compute_class", "state", "verdict", "digest", "sent",
                "received")
        return [dict(zip(keys, r)) for r in rows]

    def stored_results(self, bid: str) -> list[dict[str, Any]]:
        """The results rows of a batch (one per settled task), with the attempt each came from."""
        with self.tx() as c:
            rows = c.all("SELECT task, job_id, digest, replicas, state FROM results WHERE batch=? "
                         "ORDER BY task", (bid,))
        return [dict(zip(("task", "job_id", "digest", "replicas", "state"), r)) for r in rows]

    def batches(self) -> list[dict[str, Any]]:
        with self.tx() as c:
            ids = [str(r[0]) for r in c.all("SELECT id FROM batches ORDER BY created")]
        return [self.batch(i) for i in ids]

    # -- cars -------------------------------------------------------------------------------

    def upsert_car(self, st: proto.CarState) -> None:
        cls = st.compute.key if st.compute is not None else None
        reasons = json.dumps(list(st.reasons))
        now = time.time()
        with self.tx() as c:
            last = c.one("SELECT mode, reasons, online FROM car_modes WHERE car=? ORDER BY t DESC "
                         "LIMIT 1", (st.car,))
            if last is None or tuple(last) != (st.mode, reasons, int(st.online)):
                c.execute("INSERT INTO car_modes (car, t, mode, reasons, online) VALUES (?,?,?,?,?)",
                          (st.car, now, st.mode, reasons, int(st.online)))
            c.execute(
                "INSERT INTO cars (id, class, mode, reasons, online, accepting, capacity, pool, updated) "
                "VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET "
                "class=COALESCE(excluded.class, cars.class), mode=excluded.mode, "
                "reasons=excluded.reasons, online=excluded.online, accepting=excluded.accepting, "
                "capacity=excluded.capacity, pool=excluded.pool, updated=excluded.updated",
                (st.car, cls, st.mode, reasons, int(st.online),
                 int(st.accepting_jobs), st.capacity, st.pool, now))

    def cars(self) -> list[dict[str, Any]]:
        return self._cars("", ())

    def _cars(self, where: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        with self.tx() as c:
            rows = c.all("SELECT id, class, mode, reasons, online, accepting, reputation, validated, "
                         f"wrong, credits FROM cars {where} ORDER BY id", args)
        return [{"car": r[0], "compute_class": r[1], "mode": r[2], "reasons": json.loads(r[3]),
                 "online": bool(r[4]), "accepting_jobs": bool(r[5]), "reputation": int(r[6]),
                 "validated": int(r[7]), "wrong": int(r[8]), "credits": round(float(r[9]), 6)}
                for r in rows]

    def car(self, car: str) -> dict[str, Any] | None:
        """One car as `cars()` lists it, or None."""
        return next((c for c in self._cars("WHERE id=?", (car,))), None)

    def car_timeline(self, car: str, since: float, limit: int = 500) -> list[dict[str, Any]]:
        """The car's mode changes from `since` on (and the one in force at `since`), oldest first."""
        with self.tx() as c:
            before = c.one("SELECT t, mode, reasons, online FROM car_modes WHERE car=? AND t<? "
                           "ORDER BY t DESC LIMIT 1", (car, since))
            rows = c.all("SELECT t, mode, reasons, online FROM car_modes WHERE car=? AND t>=? "
                         "ORDER BY t LIMIT ?", (car, since, limit))
        out = [before, *rows] if before is not None else rows
        return [{"t": float(r[0]), "mode": r[1], "reasons": json.loads(r[2]), "online": bool(r[3])}
                for r in out]

    def car_attempts(self, car: str, limit: int = 100) -> list[dict[str, Any]]:
        """The car's latest answered attempts and what validation made of them, newest first."""
        with self.tx() as c:
            rows = c.all("SELECT a.job_id, t.batch, t.name, a.state, a.verdict, a.sent, a.received "
                         "FROM attempts a JOIN tasks t ON t.id=a.task WHERE a.car=? "
                         "AND a.received IS NOT NULL ORDER BY a.received DESC LIMIT ?", (car, limit))
        keys = ("job_id", "batch", "input", "state", "verdict", "sent", "received")
        return [dict(zip(keys, r)) for r in rows]

    def dashboard(self, window_s: float = 60.0, batches: int = 20) -> dict[str, Any]:
        """What the dashboard shows, in one read: cars by mode and the reasons of the cars that
        are not in RUN, work rate and dispatch latency over the last `window_s`, energy and credits
        of the last hour, replication overhead and mismatches, and the latest batches."""
        now = time.time()
        with self.tx() as c:
            cars = c.all("SELECT mode, reasons, online FROM cars")
            lat = c.all("SELECT received - sent FROM attempts WHERE received>=? AND state='ok' "
                        "ORDER BY received DESC LIMIT 10000", (now - window_s,))
            hour = c.get("SELECT COALESCE(SUM(energy_wh), 0), COALESCE(SUM(credits), 0), COUNT(*) "
                         "FROM grants WHERE t>=?", (now - 3600,))
            work = c.get("SELECT COUNT(*) FROM attempts WHERE state='ok'")
            settled = c.get("SELECT COUNT(*), COALESCE(SUM(replicas), 0) FROM results")
            mism = c.get("SELECT COALESCE(SUM(mismatches), 0) FROM tasks")
            wrong = c.get("SELECT COALESCE(SUM(wrong), 0) FROM cars")
            ids = [str(r[0]) for r in c.all("SELECT id FROM batches ORDER BY created DESC LIMIT ?",
                                            (batches,))]
        modes: dict[str, int] = {}
        reasons: dict[str, int] = {}
        for mode, rs, online in cars:
            m = str(mode) if online else "OFFLINE"
            modes[m] = modes.get(m, 0) + 1
            if m != "RUN":
                for r in json.loads(rs) or (["offline"] if not online else ["none given"]):
                    reasons[str(r)] = reasons.get(str(r), 0) + 1
        lat_s = [float(r[0]) for r in lat]
        n_settled, n_results = int(settled[0]), int(work[0])
        return {
            "t": now, "cars": len(cars), "modes": modes, "reasons": reasons,
            "tasks_per_s": len(lat_s) / window_s, "window_s": window_s,
            "latency_s": {f"p{q}": float(np.percentile(lat_s, q)) if lat_s else None for q in (50, 95, 99)},
            "energy_wh_per_h": float(hour[0]), "credits_per_h": float(hour[1]),
            "settled_tasks": n_settled, "results_run": n_results,
            "replication_overhead": (n_results / n_settled - 1.0) if n_settled else 0.0,
            "mismatches": int(mism[0]), "wrong_results": int(wrong[0]),
            "batches": [self.batch(i) for i in ids],
        }

    def _capacity(self, c: _Cursor, pool: str) -> int:
        """Jobs the available cars of `pool` take at once, minus the attempts in flight."""
        cap = c.one("SELECT COALESCE(SUM(CASE WHEN capacity > 0 THEN capacity ELSE 1 END), 0) "
                    "FROM cars WHERE online=1 AND accepting=1 AND mode='RUN' AND pool=?", (pool,))
        flying = c.one("SELECT COUNT(*) FROM attempts WHERE state='sent'")
        return int(cap[0] if cap else 0) - int(flying[0] if flying else 0)

    # -- dispatch ---------------------------------------------------------------------------

    def lease(self, owner: str, pool: str, limit: int, job_timeout_s: float,
              lease_s: float) -> list[Dispatch]:
        """Take up to `limit` attempts to send, and no more than the available cars of `pool`
        take at once beyond those in flight: open tasks that need more replicas than they have
        in flight, leased to `owner` until now + lease_s. Attempts older than the job timeout
        are given up (a late result still counts)."""
        now = time.time()
        out: list[Dispatch] = []
        with self.tx() as c:
            c.execute("UPDATE attempts SET state='timeout' WHERE state='sent' AND sent < ?",
                      (now - job_timeout_s,))
            limit = min(limit, self._capacity(c, pool))
            if limit <= 0:
                return []
            rows = c.all(
                "SELECT t.id, t.quorum, t.agree, b.model, b.max_run_s, t.inputs, "
                "(SELECT COUNT(*) FROM attempts a WHERE a.task=t.id AND a.state='sent') AS flying, "
                # Refusals (a busy car, one excluded from the task) are no tries.
                "(SELECT COUNT(*) FROM attempts a WHERE a.task=t.id "
                "AND a.state NOT IN ('sent', 'preempted')) AS tried "
                "FROM tasks t JOIN batches b ON b.id=t.batch "
                "WHERE t.state='pending' AND t.not_before <= ? "
                "AND (t.lease_owner IS NULL OR t.lease_owner=? OR t.lease_until < ?) "
                "AND t.agree + (SELECT COUNT(*) FROM attempts a WHERE a.task=t.id AND a.state='sent')"
                " < t.quorum ORDER BY b.created, t.idx LIMIT ?"
                + (" FOR UPDATE OF t SKIP LOCKED" if self.postgres else ""),
                (now, owner, now, limit))
            for tid, quorum, agree, model, max_run_s, inputs, flying, tried in rows:
                need = min(int(quorum) - int(agree) - int(flying), limit - len(out))
                limit_attempts = self.rule.max_attempts_per_replica * max(2, int(quorum))
                if int(tried) >= limit_attempts:
                    c.execute("UPDATE tasks SET state='failed', error=? WHERE id=?",
                              (f"no agreement within {tried} attempts", tid))
                    self._maybe_finish(c, str(tid).rsplit("-", 1)[0], now)
                    continue
                done_by = [str(r[0]) for r in c.all(
                    "SELECT DISTINCT car FROM attempts WHERE task=? AND car IS NOT NULL AND state='ok'",
                    (tid,))]
                for _ in range(max(0, need)):
                    job_id = f"{tid}.{secrets.token_hex(4)}"
                    c.execute("INSERT INTO attempts (job_id, task, dispatcher, sent, state) "
                              "VALUES (?,?,?,?,?)", (job_id, tid, owner, now, "sent"))
                    out.append(Dispatch(job_id, str(tid), str(model), bytes(inputs), float(max_run_s),
                                        tuple(sorted(done_by))[:64]))
                c.execute("UPDATE tasks SET attempts=attempts+?, lease_owner=?, lease_until=? WHERE id=?",
                          (max(0, need), owner, now + lease_s, tid))
        return out

    def record(self, results: Sequence[tuple[proto.JobResult, str | None]]) -> list[Outcome]:
        """Store results (each with its car's compute class), all in one transaction, and settle
        the tasks whose quorum agrees. One Outcome per result, in order."""
        now = time.time()
        with self.tx() as c:
            if self.postgres:
                # Settling touches several cars' rows in an order no two transactions share;
                # dispatchers take turns here rather than deadlock (SQLite's writer lock does it).
                c.execute("SELECT pg_advisory_xact_lock(7014)")
            return [self._record(c, res, cls, now) for res, cls in results]

    def _record(self, c: _Cursor, res: proto.JobResult, cls: str | None, now: float) -> Outcome:
        row = c.one("SELECT task, state FROM attempts WHERE job_id=?", (res.job_id,))
        if row is None:
            return Outcome("unknown")
        tid, state = str(row[0]), str(row[1])
        if state not in ("sent", "timeout"):
            return Outcome("duplicate")
        task = c.one("SELECT state, quorum, batch FROM tasks WHERE id=?" + self._for_update, (tid,))
        if task is None:
            return Outcome("unknown")
        if res.outcome in proto.RETRYABLE_OUTCOMES:  # not now: it goes out again soon
            c.execute("UPDATE attempts SET state=?, car=?, received=? WHERE job_id=?",
                      (res.outcome, res.car, now, res.job_id))
            # Jittered: the broker deals jobs round-robin, so two tasks resent in step could each
            # land on the one car that must not run it, again and again.
            c.execute("UPDATE tasks SET not_before=? WHERE id=?",
                      (now + self.rng.uniform(0.02, 0.3), tid))
            return Outcome("retry")
        if res.outcome != "ok":
            c.execute("UPDATE attempts SET state=?, car=?, received=? WHERE job_id=?",
                      (res.outcome, res.car, now, res.job_id))
            return Outcome("stored")
        outputs = res.output_bytes
        digest = hashlib.sha256(outputs).hexdigest()
        # Two replicas of one task on one car (two attempts in flight, the broker chose the same
        # car) are no cross-check: the second is kept but counts for nothing.
        twice = c.one("SELECT 1 FROM attempts WHERE task=? AND car=? AND state='ok'", (tid, res.car))
        c.execute("UPDATE attempts SET state='ok', car=?, class=?, digest=?, outputs=?, run_s=?, "
                  "received=?, verdict=? WHERE job_id=?",
                  (res.car, cls, digest, outputs, res.run_s, now, "same_car" if twice else None,
                   res.job_id))
        if task[0] != "pending":
            return Outcome("late")
        if twice:
            return Outcome("same_car")
        return self._settle(c, tid, int(task[1]), str(task[2]), now)

    def _settle(self, c: _Cursor, tid: str, quorum: int, bid: str, now: float) -> Outcome:
        oks = c.all("SELECT job_id, car, class, digest, run_s, verdict FROM attempts WHERE task=? "
                    "AND state='ok' AND (verdict IS NULL OR verdict <> 'same_car') ORDER BY received",
                    (tid,))
        groups: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        for r in oks:
            groups.setdefault((str(r[2]), str(r[3])), []).append(r)
        best_key, best = max(groups.items(), key=lambda kv: len(kv[1]))
        b = c.get("SELECT redundancy, max_run_s FROM batches WHERE id=?", (bid,))
        redundancy, max_run_s = int(b[0]), float(b[1])
        same_class = [k for k in groups if k[0] == best_key[0]]
        mismatched = len(same_class) > 1
        out = Outcome("stored")
        if len(best) < quorum:
            if mismatched:
                c.execute("UPDATE tasks SET agree=?, mismatches=? WHERE id=?",
                          (len(best), len(same_class) - 1, tid))
            else:
                c.execute("UPDATE tasks SET agree=? WHERE id=?", (len(best), tid))
            return out
        if quorum == 1 and redundancy == ADAPTIVE:
            car = str(best[0][1])
            rep = c.one("SELECT reputation FROM cars WHERE id=?", (car,))
            if not self.rule.stands_alone(int(rep[0]) if rep else 0, self.rng.random()):
                c.execute("UPDATE tasks SET quorum=2, agree=1 WHERE id=?", (tid,))
                return out
            self._accept(c, tid, bid, best, best_key[1], max_run_s, now, validated=False)
        else:
            self._accept(c, tid, bid, best, best_key[1], max_run_s, now, validated=quorum >= 2)
        c.execute("UPDATE tasks SET state='done', agree=?, mismatches=?, lease_owner=NULL WHERE id=?",
                  (len(best), len(same_class) - 1, tid))
        out.status, out.settled_task = "settled", tid
        for key in same_class:
            if key == best_key:
                continue
            for r in groups[key]:
                out.convicted.append(str(r[1]))
                c.execute("UPDATE attempts SET verdict='wrong' WHERE job_id=?", (r[0],))
                out.reopened += self._convict(c, str(r[1]), now)
        self._maybe_finish(c, bid, now)
        return out

    def _accept(self, c: _Cursor, tid: str, bid: str, group: list[tuple[Any, ...]], digest: str,
                max_run_s: float, now: float, validated: bool) -> None:
        first = group[0]
        outputs = c.get("SELECT outputs FROM attempts WHERE job_id=?", (first[0],))
        energy = self.rate.energy_wh([r[4] for r in group], max_run_s)
        credits = self.rate.credits(energy)
        if c.one("SELECT 1 FROM results WHERE task=?", (tid,)) is None:
            c.execute("INSERT INTO results VALUES (?,?,?,?,?,?,?,?)",
                      (tid, bid, first[0], digest, outputs[0], len(group), "final", now))
        else:  # a re-run of a result that stood alone: the one row is settled again
            c.execute("UPDATE results SET job_id=?, digest=?, outputs=?, replicas=?, state='final', "
                      "stored=? WHERE task=?", (first[0], digest, outputs[0], len(group), now, tid))
        for r in group:
            job_id, car = str(r[0]), str(r[1])
            already = r[5] == "alone"  # granted when it first stood alone
            c.execute("UPDATE attempts SET verdict=? WHERE job_id=?",
                      ("valid" if validated else "alone", job_id))
            if validated:
                # A car once caught stays at zero until an operator clears it (clear_car).
                c.execute("UPDATE cars SET validated=validated+1, reputation=CASE WHEN wrong=0 "
                          "THEN reputation+1 ELSE 0 END WHERE id=?", (car,))
            if not already:
                c.execute("INSERT INTO grants VALUES (?,?,?,?,?,?,?,?)",
                          (job_id, car, job_id, tid, credits, energy, now, 0))
                c.execute("UPDATE cars SET credits=credits+? WHERE id=?", (credits, car))

    def _convict(self, c: _Cursor, car: str, now: float) -> int:
        """A wrong result: reputation zero, and the car's recent lone results are re-run."""
        c.execute("UPDATE cars SET reputation=0, wrong=wrong+1 WHERE id=?", (car,))
        rows = c.all("SELECT a.task FROM attempts a JOIN results r ON r.task=a.task AND r.job_id=a.job_id "
                     "WHERE a.car=? AND a.verdict='alone' AND r.state='final' "
                     "ORDER BY a.received DESC LIMIT ?", (car, self.rule.rerun_window))
        for (tid,) in rows:
            c.execute("UPDATE results SET state='suspect' WHERE task=?", (tid,))
            c.execute("UPDATE tasks SET state='pending', quorum=2, agree=1 WHERE id=?", (tid,))
            c.execute("UPDATE batches SET state='running', finished=NULL WHERE id=(SELECT batch FROM "
                      "tasks WHERE id=?) AND state='done'", (tid,))
        return len(rows)

    def clear_car(self, car: str) -> bool:
        """An operator's pardon: the car's wrong results are forgotten, its reputation rebuilds."""
        with self.tx() as c:
            if c.one("SELECT 1 FROM cars WHERE id=?", (car,)) is None:
                return False
            c.execute("UPDATE cars SET wrong=0, reputation=0 WHERE id=?", (car,))
        return True

    def _maybe_finish(self, c: _Cursor, bid: str, now: float) -> None:
        left = c.one("SELECT COUNT(*) FROM tasks WHERE batch=? AND state='pending'", (bid,))
        if left is not None and int(left[0]) == 0:
            c.execute("UPDATE batches SET state='done', finished=? WHERE id=? AND state='running'",
                      (now, bid))

    # -- grants -----------------------------------------------------------------------------

    def unsent_grants(self, limit: int = 500) -> list[proto.CreditGrant]:
        with self.tx() as c:
            rows = c.all("SELECT id, car, job_id, task, credits, energy_wh, t FROM grants "
                         "WHERE sent=0 ORDER BY t LIMIT ?", (limit,))
        return [proto.CreditGrant(str(r[0]), str(r[1]), str(r[2]), str(r[3]), float(r[4]),
                                  float(r[5]), float(r[6])) for r in rows]

    def grants_sent(self, ids: Sequence[str]) -> None:
        with self.tx() as c:
            c.many("UPDATE grants SET sent=1 WHERE id=?", [(i,) for i in ids])

    def metrics(self) -> dict[str, float]:
        with self.tx() as c:
            tasks = dict(c.all("SELECT state, COUNT(*) FROM tasks GROUP BY state"))
            attempts = dict(c.all("SELECT state, COUNT(*) FROM attempts GROUP BY state"))
            cars = c.one("SELECT COUNT(*), COALESCE(SUM(online), 0), COALESCE(SUM(credits), 0), "
                         "COALESCE(SUM(wrong), 0) FROM cars")
        m: dict[str, float] = {f'fleet_tasks{{state="{k}"}}': float(v) for k, v in tasks.items()}
        m.update({f'fleet_attempts{{state="{k}"}}': float(v) for k, v in attempts.items()})
        if cars:
            m.update({"fleet_cars": float(cars[0]), "fleet_cars_online": float(cars[1]),
                      "fleet_credits_granted_total": float(cars[2]),
                      "fleet_wrong_results_total": float(cars[3])})
        return m


class _Cursor:
    """SQLite's `?` placeholders on either backend."""

    def __init__(self, cur: Any, postgres: bool) -> None:
        self._cur = cur
        self._pg = postgres

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._pg else sql

    def execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        self._cur.execute(self._sql(sql), tuple(args))

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cur.executemany(self._sql(sql), [tuple(r) for r in rows])

    def one(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self._cur.execute(self._sql(sql), tuple(args))
        row = self._cur.fetchone()
        return None if row is None else tuple(row)

    def get(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...]:
        """One row that must exist (a row this transaction's own reads found)."""
        row = self.one(sql, args)
        if row is None:
            raise StoreError(f"the database lost a row: {sql[:60]}")
        return row

    def all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cur.execute(self._sql(sql), tuple(args))
        return [tuple(r) for r in self._cur.fetchall()]
