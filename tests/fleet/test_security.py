"""TLS with client certificates and a per-vehicle ACL on a real mosquitto: a car can work, and
it cannot publish to or read another car's topics; no certificate, no connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest

from agent.fleet import protocol as p
from agent.fleet.broker import Broker, BrokerTls, start_broker
from agent.fleet.fleetside import FleetClient
from agent.fleet.link import FleetLink
from agent.fleet.mqtt import MqttSession, TlsConfig
from agent.fleet.pki import CertificateAuthority, acl_text
from tests.fleet.conftest import run_car


@dataclass
class SecureFleet:
    broker: Broker
    ca: CertificateAuthority
    tls: dict[str, TlsConfig]


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureFleet]:
    d = tmp_path_factory.mktemp("secure")
    ca = CertificateAuthority(d / "pki")
    server = ca.issue("broker", server=True)
    tls = {}
    for name in ("car1", "car2", "fleet-dispatch"):
        ident = ca.issue(name)
        tls[name] = TlsConfig(ca.cert_path, ident.cert, ident.key)
    (d / "acl").write_text(acl_text(["fleet-dispatch"]))
    broker = start_broker(d / "broker", tls=BrokerTls(ca.cert_path, server.cert, server.key),
                          acl_file=d / "acl")
    yield SecureFleet(broker, ca, tls)
    broker.kill()


def session(secure: SecureFleet, who: str, client_id: str, tls: TlsConfig | None = None,
            inbox: list[paho.MQTTMessage] | None = None) -> MqttSession:
    got = inbox if inbox is not None else []
    s = MqttSession(client_id, secure.broker.host, secure.broker.port,
                    tls=tls or secure.tls[who], clean_start=True, session_expiry_s=0,
                    on_message=got.append)
    return s.start()


def test_a_car_works_over_tls_with_its_certificate(secure: SecureFleet, tmp_path: Path) -> None:
    b = secure.broker
    with FleetLink("car1", b.host, b.port, outbox_path=tmp_path / "o.sqlite",
                   tls=secure.tls["car1"]) as car, \
            FleetClient(b.host, b.port, submitter="dispatch", tls=secure.tls["fleet-dispatch"],
                        client_id="fleet-dispatch-1") as fleet:
        assert car.wait_connected(10), car.session.last_error
        run_car(car)
        assert fleet.wait_for(lambda c: len(c.available()) == 1, 10)
        fleet.submit("t0", p.ModelRef(builtin="thin_path"), [np.ones(4, np.int8)])
        j = car.jobs().get(10)
        assert j is not None
        car.send_result(j.job_id, "ok", [j.inputs[0] * 2])
        assert fleet.wait(10) and fleet.tasks["t0"].status == "ok"
        assert fleet.wait_for(lambda c: car.outbox.depth() == 0, 10)  # the ack reached car1
        assert car.session.counters["publish_refused"] == 0


def test_a_car_cannot_publish_or_read_another_cars_topics(secure: SecureFleet) -> None:
    seen: list[paho.MQTTMessage] = []
    observer = session(secure, "fleet-dispatch", "observer", inbox=seen)
    spy_inbox: list[paho.MQTTMessage] = []
    spy = session(secure, "car2", "car2-spy", inbox=spy_inbox)
    try:
        assert observer.wait_connected(10) and spy.wait_connected(10), spy.last_error
        mid = observer.subscribe(f"{p.ROOT}/#", 1)
        assert mid is not None and observer.wait_subscribed(mid, 10)
        # car2 listens everywhere it should not: car1's acks, results, state, the whole tree.
        for topic in (p.Topics.acks("car1"), p.Topics.all_results("dispatch"),
                      p.Topics.ALL_STATES, f"{p.ROOT}/#"):
            mid = spy.subscribe(topic, 1)
            assert mid is not None and spy.wait_subscribed(mid, 10) is not None
        # ...and writes where car1 writes.
        forged = [p.Topics.state("car1"), p.Topics.results("car1", "dispatch"),
                  p.Topics.telemetry("car1"), p.Topics.acks("car1"), p.Topics.jobs("default")]
        infos = [spy.publish(t, b"forged-by-car2", 1) for t in forged]
        for info in infos:
            assert info is not None
            info.wait_for_publish(10)
        assert len(spy.publish_refused) == len(forged)  # PUBACK "Not authorized", each
        assert all(rc.getName() == "Not authorized" for rc in spy.publish_refused.values())
        # The fleet publishes on car1's topics; car2 must not receive any of it.
        for t in (p.Topics.acks("car1"), p.Topics.state("car1"), p.Topics.results("car1", "dispatch")):
            info = observer.publish(t, b"fleet-only", 1)
            assert info is not None, (observer.last_error, observer.counters)
            info.wait_for_publish(10)
        # A marker car2 may write; once the observer has it, everything before it was delivered.
        marker = spy.publish(p.Topics.telemetry("car2"), b"marker", 1)
        assert marker is not None
        marker.wait_for_publish(10)
        assert observer.wait_for(lambda: any(m.payload == b"marker" for m in seen), 10)
        assert not any(m.payload == b"forged-by-car2" for m in seen)
        assert spy_inbox == [], [m.topic for m in spy_inbox]
    finally:
        spy.stop()
        observer.stop()


def test_no_certificate_or_a_foreign_ca_gets_no_connection(secure: SecureFleet, tmp_path: Path) -> None:
    rogue_ca = CertificateAuthority(tmp_path / "rogue")
    rogue = rogue_ca.issue("car1")
    foreign = session(secure, "car1", "rogue", tls=TlsConfig(secure.ca.cert_path, rogue.cert, rogue.key))
    try:
        assert not foreign.wait_connected(2)
        assert foreign.counters["connects"] == 0 and foreign.last_error
    finally:
        foreign.stop()
    plain = MqttSession("plain", secure.broker.host, secure.broker.port, clean_start=True,
                        session_expiry_s=0).start()
    try:
        assert not plain.wait_connected(2)
    finally:
        plain.stop()


def test_a_car_cannot_take_over_another_cars_session(secure: SecureFleet, tmp_path: Path) -> None:
    b = secure.broker
    with FleetLink("car1", b.host, b.port, outbox_path=tmp_path / "o.sqlite",
                   tls=secure.tls["car1"]) as car:
        assert car.wait_connected(10)
        # car2 presents car1's client id: the broker names the session after car2's certificate.
        thief = session(secure, "car2", "car-car1")
        try:
            assert thief.wait_connected(10)
            assert not car.session.wait_for(lambda: car.session.counters["disconnects"] > 0, 1.0)
            assert car.connected and car.session.counters["connects"] == 1
        finally:
            thief.stop()


def test_the_fleet_commands_work_over_tls(secure: SecureFleet, tmp_path: Path) -> None:
    """A car process and `fleetnode fleet watch` / `submit`, all with certificates."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    b = secure.broker
    car_tls = secure.tls["car2"]
    car = subprocess.Popen(
        [sys.executable, "-m", "tests.fleet.car_process", "--car", "car2", "--port", str(b.port),
         "--outbox", str(tmp_path / "o.sqlite"), "--tls", str(car_tls.ca_certs),
         str(car_tls.certfile), str(car_tls.keyfile)],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert car.stdout is not None and car.stdout.readline().startswith("READY")
        fleet = secure.tls["fleet-dispatch"]
        tls_args = ["--port", str(b.port), "--tls-ca", str(fleet.ca_certs), "--tls-cert",
                    str(fleet.certfile), "--tls-key", str(fleet.keyfile)]
        np.savez(tmp_path / "in.npz", a=np.arange(4, dtype=np.int8), b=np.ones(4, np.int8))
        sub = subprocess.run([sys.executable, "-m", "agent.fleet.cli", "fleet", "submit",
                              "builtin:thin_path", str(tmp_path / "in.npz"), "--json",
                              "--submitter", "tls-cli", "--timeout", "60", *tls_args],
                             cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert sub.returncode == 0, sub.stderr
        reports = [json.loads(x) for x in sub.stdout.splitlines()]
        assert [r["status"] for r in reports] == ["ok", "ok"] and reports[0]["cars"] == ["car2"]
        watch = subprocess.run([sys.executable, "-m", "agent.fleet.cli", "fleet", "watch", "--json",
                                "--timeout", "3", *tls_args],
                               cwd=root, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert watch.returncode == 0, watch.stderr
        cars = {c["car"]: c for c in json.loads(watch.stdout.splitlines()[-1])["cars"]}
        assert cars["car2"]["mode"] == "RUN" and cars["car2"]["online"]
    finally:
        car.kill()
        car.wait(10)
