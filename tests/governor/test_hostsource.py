"""The psutil host source: a laptop read as a parked car, and the governor's view of it."""

from __future__ import annotations

import argparse
import json
from collections import namedtuple
from pathlib import Path

import pytest

from agent import hostsource
from agent.bus.state import StateStore
from agent.clock import FakeClock
from agent.governor import Governor, Inputs, Mode, Policy
from agent.hostsource import HostSource, cpu_temperature, host_roles

# The same fields psutil's sensors_battery() and sensors_temperatures() return.
Battery = namedtuple("Battery", "percent secsleft power_plugged")
Temp = namedtuple("Temp", "label current high critical")
LAPTOP = Policy.from_toml(Path(hostsource.__file__).parent / "governor" / "policies" / "laptop.toml")
CPU = {"coretemp": [Temp("Package id 0", 61.0, 100.0, 100.0), Temp("Core 0", 58.0, 100.0, 100.0)]}


def test_a_laptop_on_ac_below_full_is_charging_at_the_adapter_power() -> None:
    r = host_roles(Battery(72.0, -2, True), CPU, adapter_w=65.0)
    assert (r["soc_percent"], r["charge_cable"], r["charging_power_kw"]) == (72.0, True, 0.065)
    assert r["charge_limit_reached"] is False and r["compute_temp_c"] == 61.0
    assert (r["gear"], r["speed_kph"], r["driver_present"]) == ("P", 0.0, False)


def test_a_full_laptop_on_ac_is_held_at_its_limit_and_a_desktop_is_mains() -> None:
    full = host_roles(Battery(100.0, -2, True), CPU, 65.0)
    assert full["charging_power_kw"] == 0.0 and full["charge_limit_reached"] is True
    desk = host_roles(None, CPU, 65.0)
    assert desk["soc_percent"] == 100.0 and desk["charge_limit_reached"] is True


def test_unreadable_values_read_as_unknown() -> None:
    r = host_roles(Battery(float("nan"), -1, None), {}, 65.0)
    assert r["soc_percent"] is None and r["charge_cable"] is None and r["compute_temp_c"] is None
    assert cpu_temperature({"acpitz": [Temp("", float("inf"), None, None)]}) is None
    assert cpu_temperature({"k10temp": [Temp("Tctl", 300.0, None, None)], "acpitz": [Temp("", 40.0, None, None)]}) == 40.0


def test_host_source_writes_the_store_and_the_governor_runs_on_it() -> None:
    clock = FakeClock()
    store = StateStore()
    src = HostSource(store, clock, read_battery=lambda: Battery(80.0, -2, True), read_temps=lambda: CPU)
    src.poll_once()
    d = Governor(LAPTOP).decide(store.snapshot(), clock.monotonic(), Inputs(wall=clock.time()))
    assert d.mode is Mode.RUN and d.power_budget_w == LAPTOP.max_power_w


def test_unplugged_below_the_floor_and_hot_cpu_stop_on_a_laptop() -> None:
    clock = FakeClock()
    store = StateStore()
    low = HostSource(store, clock, read_battery=lambda: Battery(30.0, 3600, False), read_temps=lambda: CPU)
    low.poll_once()
    d = Governor(LAPTOP).decide(store.snapshot(), clock.monotonic(), Inputs(wall=clock.time()))
    assert d.codes == ("soc_floor",)
    hot = {"coretemp": [Temp("Package id 0", 97.0, 100.0, 100.0)]}
    HostSource(store, clock, read_battery=lambda: Battery(90.0, -2, True), read_temps=lambda: hot).poll_once()
    d = Governor(LAPTOP).decide(store.snapshot(), clock.monotonic(), Inputs(wall=clock.time()))
    assert d.codes == ("compute_too_hot",)


def test_sensor_errors_take_the_link_down_and_are_counted() -> None:
    def broken() -> object:
        raise OSError("no /sys/class/power_supply")

    clock = FakeClock()
    store = StateStore()
    src = HostSource(store, clock, read_battery=broken, read_temps=lambda: CPU)
    src.poll_once()
    assert src.errors == 1 and not store.snapshot().link.up
    assert Governor(LAPTOP).decide(store.snapshot(), clock.monotonic()).mode is Mode.OFF


def test_the_real_psutil_on_this_machine_gives_a_state_the_governor_can_judge(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="fleetnode")
    hostsource.register(parser.add_subparsers())
    args = parser.parse_args(["host", "--count", "1", "--interval", "0.01"])
    assert args.func(args) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["mode"] in ("OFF", "STANDBY", "RUN")
    # Whatever this machine lacks (no battery, no sensors) is said, not guessed.
    if line["host"]["compute_temp_c"] is None:
        assert any(r["code"] == "stale_input" and "compute_temp_c" in r["text"] for r in line["reasons"])
