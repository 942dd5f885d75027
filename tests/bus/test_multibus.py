"""Logs recorded on two buses at once: replay plays one bus, and frames of a DBC id with another
length are counted as decode errors that the governor acts on.

The two-bus log is built here, in both formats (SavvyCAN GVRET CSV with its Bus column, candump
with can0/can1), from the community Model 3 DBC: bus 0 is the car's vehicle bus, bus 1 reuses ids
of that DBC for messages of another layout (some of the same length, some not), as a second bus
of a real car does.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cantools.database.can import Database

from agent.bus import cli
from agent.bus.canlog import TimedFrame, candump_line
from agent.bus.profile import VehicleProfile
from agent.bus.reader import BusReader
from agent.bus.slcan import CanFrame, encode_frame
from agent.bus.state import StateStore, Value
from agent.clock import FakeClock, SystemClock
from agent.governor import Governor, Policy
from agent.runner.governed import InputsFeed
from tests.bus.helpers import PARKED_CHARGING, community_frames, wait_until
from tests.bus.test_cli import env, fleetnode_bus, run_bus
from tests.fixtures.pty import PtyPair

PERIODS = 8
PERIOD_S = 0.02

# Bus 1 of the car: ids that bus 0's DBC knows, carrying other messages.
SAME_LENGTH = [
    CanFrame(0x132, bytes.fromhex("0000FF7F10270000")),  # would read as 0 V, -3276.7 A
    CanFrame(0x312, bytes.fromhex("FEFEFEFEFEFEFEFE")),
]
OTHER_LENGTH = [
    CanFrame(0x292, bytes.fromhex("11223344")),  # the DBC's ID292BMS_SOC has 8 bytes
    CanFrame(0x3A1, bytes.fromhex("A5A5")),
]

# An independent reading of the community DBC: role -> (signal, how its cantools value reads).
INDEPENDENT: dict[str, tuple[str, Any]] = {
    "soc_percent": ("SOCUI292", float),
    "gear": ("DI_gear", {"DI_GEAR_P": "P", "DI_GEAR_R": "R", "DI_GEAR_N": "N", "DI_GEAR_D": "D"}),
    "speed_kph": ("UIspeed_signed257", float),
    "driver_present": ("VCFRONT_driverPresent", {1: True, 0: False}),
    "door_open": ("VCFRONT_driverDoorStatus", {"DOOR_OPEN": True, "DOOR_CLOSED": False}),
    "vehicle_awake": ("UI_systemActive", {1: True, 0: False}),
    "charge_cable": ("CP_chargeCablePresent", {"CABLE_PRESENT": True, "CABLE_NOT_PRESENT": False}),
    "charging_power_kw": ("ChargeLinePower264", float),
    "pack_voltage_v": ("BattVoltage132", float),
    "pack_current_a": ("SmoothBattCurrent132", float),
    "pack_temp_min_c": ("BMSminPackTemperature", float),
    "pack_temp_max_c": ("BMSmaxPackTemperature", float),
    "departure_event": ("VCLEFT_frontHandlePulled", {1: True, 0: False}),
    "cabin_preconditioning": ("UI_hvacReqUserPowerState", {"PRECONDITION": True, "OFF": False}),
    "charge_limit_reached": (
        "BMS_uiChargeStatus",
        {"BMS_CHARGE_COMPLETE": True, "BMS_CHARGING": False},
    ),
}


def car_at(k: int) -> dict[str, Any]:
    """Bus 0's car in period k: parked and charging, the battery side changing every period."""
    return {
        **PARKED_CHARGING,
        "soc_percent": 40.0 + k * 0.5,
        "pack_voltage_v": 390.0 + k * 1.25,
        "pack_current_a": -12.5 + k * 3.0,
        "pack_temp_min_c": 20.0 + k * 0.25,
        "pack_temp_max_c": 24.0 + k * 0.5,
        "departure_event": False,
        "cabin_preconditioning": k % 2 == 1,
        "charge_limit_reached": False,
    }


@dataclass
class TwoBusLog:
    path: Path
    bus0: list[CanFrame]
    counts: dict[str, int]  # the log's bus names -> frames


def build_frames(db: Database) -> list[TimedFrame]:
    """Both buses interleaved, bus 1 right after bus 0 in every period (so mixing would win)."""
    out: list[TimedFrame] = []
    for k in range(PERIODS):
        t = k * PERIOD_S
        out += [TimedFrame(t, f, "0") for f in community_frames(db, car_at(k))]
        out += [TimedFrame(t + 0.005, f, "1") for f in SAME_LENGTH + OTHER_LENGTH]
    return out


def savvycan_text(frames: list[TimedFrame]) -> str:
    """A GVRET CSV as SavvyCAN saves it: microseconds, hex id, the bus number, up to 8 bytes."""
    rows = ["Time Stamp,ID,Extended,Dir,Bus,LEN,D1,D2,D3,D4,D5,D6,D7,D8"]
    for tf in frames:
        f = tf.frame
        data = [f"{b:02X}" for b in f.data] + [""] * (8 - len(f.data))
        ext = "true" if f.extended else "false"
        ident = f"{f.arb_id:08X}"
        rows.append(f"{round(tf.t * 1e6)},{ident},{ext},Rx,{tf.bus},{len(f.data)},{','.join(data)}")
    return "\n".join(rows) + "\n"


@pytest.fixture(params=["savvycan", "candump"])
def two_bus_log(request: pytest.FixtureRequest, db: Database, tmp_path: Path) -> TwoBusLog:
    frames = build_frames(db)
    bus0 = [tf.frame for tf in frames if tf.bus == "0"]
    n1 = len(frames) - len(bus0)
    if request.param == "savvycan":
        path = tmp_path / "two-bus.csv"
        path.write_text(savvycan_text(frames))
        return TwoBusLog(path, bus0, {"0": len(bus0), "1": n1})
    path = tmp_path / "two-bus.log"
    # candump names the buses by interface: 1700000000 s is the log's wall-clock start.
    path.write_text(
        "".join(
            candump_line(TimedFrame(1_700_000_000 + tf.t, tf.frame, f"can{tf.bus}"))
            for tf in frames
        )
    )
    return TwoBusLog(path, bus0, {"can0": len(bus0), "can1": n1})


def independent_roles(db: Database, frames: list[CanFrame]) -> dict[str, set[Value]]:
    """Every value each role takes in these frames, read by cantools alone."""
    seen: dict[str, set[Value]] = {role: set() for role in INDEPENDENT}
    for f in frames:
        decoded = db.decode_message(f.arb_id, f.data, decode_choices=True)
        for role, (sig, how) in INDEPENDENT.items():
            if sig not in decoded:
                continue
            v = decoded[sig]
            if how is float:
                seen[role].add(round(float(v), 3))  # type: ignore[arg-type]
            else:
                seen[role].add(how[getattr(v, "name", v)])
    return seen


class RecordingStore(StateStore):
    """The real store, also keeping every value each role was given."""

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, set[Value]] = {}
        self._hist_lock = threading.Lock()

    def update_many(self, values: Mapping[str, Value | None], t: float) -> None:
        with self._hist_lock:
            for role, v in values.items():
                kept = round(v, 3) if isinstance(v, float) else v
                self.history.setdefault(role, set()).add(kept)  # type: ignore[arg-type]
        super().update_many(values, t)


def test_a_two_bus_log_without_bus_is_refused_with_the_buses_and_their_counts(
    two_bus_log: TwoBusLog, tmp_path: Path
) -> None:
    port = tmp_path / "ttyCAR"
    out = run_bus("replay", str(two_bus_log.path), "--port", str(port), "--direct", check=False)
    assert out.returncode == 2
    listed = ", ".join(f"{bus} ({n} frames)" for bus, n in two_bus_log.counts.items())
    assert f"holds 2 buses: {listed}" in out.stderr
    assert "--bus" in out.stderr
    assert "Traceback" not in out.stderr
    assert not port.exists() and not port.is_symlink()  # nothing was played


@pytest.fixture
def reader_on(tesla: VehicleProfile) -> Iterator[Any]:
    readers: list[BusReader] = []

    def start(port: Path | str, store: StateStore) -> BusReader:
        reader = BusReader(str(port), tesla, store, SystemClock())
        readers.append(reader)
        reader.start()
        return reader

    yield start
    for r in readers:
        r.stop()


def test_bus_0_through_the_shim_gives_the_roles_of_bus_0_alone(
    two_bus_log: TwoBusLog, db: Database, tmp_path: Path, reader_on: Any
) -> None:
    port = tmp_path / "ttyCAR"
    proc = subprocess.Popen(
        fleetnode_bus("replay", str(two_bus_log.path), "--port", str(port), "--bus", "0", "--loop"),
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = RecordingStore()
    try:
        wait_until(lambda: port.is_symlink() or proc.poll() is not None, timeout=10)
        assert proc.poll() is None, proc.communicate()
        reader = reader_on(port, store)
        # Three whole loops of bus 0 past the shim: every period's values have been seen.
        wait_until(lambda: reader.counters["frames"] >= 3 * len(two_bus_log.bus0), timeout=20)
        reader.stop()
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=10)
    expected = independent_roles(db, two_bus_log.bus0)
    assert store.history == expected
    assert len(expected["pack_voltage_v"]) == PERIODS  # the comparison covers every period
    counters = reader.counters
    assert counters["decode_errors"] == counters["length_mismatches"] == 0
    assert counters["ignored_frames"] == 0 and reader.parser.bad_lines == 0
    bus0 = next(iter(two_bus_log.counts))
    assert f"replaying {len(two_bus_log.bus0)} frames" in stdout and f"bus {bus0};" in stdout


def test_both_buses_on_one_line_are_counted_and_stop_compute(
    db: Database, pty_pair: PtyPair, reader_on: Any
) -> None:
    """What the refusal prevents, seen by the agent: mixed buses decode wrongly, and the frames
    of another length are decode errors that the governor turns into OFF with the reason."""
    store = RecordingStore()
    reader = reader_on(pty_pair.slave_path, store)
    wait_until(lambda: reader.counters["connects"] >= 1)
    clock = FakeClock()
    feed = InputsFeed(clock, reader=reader)
    feed()  # the rate's first sample
    frames = build_frames(db)
    pty_pair.write(b"".join(encode_frame(tf.frame) for tf in frames))
    wait_until(lambda: reader.counters["frames"] == len(frames))
    mismatched = PERIODS * len(OTHER_LENGTH)
    counters = reader.counters
    assert counters["length_mismatches"] == counters["decode_errors"] == mismatched
    # The last frame of the log is bus 1's 2-byte 0x3A1.
    assert reader.last_decode_error.startswith(
        "ID3A1VCFRONT_vehicleStatus (0x3A1): 2 bytes, DBC says 8"
    )
    # The same-length frames of bus 1 are read with bus 0's layout: the wrong values get in.
    bus0_alone = independent_roles(db, [tf.frame for tf in frames if tf.bus == "0"])
    assert store.history["pack_voltage_v"] - bus0_alone["pack_voltage_v"] == {0.0}

    clock.advance(1.0)
    inputs = feed()
    assert inputs.decode_errors_per_s == inputs.length_mismatches_per_s == mismatched
    d = Governor(Policy()).decide(store.snapshot(), clock.monotonic(), inputs)
    assert "decode_errors" in d.codes and d.power_budget_w == 0
    text = next(r.text for r in d.reasons if r.code == "decode_errors")
    assert f"{mismatched:.1f}/s with a length the DBC does not give" in text


def test_monitor_reports_frames_of_another_length(pty_pair: PtyPair) -> None:
    # The reference DBC's VCU_DriveStatus (0x102) has 8 bytes; a 4-byte 0x102 is another bus's.
    stop = threading.Event()

    def keep_sending() -> None:
        while not stop.wait(0.01):
            pty_pair.write(encode_frame(CanFrame(0x102, b"\x01\x02\x03\x04")))

    sender = threading.Thread(target=keep_sending, daemon=True)
    sender.start()
    try:
        table = run_bus(
            "monitor", "--port", pty_pair.slave_path, "--count", "2", "--interval", "0.3"
        )
        as_json = run_bus(
            "monitor", "--port", pty_pair.slave_path, "--json", "--count", "2", "--interval", "0.3"
        )
    finally:
        stop.set()
        sender.join(5)
    note = "with a length the DBC does not give, not decoded (latest: VCU_DriveStatus (0x102): 4 bytes, DBC says 8"
    assert note in table.stdout
    assert note in as_json.stderr
    assert all(line.startswith("{") for line in as_json.stdout.splitlines())  # JSON stays roles


def write_profile(tmp_path: Path, bus: object) -> Path:
    dbc = Path(cli.REPO_ROOT) / "agent/bus/vehicles/fleetnode_ref.dbc"
    path = tmp_path / "bus-profile.toml"
    value = f'"{bus}"' if isinstance(bus, str) else str(bus).lower()
    path.write_text(
        f'[vehicle]\ndbc = "{dbc}"\nbus = {value}\n[roles.soc_percent]\nsignal = "BMS_SocDisplayed"\n'
    )
    return path


def test_the_profile_names_the_bus_to_play(
    two_bus_log: TwoBusLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = str(tmp_path / "ttyCAR")
    log = str(two_bus_log.path)
    one = write_profile(tmp_path, 1)
    assert VehicleProfile.load(one).bus == "1"
    assert (
        cli.main(["replay", log, "--port", port, "--direct", "--speed", "0", "--profile", str(one)])
        == 0
    )
    n1 = list(two_bus_log.counts.values())[1]
    assert f"replaying {n1} frames" in capsys.readouterr().out
    # --bus that contradicts the profile is refused: the profile's DBC would read the other bus.
    rc = cli.main(["replay", log, "--port", port, "--direct", "--bus", "0", "--profile", str(one)])
    assert rc == 2
    assert "expects bus 1" in capsys.readouterr().err
    # A profile naming a bus the log does not hold.
    three = write_profile(tmp_path, 3)
    assert cli.main(["replay", log, "--port", port, "--direct", "--profile", str(three)]) == 2
    err = capsys.readouterr().err
    assert "'3' is not in the log" in err and str(three) in err


@pytest.mark.parametrize("bad", [True, -1, "two words", 1.5, "x" * 16])
def test_a_bad_profile_bus_is_a_profile_error(tmp_path: Path, bad: object) -> None:
    from agent.bus.errors import ProfileError
    from agent.bus.profile import profile_bus

    path = write_profile(tmp_path, bad)
    with pytest.raises(ProfileError, match="bus .* must be a bus number"):
        profile_bus(path)
    with pytest.raises(ProfileError, match="bus .* must be a bus number"):
        VehicleProfile.load(path)
