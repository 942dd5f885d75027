"""The agent's log: one structured record per event, to journald under systemd, else JSON lines.

Owns the log's wire formats: journald's native protocol (fields MESSAGE, PRIORITY,
SYSLOG_IDENTIFIER, FLEETNODE_LOGGER, and FLEETNODE_MODE, FLEETNODE_REASON, JOB_ID when the event
has them), and one JSON object per line on stderr otherwise. Under systemd, stderr is the
journal's stream ($JOURNAL_STREAM names it); the agent then sends each record as one datagram
to journald's socket, and falls back to stderr lines with an sd-daemon `<N>` priority prefix
if the socket refuses.

Events carry only the fields in FIELDS: a record's other attributes never reach the log, so no
vehicle reading (location, speed, SoC), no key and no certificate can be logged by accident.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import sys
from typing import Any, TextIO

JOURNAL_SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "fleetnode"
# extra={...} key -> journald field. Nothing else of a record is written.
FIELDS = {"mode": "FLEETNODE_MODE", "reason": "FLEETNODE_REASON", "job_id": "JOB_ID",
          "outcome": "FLEETNODE_OUTCOME", "car": "FLEETNODE_CAR"}
MAX_MESSAGE = 16 << 10  # a datagram journald takes without a memfd


def priority(levelno: int) -> int:
    """syslog priority of a logging level: 2 crit, 3 err, 4 warning, 6 info, 7 debug."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def _message(record: logging.LogRecord) -> str:
    text = record.getMessage()
    if record.exc_info:
        text += "\n" + logging.Formatter().formatException(record.exc_info)
    return text[:MAX_MESSAGE]


def _fields(record: logging.LogRecord) -> dict[str, str]:
    return {key: str(getattr(record, key)) for key in FIELDS if getattr(record, key, None) is not None}


class JsonLines(logging.Handler):
    """One JSON object per record, on one line: t, level, logger, msg and the event's fields."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = json.dumps({"t": round(record.created, 3), "level": record.levelname.lower(),
                               "logger": record.name, "msg": _message(record), **_fields(record)})
            self.stream.write(line + "\n")
            self.stream.flush()
        except Exception:  # noqa: BLE001 -- logging must never take the agent down
            self.handleError(record)


def read_lines(lines: list[str]) -> list[dict[str, Any]]:
    """The log records among an agent's output lines (JSON objects with a 'level'; status lines
    and other text are skipped): for the bench and tests that read what the agent said."""
    out = []
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and "level" in obj:
            out.append(obj)
    return out


def journal_datagram(record: logging.LogRecord) -> bytes:
    """A record in journald's native protocol: KEY=value lines; a value with a newline is sent as
    KEY, newline, its length as 64-bit little endian, the value, newline."""
    fields = {"MESSAGE": _message(record), "PRIORITY": str(priority(record.levelno)),
              "SYSLOG_IDENTIFIER": IDENTIFIER, "FLEETNODE_LOGGER": record.name}
    fields.update({FIELDS[k]: v for k, v in _fields(record).items()})
    out = bytearray()
    for key, value in fields.items():
        data = value.encode("utf-8", "replace")
        if b"\n" in data:
            out += key.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += key.encode() + b"=" + data + b"\n"
    return bytes(out)


class Journal(logging.Handler):
    """Sends each record to journald; if the socket refuses, writes `<N>message` to stderr,
    which journald's stream reader parses as that priority."""

    def __init__(self, path: str = JOURNAL_SOCKET, fallback: TextIO | None = None) -> None:
        super().__init__()
        self.path = path
        self.fallback = fallback or sys.stderr
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.failures = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sock.sendto(journal_datagram(record), self.path)
            return
        except OSError:
            self.failures += 1
        try:
            prefix = f"<{priority(record.levelno)}>"
            self.fallback.write("".join(prefix + line + "\n" for line in _message(record).splitlines() or [""]))
            self.fallback.flush()
        except Exception:  # noqa: BLE001 -- logging must never take the agent down
            self.handleError(record)

    def close(self) -> None:
        self.sock.close()
        super().close()


def under_journal(stream: TextIO) -> bool:
    """True if `stream` is the journal stream systemd gave us ($JOURNAL_STREAM = device:inode)."""
    want = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in want.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup(stream: TextIO | None = None, level: int = logging.INFO, journal_socket: str = JOURNAL_SOCKET) -> logging.Handler:
    """Route the agent's records (root logger) to the journal or to JSON lines; returns the handler."""
    stream = stream or sys.stderr
    handler: logging.Handler = Journal(journal_socket, stream) if under_journal(stream) else JsonLines(stream)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, (Journal, JsonLines))]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def event(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    """Log one event with its fields (keys of FIELDS only; anything else is refused)."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"not a log field: {', '.join(sorted(unknown))}")
    logger.log(level, msg, extra=fields)
