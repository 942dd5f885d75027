"""Vehicle profiles: a TOML file that maps a car's DBC signals to the agent's roles, both ways.

A profile names, for each role it covers, the DBC signal that carries it and how to read it:
a unit conversion for numbers, the values meaning true/false for flags, a value table for the gear.
Anything the profile does not name as a known value (an SNA code, a value outside the DBC's range,
an unmapped enum entry) reads as None: unknown, which the governor treats as unsafe.

A user writes a profile for another car without touching code. Loading checks the profile against
its DBC and raises one ProfileError that lists every problem, each naming the file, the role and
the field. The inverse mapping, ``encode``, lets the HIL simulator produce the frames a car in a
given state would send.
"""

from __future__ import annotations

import difflib
import math
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import cantools
from cantools.database.can import Database, Message, Signal

from agent.bus.errors import DecodeError, EncodeError, LengthMismatchError, ProfileError
from agent.bus.slcan import BITRATE_CODES, CanFrame
from agent.bus.state import DEFAULT_MAX_AGE_S, GEARS, ROLES, Value

PROFILES_DIR = Path(__file__).parent / "profiles"

# The COVESA VSS path each role follows, where VSS has one. None: VSS has no such signal
# (VSS knows the charger's maximum and average power, not the power flowing now, and has no
# "vehicle awake" flag; the low-voltage system state is the ignition, a different thing).
ROLE_VSS: dict[str, str | None] = {
    "soc_percent": "Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed",
    "gear": "Vehicle.Powertrain.Transmission.SelectedGear",
    "speed_kph": "Vehicle.Speed",
    "driver_present": "Vehicle.Cabin.Seat.Row1.DriverSide.IsOccupied",
    "door_open": "Vehicle.Cabin.Door.Row1.DriverSide.IsOpen",
    "charge_cable": "Vehicle.Powertrain.TractionBattery.Charging.IsChargingCableConnected",
    "charging_power_kw": None,
    "pack_voltage_v": "Vehicle.Powertrain.TractionBattery.CurrentVoltage",
    "pack_current_a": "Vehicle.Powertrain.TractionBattery.CurrentCurrent",
    "pack_temp_min_c": "Vehicle.Powertrain.TractionBattery.Temperature.Min",
    "pack_temp_max_c": "Vehicle.Powertrain.TractionBattery.Temperature.Max",
    "vehicle_awake": None,
    "compute_temp_c": None,
    "departure_event": None,
    "cabin_preconditioning": "Vehicle.Cabin.HVAC.IsAirConditioningActive",
    "charge_limit_reached": None,
}

_VSS_ROLE = {vss: role for role, vss in ROLE_VSS.items() if vss is not None}

_VEHICLE_KEYS = {"name", "description", "dbc", "bitrate", "bus"}
_BUS_NAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")  # a bus number or a Linux interface name (can1)
_ROLE_KEYS = {
    "signal",
    "message",
    "scale",
    "offset",
    "invalid",
    "max_age_s",
    "map",
    "true",
    "false",
}
_RAW_KEY = re.compile(r"-?[0-9]+")  # a map key written as a raw number ("3" = raw value 3)
_SNA_NAME = re.compile(r"SNA|INVALID|UNKNOWN", re.IGNORECASE)


def _vehicle_bus(vehicle: Mapping[str, Any], problems: list[str]) -> str | None:
    """``[vehicle] bus``: the bus of a multi-bus log the DBC describes, as a name; None if unset."""
    bus = vehicle.get("bus")
    if bus is None:
        return None
    if isinstance(bus, int) and not isinstance(bus, bool) and bus >= 0:
        return str(bus)
    if isinstance(bus, str) and _BUS_NAME.fullmatch(bus):
        return bus
    problems.append(
        f'[vehicle]: bus {bus!r} must be a bus number (0, 1, ...) or an interface name ("can1")'
    )
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ProfileError(f"{path}: cannot read the profile: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ProfileError(f"{path}: not valid TOML: {e}") from e


def profile_bus(name_or_path: str | Path) -> str | None:
    """The bus a profile expects (``[vehicle] bus``), read without loading its DBC.

    ``fleetnode bus replay`` uses it to pick one bus of a multi-bus log. Raises ProfileError for
    a missing or unreadable profile or an invalid bus entry.
    """
    path = resolve_profile_path(name_or_path)
    vehicle = _read_toml(path).get("vehicle", {})
    if not isinstance(vehicle, dict):
        raise ProfileError(f"{path}: [vehicle] must be a table")
    problems: list[str] = []
    bus = _vehicle_bus(vehicle, problems)
    if problems:
        raise ProfileError(f"{path}: {problems[0]}")
    return bus


def _choice_names(signal: Signal) -> dict[str, int]:
    if not signal.choices:
        return {}
    return {str(getattr(name, "name", name)): int(raw) for raw, name in signal.choices.items()}


def _raw_bounds(signal: Signal) -> tuple[int, int]:
    if signal.is_signed:
        return -(1 << (signal.length - 1)), (1 << (signal.length - 1)) - 1
    return 0, (1 << signal.length) - 1


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass(frozen=True)
class RoleBinding:
    """How one role is read from, and written to, one DBC signal."""

    role: str
    kind: type  # float, bool or str, as in state.ROLES
    message: Message
    signal: Signal
    scale: float
    offset: float
    invalid: frozenset[int]  # raw values that read as unknown
    max_age_s: float
    true_raw: tuple[int, ...] = ()
    false_raw: tuple[int, ...] = ()
    enum: Mapping[int, str] | None = None  # raw -> gear letter

    def read(self, raw: float) -> Value | None:
        """The role's value for one raw signal value, or None when it is unknown."""
        if self.kind is float:
            if raw in self.invalid:
                return None
            phys = raw * self.signal.scale + self.signal.offset
            lo, hi = self.signal.minimum, self.signal.maximum
            if lo is not None and hi is not None and lo < hi:
                slack = abs(self.signal.scale) * 0.5
                if phys < lo - slack or phys > hi + slack:
                    return None
            # Rounding drops the binary noise of scale * raw (0.1 * 123 = 12.300000000000001).
            return round(float(phys * self.scale + self.offset), 6)
        if self.kind is bool:
            if raw in self.true_raw:
                return True
            if raw in self.false_raw:
                return False
            return None
        assert self.enum is not None
        return self.enum.get(int(raw))

    def raw_for(self, value: Value | None) -> int:
        """The raw signal value that a car in this state would send (None: the SNA code)."""
        if value is None:
            return self._unknown_raw()
        if self.kind is float:
            if not _is_number(value) or not math.isfinite(float(value)):
                raise EncodeError(f"role {self.role}: {value!r} is not a finite number")
            phys = (float(value) - self.offset) / self.scale
            raw = round((phys - self.signal.offset) / self.signal.scale)
            lo, hi = _raw_bounds(self.signal)
            if not lo <= raw <= hi or raw in self.invalid:
                raise EncodeError(
                    f"role {self.role}: {value!r} does not fit signal {self.signal.name}"
                )
            return raw
        if self.kind is bool:
            if not isinstance(value, bool):
                raise EncodeError(f"role {self.role}: {value!r} is not a bool")
            return (self.true_raw if value else self.false_raw)[0]
        assert self.enum is not None
        for raw, letter in self.enum.items():
            if letter == value:
                return raw
        raise EncodeError(
            f"role {self.role}: {value!r} is not one of {sorted(set(self.enum.values()))}"
        )

    def _unknown_raw(self) -> int:
        if self.kind is float:
            if self.invalid:
                return min(self.invalid, key=abs)
            # No SNA code: a raw value outside the DBC's range also reads as unknown.
            lo, hi = _raw_bounds(self.signal)
            for raw in (hi, lo):
                if self.read(raw) is None:
                    return raw
            raise EncodeError(f"role {self.role}: signal {self.signal.name} has no SNA value")
        known = set(self.true_raw) | set(self.false_raw) | set(self.enum or {})
        named = _choice_names(self.signal)
        for name, raw in sorted(named.items(), key=lambda kv: kv[1]):
            if raw not in known and _SNA_NAME.search(name):
                return raw
        lo, hi = _raw_bounds(self.signal)
        for raw in range(hi, lo - 1, -1):
            if raw not in known:
                return raw
        raise EncodeError(f"role {self.role}: every value of {self.signal.name} is a known value")


@dataclass(frozen=True)
class _MessageBinding:
    message: Message
    roles: tuple[RoleBinding, ...]


class VehicleProfile:
    """A validated profile bound to its DBC. Build it with ``VehicleProfile.load``."""

    def __init__(
        self,
        name: str,
        path: Path,
        dbc_path: Path,
        db: Database,
        bitrate: int,
        bindings: Mapping[str, RoleBinding],
        description: str = "",
        bus: str | None = None,
    ) -> None:
        self.name = name
        self.bus = bus  # the bus of a multi-bus log this DBC describes (None: not said)
        self.path = path
        self.dbc_path = dbc_path
        self.db = db
        self.bitrate = bitrate
        self.description = description
        self.bindings: dict[str, RoleBinding] = dict(bindings)
        grouped: dict[tuple[int, bool], list[RoleBinding]] = {}
        for b in self.bindings.values():
            key = (b.message.frame_id, bool(b.message.is_extended_frame))
            grouped.setdefault(key, []).append(b)
        self._by_id: dict[tuple[int, bool], _MessageBinding] = {
            key: _MessageBinding(bs[0].message, tuple(bs)) for key, bs in grouped.items()
        }
        # Every message of the DBC, bound to a role or not: its length is checked on every frame.
        self._lengths: dict[tuple[int, bool], tuple[str, int]] = {
            (m.frame_id, bool(m.is_extended_frame)): (m.name, m.length) for m in db.messages
        }
        for key, mb in self._by_id.items():
            self._lengths.setdefault(key, (mb.message.name, mb.message.length))

    # --- loading --------------------------------------------------------------------------------

    @classmethod
    def load(cls, name_or_path: str | Path, dbc_path: str | Path | None = None) -> VehicleProfile:
        """Load a shipped profile by name (``reference``, ``tesla-model3``) or a TOML file by path.

        ``dbc_path`` overrides the profile's own ``dbc`` entry (relative to the profile file).
        Raises ProfileError naming every problem.
        """
        path = resolve_profile_path(name_or_path)
        return cls.from_dict(_read_toml(path), path, dbc_path)

    @classmethod
    def from_dict(
        cls, doc: Mapping[str, Any], path: Path, dbc_path: str | Path | None = None
    ) -> VehicleProfile:
        problems: list[str] = []
        unknown = set(doc) - {"vehicle", "roles"}
        if unknown:
            problems.append(
                f"unknown top-level table(s) {sorted(unknown)}; expected [vehicle] and [roles.*]"
            )
        vehicle = doc.get("vehicle", {})
        if not isinstance(vehicle, dict):
            raise ProfileError(f"{path}: [vehicle] must be a table")
        for key in sorted(set(vehicle) - _VEHICLE_KEYS):
            problems.append(f"[vehicle]: unknown key {key!r} (known: {sorted(_VEHICLE_KEYS)})")
        name = vehicle.get("name", path.stem)
        description = vehicle.get("description", "")
        bitrate = vehicle.get("bitrate", 500_000)
        if not isinstance(name, str) or not isinstance(description, str):
            problems.append("[vehicle]: name and description must be strings")
            name, description = path.stem, ""
        if bitrate not in BITRATE_CODES or isinstance(bitrate, bool):
            problems.append(f"[vehicle]: bitrate {bitrate!r} is not one of {sorted(BITRATE_CODES)}")
            bitrate = 500_000
        bus = _vehicle_bus(vehicle, problems)

        dbc = _resolve_dbc(path, vehicle.get("dbc"), dbc_path)
        try:
            db = load_dbc(dbc)
        except ProfileError as e:
            raise ProfileError(f"{path}: {e}") from e

        roles = doc.get("roles", {})
        if not isinstance(roles, dict) or not roles:
            problems.append("[roles]: the profile maps no role")
            roles = {}
        bindings: dict[str, RoleBinding] = {}
        for key, spec in roles.items():
            # A role may also be written under its VSS path: [roles."Vehicle.Speed"].
            role = _VSS_ROLE.get(key, key)
            where = f"role {key!r}"
            if role in bindings:
                problems.append(f"{where}: role {role!r} is mapped twice")
                continue
            if role not in ROLES:
                near = [r for r in ROLES if r.startswith(role)]
                near = near or difflib.get_close_matches(role, list(ROLES), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                problems.append(f"{where}: not a role the agent knows{hint}")
                continue
            if not isinstance(spec, dict):
                problems.append(f"{where}: must be a table")
                continue
            binding = _bind_role(role, spec, db, dbc, problems)
            if binding is not None:
                bindings[role] = binding
        if problems:
            lines = "\n  ".join(problems)
            raise ProfileError(f"{path}: {len(problems)} problem(s) with DBC {dbc}:\n  {lines}")
        return cls(name, path, dbc, db, int(bitrate), bindings, description, bus)

    # --- use ------------------------------------------------------------------------------------

    @property
    def roles(self) -> list[str]:
        return [r for r in ROLES if r in self.bindings]

    @property
    def frame_ids(self) -> list[int]:
        return sorted({key[0] for key in self._by_id})

    def max_age(self, role: str) -> float:
        b = self.bindings.get(role)
        return DEFAULT_MAX_AGE_S if b is None else b.max_age_s

    def knows(self, frame: CanFrame) -> bool:
        return (frame.arb_id, frame.extended) in self._by_id

    def decode(self, frame: CanFrame) -> dict[str, Value | None]:
        """Role values carried by the frame ({} for a frame the profile does not use).

        A role whose signal holds an SNA or out-of-range value maps to None. Raises
        LengthMismatchError for a frame whose id the DBC knows (carrying a role or not) but whose
        length differs from the DBC message's, and DecodeError for a payload cantools refuses.
        """
        key = (frame.arb_id, frame.extended)
        known = self._lengths.get(key)
        if known is None or frame.remote:
            return {}
        if len(frame.data) != known[1]:
            raise LengthMismatchError(known[0], frame.arb_id, len(frame.data), known[1])
        mb = self._by_id.get(key)
        if mb is None:
            return {}
        try:
            raw = cast(
                dict[str, float], mb.message.decode(frame.data, decode_choices=False, scaling=False)
            )
        except Exception as e:  # cantools' own errors carry no common base we can rely on
            raise DecodeError(f"{mb.message.name} (0x{frame.arb_id:X}): {e}") from e
        out: dict[str, Value | None] = {}
        for b in mb.roles:
            v = raw.get(b.signal.name)
            out[b.role] = None if v is None else b.read(v)
        return out

    def encode(
        self, role_values: Mapping[str, Value | None], timestamp_ms: int | None = None
    ) -> list[CanFrame]:
        """The frames a car in this state sends: one per DBC message carrying a given role.

        A role given as None is sent as its SNA code (or a raw value outside the DBC range);
        roles of the same message that are not given are sent the same way when the signal has
        such a value, else as raw 0, like signals that carry no role. Raises EncodeError for a value the signal cannot carry, and
        KeyError for a role the profile does not map.
        """
        for role in role_values:
            if role not in self.bindings:
                raise KeyError(f"profile {self.name} does not map role {role!r}")
        frames: list[CanFrame] = []
        for (arb_id, extended), mb in sorted(self._by_id.items()):
            if not any(b.role in role_values for b in mb.roles):
                continue
            raw: dict[str, int | float] = {s.name: 0 for s in mb.message.signals}
            for b in mb.roles:
                if b.role in role_values:
                    raw[b.signal.name] = b.raw_for(role_values[b.role])
                else:
                    try:
                        raw[b.signal.name] = b.raw_for(None)
                    except EncodeError:
                        pass  # a role not asked for, without an SNA code: left at raw 0
            try:
                data = mb.message.encode(raw, scaling=False, strict=False)
            except Exception as e:
                raise EncodeError(f"{mb.message.name}: {e}") from e
            frames.append(CanFrame(arb_id, bytes(data), extended, False, timestamp_ms))
        return frames


def shipped_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def resolve_profile_path(name_or_path: str | Path) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.parent != Path("."):
        if not candidate.is_file():
            raise ProfileError(f"profile file {candidate} not found")
        return candidate
    shipped = PROFILES_DIR / f"{name_or_path}.toml"
    if not shipped.is_file():
        raise ProfileError(
            f"no shipped profile named {str(name_or_path)!r} (shipped: {', '.join(shipped_profiles())}); "
            "give a path to a .toml file for your own"
        )
    return shipped


def _resolve_dbc(profile_path: Path, declared: object, override: str | Path | None) -> Path:
    if override is not None:
        return Path(override)
    if declared is None:
        raise ProfileError(
            f"{profile_path}: this profile does not ship its DBC; pass the car's DBC file (--dbc FILE)"
        )
    if not isinstance(declared, str):
        raise ProfileError(f"{profile_path}: [vehicle] dbc must be a path string")
    return (profile_path.parent / declared).resolve()


# Many community (reverse-engineered) DBC files leave out the bit-timing (BS_:) and node (BU_:)
# sections, which cantools' grammar requires after NS_. Both may be empty, so such a file means
# the same with empty ones inserted where the format puts them.
_DBC_HEADER = re.compile(r"(VERSION|NS_)\b")
_DBC_SYNTAX = re.compile(r"Invalid syntax at line (\d+), column (\d+)")
_dbc_notices: set[str] = set()


def _with_empty_sections(text: str) -> tuple[str, int, int, list[str]]:
    """(text, first inserted line, lines inserted, the sections added); 1-based line numbers."""
    lines = text.splitlines(keepends=True)

    def section(keyword: str) -> int | None:
        return next((i for i, ln in enumerate(lines) if re.match(rf"{keyword}\s*:", ln)), None)

    bs, bu = section("BS_"), section("BU_")
    if bs is not None and bu is not None:
        return text, 0, 0, []
    if bs is not None:
        at = bs + 1  # BU_ follows BS_
    elif bu is not None:
        at = bu  # BS_ precedes BU_
    else:
        at = _after_header(lines)
    if at > 0 and not lines[at - 1].endswith("\n"):
        lines[at - 1] += "\n"
    added = ([] if bs is not None else ["BS_:"]) + ([] if bu is not None else ["BU_:"])
    lines[at:at] = [f"{a}\n" for a in added]
    return "".join(lines), at + 1, len(added), added


def _after_header(lines: list[str]) -> int:
    """The index of the first line after VERSION and the NS_ block: where BS_ belongs."""
    in_ns = False
    for k, ln in enumerate(lines):
        if not ln.strip() or ln.lstrip().startswith("//"):
            continue
        if in_ns and (ln[0].isspace() or re.fullmatch(r"[A-Z_]+\s*", ln)):
            continue  # an NS_ entry: one keyword on its own (usually indented) line
        m = _DBC_HEADER.match(ln)
        if m is None:
            return k
        in_ns = m.group(1) == "NS_"
    return len(lines)


def load_dbc(dbc: Path) -> Database:
    """Loads a DBC file through cantools; raises ProfileError with the file's own line and the
    reason for a file cantools cannot read.

    A file without `BS_:` or `BU_:` is read as if empty ones were there, and says so once per
    file on stderr."""
    try:
        text = dbc.read_bytes().decode("cp1252")  # the DBC encoding, as cantools reads it
    except FileNotFoundError as e:
        raise ProfileError(f"DBC file {dbc} not found") from e
    except OSError as e:
        raise ProfileError(f"cannot read DBC {dbc}: {e}") from e
    patched, first, n_added, added = _with_empty_sections(text)
    try:
        loaded = cantools.database.load_string(patched, database_format="dbc", strict=False)
    except Exception as e:  # cantools raises several unrelated types for a bad file
        raise ProfileError(f"cannot load DBC {dbc}: {_dbc_reason(e, text, first, n_added)}") from e
    if not isinstance(loaded, Database):
        raise ProfileError(f"{dbc} is not a CAN database")
    if added and str(dbc) not in _dbc_notices:
        _dbc_notices.add(str(dbc))
        print(f"fleetnode: {dbc} has no {' or '.join(added)} section; read as if empty "
              f"{'ones were' if len(added) > 1 else 'one was'} there", file=sys.stderr)
    return loaded


def _dbc_reason(e: Exception, text: str, first: int, n_added: int) -> str:
    """cantools' reason, with the line number of the file as written (not of the patched text)."""
    msg = str(e)
    m = _DBC_SYNTAX.search(msg)
    if m is None:
        return msg
    line, col = int(m.group(1)), int(m.group(2))
    if n_added and line >= first + n_added:
        line -= n_added
    lines = text.splitlines()
    shown = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    return f"invalid syntax at line {line}, column {col}: {shown!r}"


def _find_signal(
    where: str, spec: Mapping[str, Any], db: Database, dbc: Path, problems: list[str]
) -> tuple[Message, Signal] | None:
    sig_name = spec.get("signal")
    if not isinstance(sig_name, str) or not sig_name:
        problems.append(f"{where}: 'signal' (a DBC signal name) is required")
        return None
    msg_name = spec.get("message")
    messages: list[Message] = list(db.messages)
    if msg_name is not None:
        named = [m for m in db.messages if m.name == msg_name]
        if not named:
            near = difflib.get_close_matches(str(msg_name), [m.name for m in db.messages], n=3)
            problems.append(
                f"{where}: message {msg_name!r} is not in {dbc.name}"
                + (f" (close: {near})" if near else "")
            )
            return None
        messages = named
    hits = [(m, s) for m in messages for s in m.signals if s.name == sig_name]
    if not hits:
        names = sorted({s.name for m in messages for s in m.signals})
        near = difflib.get_close_matches(sig_name, names, n=3)
        problems.append(
            f"{where}: signal {sig_name!r} is not in {dbc.name}"
            + (f" (close: {near})" if near else "")
        )
        return None
    if len(hits) > 1:
        problems.append(
            f"{where}: signal {sig_name!r} is in several messages "
            f'({", ".join(m.name for m, _ in hits)}); add message = "..."'
        )
        return None
    message, signal = hits[0]
    if signal.multiplexer_ids is not None or signal.is_multiplexer:
        problems.append(
            f"{where}: signal {sig_name!r} is multiplexed; profiles map plain signals only"
        )
        return None
    if signal.is_float:
        problems.append(f"{where}: signal {sig_name!r} is an IEEE float signal; not supported")
        return None
    if not signal.scale or not math.isfinite(signal.scale):
        problems.append(f"{where}: signal {sig_name!r} has scale {signal.scale} in {dbc.name}")
        return None
    return message, signal


def _raw_values(
    where: str, key: str, entries: object, signal: Signal, problems: list[str]
) -> tuple[int, ...]:
    """Resolve a list of raw integers or value-table names into raw integers."""
    if not isinstance(entries, list):
        problems.append(f"{where}: {key!r} must be a list of raw values or value-table names")
        return ()
    names = _choice_names(signal)
    lo, hi = _raw_bounds(signal)
    out: list[int] = []
    for e in entries:
        if isinstance(e, str):
            if e not in names:
                near = difflib.get_close_matches(e, list(names), n=3)
                problems.append(
                    f"{where}: {key} value {e!r} is not in the value table of {signal.name}"
                    + (f" (known: {near or sorted(names)})")
                )
                continue
            out.append(names[e])
        elif isinstance(e, int) and not isinstance(e, bool):
            if not lo <= e <= hi:
                problems.append(
                    f"{where}: {key} value {e} does not fit the {signal.length}-bit signal {signal.name}"
                )
                continue
            out.append(e)
        else:
            problems.append(f"{where}: {key} entries must be integers or strings, not {e!r}")
    return tuple(out)


def _bind_role(
    role: str, spec: Mapping[str, Any], db: Database, dbc: Path, problems: list[str]
) -> RoleBinding | None:
    where = f"role {role!r}"
    before = len(problems)
    for key in sorted(set(spec) - _ROLE_KEYS):
        problems.append(f"{where}: unknown key {key!r} (known: {sorted(_ROLE_KEYS)})")
    found = _find_signal(where, spec, db, dbc, problems)
    kind = ROLES[role]
    scale, offset = spec.get("scale", 1.0), spec.get("offset", 0.0)
    if not _is_number(scale) or not math.isfinite(scale) or scale == 0:
        problems.append(f"{where}: scale {scale!r} must be a finite, non-zero number")
        scale = 1.0
    if not _is_number(offset) or not math.isfinite(offset):
        problems.append(f"{where}: offset {offset!r} must be a finite number")
        offset = 0.0
    max_age = spec.get("max_age_s", DEFAULT_MAX_AGE_S)
    if not _is_number(max_age) or not math.isfinite(max_age) or max_age <= 0:
        problems.append(f"{where}: max_age_s {max_age!r} must be a positive number of seconds")
        max_age = DEFAULT_MAX_AGE_S
    if kind is not float and ("scale" in spec or "offset" in spec):
        problems.append(f"{where}: scale/offset apply to numeric roles only")
    if kind is not bool and ("true" in spec or "false" in spec):
        problems.append(f"{where}: true/false apply to flag roles only")
    if kind is not str and "map" in spec:
        problems.append(f"{where}: map applies to the gear role only")
    if found is None:
        return None
    message, signal = found

    invalid: tuple[int, ...] = ()
    true_raw: tuple[int, ...] = ()
    false_raw: tuple[int, ...] = ()
    enum: dict[int, str] | None = None
    if kind is float:
        if "invalid" in spec:
            invalid = _raw_values(where, "invalid", spec["invalid"], signal, problems)
        else:
            # On a numeric signal every value-table entry is a marker (SNA, fault), not a number.
            invalid = tuple(_choice_names(signal).values())
    elif kind is bool:
        if "invalid" in spec:
            problems.append(
                f"{where}: for a flag, every value not in true/false already reads as unknown"
            )
        true_raw = _raw_values(where, "true", spec.get("true", [1]), signal, problems)
        false_raw = _raw_values(where, "false", spec.get("false", [0]), signal, problems)
        if not true_raw or not false_raw:
            problems.append(f"{where}: needs at least one raw value for true and one for false")
        elif set(true_raw) & set(false_raw):
            problems.append(
                f"{where}: values {sorted(set(true_raw) & set(false_raw))} are both true and false"
            )
    else:
        mapping = spec.get("map")
        if "invalid" in spec:
            problems.append(f"{where}: every value not in map already reads as unknown")
        if not isinstance(mapping, dict) or not mapping:
            problems.append(
                f"{where}: 'map' (value-table name or raw value -> one of {list(GEARS)}) is required"
            )
        else:
            enum = {}
            for key, letter in mapping.items():
                if letter not in GEARS:
                    problems.append(f"{where}: map value {letter!r} is not one of {list(GEARS)}")
                    continue
                raws = _raw_values(
                    where, "map", [int(key) if _RAW_KEY.fullmatch(key) else key], signal, problems
                )
                for r in raws:
                    enum[r] = letter
    if len(problems) > before:
        return None
    return RoleBinding(
        role=role,
        kind=kind,
        message=message,
        signal=signal,
        scale=float(scale),
        offset=float(offset),
        invalid=frozenset(invalid),
        max_age_s=float(max_age),
        true_raw=true_raw,
        false_raw=false_raw,
        enum=enum,
    )
