"""`fleetnode run` with a failpoint: the process SIGKILLs itself at one instant of a job's end.

$FLEETNODE_KILL_AT picks the instant, on the first job that finishes DONE:
- `finish`: the runner has reported the outcome; nothing of it is stored yet;
- `commit`: inside the transaction that stores result and ledger row, before its COMMIT;
- `stored`: the transaction is committed; the result has not been published;
- `sent`: the result has been handed to the MQTT client; whether it left is up to the kernel.
A real SIGKILL, as the kernel's OOM killer or a watchdog would send: no handler runs.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from typing import Any

from agent import cli, service
from agent.fleet.outbox import Outbox
from agent.ledger.store import LedgerEntry
from agent.runner.runner import JobOutcome, Outcome

PHASES = ("finish", "commit", "stored", "sent")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(phase: str) -> None:
    if phase == "finish":
        on_outcome = service.Agent._on_outcome

        def killing_on_outcome(self: service.Agent, link: Any, sink: Any, store: Any,
                               o: JobOutcome) -> None:
            if o.outcome is Outcome.DONE:
                die()
            on_outcome(self, link, sink, store, o)

        service.Agent._on_outcome = killing_on_outcome  # type: ignore[method-assign]
    elif phase == "commit":
        write = LedgerEntry.write

        def killing_write(self: LedgerEntry, db: sqlite3.Connection) -> bool:
            written = write(self, db)
            if self.job[1] == Outcome.DONE.value:
                die()
            return written

        LedgerEntry.write = killing_write  # type: ignore[method-assign]
    elif phase in ("stored", "sent"):
        answer, sent = Outbox.answer, Outbox.sent
        done: set[str] = set()

        def killing_answer(self: Outbox, job_id: str, topic: str, build: Callable[[int], bytes],
                           wall: float, also: Any = None) -> int | None:
            seq = answer(self, job_id, topic, build, wall, also)
            entry = getattr(also, "__self__", None)  # the job's LedgerEntry.write
            if seq is not None and isinstance(entry, LedgerEntry) \
                    and entry.job[1] == Outcome.DONE.value:
                if phase == "stored":
                    die()
                done.add(job_id)
            return seq

        def killing_sent(self: Outbox, job_id: str, retry_at_mono: float) -> None:
            sent(self, job_id, retry_at_mono)  # called right after the result's publish
            if job_id in done:
                die()

        Outbox.answer = killing_answer  # type: ignore[method-assign]
        Outbox.sent = killing_sent  # type: ignore[method-assign]
    else:
        raise SystemExit(f"FLEETNODE_KILL_AT must be one of {PHASES}, not {phase!r}")


if __name__ == "__main__":
    phase = os.environ.get("FLEETNODE_KILL_AT", "")
    if phase:
        install(phase)
    sys.exit(cli.main())
