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
        status, body = api.submit(MODEL.read_bytes(), inputs, redundancy="1")
        assert status == 201, body
        bid = body["id"]
        deadline = time.monotonic() + 180
        b: dict[str, object] = {}
        while time.monotonic() < deadline:
            status, b = api.json("GET", f"/v1/batches/{bid}")
            assert status == 200, b
            if b["state"] != "running":
                break
            if svc.kills < 3 and int(b["done"]) >= 100 * (svc.kills + 1):  # type: ignore[call-overload]
                svc.kill()
                api = svc.start(token)
            time.sleep(0.2)
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
        # Each settled task: one accepted attempt, granted once, whatever arrived twice.
        bad = con.execute("SELECT r.task FROM results r WHERE (SELECT COUNT(*) FROM attempts a "
                          "WHERE a.task=r.task AND a.verdict IS NOT NULL) <> 1").fetchall()
        assert bad == []
        assert con.execute("SELECT COUNT(*), COUNT(DISTINCT task) FROM grants").fetchone() == (500, 500)


def test_two_dispatchers_on_postgresql_one_killed_the_other_finishes_the_batch(
        tmp_path: Path, mosquitto: Broker, fleet_key: tuple[Path, TrustStore],
        sim_cars: Callable[..., list[SimCar]], pg_url: str) -> None:
    import psycopg

    token = fleetnode("fleet", "tokens", "add", "pg-test", "--db", pg_url).stdout.strip()
    sim_cars(5)
    extra = ("--lease", "2")
    one = ServeProcess(pg_url, fleet_key[0], mosquitto, "pg1", tmp_path / "pg1.log", extra)
    two = ServeProcess(pg_url, fleet_key[0], mosquitto, "pg2", tmp_path / "pg2.log", extra)
    api1, api2 = one.start(token), two.start(token)
    try:
        inputs = inputs_for(200, seed=5)
        status, body = api1.submit(MODEL.read_bytes(), inputs, redundancy="2")
        assert status == 201, body
        bid = body["id"]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            status, b = api2.json("GET", f"/v1/batches/{bid}")
            if one.kills == 0 and b["done"] >= 60:
                one.kill()  # mid-batch: pg2 takes over its leases and its results
            if b["state"] != "running":
                break
            time.sleep(0.2)
        assert one.kills == 1
        assert b["state"] == "done" and b["done"] == 200 and b["failed"] == 0, b
        results = api2.results(bid)
        model = load_model(MODEL.read_bytes())
        assert all(np.array_equal(results[n], model.run([x])[0]) for n, x in inputs.items())
    finally:
        one.stop()
        two.stop()
    with psycopg.connect(pg_url) as con:
        rows = con.execute("SELECT task, COUNT(*) FROM results WHERE batch=%s GROUP BY task", (bid,)).fetchall()
        assert len(rows) == 200 and all(n == 1 for _, n in rows)
        by = dict(con.execute("SELECT dispatcher, COUNT(*) FROM attempts GROUP BY dispatcher").fetchall())
        assert by.get("pg1", 0) > 0 and by.get("pg2", 0) > 0  # both dispatched
        assert con.execute("SELECT COUNT(*) FROM grants").fetchone()[0] == 400
