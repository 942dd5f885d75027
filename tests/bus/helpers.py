"""Shared helpers of the bus tests: wait on the StateStore with a deadline, a full car state."""

from __future__ import annotations

import time
from collections.abc import Callable

from agent.bus.state import StateStore, VehicleState

PARKED_CHARGING: dict[str, object] = {
    "soc_percent": 62.5,
    "gear": "P",
    "speed_kph": 0.0,
    "driver_present": False,
    "door_open": False,
    "vehicle_awake": True,
    "charge_cable": True,
    "charging_power_kw": 7.2,
    "pack_voltage_v": 398.5,
    "pack_current_a": 17.5,
    "pack_temp_min_c": 21.5,
    "pack_temp_max_c": 24.0,
    "departure_event": False,
    "cabin_preconditioning": False,
    "charge_limit_reached": False,
    "compute_temp_c": 45.5,
}


def wait_for_state(
    store: StateStore, predicate: Callable[[VehicleState], bool], timeout: float = 5.0
) -> VehicleState:
    """Block until predicate(snapshot) holds; fail the test at the deadline (no blind sleeps)."""
    deadline = time.monotonic() + timeout
    gen = store.generation
    while True:
        snap = store.snapshot()
        if predicate(snap):
            return snap
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"state never matched within {timeout} s; last: {snap}")
        gen = store.wait_changed(gen, min(left, 0.2))


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, poll: float = 0.01) -> None:
    """For conditions the store cannot signal (counters): poll with a deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(poll)
