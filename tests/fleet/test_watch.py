"""`fleetnode fleet watch`: the table and the JSON lines, from retained states on a real broker."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from agent.fleet.broker import Broker
from agent.fleet.fleetside import FleetClient
from agent.fleet.link import FleetLink
from agent.fleet.watch import render_table, snapshot, watch
from tests.fleet.conftest import STANDBY, run_car

ROOT = Path(__file__).resolve().parents[2]


def test_watch_json_counts_cars_and_kilowatts(mosquitto: Broker, make_link: Callable[..., FleetLink],
                                              make_client: Callable[..., FleetClient]) -> None:
    run_car(make_link("car-a"))
    run_car(make_link("car-b"))
    make_link("car-c").publish_state(STANDBY, {"soc_percent": 40.0, "charging_power_kw": 0.0})
    proc = subprocess.run(
        [sys.executable, "-m", "agent.fleet.cli", "fleet", "watch", "--host", mosquitto.host,
         "--port", str(mosquitto.port), "--json", "--count", "3", "--timeout", "20"],
        cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60,
        check=False)
    assert proc.returncode == 0, proc.stderr
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert last["totals"] == {"cars": 3, "cars_online": 3, "cars_available": 2, "kw_available": 1.6}
    c = {x["car"]: x for x in last["cars"]}["car-c"]
    assert (c["mode"], c["reasons"], c["soc_percent"], c["charging"]) == ("STANDBY", ["not_charging"], 40.0, False)


def test_watch_times_out_with_status_1_when_the_count_is_not_reached(
        make_client: Callable[..., FleetClient]) -> None:
    client = make_client()
    out = io.StringIO()
    assert watch(client, out, as_json=True, count=1, timeout=0.3) == 1


def test_table_shows_each_car_and_the_totals(make_link: Callable[..., FleetLink],
                                             make_client: Callable[..., FleetClient]) -> None:
    run_car(make_link("car-a"))
    client = make_client()
    assert client.wait_for(lambda c: "car-a" in c.cars, 10)
    text = render_table(snapshot(client))
    assert "car-a" in text and "RUN" in text and "800" in text
    assert "cars available: 1 of 1 (1 online), kW available: 0.80" in text


def test_every_subcommand_answers_help() -> None:
    for argv in (["fleet", "--help"], ["fleet", "watch", "--help"], ["fleet", "submit", "--help"],
                 ["fleet", "keys", "--help"], ["audit", "--help"]):
        proc = subprocess.run([sys.executable, "-m", "agent.fleet.cli", *argv], cwd=ROOT,
                              env={"PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 0 and "usage:" in proc.stdout, (argv, proc.stderr)
