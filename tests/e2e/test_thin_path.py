"""The thin path end to end, every part real: simulated car -> firmware shim (pty) -> agent
process -> mosquitto -> fleet consumer, and back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.bus.profile import VehicleProfile
from agent.fleet import protocol as p
from agent.fleet.broker import Broker
from agent.fleet.fleetside import FleetClient
from agent.fleet.models import create_key, load_private, sign_manifest
from agent.inference import load_model
from hil.bench import AgentProcess, CarOnBus
from hil.sim import CarInputs, CarState

REPO = Path(__file__).resolve().parents[2]
THIN_PATH = REPO / "agent" / "inference" / "models" / "thin_path.tflite"
POLICY = REPO / "hil" / "policies" / "demo.toml"
CAR = "car-e2e"


@pytest.fixture
def signing_key(tmp_path: Path) -> Path:
    key = tmp_path / "keys" / "fleet.key"
    create_key(key)
    return key


@pytest.fixture
def rig(tmp_path: Path, mosquitto: Broker, signing_key: Path) -> Iterator[tuple[CarOnBus, AgentProcess]]:
    car = CarOnBus(VehicleProfile.load("reference"),
                   CarState(soc_percent=70.0, inputs=CarInputs(charger_kw=7.0)), workdir=tmp_path)
    car.start()
    agent = AgentProcess(None, ["run", "--port", car.port, "--broker-port", str(mosquitto.port),
                                "--car-id", CAR, "--state-dir", str(tmp_path / "agent"),
                                "--policy", str(POLICY), "--trusted-keys", str(signing_key.parent),
                                "--json"])
    try:
        yield car, agent
    finally:
        agent.stop()
        car.stop()


def test_jobs_return_litert_bytes_and_state_is_retained(rig: tuple[CarOnBus, AgentProcess],
                                                        mosquitto: Broker) -> None:
    _car, agent = rig
    oracle = load_model(THIN_PATH, backend="litert")
    rng = np.random.default_rng(1)
    xs = {f"t{i}": rng.integers(-128, 128, size=oracle.inputs[0].shape, dtype=np.int8) for i in range(4)}
    with FleetClient("127.0.0.1", mosquitto.port, submitter="e2e", job_timeout_s=5.0) as fleet, \
            FleetClient("127.0.0.1", mosquitto.port, watch_results=True) as watcher:
        assert fleet.wait_for(lambda f: CAR in f.cars and f.cars[CAR].mode == "RUN", 20), fleet.cars
        assert watcher.wait_connected(10)
        for tid, x in xs.items():
            fleet.submit(tid, p.ModelRef(builtin="thin_path"), [x])
        assert fleet.wait(30, list(xs)), {t: fleet.tasks[t].status for t in xs}
        for tid, x in xs.items():
            task = fleet.tasks[tid]
            assert task.status == "ok" and task.cars == [CAR]
            want = oracle.run([x])
            assert [o.tobytes() for o in task.outputs] == [w.tobytes() for w in want]
        # `fleet watch` sees every result pass, without taking any from the submitter.
        assert watcher.wait_for(lambda w: len(w.seen_results) >= len(xs), 10)
        assert sorted(job.split(".")[0] for _, job, _, _ in watcher.seen_results) == sorted(xs)
    # A consumer that connects later still learns the car's state: it was retained.
    with FleetClient("127.0.0.1", mosquitto.port) as late:
        assert late.wait_for(lambda f: CAR in f.cars, 10)
        state = late.cars[CAR]
        assert state.online and state.mode == "RUN" and state.soc_percent is not None
    assert agent.alive


def test_pulled_cable_means_off_with_a_reason_then_recovery(rig: tuple[CarOnBus, AgentProcess],
                                                             mosquitto: Broker) -> None:
    car, agent = rig
    with FleetClient("127.0.0.1", mosquitto.port) as fleet:
        assert fleet.wait_for(lambda f: CAR in f.cars and f.cars[CAR].mode == "RUN", 20)
        car.unplug()
        assert fleet.wait_for(lambda f: f.cars[CAR].mode == "OFF", 5)
        assert "link_down" in fleet.cars[CAR].reasons
        assert agent.alive
        car.plug()
        assert fleet.wait_for(lambda f: f.cars[CAR].mode == "RUN", 15)
    assert agent.stop() == 0
    assert not any("Traceback" in line for line in agent.lines), "\n".join(agent.lines[-20:])


def test_a_signed_zoo_model_from_the_fleet_runs_on_the_native_engine(
        rig: tuple[CarOnBus, AgentProcess], mosquitto: Broker, signing_key: Path) -> None:
    model = (REPO / "models" / "zoo" / "ds_cnn_kws.tflite").read_bytes()
    oracle = load_model(model, backend="litert")
    x = np.random.default_rng(2).integers(-128, 128, size=oracle.inputs[0].shape, dtype=np.int8)
    with FleetClient("127.0.0.1", mosquitto.port, submitter="e2e", job_timeout_s=10.0) as fleet:
        assert fleet.wait_for(lambda f: CAR in f.cars and f.cars[CAR].mode == "RUN", 20)
        signed = sign_manifest(load_private(signing_key), model, "ds_cnn_kws", 1, time.time())
        fleet.publish_model(model, signed)
        fleet.submit("kws", p.ModelRef(sha256=signed.manifest.sha256), [x])
        assert fleet.wait(30, ["kws"]), fleet.tasks["kws"]
        task = fleet.tasks["kws"]
        assert task.status == "ok", task.error
        assert [o.tobytes() for o in task.outputs] == [w.tobytes() for w in oracle.run([x])]
