"""Telemetry bandwidth per car per day, measured on the wire.

One car (a real FleetLink) talks TLS to a real mosquitto through a byte-counting TCP proxy,
while a typical day runs in virtual time at 1 Hz: parked 20 h, of which 8 h on the charger
(computing), and 4 h of driving. The figure is every byte of TCP payload in both directions
(TLS records, so MQTT framing and encryption included; TCP/IP headers not), for the day's state,
telemetry and their acknowledgements, plus the MQTT keepalive pings a day needs at most
(one per keepalive interval, each measured on the same wire). The connection's set-up (TLS
handshake, CONNECT, SUBSCRIBE) is reported apart: it happens per connection, not per day.
"""

from __future__ import annotations

import math
import random
import select
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from agent.clock import FakeClock
from agent.fleet.acl import acl_text
from agent.fleet.broker import BrokerTls, start_broker
from agent.fleet.link import FleetLink
from agent.fleet.mqtt import MqttSession, TlsConfig
from agent.fleet.pki import CertificateAuthority

DAY_S = 86_400
KEEPALIVE_S = 120
HEARTBEAT_S = 900.0
# (start hour, end hour, what the car does)
DAY = [(0, 6, "charge"), (6, 8, "park"), (8, 9, "drive"), (9, 17, "park"), (17, 18, "drive"),
       (18, 20, "park"), (20, 22, "drive"), (22, 24, "charge")]


class CountingProxy:
    """127.0.0.1 TCP proxy to the broker that counts payload bytes each way, and records the
    size of each upstream read while `record_chunks` is set (to measure one ping's size)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.up = 0
        self.down = 0
        self.chunks: list[int] = []
        self.record_chunks = False
        self._lock = threading.Lock()
        self._srv = socket.socket()
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen()
        self.port = self._srv.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                c, _ = self._srv.accept()
            except OSError:
                return
            u = socket.create_connection(self.target)
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()

    def _pump(self, c: socket.socket, u: socket.socket) -> None:
        socks = [c, u]
        try:
            while True:
                r, _, _ = select.select(socks, [], [], 0.5)
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    with self._lock:
                        if s is c:
                            self.up += len(data)
                            if self.record_chunks:
                                self.chunks.append(len(data))
                        else:
                            self.down += len(data)
                    (u if s is c else c).sendall(data)
        except OSError:
            return
        finally:
            c.close()
            u.close()

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self.up, self.down

    def close(self) -> None:
        self._stop = True
        self._srv.close()


def day_inputs(t: int, st: dict[str, float], rng: random.Random) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(decision, vehicle, telemetry) for second t of the day; `st` carries the physics."""
    hour = t / 3600
    kind = next(k for a, b, k in DAY if a <= hour < b)
    charging = kind == "charge" and st["soc"] < 90.0
    if charging:
        st["soc"] += 7.2 / 75.0 * 100 / 3600 * 0.92
    elif kind == "drive":
        st["soc"] -= 15.0 / 3600
    run = charging
    # First-order temperatures with a little sensor noise.
    pack_target = 30.0 if kind in ("charge", "drive") else 20.0
    st["pack"] += (pack_target - st["pack"]) / 1800.0
    comp_target = 65.0 if run else 25.0
    st["comp"] += (comp_target - st["comp"]) / 300.0
    power = 0.0
    if run:
        cycle = t % 240  # a job of 3 min, then 1 min between jobs
        power = (750.0 if cycle < 180 else 150.0) + rng.uniform(-15, 15)
        if cycle == 179:
            st["jobs"] += 1
    if run:
        decision = {"mode": "RUN", "power_budget_w": 800.0, "reasons": []}
    elif kind == "drive":
        decision = {"mode": "STANDBY", "power_budget_w": 0.0,
                    "reasons": [{"code": "not_parked", "text": "gear is D, not P"},
                                {"code": "moving", "text": "vehicle moving"}]}
    else:
        decision = {"mode": "STANDBY", "power_budget_w": 0.0,
                    "reasons": [{"code": "not_charging", "text": "the car is not charging"}]}
    vehicle = {"soc_percent": st["soc"], "charging_power_kw": 7.2 if charging else 0.0}
    telemetry = {
        "soc_percent": st["soc"], "charging_power_kw": 7.2 + rng.uniform(-0.1, 0.1) if charging else 0.0,
        "pack_temp_max_c": st["pack"] + rng.uniform(-0.2, 0.2),
        "compute_temp_c": st["comp"] + rng.uniform(-1.0, 1.0),
        "compute_power_w": power, "mode": decision["mode"], "jobs_done": int(st["jobs"]),
        "outbox_depth": 0,
    }
    return decision, vehicle, telemetry


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ca = CertificateAuthority(d / "pki")
        server = ca.issue("broker", server=True)
        car = ca.issue("car0001")
        tls = TlsConfig(ca.cert_path, car.cert, car.key)
        (d / "acl").write_text(acl_text(["fleet"], exact=True))
        broker = start_broker(d / "broker", tls=BrokerTls(ca.cert_path, server.cert, server.key),
                              acl_file=d / "acl")
        proxy = CountingProxy((broker.host, broker.port))
        try:
            return _measure(d, proxy, tls)
        finally:
            proxy.close()
            broker.kill()


def _measure(d: Path, proxy: CountingProxy, tls: TlsConfig) -> dict[str, Any]:
    clock = FakeClock(start_wall=1_800_000_000.0)
    rng = random.Random(6)
    link = FleetLink("car0001", "127.0.0.1", proxy.port, clock=clock, outbox_path=d / "outbox.sqlite",
                     tls=tls, keepalive_s=KEEPALIVE_S, heartbeat_s=HEARTBEAT_S)
    with link:
        if not link.wait_connected(20):
            raise RuntimeError(f"car could not connect: {link.session.last_error}")
        time.sleep(0.5)  # let the connect-time subscriptions settle before the baseline
        up0, down0 = proxy.counts()
        st = {"soc": 35.0, "pack": 20.0, "comp": 25.0, "jobs": 0.0}
        states = telemetry = 0
        for t in range(DAY_S):
            decision, vehicle, tele = day_inputs(t, st, rng)
            if link.publish_state(decision, vehicle):
                states += 1
            want = decision["mode"] == "RUN"
            if want != link.accepting_jobs:
                link.set_accepting_jobs(want)
            if link.publish_telemetry(tele):
                telemetry += 1
            clock.advance(1.0)
        # Everything handed to paho is on the wire once a QoS 1 message behind it is acked.
        marker = link.session.publish("fleetnode/v1/cars/car0001/telemetry", b"{}", 1)
        if marker is not None:
            marker.wait_for_publish(30)
        deadline = time.monotonic() + 5
        last = proxy.counts()
        while time.monotonic() < deadline:  # wait until the byte counts stop moving
            time.sleep(0.3)
            now = proxy.counts()
            if now == last:
                break
            last = now
        up1, down1 = proxy.counts()
    ping_up, ping_down = _ping_cost(proxy, tls)
    pings = DAY_S // KEEPALIVE_S  # an upper bound: traffic in an interval makes its ping unneeded
    day_up = up1 - up0 + pings * ping_up
    day_down = down1 - down0 + pings * ping_down
    return {
        "telemetry_bytes_per_car_day": day_up + day_down,
        "telemetry_upstream_bytes_per_car_day": day_up,
        "telemetry_downstream_bytes_per_car_day": day_down,
        "keepalive_bytes_per_car_day": pings * (ping_up + ping_down),
        "messages_per_car_day": states + telemetry,
        "state_messages_per_day": states,
        "telemetry_messages_per_day": telemetry,
        "connect_bytes_per_connection": up0 + down0,
        "ping_bytes_each_way": [ping_up, ping_down],
        "target_bytes_per_car_day": 200_000,
        "keepalive_s": KEEPALIVE_S,
        "heartbeat_s": HEARTBEAT_S,
        "transport": "MQTT 5 over TLS (mosquitto), TCP payload bytes both ways",
    }


def _ping_cost(proxy: CountingProxy, tls: TlsConfig) -> tuple[int, int]:
    """Bytes of one keepalive exchange on this wire: an idle session with a 1 s keepalive."""
    s = MqttSession("ping-probe", "127.0.0.1", proxy.port, tls=tls, clean_start=True,
                    session_expiry_s=0, keepalive_s=1).start()
    try:
        if not s.wait_connected(20):
            raise RuntimeError(f"ping probe could not connect: {s.last_error}")
        time.sleep(0.5)
        up0, down0 = proxy.counts()
        proxy.chunks.clear()
        proxy.record_chunks = True
        time.sleep(4.2)
        proxy.record_chunks = False
        up1, down1 = proxy.counts()
        n = max(1, len(proxy.chunks))
        return math.ceil((up1 - up0) / n), math.ceil((down1 - down0) / n)
    finally:
        s.stop()


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))
