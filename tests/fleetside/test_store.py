"""The store on both backends: the same statements on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.fleet import protocol as proto
from agent.fleetside.replication import Rule
from agent.fleetside.store import ADAPTIVE, QuotaError, Store, StoreError, UnknownBatch


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    url = str(tmp_path / "fleet.sqlite") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    s = Store(url, rule=Rule(trust_after=2, spot_check=0.0))
    request.addfinalizer(s.close)
    return s


def _state(car: str) -> proto.CarState:
    return proto.CarState(car=car, online=True, mode="RUN", reasons=(), available_w=800.0,
                          accepting_jobs=True, capacity=4, compute=proto.ComputeClass("fleetnode", "1"))


def _result(job_id: str, car: str, value: int) -> proto.JobResult:
    return proto.JobResult(job_id, car, "ok", 1, [np.full((1, 4), value, np.int8)], run_s=0.01)


def test_tokens_are_hashed_and_quotas_refuse_more_tasks_in_flight(store: Store) -> None:
    token = store.add_token("alice", quota=3)
    assert store.token_name(token) == "alice" and store.token_name(token + "x") is None
    with pytest.raises(StoreError):
        store.add_token("alice", quota=3)
    store.put_model("a" * 64, b"m", b"{}", [], 1)
    store.create_batch("alice", "a" * 64, ADAPTIVE, [("x0", b""), ("x1", b"")])
    with pytest.raises(QuotaError, match="quota of 3"):
        store.create_batch("alice", "a" * 64, ADAPTIVE, [("x2", b""), ("x3", b"")])
    with pytest.raises(UnknownBatch):
        store.batch("nope")


def test_a_new_cars_result_is_replicated_a_trusted_one_stands_alone_a_liar_is_reset(store: Store) -> None:
    store.add_token("t", quota=100)
    store.put_model("b" * 64, b"m", b"{}", [], 1)
    for car in ("c1", "c2", "c3"):
        store.upsert_car(_state(car))
    cls = "fleetnode/1"

    def one_task(first: str, second: str | None, v1: int = 1, v2: int = 1) -> dict[str, object]:
        bid = store.create_batch("t", "b" * 64, ADAPTIVE, [("x", proto.tensor_bytes([np.zeros(1, np.int8)]))])
        (d,) = store.lease("me", "default", 10, 30.0, 10.0)
        store.record([(_result(d.job_id, first, v1), cls)])
        if second is not None:
            assert store.batch(bid)["state"] == "running"  # one result of a new car settles nothing
            (d2,) = store.lease("me", "default", 10, 30.0, 10.0)
            assert first in d2.exclude  # the second replica must come from another car
            store.record([(_result(d2.job_id, second, v2), cls)])
        return store.batch(bid)

    # New cars: every task needs two agreeing results.
    store.record([])  # nothing to store is fine
    b = one_task("c1", "c2")
    assert b["state"] == "done" and b["replicas_run"] == 2
    one_task("c1", "c2")
    reps = {c["car"]: c["reputation"] for c in store.cars()}
    assert reps["c1"] >= 2 and reps["c2"] >= 2
    # Trusted (trust_after=2, no spot checks): one result settles the task.
    b = one_task("c1", None)
    assert b["state"] == "done" and b["replicas_run"] == 1
    # c3 lies against a trusted car: a third replica decides, c3 is reset, c1 is not.
    bid = store.create_batch("t", "b" * 64, 2, [("x", proto.tensor_bytes([np.zeros(1, np.int8)]))])
    d1, d2 = store.lease("me", "default", 10, 30.0, 10.0)
    store.record([(_result(d1.job_id, "c3", 9), cls), (_result(d2.job_id, "c1", 1), cls)])
    assert store.batch(bid)["state"] == "running" and store.batch(bid)["mismatches"] == 1
    (d3,) = store.lease("me", "default", 10, 30.0, 10.0)
    assert set(d3.exclude) == {"c1", "c3"}
    out = store.record([(_result(d3.job_id, "c2", 1), cls)])
    assert out[0].status == "settled" and out[0].convicted == ["c3"]
    cars = {c["car"]: c for c in store.cars()}
    assert cars["c3"]["reputation"] == 0 and cars["c3"]["wrong"] == 1
    assert cars["c1"]["reputation"] > 0
    # The same result twice: a duplicate, stored once.
    assert store.record([(_result(d3.job_id, "c2", 1), cls)])[0].status == "duplicate"
    assert len(store.stored_results(bid)) == 1
    # Every validated result was granted credits once, and the grants wait to be sent.
    grants = store.unsent_grants()
    assert len({g.grant for g in grants}) == len(grants) > 0
    assert sum(g.credits for g in grants) == pytest.approx(sum(c["credits"] for c in cars.values()))
    assert all(g.car != "c3" or g.job_id != d1.job_id for g in grants)


def test_a_caught_cars_lone_results_are_run_again(store: Store) -> None:
    store.add_token("t", quota=100)
    store.put_model("c" * 64, b"m", b"{}", [], 1)
    for car in ("c1", "c2", "c3"):
        store.upsert_car(_state(car))
    cls = "fleetnode/1"
    x = proto.tensor_bytes([np.zeros(1, np.int8)])
    for _ in range(2):  # c1 becomes trusted
        store.create_batch("t", "c" * 64, 2, [("x", x)])
        a, b = store.lease("me", "default", 10, 30.0, 10.0)
        store.record([(_result(a.job_id, "c1", 1), cls), (_result(b.job_id, "c2", 1), cls)])
    lone = store.create_batch("t", "c" * 64, ADAPTIVE, [("x", x)])
    (d,) = store.lease("me", "default", 10, 30.0, 10.0)
    store.record([(_result(d.job_id, "c1", 5), cls)])  # wrong, but alone: accepted for now
    assert store.batch(lone)["state"] == "done"
    store.create_batch("t", "c" * 64, 2, [("x", x)])
    a, b = store.lease("me", "default", 10, 30.0, 10.0)
    store.record([(_result(a.job_id, "c1", 7), cls), (_result(b.job_id, "c2", 1), cls)])
    (c,) = store.lease("me", "default", 10, 30.0, 10.0)
    out = store.record([(_result(c.job_id, "c3", 1), cls)])
    assert out[-1].convicted == ["c1"] and out[-1].reopened == 1
    b2 = store.batch(lone)
    assert b2["state"] == "running" and store.results(lone) == []  # the suspect result is withheld
    (d2,) = store.lease("me", "default", 10, 30.0, 10.0)
    assert "c1" in d2.exclude
    store.record([(_result(d2.job_id, "c2", 1), cls)])
    (d3,) = store.lease("me", "default", 10, 30.0, 10.0)
    store.record([(_result(d3.job_id, "c3", 1), cls)])
    assert store.batch(lone)["state"] == "done"
    (row,) = store.stored_results(lone)
    assert row["state"] == "final" and row["job_id"] != d.job_id


def test_the_dashboard_counts_modes_reasons_latency_replication_and_keeps_each_cars_timeline(
        store: Store) -> None:
    import dataclasses
    store.add_token("t", quota=100)
    store.put_model("d" * 64, b"m", b"{}", [], 1)
    for car in ("c1", "c2", "c3"):
        store.upsert_car(_state(car))
    store.upsert_car(_state("c1"))  # unchanged: no new timeline entry
    store.upsert_car(dataclasses.replace(_state("c3"), mode="STANDBY", reasons=("soc_low", "driving")))
    store.upsert_car(dataclasses.replace(_state("c2"), online=False))
    bid = store.create_batch("t", "d" * 64, 2, [("x", proto.tensor_bytes([np.zeros(1, np.int8)]))])
    for car in ("c1", "c3"):
        (d,) = store.lease("me", "default", 1, 30.0, 10.0)
        store.record([(_result(d.job_id, car, 1), "fleetnode/1")])
    snap = store.dashboard()
    assert snap["cars"] == 3 and snap["modes"] == {"RUN": 1, "STANDBY": 1, "OFFLINE": 1}
    assert snap["reasons"] == {"soc_low": 1, "driving": 1, "offline": 1}
    assert snap["settled_tasks"] == 1 and snap["results_run"] == 2
    assert snap["replication_overhead"] == pytest.approx(1.0)  # two replicas for one result
    lat = snap["latency_s"]
    assert lat["p50"] is not None and 0 <= lat["p50"] <= lat["p95"] <= lat["p99"] < 5
    assert snap["tasks_per_s"] == pytest.approx(2 / snap["window_s"])
    assert [b["id"] for b in snap["batches"]] == [bid] and snap["batches"][0]["done"] == 1
    assert [m["mode"] for m in store.car_timeline("c1", 0)] == ["RUN"]
    tl = store.car_timeline("c3", 0)
    assert [(m["mode"], m["reasons"]) for m in tl] == [("RUN", []), ("STANDBY", ["soc_low", "driving"])]
    assert store.car_timeline("c3", tl[1]["t"] + 1) == tl[1:]  # the mode in force at the start
    history = store.car_attempts("c3")
    assert [(h["batch"], h["state"], h["verdict"]) for h in history] == [(bid, "ok", "valid")]
    assert store.car("nope") is None and store.car("c2")["online"] is False  # type: ignore[index]


def test_failing_a_model_ends_its_running_batches_only_and_says_why(store: Store) -> None:
    store.add_token("t", quota=100)
    store.upsert_car(_state("c1"))
    for sha in ("e" * 64, "f" * 64):
        store.put_model(sha, b"m", b"{}", [], 1)
    a = store.create_batch("t", "e" * 64, 1, [("x0", b""), ("x1", b"")])
    done = store.create_batch("t", "e" * 64, 1, [("y0", b"")])
    other = store.create_batch("t", "f" * 64, 1, [("z0", b"")])
    sent = {d.task: d for d in store.lease("d1", "default", 4, 30.0, 60.0)}
    assert store.record([(_result(sent[f"{done}-0"].job_id, "c1", 1), "fleetnode/1")])[0].status == "settled"
    assert store.fail_model("e" * 64, "manifest refused") == [a]
    b = store.batch(a)
    assert (b["state"], b["failed"], b["in_flight"], b["error"]) == ("failed", 2, 0, "manifest refused")
    assert store.batch(done)["state"] == "done" and store.batch(done)["error"] is None
    assert store.batch(other)["state"] == "running" and store.batch(other)["in_flight"] == 1
    assert store.fail_model("e" * 64, "again") == []
