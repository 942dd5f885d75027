"""Vehicle profiles: the reference car both ways, SNA and range checks, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.bus import profile as profile_module
from agent.bus.errors import DecodeError, EncodeError, LengthMismatchError, ProfileError
from agent.bus.profile import ROLE_VSS, VehicleProfile, shipped_profiles
from agent.bus.slcan import CanFrame
from agent.bus.state import ROLES
from tests.bus.helpers import MODEL3_DBC, PARKED_CHARGING

REF_DBC = Path(__file__).parents[2] / "agent/bus/vehicles/fleetnode_ref.dbc"


@pytest.fixture(scope="module")
def ref() -> VehicleProfile:
    return VehicleProfile.load("reference")


def decode_all(profile: VehicleProfile, frames: list[CanFrame]) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in frames:
        out.update(profile.decode(f))
    return out


def test_shipped_profiles() -> None:
    assert {"reference", "tesla-model3"} <= set(shipped_profiles())
    assert set(ROLE_VSS) == set(ROLES)


def test_reference_covers_every_vehicle_role(ref: VehicleProfile) -> None:
    assert set(ref.roles) == set(ROLES)
    assert ref.frame_ids == [0x102, 0x312, 0x313, 0x388, 0x3A0]


def test_reference_round_trip(ref: VehicleProfile) -> None:
    assert decode_all(ref, ref.encode(PARKED_CHARGING)) == PARKED_CHARGING  # type: ignore[arg-type]


@pytest.mark.parametrize("gear", ["P", "R", "N", "D"])
def test_every_gear(ref: VehicleProfile, gear: str) -> None:
    assert decode_all(ref, ref.encode({"gear": gear}))["gear"] == gear


def test_none_encodes_as_sna_and_reads_unknown(ref: VehicleProfile) -> None:
    frames = ref.encode({role: None for role in ref.roles})
    assert decode_all(ref, frames) == {role: None for role in ref.roles}


def test_raw_sna_and_out_of_range_values_read_unknown(ref: VehicleProfile) -> None:
    # VCU_DriveStatus: gear 7 (GEAR_SNA), speed 0xFFFF (SNA), driver 2 (no table entry).
    frame = CanFrame(0x102, bytes([0x07 | (2 << 3), 0xFF, 0xFF, 0, 0, 0, 0, 0]))
    values = ref.decode(frame)
    assert values["gear"] is None and values["speed_kph"] is None
    assert values["driver_present"] is None
    # Gear 0 (GEAR_INIT) is in the value table but not mapped to P/R/N/D.
    assert ref.decode(CanFrame(0x102, bytes(8)))["gear"] is None
    # SoC raw 1022 = 102.2 %, outside the DBC's [0|100]: invalid, not clamped.
    soc = ref.decode(CanFrame(0x312, bytes([0, 0, 0, 0, 0xFE, 0x03, 0, 0])))
    assert soc["soc_percent"] is None


def test_unknown_ids_and_remote_frames_carry_nothing(ref: VehicleProfile) -> None:
    assert ref.decode(CanFrame(0x555, bytes(8))) == {}
    assert ref.decode(CanFrame(0x102, bytes(8), extended=True)) == {}
    assert ref.decode(CanFrame(0x102, b"", remote=True, dlc=8)) == {}


def test_short_payload_is_a_decode_error(ref: VehicleProfile) -> None:
    with pytest.raises(DecodeError, match="VCU_DriveStatus"):
        ref.decode(CanFrame(0x102, b"\x01\x02"))


def test_a_dbc_id_with_another_length_is_a_length_mismatch_bound_or_not() -> None:
    # Unbound: ID3D2TotalChargeDischarge carries no role, yet its length is the DBC's too.
    tesla = VehicleProfile.load("tesla-model3", dbc_path=MODEL3_DBC)
    unbound = tesla.db.get_message_by_name("ID3D2TotalChargeDischarge")
    assert unbound.frame_id not in tesla.frame_ids
    assert tesla.decode(CanFrame(unbound.frame_id, bytes(unbound.length))) == {}
    with pytest.raises(LengthMismatchError) as e:
        tesla.decode(CanFrame(unbound.frame_id, bytes(unbound.length - 1)))
    assert (e.value.got, e.value.expected) == (unbound.length - 1, unbound.length)
    assert "a second bus" in str(e.value)
    hvac = tesla.db.get_message_by_name("ID2F3UI_hvacRequest")  # 5 bytes in the DBC, bound
    assert hvac.length == 5 and hvac.frame_id in tesla.frame_ids
    with pytest.raises(LengthMismatchError, match="ID2F3UI_hvacRequest .*8 bytes, DBC says 5"):
        tesla.decode(CanFrame(hvac.frame_id, bytes(8)))  # longer is another message too


def test_encode_refuses_what_the_signal_cannot_carry(ref: VehicleProfile) -> None:
    with pytest.raises(EncodeError, match="gear"):
        ref.encode({"gear": "X"})
    with pytest.raises(EncodeError, match="soc_percent"):
        ref.encode({"soc_percent": 1e9})
    with pytest.raises(EncodeError):
        ref.encode({"driver_present": 1})
    with pytest.raises(KeyError):
        ref.encode({"no_such_role": 40.0})


def write_profile(tmp_path: Path, roles: str, vehicle: str = "") -> Path:
    p = tmp_path / "mycar.toml"
    p.write_text(f'[vehicle]\nname = "mycar"\ndbc = "{REF_DBC}"\n{vehicle}\n{roles}')
    return p


def test_user_profile_with_unit_conversion(tmp_path: Path) -> None:
    p = write_profile(
        tmp_path, '[roles.speed_kph]\nsignal = "VCU_VehicleSpeed"\nscale = 2.0\noffset = 1.0\n'
    )
    prof = VehicleProfile.load(p)
    assert prof.decode(prof.encode({"speed_kph": 21.0})[0]) == {"speed_kph": 21.0}
    assert prof.bindings["speed_kph"].signal.name == "VCU_VehicleSpeed"


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        (
            '[roles.soc_percent]\nsignal = "BMS_SocDisplay"\n',
            "signal 'BMS_SocDisplay' is not in fleetnode_ref.dbc",
        ),
        ('[roles.soc_percent]\nsignal = "BMS_SocDisplay"\n', "BMS_SocDisplayed"),  # the suggestion
        (
            '[roles.soc_percent]\nsignal = "BMS_SocDisplayed"\nscale = 0\n',
            "role 'soc_percent': scale 0",
        ),
        ('[roles.soc_percent]\nsignal = "BMS_SocDisplayed"\nscale = "x"\n', "scale 'x'"),
        ('[roles.soc_percent]\nsignal = "BMS_SocDisplayed"\nscale = nan\n', "scale nan"),
        ('[roles.soc]\nsignal = "BMS_SocDisplayed"\n', "did you mean 'soc_percent'"),
        (
            '[roles.soc_percent]\nsignal = "BMS_SocDisplayed"\nmessage = "BMS"\n',
            "message 'BMS' is not in",
        ),
        ('[roles.soc_percent]\nsignl = "BMS_SocDisplayed"\n', "unknown key 'signl'"),
        ('[roles.gear]\nsignal = "VCU_Gear"\nmap = { GEAR_P = "Park" }\n', "'Park' is not one of"),
        (
            '[roles.gear]\nsignal = "VCU_Gear"\nmap = { GEAR_X = "P" }\n',
            "'GEAR_X' is not in the value table",
        ),
        ('[roles.gear]\nsignal = "VCU_Gear"\n', "'map'"),
        ('[roles.gear]\nsignal = "VCU_Gear"\nmap = { "\u00b2" = "P" }\n', "not in the value table"),
        (
            '[roles.door_open]\nsignal = "VCU_DriverDoorOpen"\ntrue = [1]\nfalse = [1]\n',
            "both true and false",
        ),
        (
            '[roles.door_open]\nsignal = "VCU_DriverDoorOpen"\ntrue = [9]\n',
            "does not fit the 2-bit",
        ),
        ('[roles.soc_percent]\nsignal = "BMS_SocDisplayed"\nmax_age_s = -1\n', "max_age_s -1"),
        ('[roles.soc_percent]\nsignal = "BMS_SocDisplayed"\ntrue = [1]\n', "flag roles only"),
    ],
)
def test_wrong_profile_gets_one_clear_error(tmp_path: Path, roles: str, expected: str) -> None:
    p = write_profile(tmp_path, roles)
    with pytest.raises(ProfileError) as err:
        VehicleProfile.load(p)
    assert expected in str(err.value)
    assert str(p) in str(err.value)


def test_all_problems_in_one_error(tmp_path: Path) -> None:
    p = write_profile(
        tmp_path,
        '[roles.soc_percent]\nsignal = "Nope"\n[roles.speed_kph]\nsignal = "VCU_VehicleSpeed"\nscale = 0\n',
    )
    with pytest.raises(ProfileError, match="2 problem") as err:
        VehicleProfile.load(p)
    assert "soc_percent" in str(err.value) and "speed_kph" in str(err.value)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no shipped profile named 'nosuchcar'"):
        VehicleProfile.load("nosuchcar")
    bad = tmp_path / "bad.toml"
    bad.write_text("[vehicle\n")
    with pytest.raises(ProfileError, match="not valid TOML"):
        VehicleProfile.load(bad)
    with pytest.raises(ProfileError, match="not found"):
        VehicleProfile.load("reference", dbc_path=tmp_path / "missing.dbc")
    junk = tmp_path / "junk.dbc"
    junk.write_text("BO_ this is not a dbc\n")
    with pytest.raises(ProfileError, match="cannot load DBC"):
        VehicleProfile.load("reference", dbc_path=junk)
    with pytest.raises(ProfileError, match="--dbc"):
        VehicleProfile.load("tesla-model3")
    p = write_profile(
        tmp_path, '[roles.soc_percent]\nsignal = "BMS_SocDisplayed"\n', vehicle="bitrate = 123"
    )
    with pytest.raises(ProfileError, match="bitrate 123"):
        VehicleProfile.load(p)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from([0x102, 0x312, 0x313, 0x388]), st.binary(max_size=8))
def test_any_payload_decodes_or_is_a_decode_error(
    ref: VehicleProfile, arb_id: int, data: bytes
) -> None:
    try:
        values = ref.decode(CanFrame(arb_id, data))
    except DecodeError:
        assert len(data) != 8
        return
    for role, value in values.items():
        assert value is None or isinstance(value, ROLES[role])


_ANY_TOML_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=120, deadline=None)
@given(
    role=st.sampled_from([*ROLES, "bogus"]),
    spec=st.dictionaries(
        st.sampled_from(sorted(profile_module._ROLE_KEYS) + ["extra"]),
        _ANY_TOML_VALUE,
        max_size=5,
    ),
    signal=st.sampled_from(["VCU_Gear", "BMS_SocDisplayed", "OBC_CablePlugged", "Nope"]),
)
def test_any_role_spec_loads_or_gives_a_profile_error(
    role: str, spec: dict[str, object], signal: str
) -> None:
    doc = {"vehicle": {"dbc": str(REF_DBC)}, "roles": {role: {"signal": signal, **spec}}}
    try:
        prof = VehicleProfile.from_dict(doc, Path("fuzz.toml"))
    except ProfileError as e:
        assert "fuzz.toml" in str(e)
        return
    assert prof.roles == [role]


_REF_VALUES = {
    "soc_percent": st.floats(0, 100),
    "gear": st.sampled_from("PRND"),
    "speed_kph": st.floats(0, 300),
    "driver_present": st.booleans(),
    "door_open": st.booleans(),
    "pack_voltage_v": st.floats(0, 655),
    "pack_current_a": st.floats(-3276, 3276),
    "pack_temp_max_c": st.floats(-40, 87),
    "charging_power_kw": st.floats(0, 204),
}


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional=_REF_VALUES))
def test_encode_then_decode_is_exact_to_one_step(
    ref: VehicleProfile, car: dict[str, object]
) -> None:
    got = decode_all(ref, ref.encode(car))  # type: ignore[arg-type]
    for role, want in car.items():
        if isinstance(want, float):
            step = abs(ref.bindings[role].signal.scale)
            assert abs(got[role] - want) <= step / 2 + 1e-9  # type: ignore[operator]
        else:
            assert got[role] == want


def test_a_dbc_signal_with_zero_scale_is_refused(tmp_path: Path) -> None:
    dbc = tmp_path / "zero.dbc"
    dbc.write_text(
        'VERSION ""\n\nBS_:\n\nBU_: A\n\nBO_ 256 M: 8 A\n SG_ Soc : 0|8@1+ (0,0) [0|100] "%" A\n'
    )
    p = tmp_path / "zero.toml"
    p.write_text(f'[vehicle]\ndbc = "{dbc}"\n[roles.soc_percent]\nsignal = "Soc"\n')
    with pytest.raises(ProfileError, match="'Soc' has scale 0"):
        VehicleProfile.load(p)


def test_roles_may_be_written_under_their_vss_path(tmp_path: Path) -> None:
    p = write_profile(tmp_path, '[roles."Vehicle.Speed"]\nsignal = "VCU_VehicleSpeed"\n')
    assert VehicleProfile.load(p).roles == ["speed_kph"]
    twice = write_profile(
        tmp_path,
        '[roles."Vehicle.Speed"]\nsignal = "VCU_VehicleSpeed"\n'
        '[roles.speed_kph]\nsignal = "VCU_VehicleSpeed"\n',
    )
    with pytest.raises(ProfileError, match="mapped twice"):
        VehicleProfile.load(twice)


def _community_dbc(tmp_path: Path, name: str, *, break_line: str | None = None) -> Path:
    """The reference DBC as many reverse-engineered files are written: NS_ but no BS_: or BU_:
    (and no node comments, which would name nodes no BU_ declares)."""
    kept = [
        ln
        for ln in REF_DBC.read_text().splitlines()
        if not ln.startswith(("BS_:", "BU_:", "CM_ BU_"))
    ]
    if break_line is not None:
        k = next(i for i, ln in enumerate(kept) if ln.startswith(break_line))
        kept[k] = kept[k].replace(" : ", " ", 1)  # a signal without its colon
    out = tmp_path / name
    out.write_text("\n".join(kept) + "\n")
    return out


def test_a_community_dbc_without_bs_and_bu_sections_loads_and_says_so_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ref: VehicleProfile
) -> None:
    dbc = _community_dbc(tmp_path, "community.dbc")
    assert "BS_:" not in dbc.read_text() and "NS_ :" in dbc.read_text()
    prof = VehicleProfile.load("reference", dbc_path=dbc)
    assert decode_all(prof, ref.encode(PARKED_CHARGING)) == PARKED_CHARGING  # type: ignore[arg-type]
    VehicleProfile.load("reference", dbc_path=dbc)
    err = capsys.readouterr().err
    assert err.count(str(dbc)) == 1
    assert "no BS_: or BU_: section" in err


def test_a_broken_community_dbc_is_refused_with_its_own_line_and_reason(tmp_path: Path) -> None:
    dbc = _community_dbc(tmp_path, "broken.dbc", break_line=" SG_ BMS_PackVoltage")
    lines = dbc.read_text().splitlines()
    line = next(i for i, ln in enumerate(lines, 1) if ln.startswith(" SG_ BMS_PackVoltage"))
    with pytest.raises(ProfileError) as err:
        VehicleProfile.load("reference", dbc_path=dbc)
    msg = str(err.value)
    assert f"invalid syntax at line {line}," in msg
    assert "SG_ BMS_PackVoltage 0|16@1+" in msg
    assert str(dbc) in msg
