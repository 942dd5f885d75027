"""Restart safety: `kill -9` of the dispatcher mid-batch, three times; every task's result is
stored exactly once, and the batch completes with the right outputs."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agent.fleet.broker import Broker
from agent.fleet.models import TrustStore
from agent.inference import load_model
from hil.fleetcars import SimCar
from hil.fleetscenario import inputs_for
from tests.fleetside.conftest import MODEL, ServeProcess, fleetnode


def test_three_sigkills_during_a_500_task_batch_lose_nothing_and_store_each_result_once(
        tmp_path: Path, mosquitto: Broker, fleet_key: tuple[Path, TrustStore],
        sim_cars: Callable[..., list[SimCar]]) -> None:
    db = tmp_path / "fleet.sqlite"
    token = fleetnode("fleet", "tokens", "add", "kill-test", "--db", str(db)).stdout.strip()
    sim_cars(5)
    svc = ServeProcess(str(db), fleet_key[0], mosquitto, "d1", tmp_path / "serve.log")
    api = svc.start(token)
    try:
        inputs = inputs_for(500, seed=3)
        status, body = api.submit(MODEL.read_bytes(), inputs, redundancy="2")
        assert status == 201, body
        bid = body["id"]
        deadline = time.monotonic() + 180
        b: dict[str, object] = {}
        while time.monotonic() < deadline:
            status, b = api.json("GET", f"/v1/batches/{bid}")
            assert status == 200, b
            if b["state"] != "running":
                break
            if svc.kills < 3 and int(b["done"]) >= 120 * (svc.kills + 1):  # type: ignore[call-overload]
                svc.kill()
                api = svc.start(token)
            time.sleep(0.05)
        assert svc.kills == 3
        assert b["state"] == "done" and b["done"] == 500 and b["failed"] == 0, b

        results = api.results(bid)
        model = load_model(MODEL.read_bytes())
        assert sorted(results) == sorted(inputs)
        for name, x in inputs.items():
            assert np.array_equal(results[name], model.run([x])[0]), name
    finally:
        svc.stop()

    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT task, COUNT(*) FROM results WHERE batch=? GROUP BY task", (bid,)).fetchall()
        assert len(rows) == 500 and all(n == 1 for _, n in rows)
        # Each settled task: two agreeing replicas from two different cars, each granted once.
        bad = con.execute("SELECT r.task FROM results r WHERE r.replicas <> 2 OR (SELECT COUNT(DISTINCT "
                          "a.car) FROM attempts a WHERE a.task=r.task AND a.verdict='valid') <> 2").fetchall()
        assert bad == []
        grants = con.execute("SELECT job_id, COUNT(*) FROM grants GROUP BY job_id HAVING COUNT(*) > 1").fetchall()
        assert grants == []
        assert con.execute("SELECT COUNT(*) FROM grants").fetchone()[0] == 1000
