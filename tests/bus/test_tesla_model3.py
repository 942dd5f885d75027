"""The tesla-model3 profile against the community Model3CAN.dbc (used in place, never copied):
frames are built by cantools straight from the DBC, with physical values and value-table names,
then go through SLCAN and the profile, and must come out as the right roles."""

from __future__ import annotations

import pytest
from cantools.database.can import Database

from agent.bus.profile import VehicleProfile
from agent.bus.slcan import CanFrame, SlcanParser, encode_frame
from agent.bus.state import ROLES
from tests.bus.helpers import PARKED_CHARGING, community_frame, community_frames


def through_the_wire(tesla: VehicleProfile, frames: list[CanFrame]) -> dict[str, object]:
    parser = SlcanParser()
    roles: dict[str, object] = {}
    for f in parser.feed(b"".join(encode_frame(f) for f in frames)):
        roles.update(tesla.decode(f))
    assert parser.bad_lines == 0
    return roles


def test_profile_binds_to_the_community_dbc(tesla: VehicleProfile) -> None:
    # The community DBC carries no compute module: its temperature comes from elsewhere.
    assert set(tesla.roles) == set(ROLES) - {"compute_temp_c"}
    ids = {0x00C, 0x102, 0x118, 0x132, 0x212, 0x257, 0x25D, 0x264, 0x292, 0x2F3, 0x312, 0x3A1}
    assert set(tesla.frame_ids) == ids


def test_parked_and_charging(db: Database, tesla: VehicleProfile) -> None:
    on_this_bus = {role: v for role, v in PARKED_CHARGING.items() if role in tesla.roles}
    assert through_the_wire(tesla, community_frames(db, PARKED_CHARGING)) == on_this_bus


def test_driving(db: Database, tesla: VehicleProfile) -> None:
    driving = {
        "gear": "D",
        "speed_kph": 87.44,
        "driver_present": True,
        "door_open": False,
        "charge_cable": False,
    }
    assert through_the_wire(tesla, community_frames(db, driving)) == driving


@pytest.mark.parametrize(
    ("name", "gear"),
    [("DI_GEAR_R", "R"), ("DI_GEAR_N", "N"), ("DI_GEAR_INVALID", None), ("DI_GEAR_SNA", None)],
)
def test_gear_table_including_invalid_and_sna(
    db: Database, tesla: VehicleProfile, name: str, gear: str | None
) -> None:
    frame = community_frame(db, "ID118DriveSystemStatus", DI_gear=name)
    assert tesla.decode(frame) == {"gear": gear}


def test_door_open(db: Database, tesla: VehicleProfile) -> None:
    frame = community_frame(db, "ID3A1VCFRONT_vehicleStatus", VCFRONT_driverDoorStatus="DOOR_OPEN")
    assert tesla.decode(frame)["door_open"] is True


def test_out_of_range_pack_temperature_reads_unknown(db: Database, tesla: VehicleProfile) -> None:
    # Raw 0x1FF is 102.75 degC, above the DBC's [-25|100]: unknown, never a hot-but-valid reading.
    msg = db.get_message_by_name("ID312BMSthermal")
    raw = {s.name: 0 for s in msg.signals}
    raw["BMSmaxPackTemperature"] = 0x1FF
    raw["BMSminPackTemperature"] = 160  # 15 degC
    frame = CanFrame(msg.frame_id, bytes(msg.encode(raw, scaling=False, strict=False)))
    assert tesla.decode(frame) == {"pack_temp_min_c": 15.0, "pack_temp_max_c": None}


def test_profile_encode_agrees_with_the_community_dbc(db: Database, tesla: VehicleProfile) -> None:
    # The inverse mapping (used by the HIL simulator) must produce what cantools decodes back.
    frames = tesla.encode({"gear": "R", "soc_percent": 12.3, "pack_voltage_v": 301.5})
    decoded = {f.arb_id: db.decode_message(f.arb_id, f.data) for f in frames}
    assert str(decoded[0x118]["DI_gear"]) == "DI_GEAR_R"
    assert decoded[0x292]["SOCUI292"] == pytest.approx(12.3)
    assert decoded[0x132]["BattVoltage132"] == pytest.approx(301.5)


def test_departure_and_charge_limit(db: Database, tesla: VehicleProfile) -> None:
    leaving = {
        **PARKED_CHARGING,
        "departure_event": True,
        "cabin_preconditioning": True,
        "charge_limit_reached": True,
    }
    roles = through_the_wire(tesla, community_frames(db, leaving))
    assert roles["departure_event"] is True
    assert roles["cabin_preconditioning"] is True
    assert roles["charge_limit_reached"] is True
    overheat = community_frame(
        db, "ID2F3UI_hvacRequest", UI_hvacReqUserPowerState="OVERHEAT_PROTECT"
    )
    assert tesla.decode(overheat)["cabin_preconditioning"] is False
