"""The ledger's accounting: splits across hours, tariff cost, grid vs battery, credits, WAL."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.clock import FakeClock
from agent.governor.policy import Period, Tariff, Window
from agent.ledger import DepartureTracker, Ledger, LedgerError, grid_share
from agent.runner.runner import JobOutcome, Outcome
from agent.storage import StorageError
from tests.governor.world import MONO0, state

H = 3600.0
T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC, on an hour boundary


def test_a_job_across_two_hours_is_split_by_time(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite", Tariff(default_per_kwh=0.30)) as led:
        led.record_job("j", Outcome.DONE, T0 + 0.75 * H, T0 + 1.25 * H, 100.0, credits=2.0)
        rows = led.hourly(T0, T0 + 2 * H)
        assert [r.hour for r in rows] == [T0, T0 + H]
        assert [r.energy_wh for r in rows] == pytest.approx([50.0, 50.0])
        assert [r.busy_s for r in rows] == pytest.approx([900.0, 900.0])
        assert [r.credits for r in rows] == pytest.approx([1.0, 1.0])
        assert [r.jobs for r in rows] == [0, 1]  # counted once, in the hour it ended
        assert led.summary(T0, T0 + 2 * H).cost == pytest.approx(0.1 * 0.30)


def test_cost_follows_the_time_of_use_tariff(tmp_path: Path) -> None:
    # 08:00-09:00 UTC is peak at 0.50, the rest 0.20.
    tariff = Tariff(default_per_kwh=0.20, periods=(Period(Window(8 * 60, 9 * 60), 0.50),))
    with Ledger(tmp_path / "l.sqlite", tariff, "UTC") as led:
        led.record_job("peak", Outcome.DONE, T0, T0 + 600, 1000.0)
        led.record_job("off", Outcome.DONE, T0 + 2 * H, T0 + 2 * H + 600, 1000.0)
        s = led.summary(T0, T0 + 3 * H)
        assert s.cost == pytest.approx(0.50 + 0.20)
        assert s.energy_wh == 2000.0 and s.outcomes == {"done": 2}


def test_grid_and_battery_shares_and_credits_only_for_done_work(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite") as led:
        led.record_job("a", Outcome.DONE, T0, T0 + 60, 10.0, grid_fraction=0.25, credits=1.0)
        led.record_job("b", Outcome.PREEMPTED, T0 + 60, T0 + 120, 10.0, grid_fraction=1.0, credits=1.0)
        s = led.summary(T0, T0 + H)
        assert (s.grid_wh, s.battery_wh) == pytest.approx((12.5, 7.5))
        assert s.credits == 1.0 and s.outcomes == {"done": 1, "preempted": 1}
        assert s.hours_lent == pytest.approx(120 / 3600)


def test_grid_share_is_the_charger_surplus_over_the_compute_power() -> None:
    assert grid_share(None, 300, 500) == 0.0
    assert grid_share(7000, 300, 500) == 1.0
    assert grid_share(550, 300, 500) == pytest.approx(0.5)
    assert grid_share(200, 300, 500) == 0.0


def test_runner_outcomes_are_recorded_in_wall_time(tmp_path: Path) -> None:
    clock = FakeClock(start_wall=T0, start_mono=500.0)
    clock.advance(100.0)
    out = JobOutcome("r", Outcome.DONE, b"x", None, started=550.0, ended=590.0, energy_wh=3.0)
    with Ledger(tmp_path / "l.sqlite") as led:
        led.record(out, clock, credits=0.5)
        [row] = led.hourly(T0, T0 + H)
        assert row.busy_s == pytest.approx(40.0) and row.credits == 0.5
        assert led.energy_today(T0 + 200) == pytest.approx((3.0, 3.0 / 1000 * 0.30))


@pytest.mark.parametrize("args", [
    ("x", Outcome.DONE, T0 + 10, T0, 1.0),  # ends before it starts
    ("x", Outcome.DONE, T0, T0 + 10, -1.0),
    ("x", Outcome.DONE, T0, float("nan"), 1.0),
    ("x", Outcome.DONE, T0, T0 + 30 * 86400, 1.0),  # a month-long job is a clock error
])
def test_inconsistent_figures_are_refused(tmp_path: Path, args: tuple) -> None:  # type: ignore[type-arg]
    with Ledger(tmp_path / "l.sqlite") as led, pytest.raises(LedgerError):
        led.record_job(*args)


def test_a_file_that_is_not_a_ledger_is_refused_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StorageError, match="bad.sqlite") as e:
        Ledger(bad)
    assert e.value.fault.kind == "corrupt"
    other = tmp_path / "other.sqlite"
    with Ledger(other):
        pass
    db = sqlite3.connect(other)
    db.execute("UPDATE ledger_meta SET value='99' WHERE key='schema'")
    db.commit()
    db.close()
    with pytest.raises(LedgerError, match="schema 99"):
        Ledger(other)


def test_wal_lets_a_reader_see_commits_while_a_writer_writes(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    with Ledger(path) as writer:
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        errors: list[BaseException] = []

        def write(k: int) -> None:
            try:
                for i in range(50):
                    writer.record_job(f"{k}-{i}", Outcome.DONE, T0 + i, T0 + i + 1, 1.0)
            except BaseException as e:  # noqa: BLE001 - surfaced below
                errors.append(e)

        threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        with Ledger(path) as reader:
            for t in threads:
                t.join()
            assert not errors
            assert reader.summary(T0, T0 + H).outcomes == {"done": 200}
            assert reader.summary(T0, T0 + H).energy_wh == pytest.approx(200.0)


def test_departure_tracker_reports_soc_against_the_scheduled_target() -> None:
    from agent.governor.policy import Departure, Policy
    p = Policy(departure=Departure(weekly=tuple((d, 8 * 60 + 30) for d in range(7)), target_soc_percent=80.0))
    tr = DepartureTracker(p)
    assert tr.observe(state(MONO0, soc_percent=82.0), MONO0, T0) is None  # parked
    row = tr.observe(state(MONO0 + 1, gear="D", soc_percent=82.0), MONO0 + 1, T0 + 1800)
    assert row is not None and (row.soc_percent, row.target_percent, row.met) == (82.0, 80.0, True)
    assert tr.observe(state(MONO0 + 2, gear="D"), MONO0 + 2, T0 + 1801) is None  # still driving
    # An unscheduled drive in the afternoon is not a departure against a target.
    tr.observe(state(MONO0 + 3), MONO0 + 3, T0 + 6 * H)
    assert tr.observe(state(MONO0 + 4, gear="R"), MONO0 + 4, T0 + 6 * H) is None


def test_ledger_sink_splits_by_the_charger_and_records_departures(tmp_path: Path) -> None:
    from agent.governor.policy import Departure, Policy, Vehicle
    from agent.ledger import LedgerSink
    from agent.runner.power import PowerModel

    clock = FakeClock(start_wall=T0, start_mono=MONO0)
    p = Policy(vehicle=Vehicle(base_load_w=300.0),
               departure=Departure(weekly=tuple((d, 8 * 60 + 20) for d in range(7))))
    with Ledger(tmp_path / "l.sqlite") as led:
        sink = LedgerSink(led, clock, p, PowerModel(watts_per_core=100.0))
        o = JobOutcome("a", Outcome.DONE, b"", None, MONO0 - 60, MONO0, 1.0)
        sink.outcome(o, state(MONO0, charging_power_kw=0.35), credits=0.2)  # 50 W surplus of 100 W
        sink.outcome(JobOutcome("b", Outcome.DONE, b"", None, MONO0 - 60, MONO0, 1.0),
                     state(MONO0, charge_cable=False))
        s = led.summary(T0 - H, T0 + H)
        assert (s.grid_wh, s.battery_wh, s.credits) == pytest.approx((0.5, 1.5, 0.2))
        sink.observe(state(MONO0, soc_percent=77.0))
        clock.advance(10)
        sink.observe(state(MONO0 + 10, gear="D", soc_percent=77.0))
        [dep] = led.departures(T0 - H, T0 + H)
        assert (dep.soc_percent, dep.target_percent, dep.met) == (77.0, 80.0, False)
        assert sink.energy_today() == pytest.approx((2.0, 2.0 / 1000 * 0.30)) and sink.errors == 0


@settings(max_examples=40, deadline=None)
@given(jobs=st.lists(st.tuples(st.floats(0, 3 * 86400), st.floats(0, 5 * 3600), st.floats(0, 2000),
                               st.floats(0, 1), st.sampled_from(list(Outcome))), min_size=1, max_size=12))
def test_hours_add_up_to_the_jobs_whatever_their_spans(tmp_path_factory: pytest.TempPathFactory,
                                                      jobs: list[tuple[float, float, float, float, Outcome]]) -> None:
    tariff = Tariff(default_per_kwh=0.30, periods=(Period(Window(0, 6 * 60), 0.10),))
    path = tmp_path_factory.mktemp("l") / "l.sqlite"
    with Ledger(path, tariff) as led:
        for i, (start, dur, wh, grid, outcome) in enumerate(jobs):
            led.record_job(f"j{i}", outcome, T0 + start, T0 + start + dur, wh, grid_fraction=grid,
                           credits=1.0)
        s = led.summary(T0 - H, T0 + 4 * 86400)
        assert s.energy_wh == pytest.approx(sum(j[2] for j in jobs), rel=1e-9, abs=1e-6)
        assert s.grid_wh + s.battery_wh == pytest.approx(s.energy_wh, rel=1e-9, abs=1e-6)
        assert s.busy_s == pytest.approx(sum(j[1] for j in jobs), rel=1e-9, abs=1e-6)
        assert s.credits == pytest.approx(sum(1.0 for j in jobs if j[4] is Outcome.DONE))
        # Every kWh costs between the cheapest and the dearest price of the tariff.
        assert 0.10 * s.energy_wh / 1000 - 1e-9 <= s.cost <= 0.30 * s.energy_wh / 1000 + 1e-9
        assert sum(s.outcomes.values()) == len(jobs)


def test_an_empty_ledger_reports_and_plots(tmp_path: Path) -> None:
    from agent.ledger.report import build, plot, render_text

    with Ledger(tmp_path / "l.sqlite") as led:
        r = build(led, T0)
        text = render_text(r, led)
        assert "0.0 h" in text and "no departures recorded" in text
        assert plot(r, led, tmp_path / "empty.png").stat().st_size > 1000
