"""The owner's policy: what the governor may allow. Loaded from TOML, validated on load.

Owns the policy's types and its TOML format (see agent/governor/policies/*.toml for examples
and docs/governor.md for every field). Pure: parsing touches no clock and no file other than
the one it is given. Times of day are local to `timezone`; the governor gets wall time from
its caller and turns it into local time here, so schedules and tariffs follow DST.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class PolicyError(ValueError):
    """A policy file that cannot be trusted: named field, clear message."""


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
MINUTES_PER_DAY = 24 * 60


def parse_hhmm(text: object, where: str) -> int:
    """'07:30' -> 450 (minutes after local midnight)."""
    if not isinstance(text, str) or not (m := _HHMM.match(text.strip())):
        raise PolicyError(f"{where} must be a time of day like \"07:30\", not {text!r}")
    return int(m.group(1)) * 60 + int(m.group(2))


def parse_days(value: object, where: str) -> frozenset[int]:
    if not isinstance(value, list) or not value:
        raise PolicyError(f"{where} must be a non-empty list of days like [\"mon\", \"tue\"]")
    out = set()
    for d in value:
        if not isinstance(d, str) or d.lower() not in DAYS:
            raise PolicyError(f"{where}: unknown day {d!r} (use {', '.join(DAYS)})")
        out.add(DAYS.index(d.lower()))
    return frozenset(out)


@dataclass(frozen=True)
class Window:
    """A daily window [start, end) in local minutes; end <= start wraps past midnight."""

    start_min: int
    end_min: int
    days: frozenset[int] = frozenset(range(7))  # weekday of the window's start

    def contains(self, local: dt.datetime) -> bool:
        m = local.hour * 60 + local.minute
        wd = local.weekday()
        if self.start_min < self.end_min:
            return wd in self.days and self.start_min <= m < self.end_min
        if self.start_min == self.end_min:
            return wd in self.days
        # Wraps: the evening part belongs to today, the morning part to yesterday's window.
        if m >= self.start_min:
            return wd in self.days
        return m < self.end_min and (wd - 1) % 7 in self.days

    @classmethod
    def parse(cls, value: object, where: str) -> Window:
        """Either "22:00-06:00" or {start = "22:00", end = "06:00", days = ["mon", ...]}."""
        days = frozenset(range(7))
        start: object
        end: object
        if isinstance(value, str) and value.count("-") == 1:
            start, end = value.split("-")
        elif isinstance(value, dict):
            _only(value, {"start", "end", "days", "per_kwh"}, where)
            start, end = value.get("start"), value.get("end")
            if "days" in value:
                days = parse_days(value["days"], f"{where}.days")
        else:
            raise PolicyError(f"{where} must be \"HH:MM-HH:MM\" or a table with start and end")
        return cls(parse_hhmm(start, f"{where}.start"), parse_hhmm(end, f"{where}.end"), days)


@dataclass(frozen=True)
class Override:
    """A one-off change to one local date's departure: another time, another target, or none."""

    date: dt.date
    minute: int | None = None  # None: keep the weekly time (or none if skip)
    target_soc_percent: float | None = None
    skip: bool = False


@dataclass(frozen=True)
class Departure:
    target_soc_percent: float = 80.0
    margin_kwh: float = 1.0  # energy kept in hand on top of the target (noise, estimate errors)
    drain_s: float = 900.0  # before a departure: start no new jobs
    handback_s: float = 120.0  # before a departure: stop and hand back whatever still runs
    weekly: tuple[tuple[int, int], ...] = ()  # (weekday 0=Mon, local minute)
    overrides: tuple[Override, ...] = ()

    @property
    def known(self) -> bool:
        return bool(self.weekly) or any(not o.skip and o.minute is not None for o in self.overrides)


@dataclass(frozen=True)
class Vehicle:
    battery_kwh: float = 75.0  # usable capacity
    base_load_w: float = 300.0  # what the car draws while parked and awake, charging or not
    charge_efficiency: float = 0.9  # battery energy gained per unit of charger energy
    # A profile fact: power compute may draw from the charger while the car is held at its
    # charge limit (plugged in, zero charge current). 0 means the car cannot do it.
    compute_from_charger_at_limit_w: float = 0.0


@dataclass(frozen=True)
class Thermal:
    pack_warn_c: float = 45.0
    pack_max_c: float = 55.0
    compute_warn_c: float = 80.0
    compute_max_c: float = 95.0
    hysteresis_c: float = 5.0  # after a stop above max, resume only below warn - hysteresis
    ki_w_per_c_s: float = 0.5  # integral gain of the PI derating, watts per (°C·s)


@dataclass(frozen=True)
class Dwell:
    min_off_s: float = 300.0  # before any move towards RUN (OFF->STANDBY, ->RUN)
    min_run_s: float = 300.0  # price and grid signals cannot end a RUN younger than this


@dataclass(frozen=True)
class Caps:
    energy_kwh_per_day: float | None = None
    cost_per_day: float | None = None
    max_price_per_kwh: float | None = None  # do not compute while the tariff is dearer
    quiet_hours: tuple[Window, ...] = ()


@dataclass(frozen=True)
class Period:
    window: Window
    per_kwh: float


@dataclass(frozen=True)
class Tariff:
    currency: str = "EUR"
    default_per_kwh: float = 0.30
    periods: tuple[Period, ...] = ()  # the first period containing a moment sets its price

    def price_at(self, local: dt.datetime) -> float:
        for p in self.periods:
            if p.window.contains(local):
                return p.per_kwh
        return self.default_per_kwh


@dataclass(frozen=True)
class Grid:
    max_price_per_kwh: float | None = None
    max_carbon_g_per_kwh: float | None = None
    max_age_s: float = 1800.0  # an older signal is ignored (no signal is not a reason to stop)


@dataclass(frozen=True)
class Faults:
    max_decode_errors_per_s: float = 5.0
    broker_down_max_s: float = 900.0
    clock_jump_s: float = 120.0  # wall and monotonic clocks disagreeing by more: a clock jump
    clock_jump_hold_s: float = 60.0


DEFAULT_REQUIRED = ("gear", "speed_kph", "driver_present", "door_open", "soc_percent",
                    "charge_cable", "pack_temp_max_c", "compute_temp_c")


@dataclass(frozen=True)
class Policy:
    consent: bool = True
    timezone: str = "UTC"
    max_input_age_s: float = 2.0
    max_power_w: float = 1000.0
    min_budget_w: float = 5.0  # a budget below this is not worth running: STANDBY instead
    soc_floor_percent: float = 50.0
    soc_hysteresis_percent: float = 3.0
    require_charging: bool = False  # True: never compute from the battery at all
    required_roles: tuple[str, ...] = DEFAULT_REQUIRED
    vehicle: Vehicle = field(default_factory=Vehicle)
    departure: Departure = field(default_factory=Departure)
    thermal: Thermal = field(default_factory=Thermal)
    dwell: Dwell = field(default_factory=Dwell)
    caps: Caps = field(default_factory=Caps)
    tariff: Tariff = field(default_factory=Tariff)
    grid: Grid = field(default_factory=Grid)
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, wall: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(wall, self.zone)

    def next_departure(self, wall: float) -> tuple[float, float] | None:
        """(wall seconds, target SoC %) of the next departure after `wall`, or None."""
        dep = self.departure
        if not dep.known:
            return None
        today = self.local(wall).date()
        by_date = {o.date: o for o in dep.overrides}
        for offset in range(9):
            day = today + dt.timedelta(days=offset)
            minute: int | None = None
            for wd, m in dep.weekly:
                if wd == day.weekday():
                    minute = m
            target = dep.target_soc_percent
            o = by_date.get(day)
            if o is not None:
                if o.skip:
                    continue
                minute = o.minute if o.minute is not None else minute
                target = o.target_soc_percent if o.target_soc_percent is not None else target
            if minute is None:
                continue
            when = dt.datetime.combine(day, dt.time(minute // 60, minute % 60), self.zone)
            if when.timestamp() > wall:
                return when.timestamp(), target
        return None

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def from_toml(cls, path: str | Path) -> Policy:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise PolicyError(f"cannot read policy {path}: {e}") from e
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Policy:
        """Top-level keys (or a [policy] table) plus one table per section."""
        if not isinstance(data, Mapping):
            raise PolicyError("a policy must be a table")
        data = dict(data)
        top = dict(data.pop("policy", {}))
        sections = {f.name for f in fields(cls) if f.name in _SECTION_PARSERS}
        for key in list(data):
            if key not in sections:
                top[key] = data.pop(key)
        kwargs = _scalars(cls, top, "policy", skip=sections)
        if "required_roles" in top:
            kwargs["required_roles"] = _roles(top["required_roles"])
        for name, value in data.items():
            if not isinstance(value, Mapping):
                raise PolicyError(f"[{name}] must be a table")
            kwargs[name] = _SECTION_PARSERS[name](dict(value))
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise PolicyError(str(e)) from e


# -- parsing helpers ------------------------------------------------------------------------------


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise PolicyError(f"unknown field {key!r} in {where} (known: {', '.join(sorted(allowed))})")


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PolicyError(f"{where} must be a finite number, not {value!r}")
    return float(value)


def _scalars(cls: type, table: Mapping[str, Any], where: str,
             skip: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """Typed scalar fields of a dataclass section: bool, float, float | None, str."""
    hints = typing.get_type_hints(cls)
    simple = {}
    for f in fields(cls):
        if f.name in skip:
            continue
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = isinstance(hint, types.UnionType) and type(None) in args
        base = next((a for a in args if a is not type(None)), hint) if optional else hint
        if base in (bool, float, int, str):
            simple[f.name] = (base, optional)
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key in skip:
            continue
        if key not in simple:
            if key in {f.name for f in fields(cls)}:
                continue  # a structured field: its section parser handles it
            raise PolicyError(f"unknown field {key!r} in [{where}] "
                              f"(known: {', '.join(sorted(simple))})")
        base, optional = simple[key]
        name = f"{where}.{key}"
        if base is bool:
            if not isinstance(value, bool):
                raise PolicyError(f"{name} must be true or false")
        elif base is str:
            if not isinstance(value, str):
                raise PolicyError(f"{name} must be a string")
        else:
            value = _number(value, name)
        out[key] = value
    return out


def _roles(value: object) -> tuple[str, ...]:
    from agent.bus.state import ROLES

    if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
        raise PolicyError("policy.required_roles must be a list of role names")
    for r in value:
        if r not in ROLES:
            raise PolicyError(f"policy.required_roles: unknown role {r!r}")
    return tuple(value)


def _percent(value: object, where: str) -> float:
    v = _number(value, where)
    if not 0.0 <= v <= 100.0:
        raise PolicyError(f"{where} must be within 0..100")
    return v


def _parse_departure(t: dict[str, Any]) -> Departure:
    _only(t, {f.name for f in fields(Departure)} - {"overrides"} | {"override"}, "[departure]")
    kw = _scalars(Departure, t, "departure", skip={"weekly", "overrides", "override"})
    weekly: list[tuple[int, int]] = []
    raw = t.get("weekly", {})
    if not isinstance(raw, dict):
        raise PolicyError("departure.weekly must be a table like { mon = \"07:30\" }")
    for day, hhmm in raw.items():
        if day.lower() not in DAYS:
            raise PolicyError(f"departure.weekly: unknown day {day!r}")
        weekly.append((DAYS.index(day.lower()), parse_hhmm(hhmm, f"departure.weekly.{day}")))
    overrides: list[Override] = []
    raw_o = t.get("override", [])
    if not isinstance(raw_o, list):
        raise PolicyError("departure.override must be an array of tables ([[departure.override]])")
    for i, o in enumerate(raw_o):
        where = f"departure.override[{i}]"
        if not isinstance(o, dict):
            raise PolicyError(f"{where} must be a table")
        _only(o, {"date", "time", "target_soc_percent", "skip"}, where)
        day = o.get("date")
        if isinstance(day, str):
            try:
                day = dt.date.fromisoformat(day)
            except ValueError as e:
                raise PolicyError(f"{where}.date: {e}") from e
        if not isinstance(day, dt.date) or isinstance(day, dt.datetime):
            raise PolicyError(f"{where}.date must be a date like 2026-11-24")
        skip = o.get("skip", False)
        if not isinstance(skip, bool):
            raise PolicyError(f"{where}.skip must be true or false")
        minute = parse_hhmm(o["time"], f"{where}.time") if "time" in o else None
        target = _percent(o["target_soc_percent"], f"{where}.target_soc_percent") \
            if "target_soc_percent" in o else None
        overrides.append(Override(day, minute, target, skip))
    if len({o.date for o in overrides}) != len(overrides):
        raise PolicyError("departure.override: one override per date")
    return Departure(**kw, weekly=tuple(sorted(weekly)), overrides=tuple(overrides))


def _parse_caps(t: dict[str, Any]) -> Caps:
    kw = _scalars(Caps, t, "caps", skip={"quiet_hours"})
    raw = t.get("quiet_hours", [])
    if not isinstance(raw, list):
        raise PolicyError("caps.quiet_hours must be a list like [\"22:00-06:00\"]")
    windows = tuple(Window.parse(w, f"caps.quiet_hours[{i}]") for i, w in enumerate(raw))
    return Caps(**kw, quiet_hours=windows)


def _parse_tariff(t: dict[str, Any]) -> Tariff:
    _only(t, {"currency", "default_per_kwh", "period"}, "[tariff]")
    kw = _scalars(Tariff, t, "tariff", skip={"periods", "period"})
    raw = t.get("period", [])
    if not isinstance(raw, list):
        raise PolicyError("tariff.period must be an array of tables ([[tariff.period]])")
    periods = []
    for i, p in enumerate(raw):
        where = f"tariff.period[{i}]"
        if not isinstance(p, dict) or "per_kwh" not in p:
            raise PolicyError(f"{where} must be a table with start, end and per_kwh")
        periods.append(Period(Window.parse(p, where), _number(p["per_kwh"], f"{where}.per_kwh")))
    return Tariff(**kw, periods=tuple(periods))


def _plain(cls: type) -> Any:
    def parse(t: dict[str, Any]) -> Any:
        return cls(**_scalars(cls, t, cls.__name__.lower()))
    return parse


_SECTION_PARSERS: dict[str, Any] = {
    "vehicle": _plain(Vehicle),
    "departure": _parse_departure,
    "thermal": _plain(Thermal),
    "dwell": _plain(Dwell),
    "caps": _parse_caps,
    "tariff": _parse_tariff,
    "grid": _plain(Grid),
    "faults": _plain(Faults),
}


def _validate(p: Policy) -> None:
    def positive(name: str, v: float) -> None:
        if not (math.isfinite(v) and v > 0):
            raise PolicyError(f"{name} must be > 0")

    def non_negative(name: str, v: float | None) -> None:
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise PolicyError(f"{name} must be >= 0")

    try:
        ZoneInfo(p.timezone)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise PolicyError(f"policy.timezone: unknown time zone {p.timezone!r}") from e
    positive("policy.max_input_age_s", p.max_input_age_s)
    non_negative("policy.max_power_w", p.max_power_w)
    non_negative("policy.min_budget_w", p.min_budget_w)
    for name in ("soc_floor_percent", "soc_hysteresis_percent"):
        _percent(getattr(p, name), f"policy.{name}")
    v = p.vehicle
    positive("vehicle.battery_kwh", v.battery_kwh)
    non_negative("vehicle.base_load_w", v.base_load_w)
    non_negative("vehicle.compute_from_charger_at_limit_w", v.compute_from_charger_at_limit_w)
    if not 0.0 < v.charge_efficiency <= 1.0:
        raise PolicyError("vehicle.charge_efficiency must be within (0, 1]")
    d = p.departure
    _percent(d.target_soc_percent, "departure.target_soc_percent")
    for name in ("margin_kwh", "drain_s", "handback_s"):
        non_negative(f"departure.{name}", getattr(d, name))
    if d.handback_s > d.drain_s:
        raise PolicyError("departure.handback_s must not exceed departure.drain_s")
    t = p.thermal
    for part in ("pack", "compute"):
        warn, mx = getattr(t, f"{part}_warn_c"), getattr(t, f"{part}_max_c")
        if not warn < mx:
            raise PolicyError(f"thermal.{part}_warn_c must be below thermal.{part}_max_c")
    non_negative("thermal.hysteresis_c", t.hysteresis_c)
    non_negative("thermal.ki_w_per_c_s", t.ki_w_per_c_s)
    non_negative("dwell.min_off_s", p.dwell.min_off_s)
    non_negative("dwell.min_run_s", p.dwell.min_run_s)
    for name in ("energy_kwh_per_day", "cost_per_day", "max_price_per_kwh"):
        non_negative(f"caps.{name}", getattr(p.caps, name))
    non_negative("tariff.default_per_kwh", p.tariff.default_per_kwh)
    for per in p.tariff.periods:
        non_negative("tariff.period.per_kwh", per.per_kwh)
    non_negative("grid.max_price_per_kwh", p.grid.max_price_per_kwh)
    non_negative("grid.max_carbon_g_per_kwh", p.grid.max_carbon_g_per_kwh)
    positive("grid.max_age_s", p.grid.max_age_s)
    f = p.faults
    for name in ("max_decode_errors_per_s", "broker_down_max_s", "clock_jump_s",
                 "clock_jump_hold_s"):
        non_negative(f"faults.{name}", getattr(f, name))
