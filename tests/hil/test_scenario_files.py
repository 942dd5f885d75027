"""The scenario format and the simulator's physics, without the bench."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.clock import ClockDriver, SharedClock
from hil import scenario
from hil.sim import CarInputs, CarParams, CarState, cell_ocv, pack_current, step


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


BASE = '[scenario]\nstart = "2026-06-02T22:00"\nend = "2026-06-03T07:30"\n'


def test_times_are_local_or_offsets(tmp_path: Path) -> None:
    sc = scenario.load(write(tmp_path, BASE + '[driver]\ndeparts = "07:30"\n'
                             '[[event]]\nat = "23:10"\ndo = "door_open"\n[[event]]\nat = "+90m"\ndo = "unplug"\n'))
    assert [e.at_s for e in sc.events] == [4200.0, 5400.0]
    assert sc.departure_s == 9.5 * 3600
    assert sc.policy["departure"]["weekly"]["wed"] == "07:30"


@pytest.mark.parametrize("body, message", [
    ('[[event]]\nat = "23:10"\ndo = "explode"\n', "unknown event"),
    ('[[event]]\nat = "25:10"\ndo = "unplug"\n', "neither HH:MM"),
    ('[[event]]\nat = "23:10"\ndo = "plug"\n', "needs `kw`"),
    ('[owner.policy]\nsoc_floor_percent = 150\n', "not a valid policy"),
    ('[nonsense]\nx = 1\n', "unknown table"),
])
def test_bad_scenarios_name_the_field(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(scenario.ScenarioError, match=message):
        scenario.load(write(tmp_path, BASE + body))


def test_every_shipped_scenario_loads_in_both_lengths() -> None:
    for path in scenario.all_scenarios():
        full, short = scenario.load(path), scenario.load(path, short=True)
        assert short.duration_s < full.duration_s, path


def test_ocv_rises_with_soc_and_current_carries_the_power() -> None:
    assert cell_ocv(10) < cell_ocv(50) < cell_ocv(90)
    ocv, r = 360.0, 0.08
    i = pack_current(ocv, r, -10.0)  # 10 kW out of the pack
    assert i < 0 and abs((ocv + i * r) * i + 10_000.0) < 1e-6


def test_charge_stops_at_the_limit_and_resumes_below_hysteresis() -> None:
    s = CarState(soc_percent=89.99, inputs=CarInputs(charger_kw=11.0, charge_limit_percent=90.0))
    params = CarParams()
    for _ in range(60):
        s = step(s, params, 10.0)
    assert s.held_at_limit and s.charging_power_kw(params) == 0.0
    s.inputs.charge_cable = True
    s.soc_percent = 88.5
    s = step(s, params, 1.0)
    assert not s.held_at_limit


def test_compute_heats_the_module_towards_its_steady_state() -> None:
    params = CarParams(ambient_c=30.0)
    s = CarState(compute_temp_c=30.0, inputs=CarInputs(charge_cable=False, compute_kw=1.0))
    s = step(s, params, 20 * params.compute_tau_s)
    want = 30.0 + (1.0 + params.compute_idle_kw) / params.compute_cooling_kw_per_k
    assert abs(s.compute_temp_c - want) < 0.01


def test_shared_clock_carries_time_and_the_meter(tmp_path: Path) -> None:
    drv = ClockDriver(tmp_path / "clock", start_wall=1_800_000_000.0, start_mono=10.0)
    agent = SharedClock(tmp_path / "clock")
    drv.advance(5.0)
    assert agent.monotonic() == 15.0 and agent.time() == 1_800_000_005.0
    agent.meter(100.0, at=15.0)
    drv.advance(2.0)
    agent.meter(0.0, at=17.0)
    agent.ack(42)
    rep = drv.report()
    assert rep.ack_mono == 17.0 and rep.ack_frames == 42
    assert rep.energy_at(20.0) == pytest.approx(200.0)
    drv.jump_wall(3600.0)
    assert agent.time() - agent.monotonic() == pytest.approx(1_800_000_000.0 - 10.0 + 3600.0)


def test_the_command_refuses_a_bad_scenario_before_starting_anything(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main

    bad = write(tmp_path, BASE + "[car]\nwheels = 4\n")
    assert main(["hil", "run", str(bad)]) == 2
    assert "unknown field(s) wheels" in capsys.readouterr().err
    assert main(["hil", "run", str(tmp_path / "missing.toml")]) == 2
    assert main(["hil", "run"]) == 2
