"""Building blocks for governor tests: a safe parked car, states at a given instant."""

from __future__ import annotations

from dataclasses import replace

from agent.bus.state import LinkStatus, Reading, Value, VehicleState
from agent.governor import Policy
from agent.governor.policy import Departure, Dwell

WALL0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC, a Friday
MONO0 = 1000.0

# A car parked in P, plugged in and charging at 7 kW, cool, nobody around.
SAFE: dict[str, Value] = {
    "gear": "P", "speed_kph": 0.0, "driver_present": False, "door_open": False,
    "soc_percent": 70.0, "charge_cable": True, "charging_power_kw": 7.0,
    "pack_temp_max_c": 25.0, "compute_temp_c": 50.0,
}

# Rules tested one at a time: no dwell, no schedule, nothing else in the way.
BARE = Policy(dwell=Dwell(min_off_s=0.0, min_run_s=0.0), departure=Departure())


def state(now: float = MONO0, link: bool = True, ages: dict[str, float] | None = None,
          **values: Value | None) -> VehicleState:
    """A state seen at `now`; a value of None leaves the role out (unknown)."""
    merged = {**SAFE, **values}
    ages = ages or {}
    readings = {k: Reading(v, now - ages.get(k, 0.0)) for k, v in merged.items() if v is not None}
    return VehicleState(readings, LinkStatus(link, "" if link else "serial port closed", now))


def policy(**kw: object) -> Policy:
    return replace(BARE, **kw)  # type: ignore[arg-type]
