"""Scenario files: the car, the owner's policy, a timeline of events and the expectations to check.

A scenario is one TOML file under hil/scenarios/ (docs/hil.md describes every table). This
module owns that format: it turns the file into a checked `Scenario` and nothing else; running
it is `hil.runner`'s job. Times in the file are local wall times in the policy's time zone
("23:10", meaning the first such moment after the start) or offsets from the start ("+90s",
"+15m", "+2h"). Every error names the file and the field.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.governor.policy import Policy, PolicyError

HERE = Path(__file__).parent
SCENARIO_DIR = HERE / "scenarios"
BASE_POLICY = HERE / "policies" / "bench.toml"

# Each event kind and the parameters it takes (with their defaults; None: required).
EVENTS: dict[str, dict[str, Any]] = {
    "plug": {"kw": None, "dc": False},  # the charge cable goes in; the EVSE offers kw
    "unplug": {},  # the charge cable comes out
    "charger_limit": {"kw": None},  # the EVSE (or the grid behind it) changes what it offers
    "charge_limit": {"percent": None},  # the owner's charge limit in the car
    "door_open": {}, "door_close": {},
    "driver_in": {}, "driver_out": {},
    "depart": {},  # the driver takes the car: unlock, door, seat, gear D, driving off
    "precondition_on": {}, "precondition_off": {},
    "ambient": {"c": None},
    "serial_unplug": {}, "serial_plug": {},  # the shim's cable to the vehicle computer
    "shim_reset": {},  # the bridge MCU resets: the serial device goes away and comes back
    "bus_noise": {"seconds": None, "bad_per_step": 4},  # malformed frames among the good ones
    "bus_gap": {"seconds": None},  # the car stops sending (a gateway asleep)
    "broker_down": {"seconds": None},  # the fleet's broker is unreachable
    "wall_jump": {"seconds": None},  # the wall clock steps (bad NTP, RTC reset)
    "consent": {"on": None},  # the owner changes consent in the policy (reloaded with SIGHUP)
    "submit": {"jobs": None},  # the fleet submits jobs
    # The fleet's grid signal over MQTT (docs/protocol.md): a tariff change, a carbon figure or
    # a demand-response power cap, valid for valid_s. An absent figure is not part of it.
    "grid": {"price_per_kwh": ..., "carbon_g_per_kwh": ..., "power_cap_w": ..., "valid_s": 3600,
             "reason": "demand_response"},
}
_OFFSET = re.compile(r"^\+(\d+(?:\.\d+)?)(s|m|h)$")
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message names the file and the field."""


@dataclass(frozen=True)
class TimelineEvent:
    at_s: float  # seconds after the scenario's start
    kind: str
    params: Mapping[str, Any]
    text: str  # as the file wrote the time, for reports

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind}({args})" if args else self.kind


@dataclass(frozen=True)
class ModeExpectation:
    from_s: float
    to_s: float
    mode: str | None  # the mode the fleet must see throughout
    not_mode: str | None  # ... or a mode it must never see
    reason: str | None  # a reason code that must be among the car's reasons at some point
    text: str


@dataclass(frozen=True)
class Expectations:
    no_violations: bool = True
    departure_soc: bool = True
    jobs_answered: bool = True
    ledger_tolerance: float = 0.02
    all_tasks_done: bool = False  # every task finished by the end (on the neighbour if need be)
    min_jobs_done: int = 0
    max_jobs_done: int | None = None
    modes: tuple[ModeExpectation, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    path: Path
    start_wall: float
    duration_s: float
    timezone: str
    profile: str
    dbc: Path | None  # for profiles that ship no DBC; relative paths are from the repository root
    step_s: float
    car: Mapping[str, Any]  # CarState and CarParams fields
    charger: Mapping[str, Any]
    policy: Mapping[str, Any]  # the policy file's tables, the bench's base policy underneath
    departure_s: float | None  # the planned departure (seconds after start), if any
    events: tuple[TimelineEvent, ...]
    stream_jobs: int  # the fleet keeps this many jobs outstanding while the car is parked
    neighbour: bool  # a second car of the pool, parked and charging all along (work goes there)
    expect: Expectations
    short: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def local(self, at_s: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.start_wall + at_s, ZoneInfo(self.timezone))

    def clock_text(self, at_s: float) -> str:
        return self.local(at_s).strftime("%H:%M:%S")

    def policy_toml(self) -> str:
        """The policy as a file the agent reads."""
        return dump_toml(self.policy)



# The team's shared folder (community DBCs, never copied into the repository) sits beside the
# checkout, or at /work/shared on the team's machines and CI, wherever the clone is.
SHARED_DIRS = (HERE.parent.parent / "shared", Path("/work/shared"))


def dbc_path(text: str) -> Path:
    """A DBC path: absolute, or relative to the repository root; "../shared/..." is looked up in
    each of SHARED_DIRS. Scenarios, tests and benchmarks find the community DBCs through it."""
    p = Path(text)
    if p.is_absolute():
        return p
    found = [HERE.parent / p]
    if p.parts[:2] == ("..", "shared"):
        found += [d.joinpath(*p.parts[2:]) for d in SHARED_DIRS]
    return next((c.resolve() for c in found if c.is_file()), found[0].resolve())

def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def find(name: str) -> Path:
    """A scenario by path, or by name under hil/scenarios/."""
    p = Path(name)
    if p.suffix == ".toml" or p.exists():
        return p
    return SCENARIO_DIR / f"{name}.toml"


def all_scenarios() -> list[Path]:
    return sorted(SCENARIO_DIR.glob("*.toml"))


def load(path: str | Path, short: bool = False) -> Scenario:
    """Read and check a scenario file; `short` applies its [short] table (the `make test` cut)."""
    path = find(str(path))
    try:
        data = tomllib.loads(path.read_text())
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}") from e
    return parse(data, path, short)


def parse(data: Mapping[str, Any], path: Path, short: bool = False) -> Scenario:
    known = {"scenario", "car", "charger", "owner", "driver", "fleet", "event", "expect", "short"}
    unknown = set(data) - known
    if unknown:
        raise ScenarioError(f"{path}: unknown table(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    if short and "short" in data:
        short_over = data["short"]
        if not isinstance(short_over, Mapping):
            raise ScenarioError(f"{path}: [short] must be a table")
        data = _merge({k: v for k, v in data.items() if k != "short"}, short_over)
    sc = _table(data, "scenario", path)
    name = str(sc.get("name", path.stem))
    owner = _table(data, "owner", path, required=False)
    try:
        base = tomllib.loads(BASE_POLICY.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ScenarioError(f"{BASE_POLICY}: {e}") from e
    policy = _merge(base, owner)
    tz = str(policy.get("policy", {}).get("timezone", "UTC"))
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ScenarioError(f"{path}: owner.policy.timezone {tz!r} is not a time zone") from e
    start = _datetime(sc.get("start"), zone, path, "scenario.start")
    end = _datetime(sc.get("end"), zone, path, "scenario.end")
    if end <= start:
        raise ScenarioError(f"{path}: scenario.end must come after scenario.start")
    if (end - start).total_seconds() > 3 * 86400:
        raise ScenarioError(f"{path}: a scenario spans at most three days")
    start_wall = start.timestamp()

    def when(value: object, where: str) -> float:
        return _at(value, start, zone, path, where)

    driver = _table(data, "driver", path, required=False)
    departure_s = when(driver["departs"], "driver.departs") if "departs" in driver else None
    if departure_s is not None:
        weekly = policy.setdefault("departure", {}).setdefault("weekly", {})
        if not weekly:
            hhmm = start.astimezone(zone) + dt.timedelta(seconds=departure_s)
            for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun"):
                weekly[day] = hhmm.strftime("%H:%M")
    try:
        Policy.from_mapping(policy)
    except PolicyError as e:
        raise ScenarioError(f"{path}: [owner] is not a valid policy: {e}") from e

    events = []
    for n, ev in enumerate(data.get("event", [])):
        where = f"event[{n}]"
        if not isinstance(ev, Mapping) or "do" not in ev or "at" not in ev:
            raise ScenarioError(f"{path}: {where} needs `at` and `do`")
        kind = str(ev["do"])
        if kind not in EVENTS:
            raise ScenarioError(f"{path}: {where}: unknown event {kind!r}; known: {', '.join(EVENTS)}")
        spec = EVENTS[kind]
        extra = set(ev) - {"at", "do"} - set(spec)
        if extra:
            raise ScenarioError(f"{path}: {where} ({kind}) takes no {', '.join(sorted(extra))}")
        params = {}
        for k, default in spec.items():
            if k not in ev and default is None:
                raise ScenarioError(f"{path}: {where} ({kind}) needs `{k}`")
            if k in ev or default is not ...:
                params[k] = ev.get(k, default)
        at_s = when(ev["at"], f"{where}.at")
        if at_s < 0 or (short and at_s > (end - start).total_seconds()):
            continue  # outside this run (a [short] cut starts later or ends sooner)
        events.append(TimelineEvent(at_s, kind, params, str(ev["at"])))
    events.sort(key=lambda e: e.at_s)

    fleet = _table(data, "fleet", path, required=False)
    stream = int(fleet.get("stream_jobs", 0))
    if not 0 <= stream <= 64:
        raise ScenarioError(f"{path}: fleet.stream_jobs must be within 0..64")
    ex = _table(data, "expect", path, required=False)
    modes = []
    for n, m in enumerate(ex.get("mode", [])):
        where = f"expect.mode[{n}]"
        if not isinstance(m, Mapping) or "from" not in m or "to" not in m:
            raise ScenarioError(f"{path}: {where} needs `from` and `to`")
        for key in ("mode", "not"):
            if key in m and m[key] not in ("OFF", "STANDBY", "RUN"):
                raise ScenarioError(f"{path}: {where}.{key} must be OFF, STANDBY or RUN")
        modes.append(ModeExpectation(when(m["from"], f"{where}.from"), when(m["to"], f"{where}.to"),
                                     m.get("mode"), m.get("not"), m.get("reason"),
                                     f"{m['from']}..{m['to']}"))
    tol = float(ex.get("ledger_tolerance", 0.02))
    if not 0 < tol < 1:
        raise ScenarioError(f"{path}: expect.ledger_tolerance must be within (0, 1)")
    max_jobs = ex.get("max_jobs_done")
    expect = Expectations(no_violations=bool(ex.get("no_violations", True)),
                          departure_soc=bool(ex.get("departure_soc", departure_s is not None)),
                          jobs_answered=bool(ex.get("jobs_answered", True)), ledger_tolerance=tol,
                          all_tasks_done=bool(ex.get("all_tasks_done", False)),
                          min_jobs_done=int(ex.get("min_jobs_done", 0)),
                          max_jobs_done=None if max_jobs is None else int(max_jobs), modes=tuple(modes))
    step_s = float(sc.get("step_s", 0.4))
    if not 0.05 <= step_s <= 0.45:
        raise ScenarioError(f"{path}: scenario.step_s must be within 0.05..0.45 s (the gear's "
                            "max age is 0.5 s, and the car sends its frames once a step)")
    profile = str(sc.get("profile", "reference"))
    dbc = dbc_path(str(sc["dbc"])) if "dbc" in sc else None
    if dbc is not None and not dbc.is_file():
        raise ScenarioError(f"{path}: scenario.dbc: no file {dbc}")
    return Scenario(name=name, title=str(sc.get("title", name)), path=path, start_wall=start_wall,
                    duration_s=(end - start).total_seconds(), timezone=tz, profile=profile, dbc=dbc, step_s=step_s,
                    car=_table(data, "car", path, required=False), charger=_table(data, "charger", path, required=False),
                    policy=policy, departure_s=departure_s, events=tuple(events), stream_jobs=stream,
                    neighbour=bool(fleet.get("neighbour", False)),
                    expect=expect, short=short, raw=data)


def _table(data: Mapping[str, Any], key: str, path: Path, required: bool = True) -> dict[str, Any]:
    v = data.get(key)
    if v is None:
        if required:
            raise ScenarioError(f"{path}: missing table [{key}]")
        return {}
    if not isinstance(v, Mapping):
        raise ScenarioError(f"{path}: [{key}] must be a table")
    return dict(v)


def _datetime(value: object, zone: ZoneInfo, path: Path, where: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone)
    if isinstance(value, str):
        try:
            d = dt.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            return d if d.tzinfo else d.replace(tzinfo=zone)
    raise ScenarioError(f"{path}: {where} must be a local date and time such as 2026-06-02T18:30")


def _at(value: object, start: dt.datetime, zone: ZoneInfo, path: Path, where: str) -> float:
    text = str(value)
    m = _OFFSET.match(text)
    if m:
        return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
    m = _HHMM.match(text)
    if m and int(m.group(1)) < 24 and int(m.group(2)) < 60:
        local = start.astimezone(zone)
        t = local.replace(hour=int(m.group(1)), minute=int(m.group(2)), second=0, microsecond=0)
        if t < local:
            t += dt.timedelta(days=1)
        return (t - local).total_seconds()
    raise ScenarioError(f"{path}: {where}: {text!r} is neither HH:MM nor +N(s|m|h)")


def dump_toml(data: Mapping[str, Any]) -> str:
    """TOML for the nested tables of a policy (scalars, strings, lists, inline tables)."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, (dt.date, dt.time)):
            return v.isoformat()
        if isinstance(v, Mapping):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} as TOML")

    for table, body in data.items():
        if isinstance(body, list):
            for item in body:
                lines.append(f"[[{table}]]")
                lines.extend(f"{k} = {value(v)}" for k, v in item.items())
            continue
        lines.append(f"[{table}]")
        lines.extend(f"{k} = {value(v)}" for k, v in body.items())
    return "\n".join(lines) + "\n"
