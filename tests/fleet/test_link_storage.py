"""The fleet link on a disk that refuses writes (a real full tmpfs): answers wait in memory and
go out, with their ledger rows, once it takes writes; a job arriving meanwhile is handed back
at once; nothing raises into the callers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from agent.clock import FakeClock
from agent.fleet import protocol as p
from agent.fleet.fleetside import FleetClient
from agent.fleet.link import FleetLink
from agent.ledger import Ledger
from agent.runner.runner import JobOutcome, Outcome
from agent.storage import StorageError
from tests.fixtures.smallfs import SmallFs
from tests.fleet.conftest import car_and_fleet

BUILTIN = p.ModelRef(builtin="thin_path")
BIG = (p.MAX_RESULT_BYTES - p.MAX_HEADER_BYTES) // 2  # needs fresh pages: a full disk refuses it


def test_a_full_disk_holds_the_answer_hands_back_new_jobs_and_recovers(
        small_fs: SmallFs, make_link: Callable[..., FleetLink],
        make_client: Callable[..., FleetClient]) -> None:
    state = small_fs.path / "state.sqlite"
    refused: list[StorageError] = []
    car, fleet = car_and_fleet(make_link, make_client, outbox_path=state,
                               audit_path=small_fs.path / "audit.sqlite",
                               on_storage_error=refused.append, fleet_kw={"job_timeout_s": 600})
    ledger = Ledger(state)
    fleet.submit("a", BUILTIN, [np.ones(16, np.int8)])
    job = car.jobs().get(10)
    assert job is not None
    small_fs.fill()
    entry = ledger.entry(JobOutcome(job.job_id, Outcome.DONE, b"", None, 1.0, 2.0, 0.5),
                         FakeClock(start_wall=1.8e9, start_mono=10.0))
    out = np.zeros(BIG, np.int8)
    assert car.send_result(job.job_id, "ok", [out], also=entry.write) is None  # held, not lost
    assert refused and car.stats()["answers_unstored"] == 1
    # A job that arrives now cannot be recorded: it goes back to the fleet at once.
    fleet.submit("b", BUILTIN, [np.ones(16, np.int8)])
    assert fleet.wait_for(lambda f: f.counters["attempts_preempted"] >= 1, 10), fleet.counters
    back = [d.result for d in fleet.deliveries if d.result.job_id.startswith("b.")]
    assert back and back[0].outcome == "preempted" and back[0].error_code == "storage" \
        and back[0].seq == 0
    assert ledger.summary(0, 4e9).outcomes == {}  # no row without its result
    small_fs.free()
    assert fleet.wait_for(lambda f: f.tasks["a"].status == "ok", 15), car.stats()
    assert fleet.tasks["a"].outputs[0].tobytes() == out.tobytes()
    assert ledger.summary(0, 4e9).outcomes == {"done": 1}
    assert car.stats()["answers_unstored"] == 0 and car.stats()["answers_stored_late"] == 1
    assert car.session.counters["callback_errors"] == 0 and car.counters["sender_errors"] == 0
    ledger.close()


def test_the_answer_and_the_rows_of_its_transaction_go_together(
        tmp_path: Path, make_link: Callable[..., FleetLink],
        make_client: Callable[..., FleetClient]) -> None:
    car, fleet = car_and_fleet(make_link, make_client, outbox_path=tmp_path / "state.sqlite")
    ledger = Ledger(tmp_path / "state.sqlite")
    fleet.submit("a", BUILTIN, [np.ones(16, np.int8)])
    job = car.jobs().get(10)
    assert job is not None
    entry = ledger.entry(JobOutcome(job.job_id, Outcome.DONE, b"", None, 1.0, 2.0, 0.5),
                         FakeClock(start_wall=1.8e9, start_mono=10.0))
    assert car.send_result(job.job_id, "ok", [np.ones(4, np.int8)], also=entry.write) is not None
    assert car.send_result(job.job_id, "ok", [np.ones(4, np.int8)], also=entry.write) is None
    assert ledger.summary(0, 4e9).outcomes == {"done": 1}
    assert fleet.wait_for(lambda f: f.tasks["a"].status == "ok", 10)
    ledger.close()
