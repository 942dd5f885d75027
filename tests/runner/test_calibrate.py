"""`fleetnode calibrate`: the load generator, the sysfs meters and the fit, end to end."""

from __future__ import annotations

import argparse
from pathlib import Path

import psutil
import pytest

from agent.runner import cli as runner_cli
from agent.runner.calibrate import BatteryMeter, MeterError, RaplMeter, busy, calibrate
from agent.runner.power import PowerModel


class SpinnerMeter:
    """Reads 'power' as idle + per-core x the spinning children it finds: checks the load is real."""

    name = "spinners"

    def __init__(self, idle: float, per_core: float) -> None:
        self.idle, self.per_core = idle, per_core

    def measure(self, seconds: float) -> float:
        kids = [c for c in psutil.Process().children() if c.status() != psutil.STATUS_ZOMBIE]
        return self.idle + self.per_core * len(kids)


def test_busy_starts_and_stops_exactly_k_spinners() -> None:
    with busy(2) as pids:
        assert len(pids) == 2
        assert all(psutil.pid_exists(p) for p in pids)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pids)


def test_calibrate_fits_the_meter_readings() -> None:
    model, samples = calibrate(SpinnerMeter(6.0, 11.0), cores=2, seconds=0.0, settle_s=0.0)
    assert [k for k, _ in samples] == [0, 1, 2]
    assert model.watts_per_core == pytest.approx(11.0) and model.idle_w == pytest.approx(6.0)


def test_rapl_meter_reads_the_counter_and_handles_wrap(tmp_path: Path) -> None:
    (tmp_path / "max_energy_range_uj").write_text("1000000\n")
    (tmp_path / "energy_uj").write_text("999000\n")
    m = RaplMeter(tmp_path)
    assert m.range_uj == 1_000_000
    (tmp_path / "energy_uj").write_text("not a number")
    with pytest.raises(MeterError, match="not an integer"):
        m.measure(0.0)
    with pytest.raises(MeterError):
        RaplMeter(tmp_path / "missing")


def test_battery_meter_needs_a_discharging_battery(tmp_path: Path) -> None:
    bat = tmp_path / "BAT0"
    bat.mkdir()
    (bat / "status").write_text("Charging\n")
    (bat / "power_now").write_text("12500000\n")
    with pytest.raises(MeterError, match="unplug AC"):
        BatteryMeter(bat)
    (bat / "status").write_text("Discharging\n")
    assert BatteryMeter(bat, sample_s=0.0).measure(0.0) == pytest.approx(12.5)
    (bat / "power_now").unlink()
    (bat / "current_now").write_text("1000000\n")
    (bat / "voltage_now").write_text("11000000\n")
    assert BatteryMeter(bat).measure(0.0) == pytest.approx(11.0)


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="fleetnode")
    runner_cli.register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def test_cli_writes_a_datasheet_model(tmp_path: Path) -> None:
    out = tmp_path / "power.json"
    assert run_cli("calibrate", "--watts-per-core", "9", "--idle-w", "4", "--cores", "6",
                   "--out", str(out)) == 0
    assert PowerModel.load(out) == PowerModel(watts_per_core=9.0, idle_w=4.0, cores=6)
    assert run_cli("calibrate", "--watts-per-core", "-1", "--out", str(out)) == 2
    assert run_cli("calibrate", "--cores", "0", "--out", str(out)) == 2
