"""The power model: budget -> whole cores, then a duty cycle; calibration fits a line."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.runner.power import PowerModel, PowerModelError, fit


def test_budget_becomes_whole_cores_then_a_duty_cycle() -> None:
    m = PowerModel(watts_per_core=20.0, cores=4)
    assert (m.allocate(0.0).threads, m.allocate(-5).threads) == (0, 0)
    assert m.allocate(float("nan")).idle
    assert m.allocate(10.0) .threads == 1 and m.allocate(10.0).duty == pytest.approx(0.5)
    assert m.allocate(59.0).threads == 2 and m.allocate(59.0).duty == 1.0
    assert m.allocate(1e6).threads == 4
    assert m.allocate(0.5).idle  # below min_duty: not worth waking up for


@given(st.floats(min_value=0, max_value=5000, allow_nan=False),
       st.floats(min_value=1, max_value=200), st.integers(1, 64))
def test_allocation_never_exceeds_the_budget(budget: float, wpc: float, cores: int) -> None:
    m = PowerModel(watts_per_core=wpc, cores=cores)
    a = m.allocate(budget)
    assert m.power_w(a.threads, a.duty) <= budget + 1e-9
    assert 0 <= a.threads <= cores and 0.0 <= a.duty <= 1.0


def test_fit_recovers_slope_and_idle_from_noisy_samples() -> None:
    samples = [(n, 7.0 + 12.5 * n + (0.2 if n % 2 else -0.2)) for n in range(5) for _ in range(3)]
    m = fit(samples, cores=4)
    assert m.watts_per_core == pytest.approx(12.5, abs=0.2)
    assert m.idle_w == pytest.approx(7.0, abs=0.5)


def test_fit_refuses_a_meter_that_does_not_see_the_cpu() -> None:
    with pytest.raises(PowerModelError, match="did not rise"):
        fit([(0, 10.0), (1, 10.0), (2, 9.9)], cores=2)
    with pytest.raises(PowerModelError, match="two or more"):
        fit([(1, 10.0), (1, 11.0)], cores=2)


def test_model_round_trips_and_rejects_hostile_files(tmp_path) -> None:
    p = tmp_path / "power.json"
    PowerModel(watts_per_core=9.5, idle_w=3.0, cores=6).save(p)
    assert PowerModel.load(p) == PowerModel(watts_per_core=9.5, idle_w=3.0, cores=6)
    for bad in ("[1, 2]", "{not json", json.dumps({"watts_per_core": -1}),
                json.dumps({"watts_per_core": "x"}), json.dumps({"cores": 0})):
        p.write_text(bad)
        with pytest.raises(PowerModelError):
            PowerModel.load(p)


def test_the_default_model_is_the_calibrated_one_and_a_damaged_file_is_ignored(
        tmp_path, monkeypatch) -> None:
    path = tmp_path / "power.json"
    monkeypatch.setenv("FLEETNODE_POWER_MODEL", str(path))
    assert PowerModel.default().watts_per_core == PowerModel.watts_per_core  # nothing calibrated
    PowerModel(watts_per_core=4.5, cores=3).save(path)
    assert PowerModel.default() == PowerModel(watts_per_core=4.5, cores=3)
    path.write_text("{broken")
    assert PowerModel.default().watts_per_core == PowerModel.watts_per_core
