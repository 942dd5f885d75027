"""Telemetry by exception with numbered messages and a heartbeat, in virtual time; the owner's
audit log of everything the car sent, with its retention limit, and `fleetnode audit`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.clock import FakeClock
from agent.fleet import protocol as p
from agent.fleet.audit import AuditLog
from agent.fleet.cli import main as cli_main
from agent.fleet.fleetside import FleetClient
from agent.fleet.link import FleetLink
from tests.fleet.conftest import STANDBY, VEHICLE


def test_telemetry_goes_out_by_exception_numbered_with_a_heartbeat(
        make_link: Callable[..., FleetLink], make_client: Callable[..., FleetClient]) -> None:
    got: list[p.Telemetry] = []
    watcher = make_client(watch_telemetry=True)
    watcher.session._on_message_cb = lambda m: got.append(p.Telemetry.decode(m.payload)) \
        if m.topic.endswith("/telemetry") else None
    watcher.session.subscribe(p.Topics.ALL_TELEMETRY, 1)
    clock = FakeClock()
    car = make_link("car1", clock=clock, heartbeat_s=300)
    sent = []
    soc = 50.0
    for second in range(900):  # 15 virtual minutes at 1 Hz, SoC rising 1 % every 100 s
        soc += 0.01
        sent.append(car.publish_telemetry({"soc_percent": soc, "mode": "RUN", "compute_power_w": 700.0}))
        clock.advance(1.0)
    n = sum(sent)
    # a heartbeat at 0, 300 and 600 s; a change each time SoC moved more than 1 % since the last
    assert 3 <= n <= 3 + 9 + 1, n
    assert watcher.session.wait_for(lambda: len(got) == n, 10)
    assert [t.seq for t in got] == list(range(1, n + 1))
    assert len({t.boot for t in got}) == 1
    hbs = [t for t in got if t.heartbeat]
    assert len(hbs) == 3 and set(hbs[0].fields) == {"soc_percent", "mode", "compute_power_w"}
    assert all(set(t.fields) == {"soc_percent"} for t in got if not t.heartbeat)


def test_audit_log_shows_every_message_the_car_sent(
        make_link: Callable[..., FleetLink], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    car = make_link("car1", audit_path=tmp_path / "audit.sqlite")
    car.publish_state(STANDBY, VEHICLE)
    car.publish_telemetry({"soc_percent": 72.0})
    assert car.audit is not None
    topics = [e.topic for e in car.audit.entries()]
    assert topics == [p.Topics.state("car1"), p.Topics.telemetry("car1")]
    assert cli_main(["audit", "--log", str(tmp_path / "audit.sqlite"), "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["topic"] for r in rows] == topics
    state = json.loads(rows[0]["content"])
    assert state["soc_percent"] == 72.0 and "speed_kph" not in state and "gear" not in state
    assert cli_main(["audit", "--log", str(tmp_path / "audit.sqlite")]) == 0
    assert "2 messages in the log" in capsys.readouterr().out


def test_audit_log_forgets_beyond_its_retention_and_row_cap(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.sqlite", retention_s=3600, max_rows=50)
    for i in range(300):
        log.record(1000.0 + 60 * i, "t", 0, False, b"{}")
    log.prune(1000.0 + 60 * 299)
    kept = list(log.entries())
    assert len(kept) <= 50 and kept[0].t >= 1000.0 + 60 * 299 - 3600
    assert cli_main(["audit", "--log", str(tmp_path / "missing.sqlite")]) == 2
