"""The fleet side's dispatch: redundancy across different cars with a byte-level cross-check,
preempted and timed-out jobs sent to another car, and `fleetnode fleet submit`."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.fleet import protocol as p
from agent.fleet.broker import Broker
from agent.fleet.cli import main as cli_main
from agent.fleet.fleetside import FleetClient
from agent.fleet.link import FleetLink
from agent.fleet.models import create_key
from tests.fleet.car_process import compute
from tests.fleet.conftest import run_car

BUILTIN = p.ModelRef(builtin="thin_path")


class Worker:
    """Runs a car's jobs on a thread: `fn` stands in for the engine; None means never answer."""

    def __init__(self, link: FleetLink, fn: Callable[[np.ndarray], np.ndarray] | None = compute) -> None:
        self.link, self.fn = link, fn
        self.stop = threading.Event()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            j = self.link.jobs().get(0.05)
            if j is None:
                continue
            self.seen.append(j.job_id)
            if self.fn is not None:
                self.link.send_result(j.job_id, "ok", [self.fn(j.inputs[0])])


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    ws: list[Worker] = []
    yield ws
    for w in ws:
        w.stop.set()
        w.thread.join(2)


def cars(make_link: Callable[..., FleetLink], workers: list[Worker], *fns: Callable[[np.ndarray], np.ndarray] | None) -> list[FleetLink]:
    links = []
    for i, fn in enumerate(fns):
        link = make_link(f"car{i}")
        run_car(link)
        workers.append(Worker(link, fn))
        links.append(link)
    return links


def test_redundant_replicas_run_on_different_cars_and_agree(
        make_link: Callable[..., FleetLink], make_client: Callable[..., FleetClient],
        workers: list[Worker]) -> None:
    cars(make_link, workers, compute, compute, compute)
    fleet = make_client(submitter="sub")
    assert fleet.wait_for(lambda c: len(c.available()) == 3, 10)
    for i in range(12):
        fleet.submit(f"t{i}", BUILTIN, [np.full(8, i, np.int8)], redundancy=2)
    assert fleet.wait(30)
    for t in fleet.tasks.values():
        assert t.status == "ok" and len(set(t.cars)) == 2, (t.task_id, t.cars)


def test_a_car_that_computes_differently_is_flagged(
        make_link: Callable[..., FleetLink], make_client: Callable[..., FleetClient],
        workers: list[Worker]) -> None:
    def off_by_one(x: np.ndarray) -> np.ndarray:
        y = compute(x).copy()
        y[0] ^= 1  # one bit in one byte
        return y

    cars(make_link, workers, compute, off_by_one)
    fleet = make_client(submitter="sub")
    assert fleet.wait_for(lambda c: len(c.available()) == 2, 10)
    fleet.submit("t0", BUILTIN, [np.arange(8, dtype=np.int8)], redundancy=2)
    assert fleet.wait(20)
    t = fleet.tasks["t0"]
    assert t.status == "mismatch" and sorted(t.cars) == ["car0", "car1"]
    assert "replicas disagree" in (t.error or "") and fleet.counters["mismatches"] == 1


def test_preempted_and_timed_out_jobs_go_to_another_car(
        make_link: Callable[..., FleetLink], make_client: Callable[..., FleetClient],
        workers: list[Worker]) -> None:
    silent, = cars(make_link, workers, None)  # takes jobs, never answers (a hung car)
    fleet = make_client(submitter="sub", job_timeout_s=1.0)
    assert fleet.wait_for(lambda c: len(c.available()) == 1, 10)
    for i in range(4):
        fleet.submit(f"t{i}", BUILTIN, [np.full(4, i, np.int8)])
    assert fleet.wait_for(lambda c: len(workers[0].seen) >= 4, 10)
    good = make_link("good")
    run_car(good)
    workers.append(Worker(good))
    # The hung car is told to stop: its queued jobs come back "preempted"; the rest time out.
    silent.set_accepting_jobs(False)
    assert fleet.wait(30)
    assert all(t.status == "ok" and t.cars == ["good"] for t in fleet.tasks.values())
    assert fleet.counters["attempts_preempted"] + fleet.counters["attempts_timed_out"] >= 4
    for i in range(4):
        assert np.array_equal(fleet.tasks[f"t{i}"].outputs[0], compute(np.full(4, i, np.int8)))


def test_submit_command_runs_every_input_and_writes_outputs(
        mosquitto: Broker, make_link: Callable[..., FleetLink], workers: list[Worker],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.fleet.models import TrustStore, load_public
    key = tmp_path / "fleet.key"
    create_key(key)
    for i in range(2):
        link = make_link(f"car{i}", model_dir=tmp_path / f"models{i}",
                         trusted_keys=TrustStore([load_public(f"{key}.pub")]))
        run_car(link)
        workers.append(Worker(link))
    model = tmp_path / "net.tflite"
    model.write_bytes(b"TFL3" + bytes(2000))
    inputs = tmp_path / "in.npz"
    np.savez(inputs, **{f"x{i}": np.full(6, i, np.int8) for i in range(5)})
    rc = cli_main(["fleet", "submit", str(model), str(inputs), "--redundancy", "2", "--key", str(key),
                   "--host", mosquitto.host, "--port", str(mosquitto.port), "--json",
                   "--timeout", "60", "--out", str(tmp_path / "out"), "--submitter", "cli"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rc == 0, lines
    assert len(lines) == 5 and all(r["status"] == "ok" and sorted(r["cars"]) == ["car0", "car1"]
                                   for r in lines)
    outs = sorted((tmp_path / "out").glob("*.npz"))
    assert len(outs) == 5
    with np.load(outs[0]) as z:
        assert np.array_equal(z["arr_0"], compute(np.full(6, 0, np.int8)))


def test_submit_command_explains_a_bad_model_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      mosquitto: Broker) -> None:
    np.save(tmp_path / "x.npy", np.zeros(2, np.int8))
    rc = cli_main(["fleet", "submit", str(tmp_path / "missing.tflite"), str(tmp_path / "x.npy"),
                   "--host", mosquitto.host, "--port", str(mosquitto.port)])
    assert rc == 2 and "not a file" in capsys.readouterr().err
