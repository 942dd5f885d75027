"""`fleetnode bus monitor` and `bus replay` as a user runs them: real processes, real ptys."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.bus import cli
from agent.bus.canlog import CanLog, TimedFrame, candump_line
from agent.bus.profile import VehicleProfile
from agent.bus.slcan import CanFrame
from agent.bus.state import ROLES, StateStore
from tests.bus.helpers import PARKED_CHARGING, wait_until
from tests.fixtures.pty import PtyPair

ROOT = Path(__file__).parents[2]


def fleetnode_bus(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent.bus.cli", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    profile = VehicleProfile.load("reference")
    lines = []
    for i in range(10):
        for f in profile.encode(PARKED_CHARGING):  # type: ignore[arg-type]
            lines.append(candump_line(TimedFrame(1_700_000_000 + i * 0.05, f)))
    path = tmp_path / "parked.log"
    path.write_text("".join(lines) + "not a frame\n")
    return path


def run_bus(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        fleetnode_bus(*args), env=env(), capture_output=True, text=True, timeout=30, check=check
    )


def monitor_json(port: Path | str, count: int, interval: float) -> list[dict[str, object]]:
    out = run_bus(
        "monitor", "--port", str(port), "--json", "--count", str(count), "--interval", str(interval)
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


def start_replay(log_file: Path, port: Path, *sink: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        fleetnode_bus("replay", str(log_file), "--port", str(port), "--loop", *sink),
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: port.is_symlink() or proc.poll() is not None, timeout=10)
    if proc.poll() is not None:
        raise AssertionError(proc.communicate())
    return proc


@pytest.fixture
def replay(tmp_path: Path, log_file: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    port = tmp_path / "ttyREPLAY"
    proc = start_replay(log_file, port, "--direct")
    try:
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)


def test_replay_to_monitor_json(replay: tuple[subprocess.Popen[str], Path]) -> None:
    proc, port = replay
    objects = monitor_json(port, count=3, interval=0.3)
    assert len(objects) == 3  # --count
    assert set(objects[-1]) == set(ROLES)
    assert objects[-1] == PARKED_CHARGING

    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert not port.is_symlink()  # the replay removed its port link on the way out
    assert "skipped 1 unreadable line" in err


def test_monitor_reports_null_without_data(pty_pair: PtyPair) -> None:
    assert monitor_json(pty_pair.slave_path, count=1, interval=0.2) == [
        {role: None for role in ROLES}
    ]


def test_monitor_table_names_every_role(replay: tuple[subprocess.Popen[str], Path]) -> None:
    _, port = replay
    out = run_bus("monitor", "--port", str(port), "--count", "2", "--interval", "0.3")
    last = out.stdout.strip().split("profile reference")[-1]
    for role in ROLES:
        assert role in last
    assert "link up" in last


def test_monitor_refuses_a_wrong_profile(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    dbc = ROOT / "agent/bus/vehicles/fleetnode_ref.dbc"
    bad.write_text(f'[vehicle]\ndbc = "{dbc}"\n[roles.gear]\nsignal = "NoSuchSignal"\nmap = {{}}\n')
    out = run_bus(
        "monitor", "--port", "/dev/null", "--profile", str(bad), "--count", "1", check=False
    )
    assert out.returncode == 2
    assert "NoSuchSignal" in out.stderr and str(bad) in out.stderr
    assert "Traceback" not in out.stderr


def test_replay_refuses_to_replace_a_real_file(tmp_path: Path, log_file: Path) -> None:
    victim = tmp_path / "precious"
    victim.write_text("keep me")
    rc = cli.main(["replay", str(log_file), "--port", str(victim), "--direct", "--speed", "0"])
    assert rc == 1
    assert victim.read_text() == "keep me"


def test_replay_without_shim_binary_says_how_to_get_one(tmp_path: Path, log_file: Path) -> None:
    rc = cli.main(
        [
            "replay",
            str(log_file),
            "--port",
            str(tmp_path / "p"),
            "--shim",
            str(tmp_path / "no-such-shim"),
        ]
    )
    assert rc == 2


@pytest.mark.parametrize("command", [["--help"], ["monitor", "--help"], ["replay", "--help"]])
def test_every_subcommand_answers_help(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(command)
    assert e.value.code == 0
    assert "usage: fleetnode bus" in capsys.readouterr().out


# The shim's sources arrive with the firmware; where they are in the tree, `make install` has
# built the binary and this test must run (and fail if the binary is missing).
SHIM_SOURCES = (ROOT / "firmware_shim" / "Makefile").is_file() or "FLEETNODE_SHIM" in os.environ


@pytest.mark.skipif(not SHIM_SOURCES, reason="firmware_shim/ is not part of this tree")
def test_replay_through_the_firmware_shim(tmp_path: Path, log_file: Path) -> None:
    port = tmp_path / "ttySHIM"
    proc = start_replay(log_file, port)  # default sink: the shim's host build
    try:
        objects = monitor_json(port, count=2, interval=0.4)
        assert objects[-1] == PARKED_CHARGING
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert not port.is_symlink()


def test_replay_schedule_scales_the_log_clock() -> None:
    frame = CanFrame(0x102, bytes(8))
    log = CanLog([TimedFrame(t, frame) for t in (100.0, 100.5, 102.0, 101.0, 103.0)])
    assert cli.schedule(log, 1.0) == [0.0, 0.5, 2.0, 2.0, 3.0]  # never backwards
    assert cli.schedule(log, 2.0) == [0.0, 0.25, 1.0, 1.0, 1.5]
    assert cli.schedule(log, 0) == [0.0] * 5


def test_monitor_views_turn_stale_values_to_null() -> None:
    profile = VehicleProfile.load("reference")
    store = StateStore()
    store.set_link(True, "", 10.0)
    store.update_many({"gear": "P", "pack_temp_max_c": 30.0}, 10.0)
    snap = store.snapshot()
    fresh = cli.role_values(profile, snap, 10.2)
    assert (fresh["gear"], fresh["pack_temp_max_c"]) == ("P", 30.0)
    later = cli.role_values(profile, snap, 11.0)  # gear's limit is 0.5 s, pack temperature's 5 s
    assert (later["gear"], later["pack_temp_max_c"]) == (None, 30.0)
    table = cli.render_table(profile, snap, 11.0, {"frames": 2, "bad_hex": 1})
    assert "stale" in table.split("gear")[1].splitlines()[0]
    assert "'bad_hex': 1" in table
