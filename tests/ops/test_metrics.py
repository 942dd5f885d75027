"""The Prometheus endpoint: scraped while the real agent runs on the HIL bench, and a scrape
that survives a broken part."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.bus.profile import VehicleProfile
from agent.config import AgentConfig
from agent.fleet import protocol as p
from agent.fleet.broker import Broker
from agent.fleet.fleetside import FleetClient
from agent.governor.decision import Decision, Mode, Reason
from agent.metrics import METRICS, AgentMetrics, Sources, find_announced, sample, scrape
from hil.bench import AgentProcess, CarOnBus
from hil.sim import CarInputs, CarState

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "hil" / "policies" / "demo.toml"
CAR = "car-metrics"


def wait_for(pred, timeout_s: float):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        got = pred()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


@pytest.fixture
def rig(tmp_path: Path, mosquitto: Broker) -> Iterator[AgentProcess]:
    car = CarOnBus(VehicleProfile.load("reference"),
                   CarState(soc_percent=70.0, inputs=CarInputs(charger_kw=7.0)), workdir=tmp_path)
    car.start()
    agent = AgentProcess(None, ["run", "--port", car.port, "--broker-port", str(mosquitto.port),
                                "--car-id", CAR, "--state-dir", str(tmp_path / "agent"),
                                "--policy", str(POLICY), "--metrics-listen", "127.0.0.1:0", "--json"])
    try:
        yield agent
    finally:
        agent.stop()
        car.stop()


def test_scrape_during_a_run_shows_jobs_energy_and_mode(rig: AgentProcess, mosquitto: Broker) -> None:
    url = wait_for(lambda: find_announced(list(rig.lines)), 20)
    assert url is not None and url.startswith("http://127.0.0.1:"), rig.lines[-5:]
    rng = np.random.default_rng(3)
    jobs = [f"m{i}" for i in range(3)]
    with FleetClient("127.0.0.1", mosquitto.port, submitter="metrics", job_timeout_s=5.0) as fleet:
        assert fleet.wait_for(lambda f: CAR in f.cars and f.cars[CAR].mode == "RUN", 20), fleet.cars
        for tid in jobs:
            fleet.submit(tid, p.ModelRef(builtin="thin_path"), [rng.integers(-128, 128, (1, 16), dtype=np.int8)])
        assert fleet.wait(30, jobs), {t: fleet.tasks[t].status for t in jobs}

        def done_scrape() -> dict | None:  # type: ignore[type-arg]
            s = scrape(url)
            return s if (sample(s, "fleetnode_jobs_total", outcome="done") or 0) >= len(jobs) else None

        s = wait_for(done_scrape, 10)
    assert s, "the scrape never counted the finished jobs"
    assert sample(s, "fleetnode_mode", mode="RUN") == 1.0
    assert sample(s, "fleetnode_mode", mode="OFF") == 0.0
    assert sample(s, "fleetnode_inference_seconds_count") == len(jobs)
    assert (sample(s, "fleetnode_energy_wh_total") or 0) > 0
    assert (sample(s, "fleetnode_energy_today_wh") or 0) > 0
    assert sample(s, "fleetnode_broker_connected") == 1.0
    assert sample(s, "fleetnode_serial_link_up") == 1.0
    assert (sample(s, "fleetnode_serial_connects_total") or 0) >= 1
    assert (sample(s, "fleetnode_governor_decisions_total") or 0) > 0
    assert sample(s, "fleetnode_decode_errors_total") == 0.0
    assert sample(s, "fleetnode_outbox_depth") is not None
    assert sample(s, "fleetnode_storage_usable") == 1.0
    assert sample(s, "fleetnode_storage_floor_bytes") == AgentConfig().storage_floor_bytes
    assert (sample(s, "fleetnode_storage_free_bytes") or 0) > AgentConfig().storage_floor_bytes
    assert sample(s, "fleetnode_storage_write_failures_total") == 0.0
    assert sample(s, "fleetnode_mode_changes_total", mode="RUN") == 1.0
    info = [k for k in s if k[0] == "fleetnode_info"]
    assert len(info) == 1 and ("car", CAR) in info[0][1]


def test_a_broken_part_is_counted_and_the_scrape_still_answers() -> None:
    m = AgentMetrics("9.9.9", "scalar", "car-x")
    decision = Decision(Mode.STANDBY, 0.0, (Reason("soc_floor", "the battery is at its floor"),))

    def broken() -> tuple[int, float | None]:
        raise OSError("outbox closed")

    m.sources = Sources(decision=lambda: decision, steps=lambda: 4, outbox=broken)
    port = m.serve("127.0.0.1", 0)
    try:
        s = scrape(f"http://127.0.0.1:{port}/metrics")
        assert sample(s, "fleetnode_mode", mode="STANDBY") == 1.0
        assert sample(s, "fleetnode_reason", code="soc_floor") == 1.0
        assert sample(s, "fleetnode_outbox_depth") is None
        assert sample(s, "fleetnode_metrics_read_errors_total", part="outbox") == 1.0
        m.job_ended("done", 0.004)
        m.job_ended("preempted")
        s = scrape(f"http://127.0.0.1:{port}/metrics")
        assert sample(s, "fleetnode_jobs_total", outcome="done") == 1.0
        assert sample(s, "fleetnode_jobs_total", outcome="preempted") == 1.0
        assert sample(s, "fleetnode_inference_seconds_bucket", le="0.005") == 1.0
        assert sample(s, "fleetnode_metrics_read_errors_total", part="outbox") == 2.0
    finally:
        m.close()


def test_every_metric_in_a_scrape_is_declared_and_documented() -> None:
    m = AgentMetrics("9.9.9", "scalar", "car-x")
    decision = Decision(Mode.RUN, 100.0, ())
    m.sources = Sources(decision=lambda: decision, steps=lambda: 1, reader_counters=dict,
                        link_up=lambda: True, broker_connected=lambda: True, outbox=lambda: (0, None),
                        ledger=lambda: dict.fromkeys(("energy_wh", "grid_wh", "credits", "today_wh",
                                                      "cost_today"), 0.0),
                        storage=lambda: (True, 1 << 30, 16 << 20, 0))
    m.read_error("ledger")
    families = {f.name for f in m.registry.collect()}
    assert families == set(METRICS)
    doc = (REPO / "docs" / "operations.md").read_text()
    for name in METRICS:
        assert f"`{name}" in doc, f"docs/operations.md does not list {name}"


def test_the_generated_reference_in_operations_md_is_up_to_date() -> None:
    from agent.deploy.reference import render

    doc = (REPO / "docs" / "operations.md").read_text()
    assert render(doc) == doc, "run: python -m agent.deploy.reference docs/operations.md"


def test_a_taken_port_is_a_clear_error_and_exit_2(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "agent.cli", "run", "--port", str(tmp_path / "tty"),
                            "--state-dir", str(tmp_path / "s"), "--metrics-listen", f"127.0.0.1:{port}"],
                           capture_output=True, text=True, timeout=60, check=False,
                           env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}" in r.stdout
    assert json.loads(r.stderr.splitlines()[-1])["level"] == "error"
    assert "Traceback" not in r.stdout + r.stderr
