"""The fleet link's security on a real mosquitto: TLS with client certificates from our CA, the
per-vehicle ACL generated from the topic tree, the client id bound to the certificate, and the
packet size limit.

Every "nothing arrived" is proven by a marker sent afterwards on an allowed topic: the marker
comes from the same publisher (MQTT keeps one publisher's order), or it is sent only after the
broker has acknowledged the refused message (mosquitto routes a message before it answers its
PUBACK, so anything it would have delivered is queued ahead of the marker).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paho.mqtt.client as paho
import pytest
from cryptography import x509
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.fleet import acl
from agent.fleet import protocol as p
from agent.fleet.broker import Broker, BrokerTls
from agent.fleet.fleetside import FleetClient
from agent.fleet.link import FleetLink
from agent.fleet.models import TrustStore, create_key, load_private, load_public, sign_manifest
from agent.fleet.mqtt import TlsConfig
from agent.fleet.pki import CertificateAuthority, Identity, PkiError, common_name
from tests.fleet.conftest import RUN, VEHICLE, run_car

T = p.Topics
NOT_AUTHORIZED = 0x87
PACKET_TOO_LARGE = 0x95
LOST = 0x80  # paho's reason when the socket closed under it
NO_SUBSCRIBERS = 0x10  # accepted; nobody subscribed to it
WAIT_S = 10.0
REPO = Path(__file__).resolve().parents[2]
MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
MOSQUITTO_SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: Identity
    car_a: Identity
    car_b: Identity
    fleet: Identity
    rogue_car_a: Identity  # CN car-a, signed by another CA
    rogue_ca: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = CertificateAuthority.create(tmp_path_factory.mktemp("pki"))
    rogue = CertificateAuthority.create(tmp_path_factory.mktemp("rogue"), name="not the fleet CA")
    return Pki(ca=ca.cert_path, server=ca.issue_server(), car_a=ca.issue_car("car-a"),
               car_b=ca.issue_car("car-b"), fleet=ca.issue_fleet("dispatch"),
               rogue_car_a=rogue.issue_car("car-a"), rogue_ca=rogue.cert_path)


def secure_broker(workdir: Path, ca: Path, server: Identity, crl: Path | None = None,
                  acl_text: str | None = None) -> Broker:
    """mosquitto with a TLS listener that requires our client certificates, and the ACL."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "acl").write_text(acl_text or acl.acl_text(["dispatch"]))
    b = Broker(workdir, tls=BrokerTls(ca, server.cert, server.key), acl_file=workdir / "acl",
               max_packet_bytes=acl.MAX_PACKET_BYTES)
    extra = [f"crlfile {crl}"] if crl is not None else []
    with b.config_path.open("a") as f:
        f.write("".join(line + "\n" for line in extra))
    return b.start()


@pytest.fixture
def broker(pki: Pki, tmp_path: Path) -> Iterator[Broker]:
    b = secure_broker(tmp_path / "broker", pki.ca, pki.server)
    try:
        yield b
    finally:
        b.kill()


def tls_context(ca: Path, ident: Identity | None) -> ssl.SSLContext:
    if ident is None:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx
    return TlsConfig(ca, ident.cert, ident.key).context()


def tls(pki: Pki, ident: Identity) -> TlsConfig:
    return TlsConfig(pki.ca, ident.cert, ident.key)


class Probe:
    """A bare paho MQTT 5 client that records every answer of the broker, for assertions."""

    def __init__(self, broker: Broker, ctx: ssl.SSLContext, client_id: str,
                 clean_start: bool = True, session_expiry_s: int = 0) -> None:
        self._cond = threading.Condition()
        self.connack: ReasonCode | None = None
        self.connack_props: Properties | None = None
        self.session_present = False
        self.disconnects: list[ReasonCode] = []
        self.subacks: dict[int, list[int]] = {}
        self.pubacks: dict[int, int] = {}
        self.messages: list[tuple[str, bytes, bool]] = []
        self._closed = False
        self.client = c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                      protocol=paho.MQTTv5)
        c.tls_set_context(ctx)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = session_expiry_s
        c.connect(broker.host, broker.port, clean_start=clean_start, properties=props)
        c.loop_start()
        assert self.wait(lambda: self.connack is not None), "no CONNACK"
        assert self.connack is not None and not self.connack.is_failure, self.connack

    def _record(self, fn: Callable[[], None]) -> None:
        with self._cond:
            fn()
            self._cond.notify_all()

    def _on_connect(self, c: paho.Client, u: object, flags: paho.ConnectFlags, rc: ReasonCode,
                    props: Properties | None) -> None:
        def f() -> None:
            self.connack, self.connack_props = rc, props
            self.session_present = bool(flags.session_present)
        self._record(f)

    def _on_disconnect(self, c: paho.Client, u: object, flags: paho.DisconnectFlags,
                       rc: ReasonCode, props: Properties | None) -> None:
        self._record(lambda: self.disconnects.append(rc))

    def _on_subscribe(self, c: paho.Client, u: object, mid: int, rcs: list[ReasonCode],
                      props: Properties | None) -> None:
        self._record(lambda: self.subacks.__setitem__(mid, [r.value for r in rcs]))

    def _on_publish(self, c: paho.Client, u: object, mid: int, rc: ReasonCode,
                    props: Properties | None) -> None:
        self._record(lambda: self.pubacks.__setitem__(mid, rc.value))

    def _on_message(self, c: paho.Client, u: object, msg: paho.MQTTMessage) -> None:
        self._record(lambda: self.messages.append((msg.topic, bytes(msg.payload), msg.retain)))

    def wait(self, predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def subscribe(self, topic: str) -> int:
        """Subscribe at QoS 1; returns the SUBACK's reason code (1 = granted QoS 1)."""
        rc, mid = self.client.subscribe(topic, 1)
        assert rc == paho.MQTT_ERR_SUCCESS and mid is not None
        assert self.wait(lambda: mid in self.subacks), f"no SUBACK for {topic}"
        return self.subacks[mid][0]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """Publish at QoS 1; returns the PUBACK's reason code (0 = accepted)."""
        info = self.client.publish(topic, payload, 1, retain)
        assert info.rc == paho.MQTT_ERR_SUCCESS
        assert self.wait(lambda: info.mid in self.pubacks), f"no PUBACK for {topic}"
        return self.pubacks[info.mid]

    def wait_message(self, topic: str, payload: bytes) -> bool:
        return self.wait(lambda: any(m[0] == topic and m[1] == payload for m in self.messages))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.client.disconnect()
            self.client.loop_stop()


@pytest.fixture
def probe(broker: Broker, pki: Pki) -> Iterator[Callable[..., Probe]]:
    made: list[Probe] = []

    def make(ident: Identity, client_id: str | None = None, **kw: bool | int) -> Probe:
        pr = Probe(broker, tls_context(pki.ca, ident), client_id or f"probe-{ident.name}-{len(made)}",
                   **kw)  # type: ignore[arg-type]
        made.append(pr)
        return pr

    yield make
    for pr in made:
        pr.close()


def until(predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    """Poll a condition that has no notification of its own, up to a deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def mqtt_connect_once(broker: Broker, ctx: ssl.SSLContext | None) -> bytes | Exception:
    """One TLS handshake (or plain TCP with ctx None) and one MQTT 5 CONNECT: returns the first
    bytes of the answer (a CONNACK starts 0x20), b"" if the broker closed, or the exception."""
    cid = b"raw-probe"
    body = b"\x00\x04MQTT\x05\x02\x00\x3c\x00" + len(cid).to_bytes(2, "big") + cid
    connect = bytes([0x10, len(body)]) + body
    try:
        with socket.create_connection((broker.host, broker.port), timeout=WAIT_S) as raw:
            sock = raw if ctx is None else ctx.wrap_socket(raw, server_hostname=broker.host)
            with sock:
                sock.sendall(connect)
                got = b""
                while len(got) < 4:
                    chunk = sock.recv(4 - len(got))
                    if not chunk:
                        break
                    got += chunk
                return got
    except (ssl.SSLError, ConnectionError) as e:
        return e


def connack_success(got: bytes | Exception) -> bool:
    return isinstance(got, bytes) and len(got) == 4 and got[0] == 0x20 and got[3] == 0x00


def refused(got: bytes | Exception) -> bool:
    """Refused during or right after the handshake: an alert or a closed socket, never a
    CONNACK. (A broker that hangs is not one that refuses: the socket timeout raises.)"""
    return got == b"" or isinstance(got, Exception)


# ---------------------------------------------------------------------------------------------
# Certificates


def test_pki_writes_private_keys_0600_and_names_cars_by_their_id(pki: Pki) -> None:
    for ident in (pki.server, pki.car_a, pki.car_b, pki.fleet):
        assert ident.key.stat().st_mode & 0o777 == 0o600
        assert ident.cert.stat().st_mode & 0o077 == 0o044  # certificates are public
    assert (pki.ca.parent / "ca.key").stat().st_mode & 0o777 == 0o600
    assert common_name(pki.car_a.cert) == "car-a"
    assert common_name(pki.fleet.cert) == "fleet.dispatch"
    ca = CertificateAuthority.load(pki.ca.parent)
    assert ca.signed(pki.car_a.cert) and not ca.signed(pki.rogue_car_a.cert)


@pytest.mark.parametrize("bad", ["car/a", "+", "#", "", "a" * 65, "fleet.dispatch", "ca", "broker"])
def test_pki_refuses_a_car_id_that_is_not_one_topic_level_of_its_own(pki: Pki, bad: str) -> None:
    ca = CertificateAuthority.load(pki.ca.parent)
    with pytest.raises(PkiError):
        ca.issue_car(bad)


def test_pki_issue_serves_cars_fleet_services_and_the_broker(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki")  # made here, opened again below
    assert CertificateAuthority(tmp_path / "pki").cert == ca.cert
    server = ca.issue("broker.example", server=True)
    sans = x509.load_pem_x509_certificate(server.cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert "broker.example" in sans.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert ca.issue("fleet.watch").name == "fleet.watch"
    assert ca.issue("car-9").name == "car-9"
    with pytest.raises(PkiError):
        ca.issue("fleet.Not Valid")


def test_acl_lets_a_car_write_nothing_outside_its_own_subtree() -> None:
    own = f"{p.ROOT}/cars/%u/"
    for access, topic in acl.car_rules():
        assert access in ("read", "write") and topic.startswith(f"{p.ROOT}/")
        if access == "write":
            assert topic.startswith(own), topic
        assert "#" not in topic or topic.startswith(f"{p.ROOT}/models/")
    assert all(not t.startswith(f"{p.ROOT}/cars/") or a != "write" or t.endswith(("/acks", "/credits"))
               for a, t in acl.fleet_rules())  # the fleet writes only its messages to a car
    text = acl.acl_text(["fleet-legacy", "fleet.dispatch"], exact=True)
    assert "user fleet-legacy" in text and "user fleet.dispatch" in text
    with pytest.raises(PkiError):
        acl.acl_text(["bad name"])


def test_pki_refuses_to_replace_an_existing_ca(pki: Pki) -> None:
    with pytest.raises(PkiError, match="orphan"):
        CertificateAuthority.create(pki.ca.parent)


# ---------------------------------------------------------------------------------------------
# (1), (2) Who may connect


def test_a_car_with_a_fleet_certificate_gets_a_connack(broker: Broker, pki: Pki) -> None:
    # The positive control for the refusals below: the same one-shot connect succeeds.
    got = mqtt_connect_once(broker, tls_context(pki.ca, pki.car_a))
    assert connack_success(got), got


@pytest.mark.parametrize("who", ["no certificate", "plain TCP", "certificate from another CA",
                                 "the broker's own certificate as a client"])
def test_a_client_without_a_fleet_client_certificate_cannot_connect(broker: Broker, pki: Pki,
                                                                    who: str) -> None:
    ctx: ssl.SSLContext | None
    if who == "no certificate":
        ctx = tls_context(pki.ca, None)
    elif who == "plain TCP":
        ctx = None
    elif who == "certificate from another CA":
        ctx = tls_context(pki.ca, pki.rogue_car_a)  # the right name, the wrong signature
    else:
        ctx = tls_context(pki.ca, pki.server)  # signed by our CA, but for serverAuth only
    got = mqtt_connect_once(broker, ctx)
    assert refused(got), got


def test_a_car_refuses_a_broker_certified_by_another_ca(broker: Broker, pki: Pki) -> None:
    got = mqtt_connect_once(broker, tls_context(pki.rogue_ca, pki.car_a))
    assert isinstance(got, ssl.SSLCertVerificationError), got


def test_a_revoked_car_certificate_is_refused(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path / "pki")  # with an empty CRL
    server, kept, sold = ca.issue_server(), ca.issue_car("car-a"), ca.issue_car("car-c")
    b = secure_broker(tmp_path / "broker", ca.cert_path, server, crl=ca.crl_path)
    try:
        for ident in (kept, sold):  # both accepted before the revocation
            got = mqtt_connect_once(b, tls_context(ca.cert_path, ident))
            assert connack_success(got), got
        ca.revoke(sold.cert)
        assert set(ca.revoked().values()) == {"car-c"}
        b.stop()
        b.start()  # mosquitto reads its crlfile when the listener starts
        got = mqtt_connect_once(b, tls_context(ca.cert_path, sold))
        assert refused(got), got
        got = mqtt_connect_once(b, tls_context(ca.cert_path, kept))
        assert connack_success(got), got
    finally:
        b.kill()


def test_a_revoked_car_already_connected_is_cut_off_when_the_broker_reloads(
        tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path / "pki")
    server, kept, sold = ca.issue_server(), ca.issue_car("car-a"), ca.issue_car("car-c")
    # Revoked too, and polled to see the reload: a test connection as car-c would take over
    # car-c's client id and disconnect the connection under test.
    spare = ca.issue_car("car-d")
    b = secure_broker(tmp_path / "broker", ca.cert_path, server, crl=ca.crl_path)
    made: list[Probe] = []
    try:
        fleet = Probe(b, tls_context(ca.cert_path, ca.issue_fleet("dispatch")), "f")
        car_c = Probe(b, tls_context(ca.cert_path, sold), "c")
        made += [fleet, car_c]
        assert fleet.subscribe(T.ALL_STATES) == 1
        assert car_c.publish(T.state("car-c"), b"before") == 0
        ca.revoke(sold.cert)
        ca.revoke(spare.cert)
        (tmp_path / "broker" / "acl").write_text(
            acl.acl_text(["dispatch"], revoked=ca.revoked().values()))
        assert b.pid is not None
        os.kill(b.pid, signal.SIGHUP)  # mosquitto reloads its ACL and CRL, keeps connections
        assert until(lambda: refused(mqtt_connect_once(b, tls_context(ca.cert_path, spare))))
        # The CRL is checked only at the handshake: car-c's connection is still up, and only
        # the ACL's deny stops it.
        assert car_c.publish(T.state("car-c"), b"after") == NOT_AUTHORIZED
        assert car_c.disconnects == []
        car_a = Probe(b, tls_context(ca.cert_path, kept), "a")
        made.append(car_a)
        assert car_a.publish(T.state("car-a"), b"marker") == 0
        assert fleet.wait_message(T.state("car-a"), b"marker")
        assert [m[1] for m in fleet.messages] == [b"before", b"marker"]
        assert refused(mqtt_connect_once(b, tls_context(ca.cert_path, sold)))
    finally:
        for pr in made:
            pr.close()
        b.kill()


def test_an_expired_crl_locks_every_client_out(tmp_path: Path) -> None:
    # Why `crl` must re-sign the list on a timer: past its next update, nobody gets in.
    ca = CertificateAuthority.create(tmp_path / "pki")
    server, car = ca.issue_server(), ca.issue_car("car-a")
    ca.write_crl(crl_days=1, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    b = secure_broker(tmp_path / "broker", ca.cert_path, server, crl=ca.crl_path)
    try:
        assert refused(mqtt_connect_once(b, tls_context(ca.cert_path, car)))
        ca.write_crl()
        b.stop()
        b.start()
        assert connack_success(mqtt_connect_once(b, tls_context(ca.cert_path, car)))
    finally:
        b.kill()


def test_a_car_refuses_a_broker_whose_certificate_names_another_host(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path / "pki")
    server, car = ca.issue_server(["broker.example"]), ca.issue_car("car-a")
    b = secure_broker(tmp_path / "broker", ca.cert_path, server)
    try:
        got = mqtt_connect_once(b, tls_context(ca.cert_path, car))  # connects to 127.0.0.1
        assert isinstance(got, ssl.SSLCertVerificationError), got
        assert "mismatch" in str(got)
    finally:
        b.kill()


# ---------------------------------------------------------------------------------------------
# (3), (4), (5) What each identity may publish and read


def test_a_car_publishes_its_own_state_and_the_fleet_receives_it(probe: Callable[..., Probe],
                                                                 pki: Pki) -> None:
    fleet = probe(pki.fleet)
    assert fleet.subscribe(T.ALL_STATES) == 1
    car = probe(pki.car_a)
    state = p.CarState("car-a", True, "STANDBY", (), 0.0, False).encode()
    assert car.publish(T.state("car-a"), state, retain=True) == 0
    assert fleet.wait_message(T.state("car-a"), state)


def test_a_car_may_write_only_under_its_own_topics(probe: Callable[..., Probe], pki: Pki) -> None:
    fleet = probe(pki.fleet)
    for t in (T.ALL_STATES, T.ALL_TELEMETRY, T.ALL_ERRORS, T.all_results("sub")):
        assert fleet.subscribe(t) == 1
    car_b = probe(pki.car_b)
    assert car_b.subscribe(T.shared_jobs("default")) == 1
    assert car_b.subscribe(T.model_all("0" * 64)) == 1
    car_a = probe(pki.car_a)
    allowed = [T.state("car-a"), T.telemetry("car-a"), T.errors("car-a"), T.results("car-a", "sub")]
    forbidden = [T.state("car-b"), T.telemetry("car-b"), T.errors("car-b"),
                 T.results("car-b", "sub"), T.acks("car-b"), T.acks("car-a"), T.jobs("default"),
                 T.model_manifest("0" * 64), "elsewhere/topic"]
    codes = {t: car_a.publish(t, b"forged by car-a", retain=t == T.state("car-b"))
             for t in forbidden}
    assert codes == {t: NOT_AUTHORIZED for t in forbidden}
    # At QoS 0 there is no PUBACK to carry the refusal; the marker below shows it was dropped.
    assert car_a.client.publish(T.state("car-b"), b"forged by car-a", 0).rc == paho.MQTT_ERR_SUCCESS
    assert {t: car_a.publish(t, b"car-a") for t in allowed} == {t: 0 for t in allowed}
    # Markers: car-a's own state (same publisher as the refused messages), and a job the fleet
    # sends after every refusal was answered.
    assert car_a.publish(T.state("car-a"), b"marker", retain=True) == 0
    assert fleet.wait_message(T.state("car-a"), b"marker")
    assert fleet.publish(T.jobs("default"), b"marker-job") == 0
    assert car_b.wait_message(T.jobs("default"), b"marker-job")
    assert not [m for m in fleet.messages + car_b.messages if m[1] == b"forged by car-a"]
    assert car_a.disconnects == []  # refused, not thrown out
    assert sorted(m[0] for m in fleet.messages) == sorted(allowed + [T.state("car-a")])
    # Nor was anything retained under car-b: subscribing to car-b first, then car-a, the retained
    # car-a marker arrives and nothing for car-b comes before it.
    fleet.close()  # one live connection per identity: the client id is the certificate's name
    late = probe(pki.fleet)
    late.subscribe(T.state("car-b"))
    late.subscribe(T.state("car-a"))
    assert late.wait_message(T.state("car-a"), b"marker")
    assert [m[0] for m in late.messages] == [T.state("car-a")]


def test_the_fleet_cannot_speak_for_a_car(probe: Callable[..., Probe], pki: Pki) -> None:
    fleet = probe(pki.fleet)
    assert fleet.publish(T.state("car-a"), b"forged by the fleet", retain=True) == NOT_AUTHORIZED
    assert fleet.publish(T.results("car-a", "sub"), b"forged by the fleet") == NOT_AUTHORIZED
    assert fleet.publish(T.acks("car-a"), p.encode_ack(["j1"])) in (0, NO_SUBSCRIBERS)
    assert fleet.publish(T.jobs("default"), b"job") in (0, NO_SUBSCRIBERS)


def test_a_car_subscribing_to_another_cars_topics_receives_nothing(probe: Callable[..., Probe],
                                                                   pki: Pki) -> None:
    car_a = probe(pki.car_a)
    spying = [T.state("car-b"), T.telemetry("car-b"), T.acks("car-b"), T.results("car-b", "sub"),
              T.ALL_STATES, f"{p.ROOT}/cars/+/acks", f"{p.ROOT}/#", "#",
              f"$share/spy/{T.acks('car-b')}", f"$share/spy/{p.ROOT}/cars/#"]
    codes = {t: car_a.subscribe(t) for t in spying}
    # mosquitto 2.0's acl_file grants every SUBSCRIBE (SUBACK 0x01) and checks read access on
    # each message it would deliver, against the message's topic: a `$share/<group>/` filter
    # gains nothing. A broker that refuses at SUBSCRIBE time must say 0x87.
    assert all(c in (1, NOT_AUTHORIZED) for c in codes.values()), codes
    assert car_a.subscribe(T.acks("car-a")) == 1
    car_b = probe(pki.car_b)
    for t in (T.state("car-b"), T.telemetry("car-b"), T.results("car-b", "sub")):
        assert car_b.publish(t, b"car-b private", retain=t == T.state("car-b")) == 0
    fleet = probe(pki.fleet)
    assert fleet.publish(T.acks("car-b"), b"car-b private") == 0
    assert fleet.publish(T.acks("car-a"), b"marker") == 0  # after every private one was routed
    assert car_a.wait_message(T.acks("car-a"), b"marker")
    assert {m[0] for m in car_a.messages} == {T.acks("car-a")}, car_a.messages


def test_with_pools_in_the_acl_a_car_reads_no_other_pools_jobs(pki: Pki, tmp_path: Path) -> None:
    b = secure_broker(tmp_path / "broker", pki.ca, pki.server,
                      acl_text=acl.acl_text(car_pools={"car-a": "p1", "car-b": "p2"}))
    made: list[Probe] = []
    try:
        def probe_of(ident: Identity) -> Probe:
            made.append(Probe(b, tls_context(pki.ca, ident), f"probe-{ident.name}"))
            return made[-1]

        car_a, car_b, fleet = probe_of(pki.car_a), probe_of(pki.car_b), probe_of(pki.fleet)
        # car-a (pool p1) joins pool p2's share group as well as its own.
        for pr, topic in ((car_a, T.shared_jobs("p2")), (car_a, T.shared_jobs("p1")),
                          (car_b, T.shared_jobs("p2")), (car_a, T.acks("car-a")),
                          (car_b, T.acks("car-b"))):
            assert pr.subscribe(topic) == 1
        jobs = [b"p2-job-%d" % i for i in range(6)]
        assert all(fleet.publish(T.jobs("p2"), j) == 0 for j in jobs)
        assert fleet.publish(T.jobs("p1"), b"p1-job") == 0
        for pr, car in ((car_a, "car-a"), (car_b, "car-b")):  # after every job was routed
            assert fleet.publish(T.acks(car), b"marker") in (0, NO_SUBSCRIBERS)
            assert pr.wait_message(T.acks(car), b"marker")
        assert [m[1] for m in car_a.messages if m[0].startswith(f"{p.ROOT}/pools/")] == [b"p1-job"]
        got_b = [m[1] for m in car_b.messages if m[0] == T.jobs("p2")]
        assert set(got_b) <= set(jobs)
        # mosquitto 2.0 picks the group member before it checks read access: the jobs it handed
        # to car-a's member are dropped, not given to car-b. The fleet's job timeout resends
        # them (docs/protocol.md, Security). Should this start failing, the broker now checks
        # first and the doc's caveat can go.
        assert len(got_b) < len(jobs)
    finally:
        for pr in made:
            pr.close()
        b.kill()


def test_a_car_takes_jobs_through_the_shared_subscription(probe: Callable[..., Probe],
                                                          pki: Pki) -> None:
    car_a = probe(pki.car_a)
    assert car_a.subscribe(T.shared_jobs("default")) == 1
    fleet = probe(pki.fleet)
    assert fleet.publish(T.jobs("default"), b"job-1") == 0
    assert car_a.wait_message(T.jobs("default"), b"job-1")


def test_a_car_cannot_take_over_another_cars_session(probe: Callable[..., Probe], pki: Pki) -> None:
    car_a = probe(pki.car_a, client_id="car-car-a", clean_start=False, session_expiry_s=600)
    assert car_a.subscribe(T.acks("car-a")) == 1
    # car-b claims car-a's client id: the broker replaces it with car-b's certificate name, so
    # car-b neither finds car-a's session nor pushes car-a off the broker.
    car_b = probe(pki.car_b, client_id="car-car-a", clean_start=False, session_expiry_s=600)
    assert not car_b.session_present
    fleet = probe(pki.fleet)
    assert fleet.publish(T.acks("car-a"), b"for car-a") == 0
    assert car_a.wait_message(T.acks("car-a"), b"for car-a")
    assert car_a.disconnects == [] and car_b.messages == []


# ---------------------------------------------------------------------------------------------
# (6) Size


def test_the_broker_refuses_a_packet_over_the_limit_and_drops_the_connection(
        probe: Callable[..., Probe], pki: Pki, broker: Broker) -> None:
    fleet = probe(pki.fleet)
    assert fleet.subscribe(T.all_results("sub")) == 1
    car = probe(pki.car_a)
    assert car.connack_props is not None
    assert car.connack_props.MaximumPacketSize == acl.MAX_PACKET_BYTES  # announced to clients
    topic = T.results("car-a", "sub")
    largest = b"\x01" * p.MAX_RESULT_BYTES  # the protocol's largest result passes
    assert car.publish(topic, largest) == 0
    assert fleet.wait_message(topic, largest)
    car.client.publish(topic, b"\x02" * acl.MAX_PACKET_BYTES, 1)
    assert car.wait(lambda: len(car.disconnects) > 0)
    # The broker sends DISCONNECT 0x95 and closes; while the client is still writing the big
    # packet it may see only the closed socket. The broker's log says which limit it was.
    assert car.disconnects[0].value in (PACKET_TOO_LARGE, LOST), car.disconnects
    assert until(lambda: "oversize packet" in broker.log_path.read_text(errors="replace"))
    car.close()  # (paho would reconnect it, and under one client id the two would alternate)
    again = probe(pki.car_a)  # a new connection: strictly after the refusal
    assert again.publish(topic, b"marker") == 0
    assert fleet.wait_message(topic, b"marker")
    assert [len(m[1]) for m in fleet.messages] == [p.MAX_RESULT_BYTES, len(b"marker")]


# ---------------------------------------------------------------------------------------------
# (7) The real car and fleet classes over TLS, under the ACL


@pytest.fixture
def car_link(broker: Broker, pki: Pki, tmp_path: Path) -> Iterator[FleetLink]:
    link = FleetLink("car-a", broker.host, broker.port, tls=tls(pki, pki.car_a),
                     outbox_path=tmp_path / "outbox.sqlite", audit_path=tmp_path / "audit.sqlite")
    link.start()
    try:
        assert link.wait_connected(WAIT_S), link.session.last_error
        yield link
    finally:
        link.close()


def test_fleet_link_publishes_its_retained_state_over_tls(car_link: FleetLink, broker: Broker,
                                                          pki: Pki) -> None:
    assert car_link.publish_state(RUN, VEHICLE)
    with FleetClient(broker.host, broker.port, tls=tls(pki, pki.fleet)) as fleet:
        assert fleet.wait_connected(WAIT_S), fleet.session.last_error
        assert fleet.wait_for(lambda c: "car-a" in c.cars, WAIT_S)
        st = fleet.cars["car-a"]
        assert st.online and st.mode == "RUN" and st.soc_percent == 72.0
        car_link.session.abort()  # a crash: the broker publishes the will, which the ACL allows
        assert fleet.wait_for(lambda c: not c.cars["car-a"].online, WAIT_S)
        assert fleet.cars["car-a"].reasons == ("offline",)
    assert car_link.session.counters["publish_refused"] == 0


def test_a_job_round_trip_over_tls_needs_no_more_than_the_acl_grants(car_link: FleetLink,
                                                                    broker: Broker,
                                                                    pki: Pki) -> None:
    run_car(car_link)
    with FleetClient(broker.host, broker.port, tls=tls(pki, pki.fleet), submitter="sub") as fleet:
        assert fleet.wait_connected(WAIT_S), fleet.session.last_error
        assert fleet.wait_for(lambda c: [s.car for s in c.available()] == ["car-a"], WAIT_S)
        fleet.submit("t1", p.ModelRef(builtin="thin_path"), [np.arange(4, dtype=np.int8)])
        job = car_link.jobs().get(WAIT_S)
        assert job is not None and job.task == "t1"
        car_link.send_result(job.job_id, "ok", [job.inputs[0] * 2])
        assert fleet.wait(WAIT_S) and fleet.tasks["t1"].status == "ok"
        assert np.array_equal(fleet.tasks["t1"].outputs[0], np.arange(4, dtype=np.int8) * 2)
        # The fleet's ack reached the car (its own acks topic): the outbox is empty.
        assert fleet.wait_for(lambda c: car_link.outbox.depth() == 0, WAIT_S)
        assert fleet.session.counters["publish_refused"] == 0
    assert car_link.session.counters["publish_refused"] == 0


def test_a_signed_model_reaches_the_car_through_the_acl(broker: Broker, pki: Pki,
                                                       tmp_path: Path) -> None:
    # The fleet writes the manifest and chunks (retained) under models/; the car reads them.
    create_key(tmp_path / "fleet.key")
    model = bytes(range(256)) * 12
    with FleetLink("car-a", broker.host, broker.port, tls=tls(pki, pki.car_a),
                   outbox_path=tmp_path / "o.sqlite", model_dir=tmp_path / "models",
                   trusted_keys=TrustStore([load_public(tmp_path / "fleet.key.pub")]),
                   model_fetch_timeout_s=WAIT_S) as car, \
            FleetClient(broker.host, broker.port, tls=tls(pki, pki.fleet), submitter="sub") as fleet:
        assert car.wait_connected(WAIT_S) and fleet.wait_connected(WAIT_S)
        run_car(car)
        assert fleet.wait_for(lambda c: len(c.available()) == 1, WAIT_S)
        signed = sign_manifest(load_private(tmp_path / "fleet.key"), model, "net", 1,
                               car.clock.time(), chunk_size=1024)
        fleet.publish_model(model, signed)
        ref = p.ModelRef(sha256=signed.manifest.sha256)
        fleet.submit("t0", ref, [np.ones(2, np.int8)])
        job = car.jobs().get(WAIT_S)
        assert job is not None and job.model == ref
        assert car.models is not None and car.models.path(signed.manifest.sha256).read_bytes() == model
        assert fleet.session.counters["publish_refused"] == 0


def test_the_tls_stream_survives_publishing_right_after_connecting(broker: Broker, pki: Pki,
                                                                   probe: Callable[..., Probe],
                                                                   tmp_path: Path) -> None:
    # The caller's thread publishes while the network thread is still reading the broker's first
    # records (CONNACK, SUBACK, TLS 1.3 session tickets). Only one thread may use the TLS stream:
    # two at once corrupt it, the broker logs "bad record mac" and drops the car. A corrupted
    # record comes before the last state in the stream, so the last state arriving over the
    # first connection (no disconnect counted) proves the stream stayed whole.
    fleet = probe(pki.fleet)
    assert fleet.subscribe(T.state("car-a")) == 1
    for attempt in range(6):  # each attempt opens the window once
        with FleetLink("car-a", broker.host, broker.port, tls=tls(pki, pki.car_a),
                       outbox_path=tmp_path / f"o{attempt}.sqlite") as link:
            assert link.wait_connected(WAIT_S), link.session.last_error
            seen = len(fleet.messages)
            for k in range(20):
                assert link.publish_state({**RUN, "power_budget_w": 100.0 * (k + 1)}, VEHICLE)

            assert fleet.wait(lambda seen=seen: any(  # type: ignore[misc]
                p.CarState.decode(m[1]).available_w == 2000.0
                for m in fleet.messages[seen:] if m[0] == T.state("car-a")))
            assert link.session.counters["disconnects"] == 0, link.session.last_error
    assert "bad record mac" not in broker.log_path.read_text(errors="replace")


def test_a_car_with_a_certificate_for_another_id_is_refused_its_state(broker: Broker, pki: Pki,
                                                                      tmp_path: Path) -> None:
    # A FleetLink configured as car-b but holding car-a's certificate: the broker knows it as
    # car-a, so every publish under cars/car-b/ is refused in the PUBACK.
    with FleetLink("car-b", broker.host, broker.port, tls=tls(pki, pki.car_a),
                   outbox_path=tmp_path / "o.sqlite") as link:
        assert link.wait_connected(WAIT_S), link.session.last_error
        link.publish_state(RUN, VEHICLE)
        assert until(lambda: link.session.counters["publish_refused"] > 0)
        assert next(iter(link.session.publish_refused.values())).value == NOT_AUTHORIZED


# ---------------------------------------------------------------------------------------------
# The command lines, and the operator's tools (mosquitto_pub, mosquitto_sub) with their output


def run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


@pytest.mark.parametrize("module", ["agent.fleet.pki", "agent.fleet.acl"])
def test_the_command_lines_answer_help(module: str) -> None:
    r = run_module(module, "--help")
    assert r.returncode == 0 and "usage:" in r.stdout


def test_certificates_made_by_the_command_line_work_with_mosquitto_clients(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    for args in (["init-ca"], ["issue-server"], ["issue-car", "car-a", "car-b"],
                 ["issue-fleet", "dispatch"]):
        r = run_module("agent.fleet.pki", *args, "--out", str(d))
        assert r.returncode == 0, r.stderr
    assert run_module("agent.fleet.pki", "issue-car", "--out", str(d), "bad/id").returncode == 1
    assert run_module("agent.fleet.pki", "init-ca", "--out", str(d)).returncode == 1
    r = run_module("agent.fleet.acl", "--fleet", "dispatch", "--out", str(tmp_path / "acl"))
    assert r.returncode == 0 and "user fleet.dispatch" in (tmp_path / "acl").read_text()
    assert run_module("agent.fleet.pki", "issue-car", "--out", str(d), "car-x").returncode == 0
    assert run_module("agent.fleet.pki", "revoke", "--out", str(d), str(d / "car-x.pem")).returncode == 0
    r = run_module("agent.fleet.acl", "--pki", str(d))
    assert r.returncode == 0 and "user car-x\ntopic deny fleetnode/v1/#" in r.stdout, r.stderr
    b = Broker(tmp_path / "broker", tls=BrokerTls(d / "ca.pem", d / "broker.pem", d / "broker.key"),
               acl_file=tmp_path / "acl").start()
    try:
        def tool(cmd: str, who: str, *args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [cmd, "-h", b.host, "-p", str(b.port), "-V", "5", "-q", "1",
                 "--cafile", str(d / "ca.pem"), "--cert", str(d / f"{who}.pem"),
                 "--key", str(d / f"{who}.key"), *args],
                capture_output=True, text=True, timeout=30, check=False)

        r = tool(MOSQUITTO_PUB, "car-a", "-t", T.state("car-a"), "-m", "hello", "-r")
        assert r.returncode == 0 and r.stderr == "", r.stderr
        r = tool(MOSQUITTO_PUB, "car-a", "-t", T.state("car-b"), "-m", "forged", "-r")
        assert "Not authorized" in r.stderr
        # Retained messages come in the order of the filters: car-b's would come first.
        r = tool(MOSQUITTO_SUB, "fleet.dispatch", "-t", T.state("car-b"), "-t", T.state("car-a"),
                 "-C", "1", "-W", "10", "-v")
        assert r.returncode == 0 and r.stdout == f"{T.state('car-a')} hello\n", (r.stdout, r.stderr)
    finally:
        b.kill()
