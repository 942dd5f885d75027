"""The policy file: the examples load, every hostile field is refused with its name."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.governor import Policy, PolicyError
from agent.governor.policy import Window

POLICIES = Path(__file__).resolve().parents[2] / "agent" / "governor" / "policies"


@pytest.mark.parametrize("path", sorted(POLICIES.glob("*.toml")), ids=lambda p: p.name)
def test_example_policies_load(path: Path) -> None:
    p = Policy.from_toml(path)
    assert p.max_power_w > 0


def test_the_car_example_reads_every_section() -> None:
    p = Policy.from_toml(POLICIES / "car.toml")
    assert p.timezone == "Europe/Berlin" and p.max_power_w == 800
    assert (0, 7 * 60 + 30) in p.departure.weekly and (4, 8 * 60 + 15) in p.departure.weekly
    skip = {o.date: o for o in p.departure.overrides}[dt.date(2026, 12, 24)]
    assert skip.skip
    assert p.caps.energy_kwh_per_day == 8 and p.caps.quiet_hours == (Window(23 * 60, 6 * 60),)
    peak = p.tariff.periods[1]
    assert peak.per_kwh == 0.45 and peak.window.days == frozenset(range(5))
    assert p.thermal.pack_max_c == 50 and p.dwell.min_run_s == 600


@pytest.mark.parametrize("text,field", [
    ("max_power_w = -1", "max_power_w"),
    ("soc_floor_percent = 120", "soc_floor_percent"),
    ("consent = 'yes'", "consent"),
    ("bogus = 1", "bogus"),
    ("timezone = 'Mars/Olympus'", "timezone"),
    ("max_input_age_s = nan", "max_input_age_s"),
    ("required_roles = ['gear', 'warp_drive']", "warp_drive"),
    ("[thermal]\npack_warn_c = 60\npack_max_c = 50", "pack_warn_c"),
    ("[departure]\nweekly = { mon = '25:00' }", "departure.weekly.mon"),
    ("[departure]\nweekly = { someday = '07:00' }", "someday"),
    ("[[departure.override]]\ndate = 'tomorrow'", "departure.override[0].date"),
    ("[[departure.override]]\ndate = 2026-01-01\nskip = 1", "skip"),
    ("[departure]\ndrain_s = 60\nhandback_s = 120", "handback_s"),
    ("[caps]\nquiet_hours = ['22:00']", "quiet_hours"),
    ("[caps]\nenergy_kwh_per_day = -3", "energy_kwh_per_day"),
    ("[[tariff.period]]\nstart = '00:00'\nend = '06:00'", "tariff.period[0]"),
    ("[[tariff.period]]\nstart = '00:00'\nend = '06:00'\nper_kwh = 0.1\ndays = ['funday']", "funday"),
    ("[vehicle]\ncharge_efficiency = 1.5", "charge_efficiency"),
    ("[grid]\nmax_age_s = 0", "max_age_s"),
    ("[dwell]\nmin_off_s = true", "min_off_s"),
    ("vehicle = 3", "vehicle"),
    ("not toml at all ][", "cannot read policy"),
])
def test_hostile_policy_fields_are_refused_by_name(tmp_path: Path, text: str, field: str) -> None:
    f = tmp_path / "p.toml"
    f.write_text(text)
    with pytest.raises(PolicyError, match=field.replace("[", r"\[").replace("]", r"\]")):
        Policy.from_toml(f)


def test_a_missing_or_binary_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError):
        Policy.from_toml(tmp_path / "nope.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(PolicyError):
        Policy.from_toml(tmp_path / "bin.toml")


@given(st.dictionaries(st.text(max_size=12), st.one_of(st.integers(), st.floats(), st.text(max_size=8),
                                                      st.booleans(), st.lists(st.integers(), max_size=3)),
                       max_size=6))
def test_arbitrary_tables_either_load_or_raise_policy_error(data: dict[str, object]) -> None:
    try:
        Policy.from_mapping(data)
    except PolicyError:
        pass


def test_window_wrapping_past_midnight_belongs_to_the_start_day() -> None:
    fri_night = Window(22 * 60, 6 * 60, days=frozenset({4}))  # Friday 22:00 to Saturday 06:00
    at = lambda d, h: dt.datetime(2027, 1, d, h, 0)
    assert fri_night.contains(at(15, 23)) and fri_night.contains(at(16, 5))
    assert not fri_night.contains(at(16, 23)) and not fri_night.contains(at(15, 5))


def run_policy_cli(*argv: str) -> int:
    import argparse

    from agent.governor import cli
    parser = argparse.ArgumentParser(prog="fleetnode")
    cli.register(parser.add_subparsers())
    args = parser.parse_args(list(argv))
    return int(args.func(args))


def test_policy_cli_explains_the_car_example(capsys: pytest.CaptureFixture[str]) -> None:
    # Friday 2026-11-27 22:00 in Berlin: the Saturday override (06:00, 95 %) comes first.
    assert run_policy_cli("policy", str(POLICIES / "car.toml"), "--at", "2026-11-27T22:00+01:00") == 0
    out = capsys.readouterr().out
    assert "valid" in out and "next: Sat 28 Nov 06:00, target 95 %, in 8.0 h" in out
    assert "next: Mon 30 Nov 07:30, target 80 %" in out
    assert "tariff now: 0.32 EUR/kWh" in out and "quiet hours: 23:00-06:00" in out


def test_policy_cli_names_the_bad_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text("[thermal]\npack_warn_c = 70\npack_max_c = 60\n")
    assert run_policy_cli("policy", str(bad)) == 2
    assert "pack_warn_c" in capsys.readouterr().err
