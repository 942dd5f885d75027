"""The agent's log: structured events (what changed, why) as JSON lines on stderr, journald's
native protocol under systemd, and never a secret or a vehicle reading. The agent runs on the
HIL bench over TLS, with the broker's ACL, so its private key is there to leak if anything did."""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import logs
from agent.bus.profile import VehicleProfile
from agent.fleet import acl
from agent.fleet.broker import Broker, BrokerTls
from agent.fleet.pki import CertificateAuthority
from hil.bench import AgentProcess, CarOnBus
from hil.sim import CarInputs, CarState

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "hil" / "policies" / "demo.toml"
CAR = "car-logs"


def wait_until(pred, timeout_s: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def tls_bench(tmp_path: Path) -> Iterator[dict[str, object]]:
    ca = CertificateAuthority.create(tmp_path / "pki")
    server, car_id = ca.issue_server(), ca.issue_car(CAR)
    (tmp_path / "acl").write_text(acl.acl_text(["dispatch"]))
    broker = Broker(tmp_path / "broker", tls=BrokerTls(ca.cert_path, server.cert, server.key),
                    acl_file=tmp_path / "acl", max_packet_bytes=acl.MAX_PACKET_BYTES).start()
    car = CarOnBus(VehicleProfile.load("reference"),
                   CarState(soc_percent=63.7, inputs=CarInputs(charger_kw=7.0)), workdir=tmp_path)
    car.start()
    config = tmp_path / "agent.toml"
    config.write_text("[agent]\n" + "".join(f'{k} = "{v}"\n' for k, v in {
        "car_id": CAR, "serial_port": car.port, "broker_host": "localhost", "state_dir": tmp_path / "agent",
        "policy_file": POLICY, "tls_ca": ca.cert_path, "tls_cert": car_id.cert, "tls_key": car_id.key}.items())
        + f"broker_port = {broker.port}\n")
    agent = AgentProcess(None, ["run", "--config", str(config), "--json"])
    try:
        yield {"agent": agent, "car": car, "config": config, "key": car_id.key, "broker": broker}
    finally:
        agent.stop()
        car.stop()
        broker.kill()


def test_events_are_json_lines_with_their_fields_and_no_secret_or_reading(tls_bench: dict) -> None:  # type: ignore[type-arg]
    agent, car = tls_bench["agent"], tls_bench["car"]
    assert wait_until(lambda: any(r.get("mode") == "RUN" for r in logs.read_lines(list(agent.lines)))), agent.lines[-10:]
    car.unplug()  # the cable is pulled: a fault, logged as a warning with its reason
    assert wait_until(lambda: any(r.get("mode") == "OFF" for r in logs.read_lines(list(agent.lines)))), agent.lines[-10:]

    # doctor beside the running agent, over TLS: the certificate and the handshake are fine.
    r = subprocess.run([sys.executable, "-m", "agent.cli", "doctor", "--config", str(tls_bench["config"]), "--json"],
                       capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["certificate"]["status"] == "OK" and checks["broker"]["status"] == "OK", checks
    assert checks["serial port"]["status"] == "FAIL"  # the cable is out
    car.plug()
    assert wait_until(lambda: sum(r.get("mode") == "RUN" for r in logs.read_lines(list(agent.lines))) >= 2), agent.lines[-10:]
    agent.stop()

    records = logs.read_lines(list(agent.lines))
    assert records[0]["msg"].startswith("agent started")  # type: ignore[union-attr]
    assert records[-1]["msg"] == "agent stopping"
    for rec in records:
        assert {"t", "level", "logger", "msg"} <= set(rec) and rec["level"] in ("info", "warning", "error")
    off = next(rec for rec in records if rec.get("mode") == "OFF")
    assert off["level"] == "warning" and "link_down" in str(off["reason"]) and "RUN -> OFF" in str(off["msg"])
    run = next(rec for rec in records if rec.get("mode") == "RUN")
    assert run["level"] == "info" and run["reason"] == "none"

    text = "\n".join(agent.lines)
    key_body = [line for line in Path(tls_bench["key"]).read_text().splitlines() if line and "-----" not in line]
    assert key_body and not any(part in text for part in key_body)
    assert "PRIVATE KEY" not in text
    for rec in records:  # only the declared fields: no vehicle reading or location rides along
        assert set(rec) <= {"t", "level", "logger", "msg", *logs.FIELDS}, rec
        assert not any(w in str(rec["msg"]).lower() for w in ("latitude", "longitude", "gps", "heading"))


def test_only_declared_fields_reach_a_record(capsys: pytest.CaptureFixture[str]) -> None:
    import io

    buf = io.StringIO()
    handler = logs.JsonLines(buf)
    logger = logging.getLogger("fleetnode.test.fields")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("job failed", extra={"job_id": "j-1", "latitude": 52.52, "tls_key": "-----BEGIN"})
        with pytest.raises(ValueError, match="latitude"):
            logs.event(logger, logging.INFO, "x", latitude=1.0)
    finally:
        logger.removeHandler(handler)
    rec = json.loads(buf.getvalue())
    assert rec == {"t": rec["t"], "level": "warning", "logger": "fleetnode.test.fields", "msg": "job failed",
                   "job_id": "j-1"}


def parse_datagram(data: bytes) -> dict[str, str]:
    """journald's native protocol, read independently of agent.logs."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            fields[k.decode()] = v.decode()
            i = nl + 1
        else:
            (n,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            fields[line.decode()] = data[nl + 9:nl + 9 + n].decode()
            assert data[nl + 9 + n:nl + 10 + n] == b"\n"
            i = nl + 10 + n
    return fields


def test_under_systemd_records_go_to_journald_with_their_fields(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    sock_path = str(tmp_path / "journal.sock")
    journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journal.bind(sock_path)
    journal.settimeout(5)
    stream = open(tmp_path / "stderr", "w")  # noqa: SIM115 -- closed below
    st = os.fstat(stream.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    handler = logs.setup(stream, journal_socket=sock_path)
    try:
        assert isinstance(handler, logs.Journal)
        logger = logging.getLogger("fleetnode.agent")
        logs.event(logger, logging.WARNING, "mode RUN -> OFF: the serial link is down", mode="OFF", reason="link_down")
        got = parse_datagram(journal.recv(65536))
        assert got == {"MESSAGE": "mode RUN -> OFF: the serial link is down", "PRIORITY": "4",
                       "SYSLOG_IDENTIFIER": "fleetnode", "FLEETNODE_LOGGER": "fleetnode.agent",
                       "FLEETNODE_MODE": "OFF", "FLEETNODE_REASON": "link_down"}
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("job j-2 failed", extra={"job_id": "j-2"})
        got = parse_datagram(journal.recv(65536))
        assert got["PRIORITY"] == "3" and got["JOB_ID"] == "j-2" and "RuntimeError: boom" in got["MESSAGE"]
        journal.close()
        os.unlink(sock_path)  # journald gone: lines with an sd-daemon priority prefix on stderr
        logs.event(logger, logging.INFO, "agent stopping")
        stream.flush()
        assert (tmp_path / "stderr").read_text() == "<6>agent stopping\n"
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
        stream.close()


def test_json_lines_when_stderr_is_not_the_journal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")
    with open(tmp_path / "err", "w") as stream:
        handler = logs.setup(stream)
        logging.getLogger().removeHandler(handler)
    assert isinstance(handler, logs.JsonLines)
