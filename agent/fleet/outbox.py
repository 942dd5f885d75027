"""The car's durable outbox: results stay on disk until the fleet acknowledges them.

One SQLite file holds, per job id, where the job stands on this car:
- `accepted`: handed to the runner, not yet answered (after a crash, these are answered
  "preempted" on restart, so every accepted job still ends in a reply);
- `outbox`: the answer, waiting for the fleet's application-level acknowledgement;
- `answered`: every job id this car has answered, kept for the dedup window, so a job the broker
  delivers twice is answered once.
A record leaves `outbox` only when the consumer's ack names its job id: a PUBACK only proves
the broker took the message, and mosquitto's persistence is a periodic snapshot that can lose it.

The file may hold other tables of the car's state: `answer` runs the caller's `also(db)` in the
same transaction, which is how a job's ledger row and its result are committed together (a
crash leaves both or neither). Every write that fails because of the disk (full, read-only,
I/O error) raises `agent.storage.StorageError` after rolling back; nothing half-written stays.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.storage import Transaction, adopt_tables, open_read_only, open_state_db


@dataclass(frozen=True)
class OutboxRecord:
    job_id: str
    topic: str
    payload: bytes
    seq: int
    attempts: int


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS accepted (
    job_id TEXT PRIMARY KEY, submitter TEXT NOT NULL, t REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    job_id TEXT PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL, seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS outbox_next ON outbox (next_try, seq);
CREATE TABLE IF NOT EXISTS answered (job_id TEXT PRIMARY KEY, t REAL NOT NULL);
CREATE INDEX IF NOT EXISTS answered_t ON answered (t);
"""

NEW, ACCEPTED, ANSWERED = "new", "accepted", "answered"


class Outbox:
    """Thread-safe; every method is one transaction. Times: `wall` for retention, `mono` for retries."""

    def __init__(self, path: str | Path, dedup_window_s: float = 7 * 86400.0,
                 max_answered: int = 200_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dedup_window_s = dedup_window_s
        self.max_answered = max_answered
        self._lock = threading.Lock()
        self._db = open_state_db(self.path, SCHEMA)
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('seq', 0)")
            # Retry times are monotonic seconds of the previous process: meaningless now.
            db.execute("UPDATE outbox SET next_try = 0")

    def _tx(self) -> Transaction:
        return Transaction(self._lock, self._db, self.path, write=True)

    def _read(self) -> Transaction:
        # A read takes no write lock: it works on a full or read-only disk.
        return Transaction(self._lock, self._db, self.path, write=False)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def status(self, job_id: str) -> str:
        with self._read() as db:
            if db.execute("SELECT 1 FROM answered WHERE job_id=?", (job_id,)).fetchone():
                return ANSWERED
            if db.execute("SELECT 1 FROM accepted WHERE job_id=?", (job_id,)).fetchone():
                return ACCEPTED
        return NEW

    def accept(self, job_id: str, submitter: str, wall: float) -> bool:
        """Record a job as taken. False when this job id was seen before (a duplicate)."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM answered WHERE job_id=?", (job_id,)).fetchone():
                return False
            cur = db.execute("INSERT OR IGNORE INTO accepted VALUES (?,?,?)", (job_id, submitter, wall))
            return cur.rowcount == 1

    def submitter(self, job_id: str) -> str | None:
        with self._read() as db:
            row = db.execute("SELECT submitter FROM accepted WHERE job_id=?", (job_id,)).fetchone()
        return None if row is None else str(row[0])

    def accepted(self) -> list[tuple[str, str]]:
        with self._read() as db:
            return [(str(j), str(s)) for j, s in
                    db.execute("SELECT job_id, submitter FROM accepted ORDER BY t")]

    def answer(self, job_id: str, topic: str, build: Callable[[int], bytes], wall: float,
               also: Callable[[sqlite3.Connection], object] | None = None) -> int | None:
        """Store the one answer to a job; `build(seq)` makes its payload. None if already answered.
        `also(db)` writes more rows in the same transaction (the job's ledger row)."""
        with self._tx() as db:
            if db.execute("SELECT 1 FROM answered WHERE job_id=?", (job_id,)).fetchone():
                return None
            seq = int(db.execute("SELECT value FROM meta WHERE key='seq'").fetchone()[0]) + 1
            db.execute("UPDATE meta SET value=? WHERE key='seq'", (seq,))
            db.execute("INSERT INTO outbox (job_id, topic, payload, seq) VALUES (?,?,?,?)",
                       (job_id, topic, build(seq), seq))
            db.execute("INSERT INTO answered VALUES (?,?)", (job_id, wall))
            db.execute("DELETE FROM accepted WHERE job_id=?", (job_id,))
            if also is not None:
                also(db)
            return seq

    def adopt(self, legacy: Path) -> int:
        """Take over the outbox of an older agent that kept it in a file of its own: pending
        answers, accepted and answered job ids, the sequence number. Returns rows copied."""
        seq = ("UPDATE main.meta SET value = MAX(value, COALESCE((SELECT value FROM legacy.meta "
               "WHERE key='seq'), 0)) WHERE key='seq'")
        return adopt_tables(self._db, self._lock, self.path, legacy,
                            ("accepted", "outbox", "answered"),
                            then=(seq, "UPDATE main.outbox SET next_try = 0"))

    def probe(self) -> None:
        """One small write transaction: raises StorageError while the disk cannot take it."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('probe', "
                       "COALESCE((SELECT value FROM meta WHERE key='probe'), 0) + 1)")

    def due(self, mono: float, limit: int) -> list[OutboxRecord]:
        with self._read() as db:
            rows = db.execute(
                "SELECT job_id, topic, payload, seq, attempts FROM outbox WHERE next_try <= ? "
                "ORDER BY seq LIMIT ?", (mono, limit)).fetchall()
        return [OutboxRecord(str(j), str(t), bytes(p), int(s), int(a)) for j, t, p, s, a in rows]

    def next_due(self) -> float | None:
        with self._read() as db:
            row = db.execute("SELECT MIN(next_try) FROM outbox").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def sent(self, job_id: str, retry_at_mono: float) -> None:
        with self._tx() as db:
            db.execute("UPDATE outbox SET attempts = attempts + 1, next_try=? WHERE job_id=?",
                       (retry_at_mono, job_id))

    def retry_all_now(self) -> None:
        """After a reconnect: everything not yet acknowledged goes out again at once."""
        with self._tx() as db:
            db.execute("UPDATE outbox SET next_try = 0")

    def acknowledge(self, job_ids: Iterable[str]) -> int:
        with self._tx() as db:
            n = 0
            for j in job_ids:
                n += db.execute("DELETE FROM outbox WHERE job_id=?", (j,)).rowcount
            return n

    def depth(self) -> int:
        with self._read() as db:
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def oldest_wall(self) -> float | None:
        """Wall time at which the oldest unacknowledged answer was stored (None: the outbox is empty)."""
        with self._read() as db:
            row = db.execute("SELECT MIN(a.t) FROM outbox o JOIN answered a ON a.job_id = o.job_id").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def prune(self, wall: float) -> int:
        """Forget answered job ids older than the dedup window, and beyond the row cap."""
        with self._tx() as db:
            n = db.execute("DELETE FROM answered WHERE t < ? AND job_id NOT IN "
                           "(SELECT job_id FROM outbox)", (wall - self.dedup_window_s,)).rowcount
            over = int(db.execute("SELECT COUNT(*) FROM answered").fetchone()[0]) - self.max_answered
            if over > 0:
                n += db.execute("DELETE FROM answered WHERE job_id IN (SELECT job_id FROM answered "
                                "WHERE job_id NOT IN (SELECT job_id FROM outbox) ORDER BY t LIMIT ?)",
                                (over,)).rowcount
            return n


def inspect_outbox(path: str | Path) -> tuple[int, float | None]:
    """(depth, wall time of the oldest unacknowledged answer) of the state file, read-only: for
    `fleetnode doctor` while the agent may be running. Raises sqlite3.Error if unreadable."""
    db = open_read_only(path)
    try:
        depth = int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        row = db.execute("SELECT MIN(a.t) FROM outbox o JOIN answered a ON a.job_id = o.job_id").fetchone()
    finally:
        db.close()
    return depth, None if row is None or row[0] is None else float(row[0])
