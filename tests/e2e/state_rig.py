"""The whole car for the state-dir tests: simulated car -> firmware shim (pty) -> `fleetnode run`
(or a wrapper of it) -> mosquitto -> a fleet submitter; and what the state dir says afterwards."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.bus.profile import VehicleProfile
from agent.fleet import protocol as p
from agent.fleet.fleetside import FleetClient
from agent.ledger.store import STATE_FILE
from hil.sim import CarInputs, CarState

CAR = "car-state"
THIN_PATH = p.ModelRef(builtin="thin_path")
# The bench's policy without dwell times: a restarted or resumed agent runs at once.
POLICY = """[policy]
consent = true
max_input_age_s = 2.0
max_power_w = 900
soc_floor_percent = 50

[dwell]
min_off_s = 0
min_run_s = 0
"""


def car_on_bus_args() -> tuple[VehicleProfile, CarState]:
    return VehicleProfile.load("reference"), CarState(soc_percent=70.0, inputs=CarInputs(charger_kw=7.0))


def agent_args(port: str, broker_port: int, state_dir: Path, policy: Path,
               extra: Sequence[str] = ()) -> list[str]:
    return ["run", "--port", port, "--broker-port", str(broker_port), "--car-id", CAR,
            "--state-dir", str(state_dir), "--policy", str(policy), "--storage-floor", "0", *extra]


def write_policy(dir_: Path) -> Path:
    path = dir_ / "policy.toml"
    path.write_text(POLICY)
    return path


def submit_batch(fleet: FleetClient, n: int, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        fleet.submit(f"t{i}", THIN_PATH, [rng.integers(-128, 128, size=(1, 16), dtype=np.int8)])


def running(fleet: FleetClient) -> bool:
    st = fleet.cars.get(CAR)
    return st is not None and st.online and st.mode == "RUN" and st.accepting_jobs


def standby_for_storage(fleet: FleetClient) -> bool:
    st = fleet.cars.get(CAR)
    return st is not None and st.online and st.mode == "STANDBY" and "storage" in st.reasons


def wait_outbox_empty(state_dir: Path, timeout_s: float) -> bool:
    """Until the car's outbox is empty (every result acknowledged by the fleet), read by a
    second connection as `fleetnode report` would."""
    deadline = time.monotonic() + timeout_s
    while True:
        db = sqlite3.connect(f"file:{state_dir / STATE_FILE}?mode=ro", uri=True, timeout=5)
        try:
            depth = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        finally:
            db.close()
        if depth == 0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)  # polling a file: nothing to wait on but the next look


@dataclass(frozen=True)
class Tally:
    jobs: int  # tasks submitted
    delivered: int  # tasks whose result reached the fleet (each once, by the fleet's count)
    lost: int  # tasks that never completed
    # Ledger "done" rows that count a job twice or count a job whose result never reached the
    # fleet (the retry of such a job is counted again: the double count this guards against).
    double_counted: int
    missing_from_ledger: int  # delivered ok results with no ledger row
    unanswered_rows: int  # ledger "done" rows whose result the fleet never received
    handed_up_twice: int  # job ids the consumer saw more than once (must be 0)
    reruns: int  # tasks the fleet itself ran twice (a job timeout), each run counted once

    def figures(self) -> dict[str, int]:
        return {"jobs": self.jobs, "delivered": self.delivered, "lost": self.lost,
                "double_counted": self.double_counted,
                "missing_from_ledger": self.missing_from_ledger}


def tally(fleet: FleetClient, n: int, state_dir: Path) -> Tally:
    """The fleet's view against the owner's ledger, read from the state file after the run."""
    db = sqlite3.connect(f"file:{state_dir / STATE_FILE}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT job_id, outcome FROM jobs").fetchall()
    finally:
        db.close()
    done = [str(j) for j, o in rows if o == "done"]
    ok = {d.result.job_id for d in fleet.deliveries if d.result.outcome == "ok"}
    ids = [d.result.job_id for d in fleet.deliveries]
    per_task = Counter(j.split(".")[0] for j in done)
    unanswered = len(set(done) - ok)
    return Tally(
        jobs=n,
        delivered=sum(1 for t in fleet.tasks.values() if t.status == "ok"),
        lost=n - len(set(fleet.completed)),
        double_counted=len(done) - len(set(done)) + unanswered,
        missing_from_ledger=len(ok - set(done)),
        unanswered_rows=unanswered,
        handed_up_twice=len(ids) - len(set(ids)),
        reruns=sum(c - 1 for c in per_task.values()),
    )
