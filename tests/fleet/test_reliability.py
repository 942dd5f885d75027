"""Nothing lost, nothing doubled: a 60 s broker outage with 100 jobs in flight, a car killed
with SIGKILL mid-batch, and 1,000 malformed or oversized job payloads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.fleet import protocol as p
from agent.fleet.broker import Broker
from agent.fleet.fleetside import FleetClient
from agent.fleet.link import FleetLink
from agent.fleet.mqtt import publish_props
from tests.fleet.car_process import compute
from tests.fleet.conftest import car_and_fleet

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = p.ModelRef(builtin="thin_path")


def inputs(i: int) -> list[np.ndarray]:
    return [np.arange(16, dtype=np.int8) + np.int8(i % 100)]


def check_exactly_once(fleet: FleetClient, n: int) -> None:
    assert all(t.status == "ok" for t in fleet.tasks.values()), Counter(t.status for t in fleet.tasks.values())
    # The consumer's view: each task completed once, with the first result that came for it.
    assert sorted(fleet.completed) == sorted(f"t{i}" for i in range(n))
    ids = [d.result.job_id for d in fleet.deliveries]
    assert len(ids) == len(set(ids))  # each job id handed up once, however often it came
    for i in range(n):
        t = fleet.tasks[f"t{i}"]
        assert np.array_equal(t.outputs[0], compute(inputs(i)[0])), f"t{i} carries another job's result"


def worker(link: FleetLink, work_s: float, stop: threading.Event) -> None:
    while not stop.is_set():
        j = link.jobs().get(0.1)
        if j is not None:
            stop.wait(work_s)
            link.send_result(j.job_id, "ok", [compute(j.inputs[0])])


def start_batch(car: FleetLink, fleet: FleetClient, n: int, work_s: float) -> threading.Event:
    """A worker thread on the car, and n tasks t0…t(n-1) submitted. Set the event to stop."""
    stop = threading.Event()
    threading.Thread(target=worker, args=(car, work_s, stop), daemon=True).start()
    for i in range(n):
        fleet.submit(f"t{i}", BUILTIN, inputs(i))
    return stop


def test_broker_down_60_s_with_100_jobs_in_flight_every_result_arrives_once(
        mosquitto: Broker, make_link: Callable[..., FleetLink],
        make_client: Callable[..., FleetClient]) -> None:
    # Capacity 100: the dispatcher may put the whole batch out at once, so all 100 jobs are in
    # flight (at the broker, in the car's queue or its outbox) when the broker goes away.
    car, fleet = car_and_fleet(make_link, make_client, fleet_kw={"job_timeout_s": 600},
                               job_queue_size=100, ack_timeout_s=5.0)
    stop = start_batch(car, fleet, 100, work_s=0.03)
    try:
        assert fleet.wait_for(lambda c: c.counters["jobs_sent"] == 100 and len(c.deliveries) >= 10, 30), \
            repr((fleet.counters, car.stats()))
        mosquitto.stop()  # clean shutdown: mosquitto writes its persistence file
        assert fleet.wait_for(lambda c: not c.session.connected and not car.connected, 10)
        in_flight = 100 - len(fleet.deliveries)
        assert in_flight >= 50, "the outage must hit the batch mid-flight"
        # 60 s without a broker: the car keeps computing what it holds, results wait in its outbox.
        assert not fleet.wait_for(lambda c: len(c.deliveries) == 100, 60)
        assert car.outbox.depth() > 0
        mosquitto.start()
        assert fleet.wait(120), Counter(t.status for t in fleet.tasks.values())
    finally:
        stop.set()
    check_exactly_once(fleet, 100)
    assert fleet.wait_for(lambda c: car.outbox.depth() == 0, 30)  # every result acknowledged
    assert fleet.counters["attempts_timed_out"] == 0  # nothing needed resending from the fleet


class CarProcess:
    def __init__(self, broker: Broker, outbox: Path, car: str = "car1") -> None:
        self.args = [sys.executable, "-m", "tests.fleet.car_process", "--car", car, "--host",
                     broker.host, "--port", str(broker.port), "--outbox", str(outbox),
                     "--work-ms", "30"]
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until the car says READY (or dies)
        assert line.startswith("READY"), line
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def car_process(mosquitto: Broker, tmp_path: Path) -> Iterator[CarProcess]:
    car = CarProcess(mosquitto, tmp_path / "car1-outbox.sqlite")
    yield car
    car.kill()


def test_car_killed_mid_batch_and_restarted_loses_and_doubles_nothing(
        car_process: CarProcess, make_client: Callable[..., FleetClient]) -> None:
    car_process.start()
    fleet = make_client(submitter="sub", job_timeout_s=600)
    assert fleet.wait_for(lambda c: len(c.available()) == 1, 10)
    for i in range(60):
        fleet.submit(f"t{i}", BUILTIN, inputs(i))
    assert fleet.wait_for(lambda c: len(c.deliveries) >= 15, 30)
    car_process.kill()  # SIGKILL: no will-less goodbye, no flush, jobs half done
    done_before = len(fleet.deliveries)
    assert done_before < 60
    assert fleet.wait_for(lambda c: not c.cars["car1"].online, 30)  # the will says offline
    car_process.start()  # same outbox file
    assert fleet.wait(60), Counter(t.status for t in fleet.tasks.values())
    check_exactly_once(fleet, 60)
    # Whatever the kill caught (jobs taken but unanswered come back "preempted" from the
    # restarted car and go out again; stored results are sent again; unacknowledged jobs are
    # redelivered by the broker), each task above was handed up exactly once.


def test_a_thousand_malformed_or_oversized_jobs_each_get_an_error_reply(
        make_link: Callable[..., FleetLink], make_client: Callable[..., FleetClient]) -> None:
    car, fleet = car_and_fleet(make_link, make_client, max_job_bytes=32 << 10)
    good = p.JobRequest("x", "sub", BUILTIN, [np.ones(8, np.int8)]).encode()
    rng = np.random.default_rng(6)
    kinds: Counter[str] = Counter()
    expect_rejected: set[str] = set()
    for i in range(1000):
        k = i % 5
        if k == 0:
            payload = rng.bytes(int(rng.integers(0, 200)))
            kinds["garbage"] += 1
        elif k == 1:
            payload = b"\x00" * (33 << 10)
            kinds["oversized"] += 1
        elif k == 2:
            payload = good[: int(rng.integers(0, 30))]
            kinds["truncated"] += 1
        elif k == 3:  # a readable header with a broken tensor: answered through the outbox
            jid = f"bad-{i}"
            payload = p.JobRequest(jid, "sub", BUILTIN, [np.ones(8, np.int8)]).encode()[:-3]
            expect_rejected.add(jid)
            kinds["bad_tensor"] += 1
        else:  # a model reference that is not {sha256} or {builtin}: rejected, with its id
            jid = f"bad-{i}"
            payload = p.JobRequest(jid, "sub", BUILTIN, [np.ones(8, np.int8)]).encode().replace(
                b'"builtin"', b'"weights"')
            expect_rejected.add(jid)
            kinds["bad_model_ref"] += 1
        fleet.session.publish(p.Topics.jobs("default"), payload, 1, False,
                              publish_props(correlation=f"c{i}".encode()))
    assert fleet.wait_for(lambda c: len(c.errors) + len(c.deliveries) == 1000, 60), \
        (len(fleet.errors), len(fleet.deliveries), car.stats())
    assert {d.result.job_id for d in fleet.deliveries} == expect_rejected
    assert all(d.result.outcome == "rejected" for d in fleet.deliveries)
    corr = Counter(e.correlation for e in fleet.errors)
    assert len(corr) == 1000 - len(expect_rejected) and set(corr.values()) == {1}
    codes = Counter(e.code for e in fleet.errors)
    assert codes["too_large"] == kinds["oversized"]
    assert codes["malformed"] == kinds["garbage"] + kinds["truncated"]
    rejected = Counter(d.result.error_code for d in fleet.deliveries)
    assert rejected == {"size_mismatch": kinds["bad_tensor"], "bad_model_ref": kinds["bad_model_ref"]}
    # The car is still there and still works.
    assert car.connected and car.session._thread is not None and car.session._thread.is_alive()
    fleet.submit("after", BUILTIN, inputs(1))
    j = car.jobs().get(10)
    assert j is not None and j.job_id == "after.r0.a1"
    car.send_result(j.job_id, "ok", [compute(j.inputs[0])])
    assert fleet.wait(10) and fleet.tasks["after"].status == "ok"
    assert car.session.counters["callback_errors"] == 0


def test_broker_crash_loses_its_queues_and_still_every_task_completes_once(
        mosquitto: Broker, make_link: Callable[..., FleetLink],
        make_client: Callable[..., FleetClient]) -> None:
    """SIGKILL, not SIGTERM: mosquitto's snapshot is not written, the jobs it held are gone.
    The cars' outboxes resend their results and the dispatcher resends what timed out."""
    car, fleet = car_and_fleet(make_link, make_client, fleet_kw={"job_timeout_s": 4.0},
                               job_queue_size=20, ack_timeout_s=1.0)
    stop = start_batch(car, fleet, 60, work_s=0.02)
    try:
        assert fleet.wait_for(lambda c: len(c.deliveries) >= 10, 30)
        mosquitto.kill()
        assert fleet.wait_for(lambda c: not car.connected, 10)
        mosquitto.start()
        assert fleet.wait(90), Counter(t.status for t in fleet.tasks.values())
    finally:
        stop.set()
    check_exactly_once(fleet, 60)
    assert fleet.wait_for(lambda c: car.outbox.depth() == 0, 30)
