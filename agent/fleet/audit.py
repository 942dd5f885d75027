"""The owner's audit log: every message the car sent to the fleet, kept locally for a while.

The link writes one row per publish (time, topic, QoS, retain, size and the payload as sent:
JSON verbatim, a binary job result as its header plus the tensor byte count, since tensors are
the fleet's data, not the owner's). `fleetnode audit` reads it. Rows older than the retention
or beyond the row cap are deleted as new ones arrive.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_RETENTION_S = 30 * 86400.0
DEFAULT_MAX_ROWS = 200_000


@dataclass(frozen=True)
class AuditEntry:
    t: float  # wall seconds
    topic: str
    qos: int
    retain: bool
    size: int  # payload bytes as sent
    content: str  # what was sent, for people

    def as_dict(self) -> dict[str, object]:
        return {"t": self.t, "topic": self.topic, "qos": self.qos, "retain": self.retain,
                "size": self.size, "content": self.content}


def describe_payload(payload: bytes) -> str:
    if payload[:2] == b"FN" and len(payload) >= 8:
        (hlen,) = struct.unpack_from(">I", payload, 4)
        header = payload[8:8 + hlen].decode("utf-8", errors="replace")
        return f"{header} + {max(0, len(payload) - 8 - hlen)} tensor bytes"
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return f"<{len(payload)} binary bytes>"


class AuditLog:
    def __init__(self, path: str | Path, retention_s: float = DEFAULT_RETENTION_S,
                 max_rows: int = DEFAULT_MAX_ROWS) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.retention_s = retention_s
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS sent (id INTEGER PRIMARY KEY, t REAL, "
                         "topic TEXT, qos INTEGER, retain INTEGER, size INTEGER, content TEXT)")
        self._db.execute("CREATE INDEX IF NOT EXISTS sent_t ON sent (t)")
        self._writes = 0

    def record(self, t: float, topic: str, qos: int, retain: bool, payload: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT INTO sent (t, topic, qos, retain, size, content) "
                             "VALUES (?,?,?,?,?,?)",
                             (t, topic, qos, int(retain), len(payload), describe_payload(payload)))
            self._writes += 1
            if self._writes % 100 == 1:
                self._prune_locked(t)
            self._db.commit()

    def _prune_locked(self, now: float) -> None:
        self._db.execute("DELETE FROM sent WHERE t < ?", (now - self.retention_s,))
        self._db.execute("DELETE FROM sent WHERE id <= (SELECT MAX(id) FROM sent) - ?",
                         (self.max_rows,))

    def prune(self, now: float) -> None:
        with self._lock:
            self._prune_locked(now)
            self._db.commit()

    def entries(self, since: float | None = None, topic_contains: str | None = None,
                limit: int | None = None) -> Iterator[AuditEntry]:
        q = "SELECT t, topic, qos, retain, size, content FROM sent WHERE t >= ?"
        args: list[object] = [since if since is not None else 0.0]
        if topic_contains:
            q += " AND instr(topic, ?) > 0"
            args.append(topic_contains)
        q += " ORDER BY id"
        if limit is not None:
            q += " LIMIT ?"
            args.append(int(limit))
        with self._lock:
            rows = self._db.execute(q, args).fetchall()
        for t, topic, qos, retain, size, content in rows:
            yield AuditEntry(float(t), str(topic), int(qos), bool(retain), int(size), str(content))

    def summary(self) -> dict[str, object]:
        with self._lock:
            rows = self._db.execute("SELECT topic, COUNT(*), SUM(size) FROM sent GROUP BY topic").fetchall()
        return {"topics": {t: {"messages": n, "bytes": b} for t, n, b in rows}}

    def close(self) -> None:
        with self._lock:
            self._db.close()


def dump_json(entry: AuditEntry) -> str:
    return json.dumps(entry.as_dict(), separators=(",", ":"))
