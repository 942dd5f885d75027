"""VehicleState: what the agent knows about the car, every value with the time it was seen.

Pure data, no I/O: the governor depends on this module and nothing else from the bus layer.
A value older than its freshness limit, or never seen, reads as None ("unknown"), and the
governor treats unknown as unsafe.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

Value = float | bool | str

# The roles a vehicle profile maps DBC signals to, with their types. Names follow COVESA VSS
# where a VSS name exists (Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed -> soc_percent).
ROLES: dict[str, type] = {
    "soc_percent": float,
    "gear": str,  # "P", "R", "N", "D"
    "speed_kph": float,
    "driver_present": bool,
    "door_open": bool,
    "charge_cable": bool,
    "charging_power_kw": float,
    "pack_voltage_v": float,
    "pack_current_a": float,
    "pack_temp_min_c": float,
    "pack_temp_max_c": float,
    "vehicle_awake": bool,
    "compute_temp_c": float,
    # Departure signals and the charge-limit hold (read by the governor's rules 1 and 4).
    "departure_event": bool,  # unlock, key approach, charge-port release: a departure starts
    "cabin_preconditioning": bool,  # the owner (or a schedule) warms/cools the cabin to leave
    "charge_limit_reached": bool,  # plugged in and held at the charge limit, zero current
}

GEARS = ("P", "R", "N", "D")
DEFAULT_MAX_AGE_S = 2.0


@dataclass(frozen=True)
class Reading:
    value: Value
    t: float  # monotonic seconds when the frame carrying it arrived


@dataclass(frozen=True)
class LinkStatus:
    up: bool
    reason: str  # a sentence for people; empty when up
    since: float  # monotonic seconds of the last change


@dataclass(frozen=True)
class VehicleState:
    """An immutable snapshot of the car, as the governor sees it at one instant."""

    readings: Mapping[str, Reading] = field(default_factory=dict)
    link: LinkStatus = LinkStatus(up=False, reason="no serial link yet", since=0.0)

    def age(self, role: str, now: float) -> float | None:
        r = self.readings.get(role)
        return None if r is None else max(0.0, now - r.t)

    def value(self, role: str, now: float, max_age: float = DEFAULT_MAX_AGE_S) -> Value | None:
        """The role's value, or None when it is unknown, invalid or older than max_age."""
        r = self.readings.get(role)
        if r is None or now - r.t > max_age or now < r.t - 1.0:
            return None
        return r.value

    def as_dict(self, now: float, max_age: float = DEFAULT_MAX_AGE_S) -> dict[str, Value | None]:
        return {role: self.value(role, now, max_age) for role in ROLES}


class StateStore:
    """The mutable, thread-safe side: the bus reader writes, everyone else takes snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readings: dict[str, Reading] = {}
        self._link = LinkStatus(up=False, reason="no serial link yet", since=0.0)
        self._generation = 0
        self._changed = threading.Condition(self._lock)

    def update(self, role: str, value: Value | None, t: float) -> None:
        """Record a decoded value; None (SNA/invalid) forgets the role so it reads as unknown."""
        self.update_many({role: value}, t)

    def update_many(self, values: Mapping[str, Value | None], t: float) -> None:
        """Record the roles of one frame under one lock and one wake-up (the reader's hot path)."""
        for role in values:
            if role not in ROLES:
                raise KeyError(f"unknown role {role!r}")
        with self._lock:
            for role, value in values.items():
                if value is None:
                    self._readings.pop(role, None)
                else:
                    self._readings[role] = Reading(value, t)
            self._generation += 1
            self._changed.notify_all()

    def set_link(self, up: bool, reason: str, t: float) -> None:
        with self._lock:
            if up != self._link.up or reason != self._link.reason:
                self._link = LinkStatus(up, reason, t)
                if not up:
                    self._readings.clear()
                self._generation += 1
                self._changed.notify_all()

    def snapshot(self) -> VehicleState:
        with self._lock:
            return VehicleState(dict(self._readings), self._link)

    def wait_changed(self, generation: int, timeout: float) -> int:
        """Block until the state changes after `generation` (or timeout); returns the new one."""
        with self._lock:
            self._changed.wait_for(lambda: self._generation != generation, timeout)
            return self._generation

    @property
    def generation(self) -> int:
        with self._lock:
            return self._generation
