"""The fleet commands and a car process, all over TLS with client certificates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from agent.fleet.acl import acl_text
from agent.fleet.broker import Broker, BrokerTls, start_broker
from agent.fleet.mqtt import TlsConfig
from agent.fleet.pki import CertificateAuthority


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
    (d / "acl").write_text(acl_text(["fleet-dispatch"], exact=True))
    broker = start_broker(d / "broker", tls=BrokerTls(ca.cert_path, server.cert, server.key),
                          acl_file=d / "acl")
    yield SecureFleet(broker, ca, tls)
    broker.kill()


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
