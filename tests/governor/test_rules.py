"""One test (or a few) per governor rule: each pins when the rule says no and what it says."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from agent.governor import CODES, Governor, GridSignal, Inputs, Mode, decide, step
from agent.governor.policy import (
    Caps,
    Departure,
    Dwell,
    Faults,
    Override,
    Period,
    Tariff,
    Thermal,
    Vehicle,
    Window,
)
from agent.governor.rules import Memory
from tests.governor.world import BARE, MONO0, SAFE, WALL0, policy, state

AT = Inputs(wall=WALL0)


def codes(d: object) -> set[str]:
    return set(d.codes)  # type: ignore[attr-defined]


def test_a_safe_parked_charging_car_runs_at_full_power() -> None:
    d = decide(state(), BARE, MONO0, AT)
    assert d.mode is Mode.RUN and d.power_budget_w == BARE.max_power_w and d.reasons == ()


def test_every_reason_code_is_in_the_catalogue() -> None:
    # A cheap guard that the catalogue (and so docs/governor.md) knows every code rules emit.
    import inspect

    from agent.governor import rules
    src = inspect.getsource(rules)
    import re
    emitted = set(re.findall(r'Reason\(\s*f?"([a-z_]+)"', src)) | {"pack_too_hot", "compute_too_hot"}
    assert emitted <= set(CODES), emitted - set(CODES)


# -- rule 7: faults fail safe (OFF) ---------------------------------------------------------------

def test_link_down_is_off() -> None:
    d = decide(state(link=False), BARE, MONO0, AT)
    assert d.mode is Mode.OFF and "link_down" in codes(d) and d.power_budget_w == 0


def test_decode_errors_over_the_rate_are_off() -> None:
    assert decide(state(), BARE, MONO0, Inputs(wall=WALL0, decode_errors_per_s=4.9)).mode is Mode.RUN
    d = decide(state(), BARE, MONO0, Inputs(wall=WALL0, decode_errors_per_s=6.0))
    assert d.mode is Mode.OFF and codes(d) == {"decode_errors"}
    assert "length" not in d.reasons[0].text
    mixed = decide(state(), BARE, MONO0, Inputs(wall=WALL0, decode_errors_per_s=6.0, length_mismatches_per_s=4.0))
    assert mixed.mode is Mode.OFF and codes(mixed) == {"decode_errors"}
    assert "4.0/s with a length the DBC does not give" in mixed.reasons[0].text


def test_broker_down_for_long_is_off_but_a_blip_is_not() -> None:
    limit = BARE.faults.broker_down_max_s
    blip = Inputs(wall=WALL0, broker_down_since=MONO0 - 10)
    long = Inputs(wall=WALL0, broker_down_since=MONO0 - limit - 1)
    assert decide(state(), BARE, MONO0, blip).mode is Mode.RUN
    assert codes(decide(state(), BARE, MONO0, long)) == {"broker_down"}


def test_clock_jump_stops_for_the_hold_time_then_resumes() -> None:
    p = policy(faults=Faults(clock_jump_s=60, clock_jump_hold_s=30))
    g = Governor(p)
    assert g.decide(state(MONO0), MONO0, Inputs(wall=WALL0)).mode is Mode.RUN
    # One second of monotonic time, an hour of wall time: an NTP step or a bad RTC.
    d = g.decide(state(MONO0 + 1), MONO0 + 1, Inputs(wall=WALL0 + 3601))
    assert d.mode is Mode.OFF and codes(d) == {"clock_jump"}
    assert g.decide(state(MONO0 + 20), MONO0 + 20, Inputs(wall=WALL0 + 3620)).mode is Mode.OFF
    assert g.decide(state(MONO0 + 32), MONO0 + 32, Inputs(wall=WALL0 + 3632)).mode is Mode.RUN


def test_monotonic_time_going_backwards_is_a_clock_fault() -> None:
    g = Governor(BARE)
    g.decide(state(MONO0), MONO0, AT)
    assert codes(g.decide(state(MONO0 - 5), MONO0 - 5, AT)) == {"clock_jump"}


def test_a_state_dir_that_cannot_be_written_is_standby_with_its_cause_then_runs_again() -> None:
    text = "the state dir /var/lib/fleetnode is full (database or disk is full)"
    gov = Governor(BARE)
    assert gov.decide(state(), MONO0, AT).mode is Mode.RUN
    d = gov.decide(state(MONO0 + 1), MONO0 + 1, Inputs(wall=WALL0 + 1, storage_fault=text))
    assert d.mode is Mode.STANDBY and d.power_budget_w == 0
    assert [(r.code, r.text) for r in d.reasons] == [("storage", text)]
    assert gov.decide(state(MONO0 + 2), MONO0 + 2, Inputs(wall=WALL0 + 2)).mode is Mode.RUN


def test_no_consent_is_off() -> None:
    d = decide(state(), policy(consent=False), MONO0, AT)
    assert d.mode is Mode.OFF and codes(d) == {"no_consent"}


# -- rule 1: parked, nobody, fresh inputs ---------------------------------------------------------

@pytest.mark.parametrize("role", BARE.required_roles)
def test_a_missing_required_role_stops(role: str) -> None:
    d = decide(state(**{role: None}), BARE, MONO0, AT)
    assert d.mode is Mode.STANDBY and codes(d) == {"stale_input"} and role in d.summary


@pytest.mark.parametrize("role", BARE.required_roles)
def test_a_stale_required_role_stops(role: str) -> None:
    limit = BARE.max_input_age_s
    assert decide(state(ages={role: limit - 0.1}), BARE, MONO0, AT).mode is Mode.RUN
    assert codes(decide(state(ages={role: limit + 0.1}), BARE, MONO0, AT)) == {"stale_input"}


def test_plugged_in_needs_a_fresh_charging_power() -> None:
    d = decide(state(charging_power_kw=None), BARE, MONO0, AT)
    assert codes(d) == {"stale_input"} and "charging_power_kw" in d.summary
    # Unplugged, the charging power does not matter.
    assert decide(state(charge_cable=False, charging_power_kw=None), BARE, MONO0, AT).mode is Mode.RUN


@pytest.mark.parametrize("gear", ["R", "N", "D"])
def test_any_gear_but_park_stops(gear: str) -> None:
    assert codes(decide(state(gear=gear), BARE, MONO0, AT)) == {"not_parked"}


def test_moving_or_a_driver_stops() -> None:
    assert codes(decide(state(speed_kph=0.5), BARE, MONO0, AT)) == {"moving"}
    assert codes(decide(state(speed_kph=-1.0), BARE, MONO0, AT)) == {"moving"}
    assert codes(decide(state(driver_present=True), BARE, MONO0, AT)) == {"driver_present"}


@pytest.mark.parametrize("role,code", [("door_open", "door_open"),
                                       ("departure_event", "departure_event"),
                                       ("cabin_preconditioning", "preconditioning")])
def test_departure_signals_stop(role: str, code: str) -> None:
    assert codes(decide(state(**{role: True}), BARE, MONO0, AT)) == {code}
    assert decide(state(**{role: False}), BARE, MONO0, AT).mode is Mode.RUN


# -- rule 4: departure schedule: drain, hand back, guarantee --------------------------------------

# WALL0 is Friday 08:00 UTC; a departure at 09:00 every day.
DAILY_9 = Departure(weekly=tuple((d, 9 * 60) for d in range(7)), target_soc_percent=80.0,
                    margin_kwh=1.0, drain_s=900.0, handback_s=120.0)


def test_schedule_drains_then_hands_back_before_departure() -> None:
    p = policy(departure=DAILY_9)
    d = decide(state(soc_percent=95.0), p, MONO0, Inputs(wall=WALL0 + 3600 - 600))
    assert d.mode is Mode.RUN and d.drain and "departure_drain" in codes(d)
    d = decide(state(soc_percent=95.0), p, MONO0, Inputs(wall=WALL0 + 3600 - 60))
    assert d.mode is Mode.STANDBY and codes(d) == {"departure_imminent"}
    far = decide(state(soc_percent=95.0), p, MONO0, Inputs(wall=WALL0 + 3600 - 1800))
    assert far.mode is Mode.RUN and not far.drain


def test_a_schedule_without_wall_time_stops() -> None:
    d = decide(state(), policy(departure=DAILY_9), MONO0, Inputs(wall=None))
    assert codes(d) == {"no_wall_clock"}
    assert decide(state(), BARE, MONO0, Inputs(wall=None)).mode is Mode.RUN  # nothing needs it


def test_next_departure_follows_overrides_and_dst() -> None:
    friday = dt.date(2027, 1, 15)
    dep = Departure(weekly=((4, 9 * 60), (0, 7 * 60)), overrides=(
        Override(friday, skip=True), Override(dt.date(2027, 1, 16), minute=6 * 60, target_soc_percent=95.0)))
    p = policy(departure=dep, timezone="Europe/Berlin")
    when, target = p.next_departure(WALL0)  # type: ignore[misc]
    assert p.local(when).replace(tzinfo=None) == dt.datetime(2027, 1, 16, 6, 0) and target == 95.0
    # Across the spring DST change, 07:30 local stays 07:30 local.
    p2 = policy(departure=Departure(weekly=((0, 450),)), timezone="Europe/Berlin")
    sat = dt.datetime(2027, 3, 27, 12, 0, tzinfo=p2.zone).timestamp()
    when2, _ = p2.next_departure(sat)  # type: ignore[misc]
    assert p2.local(when2).hour == 7 and p2.local(when2).minute == 30
    assert when2 - sat == pytest.approx((1 * 24 + 19.5 - 1) * 3600)  # one hour lost on Sunday


def test_departure_reserve_bounds_the_budget_by_the_energy_equation() -> None:
    # 4 h to go, 7 kW charger, 300 W base load, 90 % efficiency, 75 kWh pack at 60 % -> 80 %.
    p = policy(departure=Departure(weekly=tuple((d, 12 * 60) for d in range(7)), margin_kwh=1.0,
                                   target_soc_percent=80.0), max_power_w=5000.0)
    d = decide(state(soc_percent=60.0, charging_power_kw=7.0), p, MONO0, AT)
    need_wh = 0.20 * 75_000 + 1000
    expected = 7000 - 300 - need_wh / (4 * 0.9)
    assert d.mode is Mode.RUN and d.power_budget_w == pytest.approx(expected)
    assert "departure_reserve" in codes(d)
    # The check the design writes down: (charger - P - base) * T * eff >= needed + margin.
    assert (7000 - d.power_budget_w - 300) * 4 * 0.9 >= need_wh - 1e-6


def test_departure_reserve_stops_when_the_charger_has_no_surplus() -> None:
    p = policy(departure=Departure(weekly=tuple((d, 10 * 60) for d in range(7))))
    d = decide(state(soc_percent=40.0, charging_power_kw=7.0), p, MONO0, AT)  # 2 h, 30 kWh short
    assert d.mode is Mode.STANDBY and codes(d) == {"departure_reserve"} and d.power_budget_w == 0


# -- rule 3: the battery floor, with hysteresis ---------------------------------------------------

def test_off_the_charger_below_the_floor_stops_with_hysteresis() -> None:
    g = Governor(BARE)
    unplugged = {"charge_cable": False, "charging_power_kw": 0.0}
    assert g.decide(state(soc_percent=51.0, **unplugged), MONO0, AT).mode is Mode.RUN
    assert codes(g.decide(state(MONO0 + 1, soc_percent=49.9, **unplugged), MONO0 + 1, AT)) == {"soc_floor"}
    # Back above the floor but inside the hysteresis band: still stopped.
    assert g.decide(state(MONO0 + 2, soc_percent=52.0, **unplugged), MONO0 + 2, AT).mode is Mode.STANDBY
    assert g.decide(state(MONO0 + 3, soc_percent=53.0, **unplugged), MONO0 + 3, AT).mode is Mode.RUN


def test_off_the_charger_the_departure_target_is_the_floor() -> None:
    p = policy(departure=DAILY_9)
    d = decide(state(soc_percent=75.0, charge_cable=False), p, MONO0, Inputs(wall=WALL0 - 6 * 3600))
    assert codes(d) == {"soc_floor"} and "departure target" in d.summary


def test_on_the_charger_below_the_floor_only_the_surplus_may_be_used() -> None:
    d = decide(state(soc_percent=30.0, charging_power_kw=0.8), BARE, MONO0, AT)
    assert d.mode is Mode.RUN and d.power_budget_w == pytest.approx(800 - 300)
    assert codes(d) == {"charger_surplus"}


def test_require_charging_stops_on_the_battery() -> None:
    d = decide(state(charge_cable=False), policy(require_charging=True), MONO0, AT)
    assert codes(d) == {"not_charging"}


def test_held_at_the_charge_limit_uses_the_profile_fact() -> None:
    held = {"charging_power_kw": 0.0, "charge_limit_reached": True, "soc_percent": 90.0}
    cannot = decide(state(**held), BARE, MONO0, AT)
    assert cannot.mode is Mode.RUN and cannot.power_budget_w == BARE.max_power_w  # battery, above floor
    can = policy(vehicle=Vehicle(compute_from_charger_at_limit_w=250.0))
    d = decide(state(**held), can, MONO0, AT)
    assert d.mode is Mode.RUN and d.power_budget_w == 250.0 and codes(d) == {"charge_limit_hold"}
    # Held below a departure target with a charger that cannot feed compute: the battery is off limits.
    p = policy(departure=DAILY_9)
    d = decide(state(**{**held, "soc_percent": 78.0}), p, MONO0, Inputs(wall=WALL0 - 6 * 3600))
    assert codes(d) == {"soc_floor"}


# -- rule 5: thermal ------------------------------------------------------------------------------

THERMAL = Thermal(pack_warn_c=40, pack_max_c=50, compute_warn_c=80, compute_max_c=90,
                  hysteresis_c=5, ki_w_per_c_s=0.0)


@pytest.mark.parametrize("role,warn,mx", [("pack_temp_max_c", 40, 50), ("compute_temp_c", 80, 90)])
def test_thermal_derates_linearly_between_warn_and_max(role: str, warn: float, mx: float) -> None:
    p = policy(thermal=THERMAL)
    budgets = [decide(state(**{role: t}), p, MONO0, AT).power_budget_w
               for t in (warn - 1, warn + 2.5, warn + 5, warn + 7.5)]
    assert budgets == pytest.approx([1000, 750, 500, 250])
    assert "thermal_derate" in codes(decide(state(**{role: warn + 5}), p, MONO0, AT))


@pytest.mark.parametrize("role,name", [("pack_temp_max_c", "pack"), ("compute_temp_c", "compute")])
def test_above_max_stops_until_cooled_below_warn_minus_hysteresis(role: str, name: str) -> None:
    p = policy(thermal=THERMAL)
    warn = 40 if name == "pack" else 80
    g = Governor(p)
    assert codes(g.decide(state(**{role: warn + 10.0}), MONO0, AT)) == {f"{name}_too_hot"}
    assert g.decide(state(MONO0 + 1, **{role: warn - 1.0}), MONO0 + 1, AT).mode is Mode.STANDBY
    assert g.decide(state(MONO0 + 2, **{role: warn - 5.5}), MONO0 + 2, AT).mode is Mode.RUN


def test_the_integral_term_pulls_the_budget_down_while_it_stays_hot() -> None:
    p = policy(thermal=Thermal(pack_warn_c=40, pack_max_c=50, ki_w_per_c_s=1.0))
    g = Governor(p)
    seen = [g.decide(state(MONO0 + t, pack_temp_max_c=45.0), MONO0 + t, AT).power_budget_w
            for t in range(0, 100, 10)]
    assert seen[0] == pytest.approx(500.0)
    assert all(b < a for a, b in itertools.pairwise(seen))  # strictly lower while held at 45 °C
    assert seen[-1] == pytest.approx(500.0 - 1.0 * 5.0 * 90, abs=1.0)
    # Once cool, the integral bleeds off: the budget climbs back, it does not jump.
    back = [g.decide(state(MONO0 + 100 + t, pack_temp_max_c=30.0), MONO0 + 100 + t, AT).power_budget_w
            for t in (1, 20, 40, 60)]
    assert back[0] < back[1] < back[2] <= back[3] == pytest.approx(1000.0)


# -- rule 6: caps ---------------------------------------------------------------------------------

def test_energy_cap_counts_the_granted_budget_and_resets_at_local_midnight() -> None:
    p = policy(caps=Caps(energy_kwh_per_day=2.0), max_power_w=1000.0)
    g = Governor(p)
    t, wall = MONO0, WALL0
    modes = []
    for _ in range(4):  # one RUN hour at 1 kW is 1 kWh
        modes.append(g.decide(state(t), t, Inputs(wall=wall)).mode)
        t, wall = t + 3600, wall + 3600
    assert modes == [Mode.RUN, Mode.RUN, Mode.STANDBY, Mode.STANDBY]
    assert "energy_cap" in g.decide(state(t), t, Inputs(wall=wall)).codes
    midnight = dt.datetime(2027, 1, 16, 0, 0, 30, tzinfo=dt.UTC).timestamp()
    t += midnight - wall
    assert g.decide(state(t), t, Inputs(wall=midnight)).mode is Mode.RUN


def test_the_ledgers_energy_figure_counts_too() -> None:
    p = policy(caps=Caps(energy_kwh_per_day=2.0))
    d = decide(state(), p, MONO0, Inputs(wall=WALL0, energy_today_wh=2000.0))
    assert codes(d) == {"energy_cap"}


def test_cost_cap_prices_energy_at_the_tariff() -> None:
    p = policy(caps=Caps(cost_per_day=0.50), tariff=Tariff(default_per_kwh=0.25))
    g = Governor(p)
    g.decide(state(), MONO0, AT)
    assert g.decide(state(MONO0 + 3600), MONO0 + 3600, Inputs(wall=WALL0 + 3600)).mode is Mode.RUN
    assert codes(g.decide(state(MONO0 + 7200), MONO0 + 7200, Inputs(wall=WALL0 + 7200))) == {"cost_cap"}
    assert g.memory.cost == pytest.approx(0.50)


def test_quiet_hours_wrap_past_midnight() -> None:
    p = policy(caps=Caps(quiet_hours=(Window(22 * 60, 6 * 60),)))
    at = lambda h: dt.datetime(2027, 1, 15, h, 30, tzinfo=dt.UTC).timestamp()
    assert codes(decide(state(), p, MONO0, Inputs(wall=at(23)))) == {"quiet_hours"}
    assert codes(decide(state(), p, MONO0, Inputs(wall=at(5)))) == {"quiet_hours"}
    assert decide(state(), p, MONO0, Inputs(wall=at(6))).mode is Mode.RUN
    assert decide(state(), p, MONO0, Inputs(wall=at(21))).mode is Mode.RUN


def test_a_dear_tariff_period_stops_as_a_soft_reason() -> None:
    peak = Period(Window(8 * 60, 9 * 60), 0.60)
    p = policy(caps=Caps(max_price_per_kwh=0.40), tariff=Tariff(periods=(peak,)))
    assert codes(decide(state(), p, MONO0, AT)) == {"tariff_price"}  # 08:00 is peak
    assert decide(state(), p, MONO0, Inputs(wall=WALL0 + 3600)).mode is Mode.RUN


# -- the fleet's grid signal ----------------------------------------------------------------------

def test_grid_price_and_carbon_signals_stop_and_a_stale_signal_is_ignored() -> None:
    from agent.governor.policy import Grid
    p = policy(grid=Grid(max_price_per_kwh=0.30, max_carbon_g_per_kwh=300, max_age_s=600))
    dear = GridSignal(t=MONO0 - 5, price_per_kwh=0.50, carbon_g_per_kwh=450)
    assert codes(decide(state(), p, MONO0, Inputs(wall=WALL0, grid=dear))) == {"grid_price", "grid_carbon"}
    old = GridSignal(t=MONO0 - 601, price_per_kwh=0.50)
    assert decide(state(), p, MONO0, Inputs(wall=WALL0, grid=old)).mode is Mode.RUN


def test_grid_power_cap_limits_the_budget() -> None:
    d = decide(state(), BARE, MONO0, Inputs(wall=WALL0, grid=GridSignal(t=MONO0, power_cap_w=120.0)))
    assert d.mode is Mode.RUN and d.power_budget_w == 120.0 and codes(d) == {"grid_power_cap"}


# -- dwell ----------------------------------------------------------------------------------------

def at(t: float) -> Inputs:
    """Inputs at monotonic time t, with the wall clock moving in step."""
    return Inputs(wall=WALL0 + (t - MONO0))


def test_min_off_delays_a_restart_but_never_a_stop() -> None:
    g = Governor(policy(dwell=Dwell(min_off_s=300, min_run_s=0)))
    t = MONO0
    assert g.decide(state(t), t, at(t)).mode is Mode.RUN
    assert g.decide(state(t + 1, driver_present=True), t + 1, at(t + 1)).mode is Mode.STANDBY
    d = g.decide(state(t + 100), t + 100, at(t + 100))
    assert d.mode is Mode.STANDBY and codes(d) == {"dwell_min_off"}
    assert g.decide(state(t + 302), t + 302, at(t + 302)).mode is Mode.RUN


def test_min_run_holds_a_young_run_against_price_but_not_against_safety() -> None:
    from agent.governor.policy import Grid
    p = policy(dwell=Dwell(min_off_s=0, min_run_s=600), grid=Grid(max_price_per_kwh=0.30))
    g = Governor(p)
    t = MONO0
    assert g.decide(state(t), t, at(t)).mode is Mode.RUN
    dear = GridSignal(t=t + 60, price_per_kwh=0.9)
    d = g.decide(state(t + 60), t + 60, Inputs(wall=WALL0 + 60, grid=dear))
    assert d.mode is Mode.RUN and {"dwell_min_run", "grid_price"} <= codes(d)
    d = g.decide(state(t + 61, gear="D"), t + 61, Inputs(wall=WALL0 + 61, grid=dear))
    assert d.mode is Mode.STANDBY
    # An older run gives way to the price signal.
    g2 = Governor(p)
    g2.decide(state(t), t, at(t))
    late = GridSignal(t=t + 700, price_per_kwh=0.9)
    assert codes(g2.decide(state(t + 700), t + 700, Inputs(wall=WALL0 + 700, grid=late))) == {"grid_price"}


def test_step_is_pure_same_inputs_same_outputs() -> None:
    m = Memory()
    a = step(state(), BARE, MONO0, m, AT)
    b = step(state(), BARE, MONO0, m, AT)
    assert a == b and m == Memory()
    assert SAFE["gear"] == "P"


def test_the_docs_list_every_reason_code_with_its_severity() -> None:
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "governor.md").read_text()
    for code, (severity, _) in CODES.items():
        assert f"| `{code}` | {severity.value} |" in doc, code


@pytest.mark.parametrize("role,bad", [("soc_percent", "70"), ("soc_percent", float("nan")),
                                      ("soc_percent", True), ("gear", "PARK"), ("gear", 0.0),
                                      ("driver_present", 0.0), ("speed_kph", float("inf")),
                                      ("pack_temp_max_c", "hot")])
def test_a_value_of_the_wrong_type_reads_as_unknown_and_stops(role: str, bad: object) -> None:
    # A profile bug or a hostile decode must not slip past a rule as "not a number, so no check".
    d = decide(state(**{role: bad}), BARE, MONO0, AT)  # type: ignore[arg-type]
    assert d.mode is Mode.STANDBY and codes(d) == {"stale_input"} and role in d.summary


def test_a_wall_clock_that_comes_back_after_a_gap_is_not_a_jump() -> None:
    g = Governor(BARE)
    assert g.decide(state(MONO0), MONO0, Inputs(wall=WALL0)).mode is Mode.RUN
    assert g.decide(state(MONO0 + 600), MONO0 + 600, Inputs(wall=None)).mode is Mode.RUN
    d = g.decide(state(MONO0 + 601), MONO0 + 601, Inputs(wall=WALL0 + 601))
    assert d.mode is Mode.RUN, d.codes
