"""What the governor hears besides the car: wall time, the fleet's grid signal, link health,
whether the car's state dir can be written.

Plain data filled in by the service; the governor never fetches any of it itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GridSignal:
    """A price or carbon signal the fleet may send; any field may be absent."""

    t: float  # monotonic seconds when it arrived
    price_per_kwh: float | None = None
    carbon_g_per_kwh: float | None = None
    power_cap_w: float | None = None  # demand response: the most this car should draw


@dataclass(frozen=True)
class Inputs:
    wall: float | None = None  # epoch seconds; None: schedules, tariffs and caps cannot be judged
    grid: GridSignal | None = None
    broker_down_since: float | None = None  # monotonic seconds; None while connected
    decode_errors_per_s: float = 0.0  # from the bus reader's counters
    # Of those, frames whose id the DBC knows with another length: a second bus or the wrong DBC.
    length_mismatches_per_s: float = 0.0
    energy_today_wh: float | None = None  # the ledger's figure; the governor keeps its own too
    cost_today: float | None = None
    storage_fault: str | None = None  # why the state dir cannot be written; None: it can
