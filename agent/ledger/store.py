"""The owner's energy ledger: what lending the car cost and earned, in SQLite (WAL).

Owns the ledger's schema and every query on it. One row per job outcome, one row per hour
(energy in Wh, busy time, grid vs battery energy, cost under the owner's tariff, credits) and
one row per departure (SoC reached vs target). Credits come in two kinds: claimed (what the
car's own accounting says its jobs earned) and granted (what the fleet paid for results it
verified, one row per grant, each recorded once however often it arrives). A job spanning hours is split across them in
proportion to the time it ran in each. Times are wall seconds; hours are UTC-aligned buckets.

The agent keeps these tables in the same SQLite file as its outbox (agent/fleet/outbox.py), so
a job's row here and its result there are committed in one transaction (`entry` prepares the
row, `write` adds it to the outbox's transaction): a crash leaves both or neither, and a job
is never counted without its result or twice. Read by `fleetnode report`: WAL, so a reader in
another process never blocks the writer; synchronous=FULL, as for every durable state here.
A write the disk refuses raises agent.storage.StorageError; a bad figure raises LedgerError.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from agent.clock import Clock
from agent.governor.policy import Tariff
from agent.runner.runner import JobOutcome, Outcome
from agent.storage import StorageError, Transaction, adopt_tables, open_read_only, open_state_db

SCHEMA_VERSION = 1
MAX_JOB_S = 7 * 86400.0  # a longer job is a clock error, not work
# The ledger's own meta table: the outbox sharing the file has a `meta` of its own.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT NOT NULL, outcome TEXT NOT NULL, started REAL NOT NULL, ended REAL NOT NULL,
    duration_s REAL NOT NULL, energy_wh REAL NOT NULL, grid_wh REAL NOT NULL,
    battery_wh REAL NOT NULL, cost REAL NOT NULL, credits REAL NOT NULL, error TEXT,
    PRIMARY KEY (job_id, started, outcome)
);
CREATE TABLE IF NOT EXISTS hours (
    hour REAL PRIMARY KEY, busy_s REAL NOT NULL, energy_wh REAL NOT NULL, grid_wh REAL NOT NULL,
    battery_wh REAL NOT NULL, cost REAL NOT NULL, credits REAL NOT NULL, jobs INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS departures (
    wall REAL PRIMARY KEY, soc_percent REAL NOT NULL, target_percent REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
    grant_id TEXT PRIMARY KEY, wall REAL NOT NULL, job_id TEXT NOT NULL, task TEXT NOT NULL,
    credits REAL NOT NULL, energy_wh REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_ended ON jobs (ended);
CREATE INDEX IF NOT EXISTS grants_wall ON grants (wall);
"""


class LedgerError(Exception):
    """The ledger file cannot be opened, is not a ledger, or is damaged."""


STATE_FILE = "state.sqlite"  # in the agent's state dir: the outbox and the ledger


def default_path() -> Path:
    """$FLEETNODE_LEDGER, else $XDG_STATE_HOME/fleetnode/state.sqlite (~/.local/state/…)."""
    env = os.environ.get("FLEETNODE_LEDGER")
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "fleetnode" / STATE_FILE


def grid_share(charging_power_w: float | None, base_load_w: float, compute_w: float) -> float:
    """The fraction of compute energy the charger supplied: its surplus over the base load."""
    if charging_power_w is None or not math.isfinite(charging_power_w) or charging_power_w <= 0:
        return 0.0
    if compute_w <= 0:
        return 1.0
    return min(1.0, max(0.0, (charging_power_w - base_load_w) / compute_w))


@dataclass(frozen=True)
class HourRow:
    hour: float  # wall seconds at the start of the UTC hour
    busy_s: float
    energy_wh: float
    grid_wh: float
    battery_wh: float
    cost: float
    credits: float
    jobs: int


@dataclass(frozen=True)
class DepartureRow:
    wall: float
    soc_percent: float
    target_percent: float

    @property
    def met(self) -> bool:
        return self.soc_percent >= self.target_percent


@dataclass(frozen=True)
class Summary:
    start: float
    end: float
    busy_s: float = 0.0
    energy_wh: float = 0.0
    grid_wh: float = 0.0
    battery_wh: float = 0.0
    cost: float = 0.0
    credits: float = 0.0  # claimed
    granted: float = 0.0  # granted by the fleet for verified results
    grants: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    departures: tuple[DepartureRow, ...] = ()

    @property
    def hours_lent(self) -> float:
        return self.busy_s / 3600.0


@dataclass(frozen=True)
class LedgerEntry:
    """One job's ledger rows, validated and split by hour, not yet written."""

    job: tuple[object, ...]  # the jobs row
    hours: tuple[tuple[float, float, float, float, float, float, float], ...]

    @property
    def job_id(self) -> str:
        return str(self.job[0])

    def write(self, db: sqlite3.Connection) -> bool:
        """Add the rows inside the caller's open transaction (on any connection to the file).
        False, writing nothing, when the job id is counted already: a job counts once."""
        if db.execute("SELECT 1 FROM jobs WHERE job_id=?", (self.job_id,)).fetchone():
            return False
        db.execute("INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?)", self.job)
        for i, (hour, busy, wh, gwh, bwh, cost, cr) in enumerate(self.hours):
            db.execute(
                "INSERT INTO hours VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(hour) DO UPDATE SET "
                "busy_s=busy_s+excluded.busy_s, energy_wh=energy_wh+excluded.energy_wh, "
                "grid_wh=grid_wh+excluded.grid_wh, battery_wh=battery_wh+excluded.battery_wh, "
                "cost=cost+excluded.cost, credits=credits+excluded.credits, jobs=jobs+excluded.jobs",
                (hour, busy, wh, gwh, bwh, cost, cr, 1 if i == len(self.hours) - 1 else 0))
        return True


def check_ledger(path: str | Path) -> str | None:
    """What is wrong with the ledger in the state file (None: nothing): its schema version,
    read-only, for `fleetnode doctor` while the agent may be running. The file's integrity is
    agent.storage.check_state_file's."""
    try:
        db = open_read_only(path)
        try:
            row = db.execute("SELECT value FROM ledger_meta WHERE key='schema'").fetchone()
        finally:
            db.close()
    except sqlite3.Error as e:
        return f"cannot read: {e}"
    if row is None or row[0] != str(SCHEMA_VERSION):
        return f"ledger schema {None if row is None else row[0]}, this agent reads {SCHEMA_VERSION}"
    return None


class Ledger:
    """Append-only accounting of lent compute. Thread-safe; close() when done."""

    def __init__(self, path: str | Path, tariff: Tariff | None = None, timezone: str = "UTC") -> None:
        from zoneinfo import ZoneInfo

        self.path = Path(path)
        self.tariff = tariff or Tariff()
        self.zone = ZoneInfo(timezone)
        self._lock = threading.Lock()
        self._db = open_state_db(self.path, _SCHEMA)  # StorageError names the file and cause
        try:
            with self._tx() as db:
                row = db.execute("SELECT value FROM ledger_meta WHERE key='schema'").fetchone()
                if row is None:
                    db.execute("INSERT INTO ledger_meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        except StorageError:
            self._db.close()
            raise
        if row is not None and str(row[0]) != str(SCHEMA_VERSION):
            self._db.close()
            raise LedgerError(f"{self.path}: ledger schema {row[0]}, this agent reads {SCHEMA_VERSION}")

    def _tx(self) -> Transaction:
        return Transaction(self._lock, self._db, self.path, write=True)

    def adopt(self, legacy: Path) -> int:
        """Take over the ledger of an older agent that kept it in a file of its own."""
        return adopt_tables(self._db, self._lock, self.path, legacy, ("jobs", "hours", "departures"))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------------------

    def record(self, outcome: JobOutcome, clock: Clock, *, grid_fraction: float = 1.0,
               credits: float = 0.0) -> None:
        """Record a runner outcome, turning its monotonic times into wall times through `clock`."""
        self.commit(self.entry(outcome, clock, grid_fraction=grid_fraction, credits=credits))

    def entry(self, outcome: JobOutcome, clock: Clock, *, grid_fraction: float = 1.0,
              credits: float = 0.0) -> LedgerEntry:
        """The rows a runner outcome adds, ready for `write` inside another transaction."""
        offset = clock.time() - clock.monotonic()
        return self.job_entry(outcome.job_id, outcome.outcome, outcome.started + offset,
                              outcome.ended + offset, outcome.energy_wh, grid_fraction=grid_fraction,
                              credits=credits, error=outcome.error)

    def record_job(self, job_id: str, outcome: Outcome, started: float, ended: float,
                   energy_wh: float, *, grid_fraction: float = 1.0, credits: float = 0.0,
                   error: str | None = None) -> None:
        self.commit(self.job_entry(job_id, outcome, started, ended, energy_wh,
                                   grid_fraction=grid_fraction, credits=credits, error=error))

    def job_entry(self, job_id: str, outcome: Outcome, started: float, ended: float,
                  energy_wh: float, *, grid_fraction: float = 1.0, credits: float = 0.0,
                  error: str | None = None) -> LedgerEntry:
        """One job's energy, split over the hours it ran in. Credits only count for DONE work."""
        for name, v in (("started", started), ("ended", ended), ("energy_wh", energy_wh),
                        ("grid_fraction", grid_fraction), ("credits", credits)):
            if not math.isfinite(v):
                raise LedgerError(f"{name} must be a finite number, not {v!r}")
        if ended < started or energy_wh < 0 or credits < 0 or not 0.0 <= grid_fraction <= 1.0:
            raise LedgerError(f"job {job_id!r}: inconsistent figures (ended before started, "
                              f"negative energy or credits, or grid share outside 0..1)")
        if ended - started > MAX_JOB_S:
            raise LedgerError(f"job {job_id!r}: ran {ended - started:.0f} s, longer than any job can")
        if outcome is not Outcome.DONE:
            credits = 0.0
        duration = ended - started
        rows = []
        total_cost = 0.0
        for hour, a, b in self._split(started, ended):
            share = (b - a) / duration if duration > 0 else 1.0
            wh = energy_wh * share
            cost = wh / 1000.0 * self.price_at((a + b) / 2)
            total_cost += cost
            rows.append((hour, b - a, wh, wh * grid_fraction, wh * (1 - grid_fraction), cost,
                         credits * share))
        job = (job_id, outcome.value, started, ended, duration, energy_wh,
               energy_wh * grid_fraction, energy_wh * (1 - grid_fraction), total_cost, credits, error)
        return LedgerEntry(job, tuple(rows))

    def commit(self, entry: LedgerEntry) -> None:
        """Write an entry in a transaction of its own."""
        with self._tx() as db:
            entry.write(db)

    def record_grant(self, grant_id: str, wall: float, job_id: str, task: str, credits: float,
                     energy_wh: float) -> bool:
        """One grant from the fleet. Returns False for a grant already recorded (a resend)."""
        for name, v in (("wall", wall), ("credits", credits), ("energy_wh", energy_wh)):
            if not math.isfinite(v) or v < 0:
                raise LedgerError(f"grant {grant_id!r}: {name} must be a finite number >= 0")
        with self._lock:
            try:
                cur = self._db.execute("INSERT OR IGNORE INTO grants VALUES (?,?,?,?,?,?)",
                                       (grant_id, wall, job_id, task, credits, energy_wh))
                return cur.rowcount == 1
            except sqlite3.Error as e:
                raise LedgerError(f"cannot write to ledger {self.path}: {e}") from e

    def record_departure(self, wall: float, soc_percent: float, target_percent: float) -> None:
        if not all(math.isfinite(v) for v in (wall, soc_percent, target_percent)):
            raise LedgerError("departure figures must be finite numbers")
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO departures VALUES (?,?,?)",
                       (wall, soc_percent, target_percent))

    # -- reading --------------------------------------------------------------------------------

    def price_at(self, wall: float) -> float:
        return self.tariff.price_at(dt.datetime.fromtimestamp(wall, self.zone))

    def day_start(self, wall: float) -> float:
        """Wall seconds of the local midnight that starts `wall`'s day."""
        local = dt.datetime.fromtimestamp(wall, self.zone)
        return dt.datetime.combine(local.date(), dt.time(), self.zone).timestamp()

    def hourly(self, start: float, end: float) -> list[HourRow]:
        rows = self._query("SELECT * FROM hours WHERE hour >= ? AND hour < ? ORDER BY hour",
                           (math.floor(start / 3600) * 3600, end))
        return [HourRow(*r) for r in rows]

    def departures(self, start: float, end: float) -> list[DepartureRow]:
        rows = self._query("SELECT * FROM departures WHERE wall >= ? AND wall < ? ORDER BY wall",
                           (start, end))
        return [DepartureRow(*r) for r in rows]

    def summary(self, start: float, end: float) -> Summary:
        """Totals for jobs over [start, end), by the hours they ran in."""
        hours = [h for h in self.hourly(start, end) if h.hour + 3600 > start]
        outcomes = {str(row[0]): int(row[1]) for row in self._query(
            "SELECT outcome, COUNT(*) FROM jobs WHERE ended >= ? AND ended < ? GROUP BY outcome",
            (start, end))}
        granted, grants = self._query(
            "SELECT COALESCE(SUM(credits), 0), COUNT(*) FROM grants WHERE wall >= ? AND wall < ?",
            (start, end))[0]
        return Summary(
            start, end, busy_s=sum(h.busy_s for h in hours), energy_wh=sum(h.energy_wh for h in hours),
            grid_wh=sum(h.grid_wh for h in hours), battery_wh=sum(h.battery_wh for h in hours),
            cost=sum(h.cost for h in hours), credits=sum(h.credits for h in hours),
            granted=float(granted), grants=int(grants), outcomes=outcomes,
            departures=tuple(self.departures(start, end)))

    def day_end(self, wall: float) -> float:
        """Wall seconds of the next local midnight (DST days are 23 or 25 hours long)."""
        return self.day_start(self.day_start(wall) + 86400 + 3600)

    def today(self, wall: float) -> Summary:
        return self.summary(self.day_start(wall), self.day_end(wall))

    def energy_today(self, wall: float) -> tuple[float, float]:
        """(Wh, cost) of today's compute: the governor's caps read this through Inputs."""
        s = self.summary(self.day_start(wall), wall + 1)
        return s.energy_wh, s.cost

    # -- internals ------------------------------------------------------------------------------

    @staticmethod
    def _split(start: float, end: float) -> list[tuple[float, float, float]]:
        """[(hour, a, b)]: the pieces of [start, end] inside each UTC hour."""
        out = []
        hour = math.floor(start / 3600) * 3600
        a = start
        while True:
            b = min(end, hour + 3600)
            out.append((float(hour), a, b))
            if b >= end:
                return out
            hour, a = hour + 3600, b

    def _query(self, sql: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return list(self._db.execute(sql, args).fetchall())
            except sqlite3.Error as e:
                raise LedgerError(f"cannot read ledger {self.path}: {e}") from e

