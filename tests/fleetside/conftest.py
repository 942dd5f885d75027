"""Fixtures of the fleet service tests: a signing key the cars trust, simulated cars, and
`fleetnode fleet serve` as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.fleet.broker import Broker, free_port
from agent.fleet.models import TrustStore
from hil.fleetcars import SimCar, start_cars
from hil.fleetservice import Api, make_key

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "agent" / "inference" / "models" / "thin_path.tflite"


@pytest.fixture
def fleet_key(tmp_path: Path) -> tuple[Path, TrustStore]:
    return make_key(tmp_path / "keys")


@pytest.fixture
def sim_cars(mosquitto: Broker, tmp_path: Path,
             fleet_key: tuple[Path, TrustStore]) -> Iterator[Callable[..., list[SimCar]]]:
    made: list[SimCar] = []

    def make(n: int, **kw: object) -> list[SimCar]:
        cars = start_cars(n, mosquitto.host, mosquitto.port, tmp_path / "cars", fleet_key[1], **kw)
        made.extend(cars)
        return cars

    yield make
    for c in made:
        c.close()


def fleetnode(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True,
                          check=check, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)


class ServeProcess:
    """`fleetnode fleet serve` in a child process, restartable on the same port and name."""

    def __init__(self, db: str, key: Path, broker: Broker, name: str, log: Path,
                 extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.args = [sys.executable, "-m", "agent.cli", "fleet", "serve", "--db", db, "--key", str(key),
                     "--broker", f"{broker.host}:{broker.port}", "--listen", f"127.0.0.1:{self.port}",
                     "--name", name, "--job-timeout", "5", *extra]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self, token: str) -> Api:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**os.environ, "PYTHONPATH": str(ROOT)})
        api = Api(f"http://127.0.0.1:{self.port}", token)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                if api.request("GET", "/v1/cars", timeout=2)[0] == 200:
                    return api
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"fleet serve did not answer: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
