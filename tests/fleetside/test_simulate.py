"""`fleetnode fleet simulate` against a real mosquitto and a real `fleet serve`: the cars appear
in the service's car table, jobs flow to them and their results are stored; and the pure figure
helpers of the capacity study."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from agent.fleet.broker import Broker
from agent.fleet.models import TrustStore
from agent.fleetside.simulate import car_ids, per_car_per_day, per_thousand, percentile, standin
from agent.fleetside.store import Store
from tests.fleetside.conftest import MODEL, ROOT, ServeProcess, fleetnode

N = 20


def test_simulated_cars_register_take_jobs_and_their_results_are_stored(
        tmp_path: Path, mosquitto: Broker, fleet_key: tuple[Path, TrustStore]) -> None:
    db = tmp_path / "fleet.sqlite"
    token = fleetnode("fleet", "tokens", "add", "sim", "--db", str(db)).stdout.strip()
    svc = ServeProcess(str(db), fleet_key[0], mosquitto, "d1", tmp_path / "serve.log")
    api = svc.start(token)
    sim = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "fleet", "simulate", "--broker",
         f"{mosquitto.host}:{mosquitto.port}", "--vehicles", str(N), "--duration", "60", "--json",
         "--processes", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 20
        cars: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            cars = [c for c in api.json("GET", "/v1/cars")[1]["cars"] if c["online"]]
            if len(cars) == N:
                break
            time.sleep(0.1)
        assert sorted(c["car"] for c in cars) == car_ids(N)
        assert all(c["mode"] == "RUN" and c["accepting_jobs"] for c in cars)

        inputs = {f"x{i}": np.full((1, 16), i - 30, np.int8) for i in range(60)}
        status, body = api.submit(MODEL.read_bytes(), inputs, redundancy="2")
        assert status == 201, body
        batch = api.wait_batch(body["id"], 30)
        assert batch["state"] == "done", batch
        results = api.results(body["id"])
        assert set(results) == set(inputs)
        for name, x in inputs.items():
            assert np.array_equal(results[name], standin(x))
        workers = psutil.Process(sim.pid).children(recursive=True)
        assert workers  # the cars run in worker processes
    finally:
        sim.send_signal(signal.SIGINT)  # Ctrl-C: the cars say goodbye, the workers are joined
        out, err = sim.communicate(timeout=30)
        svc.stop()
    assert sim.returncode == 0, err[-2000:]
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive  # no orphan worker outlives Ctrl-C
    store = Store(str(db))
    try:
        atts = {a["car"] for b in store.batches() for a in store.attempts(b["id"])}
        assert len(atts) > 1  # the shared subscription spread the jobs over several cars
        assert not any(c["online"] for c in store.cars())  # clean goodbyes: every car offline
    finally:
        store.close()
    assert '"results_sent": ' in out and '"connected": 20' in out


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert percentile(list(map(float, range(101))), 99) == 99.0
    assert percentile([0.0, 10.0], 99) == pytest.approx(9.9)
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_extrapolation_to_a_car_day_and_to_a_thousand_cars() -> None:
    assert per_car_per_day(600, cars=10, seconds=60) == 86400.0  # 1 message per car per second
    assert per_thousand(2.5, cars=250) == 10.0
    with pytest.raises(ValueError):
        per_car_per_day(1, cars=0, seconds=1)
    with pytest.raises(ValueError):
        per_thousand(1, cars=0)
