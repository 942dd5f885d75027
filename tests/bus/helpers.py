"""Shared helpers of the bus tests: wait on the StateStore with a deadline, a full car state,
and Model 3 frames encoded by cantools straight from the community DBC (used in place)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cantools.database.can import Database

from agent.bus.slcan import CanFrame
from agent.bus.state import StateStore, VehicleState
from hil.scenario import dbc_path

MODEL3_DBC = dbc_path("../shared/vehicles/Model3CAN.dbc")

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


def community_frame(db: Database, message: str, **signals: Any) -> CanFrame:
    """Encode one message from the community DBC: unnamed signals are 0 (raw)."""
    msg = db.get_message_by_name(message)
    values: dict[str, Any] = {s.name: 0 for s in msg.signals}
    # Raw 0 is below the physical minimum of offset signals; start those at their minimum.
    for s in msg.signals:
        if s.offset and s.minimum is not None:
            values[s.name] = s.minimum
    values.update(signals)
    data = msg.encode(values, strict=False)
    return CanFrame(msg.frame_id, bytes(data), msg.is_extended_frame)


def community_frames(db: Database, car: dict[str, Any]) -> list[CanFrame]:
    """The frames a Model 3 in this state sends, written with the community DBC's own names."""
    gear_names = {"P": "DI_GEAR_P", "R": "DI_GEAR_R", "N": "DI_GEAR_N", "D": "DI_GEAR_D"}
    frames = [
        community_frame(db, "ID118DriveSystemStatus", DI_gear=gear_names[car["gear"]]),
        community_frame(db, "ID257UIspeed", UIspeed_signed257=car["speed_kph"]),
        community_frame(
            db,
            "ID3A1VCFRONT_vehicleStatus",
            VCFRONT_driverPresent=int(car["driver_present"]),
            VCFRONT_driverDoorStatus="DOOR_OPEN" if car["door_open"] else "DOOR_CLOSED",
        ),
        community_frame(
            db,
            "ID25DCP_status",
            CP_chargeCablePresent="CABLE_PRESENT" if car["charge_cable"] else "CABLE_NOT_PRESENT",
        ),
    ]
    if "soc_percent" in car:  # the battery and charger side, when the test gives it
        frames += [
            community_frame(db, "ID292BMS_SOC", SOCUI292=car["soc_percent"]),
            community_frame(db, "ID00CUI_status", UI_systemActive=int(car["vehicle_awake"])),
            community_frame(
                db, "ID264ChargeLineStatus", ChargeLinePower264=car["charging_power_kw"]
            ),
            community_frame(
                db,
                "ID132HVBattAmpVolt",
                BattVoltage132=car["pack_voltage_v"],
                SmoothBattCurrent132=car["pack_current_a"],
            ),
            community_frame(
                db,
                "ID312BMSthermal",
                BMSminPackTemperature=car["pack_temp_min_c"],
                BMSmaxPackTemperature=car["pack_temp_max_c"],
            ),
        ]
    if "departure_event" in car:
        frames += [
            community_frame(
                db, "ID102VCLEFT_doorStatus", VCLEFT_frontHandlePulled=int(car["departure_event"])
            ),
            community_frame(
                db,
                "ID2F3UI_hvacRequest",
                UI_hvacReqUserPowerState="PRECONDITION" if car["cabin_preconditioning"] else "OFF",
                UI_hvacReqTempSetpointLeft=21.0,
                UI_hvacReqTempSetpointRight=21.0,
            ),
            community_frame(
                db,
                "ID212BMS_status",
                BMS_uiChargeStatus="BMS_CHARGE_COMPLETE"
                if car["charge_limit_reached"]
                else "BMS_CHARGING",
            ),
        ]
    return frames
