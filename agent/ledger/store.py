"""The owner's energy ledger: what lending the car cost and earned, in SQLite (WAL).

Owns the ledger's schema and every query on it. One row per job outcome, one row per hour
(energy in Wh, busy time, grid vs battery energy, cost under the owner's tariff, credits) and
one row per departure (SoC reached vs target). A job spanning hours is split across them in
proportion to the time it ran in each. Times are wall seconds; hours are UTC-aligned buckets.

Written from the runner's outcome thread and read by `fleetnode report`: one connection
guarded by a lock, WAL so a reader in another process never blocks the writer.
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

SCHEMA_VERSION = 1
MAX_JOB_S = 7 * 86400.0  # a longer job is a clock error, not work
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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
CREATE INDEX IF NOT EXISTS jobs_ended ON jobs (ended);
"""


class LedgerError(Exception):
    """The ledger file cannot be opened, is not a ledger, or is damaged."""


def default_path() -> Path:
    """$FLEETNODE_LEDGER, else $XDG_STATE_HOME/fleetnode/ledger.sqlite (~/.local/state/…)."""
    env = os.environ.get("FLEETNODE_LEDGER")
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "fleetnode" / "ledger.sqlite"


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
    credits: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    departures: tuple[DepartureRow, ...] = ()

    @property
    def hours_lent(self) -> float:
        return self.busy_s / 3600.0


def check_ledger(path: str | Path) -> str | None:
    """What is wrong with a ledger file (None: nothing): SQLite's integrity check and the schema
    version, read-only, for `fleetnode doctor` while the agent may be running."""
    try:
        db = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True, timeout=2.0)
        try:
            problems = [str(r[0]) for r in db.execute("PRAGMA integrity_check").fetchall()]
            row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        finally:
            db.close()
    except sqlite3.Error as e:
        return f"cannot read: {e}"
    if problems != ["ok"]:
        return "integrity check: " + "; ".join(problems[:3])
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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=5.0,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise LedgerError(f"{self.path}: ledger schema {row[0]}, this agent reads {SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as e:
            raise LedgerError(f"cannot open ledger {self.path}: {e}") from e

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
        offset = clock.time() - clock.monotonic()
        self.record_job(outcome.job_id, outcome.outcome, outcome.started + offset,
                        outcome.ended + offset, outcome.energy_wh, grid_fraction=grid_fraction,
                        credits=credits, error=outcome.error)

    def record_job(self, job_id: str, outcome: Outcome, started: float, ended: float,
                   energy_wh: float, *, grid_fraction: float = 1.0, credits: float = 0.0,
                   error: str | None = None) -> None:
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
        segments = self._split(started, ended)
        rows = []
        total_cost = 0.0
        for hour, a, b in segments:
            share = (b - a) / duration if duration > 0 else 1.0
            wh = energy_wh * share
            cost = wh / 1000.0 * self.price_at((a + b) / 2)
            total_cost += cost
            rows.append((hour, b - a, wh, wh * grid_fraction, wh * (1 - grid_fraction), cost,
                         credits * share))
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT OR REPLACE INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (job_id, outcome.value, started, ended, duration, energy_wh,
                     energy_wh * grid_fraction, energy_wh * (1 - grid_fraction), total_cost,
                     credits, error))
                for i, (hour, busy, wh, gwh, bwh, cost, cr) in enumerate(rows):
                    self._db.execute(
                        "INSERT INTO hours VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(hour) DO UPDATE SET "
                        "busy_s=busy_s+excluded.busy_s, energy_wh=energy_wh+excluded.energy_wh, "
                        "grid_wh=grid_wh+excluded.grid_wh, battery_wh=battery_wh+excluded.battery_wh, "
                        "cost=cost+excluded.cost, credits=credits+excluded.credits, jobs=jobs+excluded.jobs",
                        (hour, busy, wh, gwh, bwh, cost, cr, 1 if i == len(rows) - 1 else 0))
                self._db.execute("COMMIT")
            except sqlite3.Error as e:
                self._rollback()
                raise LedgerError(f"cannot write to ledger {self.path}: {e}") from e

    def record_departure(self, wall: float, soc_percent: float, target_percent: float) -> None:
        if not all(math.isfinite(v) for v in (wall, soc_percent, target_percent)):
            raise LedgerError("departure figures must be finite numbers")
        with self._lock:
            try:
                self._db.execute("INSERT OR REPLACE INTO departures VALUES (?,?,?)",
                                 (wall, soc_percent, target_percent))
            except sqlite3.Error as e:
                raise LedgerError(f"cannot write to ledger {self.path}: {e}") from e

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
        return Summary(
            start, end, busy_s=sum(h.busy_s for h in hours), energy_wh=sum(h.energy_wh for h in hours),
            grid_wh=sum(h.grid_wh for h in hours), battery_wh=sum(h.battery_wh for h in hours),
            cost=sum(h.cost for h in hours), credits=sum(h.credits for h in hours),
            outcomes=outcomes,
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

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
