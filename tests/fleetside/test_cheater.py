"""20 simulated cars, one of which flips one byte in 1 % of its results, against the fleet
service with adaptive replication (the figures `make bench` prints: bench/bench_fleet.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.cli import main as fleetnode
from hil.fleetscenario import run_cheater


def _granted(report: str) -> float:
    m = re.search(r"^credits granted\s+(\S+)\s+(\S+)$", report, re.MULTILINE)
    assert m, report
    return float(m.group(2))  # the last 7 days


def test_every_flipped_result_is_caught_and_the_owners_ledgers_show_the_granted_credits(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = run_cheater(tmp_path, cars=20, cheater=7, warmup_batch=300, measured=400, keep=True)
    try:
        assert f.flipped >= 1, "the cheater ran too few jobs to cheat"
        assert f.caught == f.flipped  # each falsified result judged wrong by a quorum...
        assert f.flipped_in_results == 0  # ...and none served by GET /results
        assert f.results_wrong == 0  # every output served equals our own engine's
        assert f.cheater_reputation == 0
        assert f.honest_min_reputation >= 100  # the warm-up ended: all honest cars trusted
        assert f.measured_tasks == 400
        assert 1.0 <= f.honest_overhead < 1.2, f.figures()  # strict redundancy 2 would be 2.0

        # `fleetnode report` on each car shows what the service recorded for it.
        capsys.readouterr()
        for car in f.sim_cars:
            assert fleetnode(["report", "--db", str(car.ledger_path)]) == 0
            shown = _granted(capsys.readouterr().out)
            assert shown == pytest.approx(f.service_credits[car.car_id], abs=1e-6), car.car_id
        assert all(v > 0 for v in f.service_credits.values())
    finally:
        for car in f.sim_cars:
            car.close()
