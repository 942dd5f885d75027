"""The dispatcher on a real broker: results stored once however often they arrive, each
acknowledged every time, and its memory of seen job ids bounded."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.fleet import protocol as proto
from agent.fleet.broker import Broker
from agent.fleet.models import sign_manifest
from agent.fleet.mqtt import MqttSession
from agent.fleetside import dispatcher as dmod
from agent.fleetside.dispatcher import Dispatcher, DispatcherConfig
from agent.fleetside.store import Store


def _signed(model: bytes) -> bytes:
    return sign_manifest(Ed25519PrivateKey.generate(), model, "m", 1, time.time()).encode()


def test_resent_results_are_acknowledged_each_time_stored_once_and_the_seen_cache_is_bounded(
        tmp_path: Path, mosquitto: Broker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dmod, "SEEN_CACHE", 8)
    store = Store(str(tmp_path / "fleet.sqlite"))
    store.add_token("t", 100)
    store.put_model("d" * 64, b"m", _signed(b"m"), [], 1)
    store.upsert_car(proto.CarState(car="c1", online=True, mode="RUN", reasons=(), available_w=1.0,
                                    accepting_jobs=True, capacity=64))
    bid = store.create_batch("t", "d" * 64, 1, [(f"x{i}", proto.tensor_bytes([np.zeros(1, np.int8)]))
                                               for i in range(20)])
    jobs = store.lease("someone", "default", 64, 30.0, 60.0)  # sent earlier by a dead peer
    assert len(jobs) == 20
    acks: list[str] = []
    got = threading.Condition()

    def on_message(msg: paho.MQTTMessage) -> None:
        with got:
            acks.extend(proto.decode_ack(bytes(msg.payload)))
            got.notify_all()

    car = MqttSession("car-c1", mosquitto.host, mosquitto.port, on_message=on_message,
                      on_connect=lambda _present: car.subscribe(proto.Topics.acks("c1"), 0))
    disp = Dispatcher(store, DispatcherConfig(host=mosquitto.host, port=mosquitto.port, name="d1"))
    with disp:
        car.start()
        try:
            assert car.wait_connected(10) and disp.session.wait_connected(10)
            assert car.wait_for(lambda: car.subscribe_results != {}, 10)
            # the dispatcher's two subscriptions (states, shared results) must be in place before
            # the car sends: a result published earlier reaches no subscriber
            assert disp.session.wait_for(lambda: len(disp.session.subscribe_results) >= 2, 10)
            topic = proto.Topics.results("c1", "fleet")
            for round_ in range(3):  # the car's outbox sends everything again, twice
                for d in jobs:
                    res = proto.JobResult(d.job_id, "c1", "ok", 1, [np.ones((1, 4), np.int8)], run_s=0.01)
                    car.publish(topic, res.encode(), 1)
                with got:
                    assert got.wait_for(lambda r=round_: len(acks) >= 20 * (r + 1), 20), len(acks)
        finally:
            car.stop()
    assert sorted(set(acks)) == sorted(d.job_id for d in jobs) and len(acks) == 60
    assert disp.seen_cache_size() <= 8
    assert disp.counters["results_settled"] == 20
    assert disp.counters["results_duplicate"] == 40  # from the cache or from the database
    assert store.batch(bid)["state"] == "done" and len(store.stored_results(bid)) == 20
    store.close()


def test_a_model_whose_stored_manifest_is_refused_fails_its_batches_and_the_others_go_out(
        tmp_path: Path) -> None:
    store = Store(str(tmp_path / "fleet.sqlite"))
    store.add_token("t", 100)
    store.put_model("e" * 64, b"m", b"{}", [], 1)  # unsigned: SignedManifest.decode refuses it
    store.put_model("f" * 64, b"n", _signed(b"n"), [], 1)
    store.upsert_car(proto.CarState(car="c1", online=True, mode="RUN", reasons=(), available_w=1.0,
                                    accepting_jobs=True, capacity=64))
    tasks = [(f"x{i}", proto.tensor_bytes([np.zeros(1, np.int8)])) for i in range(5)]
    bad = store.create_batch("t", "e" * 64, 1, tasks)
    good = store.create_batch("t", "f" * 64, 1, tasks)
    store.lease("d0", "default", 2, 30.0, 0.0)  # two of the bad batch's jobs were already out
    disp = Dispatcher(store, DispatcherConfig(host="127.0.0.1", port=1, name="d1"))  # never started
    sent = []
    for _ in range(3):
        disp.wake()  # makes the turn look at the models again
        sent.append(disp.pump())
    assert sent == [5, 0, 0]  # the good batch's five, none of the refused model's
    assert disp.counters["bad_manifests"] == 1
    b = store.batch(bad)
    assert (b["state"], b["failed"], b["pending"], b["in_flight"]) == ("failed", 5, 0, 0)
    assert b["finished"] is not None and "manifest is refused" in b["error"]
    g = store.batch(good)
    assert (g["state"], g["pending"], g["in_flight"], g["error"]) == ("running", 5, 5, None)
    store.close()
