"""The fleet's MQTT protocol, version 1: topics and payloads, for the car and the fleet side.

This module is the one owner of the wire format described in docs/protocol.md. Everything else
works on the types defined here: the link (agent/fleet/link.py) on the car, the dispatcher and
`fleetnode fleet …` on the fleet side. Every decoder treats its input as hostile: it checks
sizes before parsing, validates every field against a schema, and raises ProtocolError (with a
stable `code`) instead of anything else.

Payloads: JSON for state, telemetry, acknowledgements, error replies and model manifests (small,
readable with mosquitto_sub); a binary envelope for jobs and results, because they carry tensors
(see `encode_envelope`).
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

VERSION = 1
ROOT = f"fleetnode/v{VERSION}"

# Size limits (bytes). A payload over its limit is refused before it is parsed.
MAX_JOB_BYTES = 1 << 20
MAX_RESULT_BYTES = 1 << 20
MAX_JSON_BYTES = 16 << 10
MAX_HEADER_BYTES = 16 << 10
MAX_TENSORS = 16
MAX_RANK = 8
MAX_CORRELATION_BYTES = 128

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_JOB_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_BUILTIN = re.compile(r"[a-z0-9_]{1,64}")

# Little-endian on the wire, whatever the host.
DTYPES: dict[str, np.dtype[Any]] = {
    "int8": np.dtype("int8"),
    "uint8": np.dtype("uint8"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "float32": np.dtype("<f4"),
}

OUTCOMES = ("ok", "failed", "preempted", "rejected")
# Outcomes after which the fleet should send the job to another car.
RETRYABLE_OUTCOMES = ("preempted",)

# MQTT 5 content types (Content Type property) and the schema user property.
CT_JSON = "application/json"
CT_JOB = "application/vnd.fleetnode.job.v1"
CT_RESULT = "application/vnd.fleetnode.result.v1"
CT_CHUNK = "application/octet-stream"
SCHEMA_PROPERTY = "fleetnode-schema"

TELEMETRY_TOPIC_ALIAS = 1  # MQTT 5 topic alias of a car's telemetry topic, per connection

QOS_STATE = 1
QOS_TELEMETRY = 0
QOS_JOB = 1
QOS_RESULT = 1
QOS_ACK = 0
QOS_ERROR = 1
QOS_MODEL = 1
QOS_GRANT = 1
QOS_GRID = 1


class ProtocolError(ValueError):
    """A payload or topic that breaks the protocol. `code` is stable and goes into error replies."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text


# ---------------------------------------------------------------------------------------------
# Topics


def check_id(kind: str, value: object) -> str:
    """A car id, pool or submitter name: safe as one topic level (no '/', '+', '#', '$')."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ProtocolError("bad_id", f"{kind} must match [A-Za-z0-9_-]{{1,64}}, got {value!r:.80}")
    return value


def check_job_id(value: object) -> str:
    if not isinstance(value, str) or not _JOB_ID.fullmatch(value):
        raise ProtocolError("bad_job_id", f"job_id must match [A-Za-z0-9._:-]{{1,128}}, got {value!r:.80}")
    return value


def check_sha256(value: object) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise ProtocolError("bad_sha256", "sha256 must be 64 lowercase hex digits")
    return value


class Topics:
    """The versioned topic tree. Cars publish only under cars/<their id>/ (enforced by the ACL)."""

    @staticmethod
    def car(car_id: str) -> str:
        return f"{ROOT}/cars/{check_id('car_id', car_id)}"

    @classmethod
    def state(cls, car_id: str) -> str:
        return f"{cls.car(car_id)}/state"

    @classmethod
    def telemetry(cls, car_id: str) -> str:
        return f"{cls.car(car_id)}/telemetry"

    @classmethod
    def results(cls, car_id: str, submitter: str) -> str:
        return f"{cls.car(car_id)}/results/{check_id('submitter', submitter)}"

    @classmethod
    def acks(cls, car_id: str) -> str:
        return f"{cls.car(car_id)}/acks"

    @classmethod
    def errors(cls, car_id: str) -> str:
        return f"{cls.car(car_id)}/errors"

    @classmethod
    def credits(cls, car_id: str) -> str:
        """Fleet -> car: credits granted for the car's verified results."""
        return f"{cls.car(car_id)}/credits"

    @staticmethod
    def jobs(pool: str) -> str:
        return f"{ROOT}/pools/{check_id('pool', pool)}/jobs"

    @classmethod
    def shared_jobs(cls, pool: str) -> str:
        """The shared subscription a car holds while it may compute: one car gets each job."""
        return f"$share/{check_id('pool', pool)}/{cls.jobs(pool)}"

    @staticmethod
    def grid(pool: str) -> str:
        """The pool's grid signal: price, carbon intensity, demand response (retained)."""
        return f"{ROOT}/grid/{check_id('pool', pool)}"

    @staticmethod
    def model_manifest(sha256: str) -> str:
        return f"{ROOT}/models/{check_sha256(sha256)}/manifest"

    @staticmethod
    def model_chunk(sha256: str, index: int) -> str:
        return f"{ROOT}/models/{check_sha256(sha256)}/chunks/{int(index)}"

    @staticmethod
    def model_all(sha256: str) -> str:
        return f"{ROOT}/models/{check_sha256(sha256)}/#"

    # Wildcards for the fleet side.
    ALL_STATES = f"{ROOT}/cars/+/state"
    ALL_TELEMETRY = f"{ROOT}/cars/+/telemetry"
    ALL_ERRORS = f"{ROOT}/cars/+/errors"
    ALL_RESULTS = f"{ROOT}/cars/+/results/+"

    @staticmethod
    def all_results(submitter: str) -> str:
        return f"{ROOT}/cars/+/results/{check_id('submitter', submitter)}"

    @classmethod
    def shared_results(cls, group: str, submitter: str) -> str:
        """Results for `submitter` shared among the dispatchers of `group`: each goes to one."""
        return f"$share/{check_id('group', group)}/{cls.all_results(submitter)}"

    @staticmethod
    def parse_car_topic(topic: str) -> tuple[str, str]:
        """`fleetnode/v1/cars/<car>/<kind>[/...]` -> (car, kind)."""
        parts = topic.split("/")
        if len(parts) < 5 or "/".join(parts[:3]) != f"{ROOT}/cars":
            raise ProtocolError("bad_topic", f"not a car topic: {topic!r:.120}")
        return check_id("car_id", parts[3]), parts[4]


# ---------------------------------------------------------------------------------------------
# JSON helpers


def _dumps(obj: Mapping[str, Any]) -> bytes:
    # Compact and deterministic: the same content always gives the same bytes (and signatures).
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def _loads(payload: bytes, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    if len(payload) > limit:
        raise ProtocolError("too_large", f"payload of {len(payload)} bytes exceeds {limit}")
    try:
        obj = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise ProtocolError("malformed", f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_schema", "payload must be a JSON object")
    return obj


def _no_constant(name: str) -> None:
    raise ProtocolError("malformed", f"{name} is not allowed in JSON payloads")


def _version(obj: Mapping[str, Any]) -> None:
    if obj.get("v") != VERSION:
        raise ProtocolError("bad_version", f"expected v={VERSION}, got {obj.get('v')!r:.20}")


def _num(obj: Mapping[str, Any], key: str, lo: float = -math.inf, hi: float = math.inf,
         optional: bool = False) -> float | None:
    v = obj.get(key)
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise ProtocolError("bad_schema", f"{key} must be a number within [{lo}, {hi}]")
    return float(v)


def _int(obj: Mapping[str, Any], key: str, lo: int = 0, hi: int = 2**63 - 1) -> int:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ProtocolError("bad_schema", f"{key} must be an integer within [{lo}, {hi}]")
    return v


def _str(obj: Mapping[str, Any], key: str, max_len: int = 200, optional: bool = False) -> str | None:
    v = obj.get(key)
    if v is None and optional:
        return None
    if not isinstance(v, str) or len(v) > max_len:
        raise ProtocolError("bad_schema", f"{key} must be a string of at most {max_len} characters")
    return v


def _bool(obj: Mapping[str, Any], key: str) -> bool:
    v = obj.get(key)
    if not isinstance(v, bool):
        raise ProtocolError("bad_schema", f"{key} must be true or false")
    return v


def _only(obj: Mapping[str, Any], allowed: set[str], what: str) -> None:
    extra = set(obj) - allowed
    if extra:
        raise ProtocolError("bad_schema", f"unknown field(s) in {what}: {sorted(extra)[:5]}")


# ---------------------------------------------------------------------------------------------
# State (retained; also the last will)

MODES = ("OFF", "STANDBY", "RUN")
_CLASS_PART = re.compile(r"[A-Za-z0-9._+-]{1,64}")


@dataclass(frozen=True)
class ComputeClass:
    """What computes a car's results. Results are compared byte for byte only between cars
    of one class: our engine on any ISA is one class (`fleetnode` and its version); a LiteRT
    delegate or an NPU backend adds its library and version, and is a class of its own."""

    engine: str
    version: str
    library: str | None = None
    library_version: str | None = None

    @property
    def key(self) -> str:
        """One string per class: what the dispatcher groups replicas by."""
        parts = [self.engine, self.version]
        if self.library is not None:
            parts += [self.library, self.library_version or "?"]
        return "/".join(parts)

    def as_dict(self) -> dict[str, str]:
        d = {"engine": self.engine, "version": self.version}
        if self.library is not None:
            d["library"] = self.library
            d["library_version"] = self.library_version or ""
        return d

    @classmethod
    def from_obj(cls, o: object) -> ComputeClass:
        if not isinstance(o, dict):
            raise ProtocolError("bad_schema", "compute must be an object")
        _only(o, {"engine", "version", "library", "library_version"}, "compute")
        vals: dict[str, str | None] = {}
        for k in ("engine", "version", "library", "library_version"):
            v = o.get(k)
            if v is None and k in ("library", "library_version"):
                vals[k] = None
                continue
            if not isinstance(v, str) or not (_CLASS_PART.fullmatch(v) or (v == "" and k == "library_version")):
                raise ProtocolError("bad_schema", f"compute.{k} must match [A-Za-z0-9._+-]{{1,64}}")
            vals[k] = v
        return cls(engine=str(vals["engine"]), version=str(vals["version"]),
                   library=vals["library"], library_version=vals["library_version"])


def engine_class() -> ComputeClass:
    """The class of our own engine: every ISA computes the same bytes."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("fleetnode")
    except PackageNotFoundError:
        v = "0"
    return ComputeClass("fleetnode", v)


@dataclass(frozen=True)
class CarState:
    car: str
    online: bool
    mode: str
    reasons: tuple[str, ...]  # reason codes only: the texts can carry speeds and places
    available_w: float
    accepting_jobs: bool
    soc_percent: float | None = None
    charging: bool | None = None
    pool: str = "default"
    seq: int = 0
    t: float = 0.0  # wall seconds when published
    capacity: int = 0  # jobs the car takes at once; the dispatcher keeps no more in flight
    compute: ComputeClass | None = None  # what computes the car's results (absent in a will)

    def encode(self) -> bytes:
        obj: dict[str, Any] = {
            "v": VERSION, "car": self.car, "online": self.online, "mode": self.mode,
            "reasons": list(self.reasons), "available_w": round(self.available_w, 1),
            "accepting_jobs": self.accepting_jobs, "capacity": self.capacity,
            "soc_percent": None if self.soc_percent is None else round(self.soc_percent, 1),
            "charging": self.charging, "pool": self.pool, "seq": self.seq, "t": round(self.t, 3),
        }
        if self.compute is not None:
            obj["compute"] = self.compute.as_dict()
        return _dumps(obj)

    @classmethod
    def decode(cls, payload: bytes) -> CarState:
        o = _loads(payload)
        _version(o)
        _only(o, {"v", "car", "online", "mode", "reasons", "available_w", "accepting_jobs",
                  "capacity", "soc_percent", "charging", "pool", "seq", "t", "compute"}, "state")
        mode = o.get("mode")
        if mode not in MODES:
            raise ProtocolError("bad_schema", f"mode must be one of {MODES}")
        reasons = o.get("reasons")
        if not isinstance(reasons, list) or len(reasons) > 32 or not all(
                isinstance(r, str) and 0 < len(r) <= 64 for r in reasons):
            raise ProtocolError("bad_schema", "reasons must be a list of reason codes")
        charging = o.get("charging")
        if charging is not None and not isinstance(charging, bool):
            raise ProtocolError("bad_schema", "charging must be true, false or null")
        return cls(
            car=check_id("car", o.get("car")), online=_bool(o, "online"), mode=str(mode),
            reasons=tuple(reasons), available_w=_num(o, "available_w", 0, 1e6) or 0.0,
            accepting_jobs=_bool(o, "accepting_jobs"),
            soc_percent=_num(o, "soc_percent", 0, 100, optional=True), charging=charging,
            pool=check_id("pool", o.get("pool")), seq=_int(o, "seq"),
            t=_num(o, "t", 0, 1e11) or 0.0, capacity=_int(o, "capacity", 0, 4096),
            compute=None if o.get("compute") is None else ComputeClass.from_obj(o["compute"]),
        )

    @classmethod
    def offline(cls, car: str, pool: str = "default") -> CarState:
        """The last will: what the broker publishes for a car whose connection died."""
        return cls(car=car, online=False, mode="OFF", reasons=("offline",), available_w=0.0,
                   accepting_jobs=False, pool=pool)


# ---------------------------------------------------------------------------------------------
# Grid signal (fleet -> cars of a pool; retained, expires)

MAX_GRID_VALID_S = 86400


@dataclass(frozen=True)
class GridMessage:
    """What the grid behind a pool asks of its cars now, valid for `valid_s` from `t`.

    Any of the three figures may be absent (null): a tariff change sends a price, a carbon
    feed a carbon intensity, a demand-response event (the grid operator asks for less load)
    a power cap in watts, 0 meaning no compute at all. The car applies the newest message
    until it expires; a message with every figure null lifts the last one.
    """

    t: float  # wall seconds when issued
    seq: int
    valid_s: float
    price_per_kwh: float | None = None
    carbon_g_per_kwh: float | None = None
    power_cap_w: float | None = None
    reason: str | None = None  # e.g. "tariff", "demand_response": shown to the owner

    def encode(self) -> bytes:
        return _dumps({"v": VERSION, "t": round(self.t, 3), "seq": self.seq, "valid_s": self.valid_s,
                       "price_per_kwh": self.price_per_kwh, "carbon_g_per_kwh": self.carbon_g_per_kwh,
                       "power_cap_w": self.power_cap_w, "reason": self.reason})

    @classmethod
    def decode(cls, payload: bytes) -> GridMessage:
        o = _loads(payload)
        _version(o)
        _only(o, {"v", "t", "seq", "valid_s", "price_per_kwh", "carbon_g_per_kwh", "power_cap_w", "reason"}, "grid")
        reason = _str(o, "reason", 64, optional=True)
        if reason is not None and not _ID.fullmatch(reason):
            raise ProtocolError("bad_schema", "reason must match [A-Za-z0-9_-]{1,64}")
        return cls(t=_num(o, "t", 0.0) or 0.0, seq=_int(o, "seq"),
                   valid_s=_num(o, "valid_s", 1.0, MAX_GRID_VALID_S) or 0.0,
                   price_per_kwh=_num(o, "price_per_kwh", -100.0, 100.0, optional=True),
                   carbon_g_per_kwh=_num(o, "carbon_g_per_kwh", 0.0, 10_000.0, optional=True),
                   power_cap_w=_num(o, "power_cap_w", 0.0, 1e6, optional=True), reason=reason)


# ---------------------------------------------------------------------------------------------
# Telemetry (by exception, with a heartbeat)

# Field -> (type, deadband). A numeric field is sent when it moved more than its deadband since
# it was last sent; others when they change. Nothing outside this table leaves the car.
TELEMETRY_FIELDS: dict[str, tuple[type, float]] = {
    "soc_percent": (float, 1.0),
    "charging_power_kw": (float, 0.5),
    "pack_temp_max_c": (float, 1.0),
    "compute_temp_c": (float, 2.0),
    "compute_power_w": (float, 50.0),
    "mode": (str, 0.0),
    "jobs_done": (int, 10.0),
    "outbox_depth": (int, 10.0),
}


@dataclass(frozen=True)
class Telemetry:
    car: str
    seq: int
    boot: str  # changes when the agent restarts: a sequence reset is then not a loss
    t: float
    heartbeat: bool  # True: every field, a full snapshot; False: only the fields that moved
    fields: Mapping[str, float | int | str | None]

    def encode(self) -> bytes:
        return _dumps({"v": VERSION, "car": self.car, "seq": self.seq, "boot": self.boot,
                       "t": round(self.t, 1), "hb": self.heartbeat, "f": dict(self.fields)})

    @classmethod
    def decode(cls, payload: bytes) -> Telemetry:
        o = _loads(payload)
        _version(o)
        _only(o, {"v", "car", "seq", "boot", "t", "hb", "f"}, "telemetry")
        f = o.get("f")
        if not isinstance(f, dict):
            raise ProtocolError("bad_schema", "f must be an object")
        for k, v in f.items():
            spec = TELEMETRY_FIELDS.get(k)
            if spec is None:
                raise ProtocolError("bad_schema", f"unknown telemetry field {k!r:.40}")
            if v is not None and not (isinstance(v, str) if spec[0] is str else
                                      isinstance(v, (int, float)) and not isinstance(v, bool)):
                raise ProtocolError("bad_schema", f"telemetry field {k} has the wrong type")
        return cls(car=check_id("car", o.get("car")), seq=_int(o, "seq"),
                   boot=_str(o, "boot", 32) or "", t=_num(o, "t", 0, 1e11) or 0.0,
                   heartbeat=_bool(o, "hb"), fields=f)


class TelemetryFilter:
    """Telemetry by exception: decides, from the values offered and the time, what to send.

    A numeric field goes out when it moved beyond its deadband since it was last sent, a text
    field when it changed; every `heartbeat_s` a full snapshot goes out regardless, so a lost
    QoS 0 message heals and the fleet knows the car is alive.
    """

    def __init__(self, heartbeat_s: float = 900.0,
                 deadbands: Mapping[str, float] | None = None) -> None:
        self.heartbeat_s = heartbeat_s
        self.deadbands = {k: d for k, (_, d) in TELEMETRY_FIELDS.items()}
        if deadbands:
            self.deadbands.update(deadbands)
        self._sent: dict[str, float | int | str | None] = {}
        self._current: dict[str, float | int | str | None] = {}
        self._last_heartbeat: float | None = None

    def offer(self, values: Mapping[str, float | int | str | None],
              now: float) -> tuple[bool, dict[str, float | int | str | None]] | None:
        """Returns (heartbeat, fields to send) or None when nothing needs to go out."""
        for k, v in values.items():
            if k not in TELEMETRY_FIELDS:
                raise KeyError(f"{k!r} is not a documented telemetry field")
            if isinstance(v, float):
                v = round(v, 2)
            self._current[k] = v
        if self._last_heartbeat is None or now - self._last_heartbeat >= self.heartbeat_s:
            self._last_heartbeat = now
            self._sent = dict(self._current)
            return True, dict(self._current)
        changed: dict[str, float | int | str | None] = {}
        for k, v in self._current.items():
            old = self._sent.get(k, _MISSING)
            if old is _MISSING or _moved(old, v, self.deadbands[k]):
                changed[k] = v
        if not changed:
            return None
        self._sent.update(changed)
        return False, changed


_MISSING: Any = object()


def _moved(old: object, new: object, deadband: float) -> bool:
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        return abs(float(new) - float(old)) > deadband
    return old != new


# ---------------------------------------------------------------------------------------------
# Tensors and the binary envelope of jobs and results
#
#   magic b"FN" | version u8 | kind u8 (b"J" job, b"R" result) | header_len u32 BE
#   | header: JSON object, header_len bytes | tensor bytes, concatenated in header order
#
# Each tensor is {"dtype": one of DTYPES, "shape": [dims]}; its byte length follows from them,
# and the tensor bytes must add up to the payload's remaining length exactly. Raw little-endian
# bytes cost nothing to encode and are what the cars compare for the redundancy check.

_PREFIX = struct.Struct(">2sBcI")
MAGIC = b"FN"


def _tensor_specs(raw: object, data_len: int) -> list[tuple[np.dtype[Any], tuple[int, ...], int]]:
    if not isinstance(raw, list) or len(raw) > MAX_TENSORS:
        raise ProtocolError("bad_schema", f"tensors must be a list of at most {MAX_TENSORS}")
    specs: list[tuple[np.dtype[Any], tuple[int, ...], int]] = []
    total = 0
    for i, t in enumerate(raw):
        if not isinstance(t, dict) or set(t) != {"dtype", "shape"}:
            raise ProtocolError("bad_schema", f"tensor {i} must be {{dtype, shape}}")
        dt = DTYPES.get(t["dtype"]) if isinstance(t["dtype"], str) else None
        if dt is None:
            raise ProtocolError("bad_dtype", f"tensor {i}: dtype must be one of {sorted(DTYPES)}")
        shape = t["shape"]
        if (not isinstance(shape, list) or len(shape) > MAX_RANK or
                not all(isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= 1 << 30
                        for d in shape)):
            raise ProtocolError("bad_shape", f"tensor {i}: shape must be at most {MAX_RANK} dims >= 0")
        n = dt.itemsize
        for d in shape:
            n *= d
            if n > data_len:  # checked per dimension so a huge shape cannot overflow anything
                raise ProtocolError("size_mismatch", f"tensor {i} needs more bytes than the payload has")
        total += n
        specs.append((dt, tuple(shape), n))
    if total != data_len:
        raise ProtocolError("size_mismatch", f"tensors need {total} bytes, payload carries {data_len}")
    return specs


def encode_envelope(kind: bytes, header: Mapping[str, Any], tensors: Sequence[np.ndarray]) -> bytes:
    specs = []
    blobs = []
    for a in tensors:
        name = next((k for k, dt in DTYPES.items() if dt == a.dtype.newbyteorder("<")
                     or dt == a.dtype), None)
        if name is None:
            raise ProtocolError("bad_dtype", f"cannot send dtype {a.dtype}")
        specs.append({"dtype": name, "shape": [int(d) for d in a.shape]})
        blobs.append(np.ascontiguousarray(a, dtype=DTYPES[name]).tobytes())
    h = _dumps({**header, "tensors": specs})
    return _PREFIX.pack(MAGIC, VERSION, kind, len(h)) + h + b"".join(blobs)


def decode_envelope(payload: bytes, kind: bytes, limit: int) -> tuple[dict[str, Any], list[np.ndarray]]:
    if len(payload) > limit:
        raise ProtocolError("too_large", f"payload of {len(payload)} bytes exceeds {limit}")
    if len(payload) < _PREFIX.size:
        raise ProtocolError("malformed", "payload shorter than the envelope prefix")
    magic, version, k, hlen = _PREFIX.unpack_from(payload)
    if magic != MAGIC or k != kind:
        raise ProtocolError("malformed", "not a fleetnode envelope of this kind")
    if version != VERSION:
        raise ProtocolError("bad_version", f"envelope version {version}, expected {VERSION}")
    if hlen > MAX_HEADER_BYTES or _PREFIX.size + hlen > len(payload):
        raise ProtocolError("malformed", "header length out of range")
    header = _loads(payload[_PREFIX.size:_PREFIX.size + hlen], MAX_HEADER_BYTES)
    data = memoryview(payload)[_PREFIX.size + hlen:]
    specs = _tensor_specs(header.get("tensors"), len(data))
    arrays = []
    off = 0
    for dt, shape, n in specs:
        arrays.append(np.frombuffer(data[off:off + n], dtype=dt).reshape(shape).copy())
        off += n
    return header, arrays


def tensor_bytes(tensors: Sequence[np.ndarray]) -> bytes:
    """The canonical bytes of a list of tensors: what redundant results are compared on."""
    return encode_envelope(b"R", {}, tensors)


# ---------------------------------------------------------------------------------------------
# Jobs


@dataclass(frozen=True)
class ModelRef:
    """A model in the car's content-addressed cache (sha256) or built into the agent (name)."""

    sha256: str | None = None
    builtin: str | None = None

    def as_dict(self) -> dict[str, str]:
        return {"sha256": self.sha256} if self.sha256 else {"builtin": self.builtin or ""}

    @classmethod
    def from_obj(cls, o: object) -> ModelRef:
        if not isinstance(o, dict) or len(o) != 1:
            raise ProtocolError("bad_model_ref", "model must be {sha256: hex} or {builtin: name}")
        if "sha256" in o:
            return cls(sha256=check_sha256(o["sha256"]))
        b = o.get("builtin")
        if not isinstance(b, str) or not _BUILTIN.fullmatch(b):
            raise ProtocolError("bad_model_ref", "builtin model name must match [a-z0-9_]{1,64}")
        return cls(builtin=b)

    def __str__(self) -> str:
        return f"sha256:{self.sha256}" if self.sha256 else f"builtin:{self.builtin}"


@dataclass(frozen=True)
class JobRequest:
    job_id: str
    submitter: str  # where the result goes: cars/<car>/results/<submitter>
    model: ModelRef
    inputs: list[np.ndarray]
    max_run_s: float = 60.0  # the car reports "failed" if the job runs longer
    exclude: tuple[str, ...] = ()  # cars that must not run it (redundancy across cars)
    task: str = ""  # the fleet's own grouping (redundant replicas share one task)

    def encode(self) -> bytes:
        return encode_envelope(b"J", {
            "v": VERSION, "job_id": self.job_id, "submitter": self.submitter,
            "model": self.model.as_dict(), "max_run_s": self.max_run_s,
            "exclude": list(self.exclude), "task": self.task,
        }, self.inputs)

    @classmethod
    def decode(cls, payload: bytes, limit: int = MAX_JOB_BYTES) -> JobRequest:
        h, arrays = decode_envelope(payload, b"J", limit)
        _version(h)
        _only(h, {"v", "job_id", "submitter", "model", "max_run_s", "exclude", "task", "tensors"}, "job")
        exclude = h.get("exclude", [])
        if not isinstance(exclude, list) or len(exclude) > 64:
            raise ProtocolError("bad_schema", "exclude must be a list of at most 64 car ids")
        return cls(
            job_id=check_job_id(h.get("job_id")), submitter=check_id("submitter", h.get("submitter")),
            model=ModelRef.from_obj(h.get("model")), inputs=arrays,
            max_run_s=_num(h, "max_run_s", 0.001, 86400.0) or 60.0,
            exclude=tuple(check_id("exclude", c) for c in exclude),
            task=_str(h, "task", 128, optional=True) or "",
        )


def peek_job_ids(payload: bytes) -> tuple[str | None, str | None]:
    """Best effort (job_id, submitter) from a payload that failed to decode, for the error reply."""
    try:
        if len(payload) >= _PREFIX.size:
            magic, _, _, hlen = _PREFIX.unpack_from(payload)
            if magic == MAGIC and hlen <= MAX_HEADER_BYTES:
                h = json.loads(payload[_PREFIX.size:_PREFIX.size + hlen])
                if isinstance(h, dict):
                    jid, sub = h.get("job_id"), h.get("submitter")
                    return (jid if isinstance(jid, str) and _JOB_ID.fullmatch(jid) else None,
                            sub if isinstance(sub, str) and _ID.fullmatch(sub) else None)
    except (ValueError, RecursionError, struct.error):
        pass
    return None, None


# ---------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class JobResult:
    job_id: str
    car: str
    outcome: str  # one of OUTCOMES
    seq: int  # the car's result sequence number (per outbox, survives restarts)
    outputs: list[np.ndarray] = field(default_factory=list)
    error_code: str | None = None
    error_text: str | None = None
    run_s: float | None = None

    def encode(self) -> bytes:
        h: dict[str, Any] = {"v": VERSION, "job_id": self.job_id, "car": self.car,
                             "outcome": self.outcome, "seq": self.seq}
        if self.error_code is not None:
            h["error"] = {"code": self.error_code, "text": (self.error_text or "")[:500]}
        if self.run_s is not None:
            h["run_s"] = round(self.run_s, 4)
        return encode_envelope(b"R", h, self.outputs)

    @classmethod
    def decode(cls, payload: bytes, limit: int = MAX_RESULT_BYTES) -> JobResult:
        h, arrays = decode_envelope(payload, b"R", limit)
        _version(h)
        _only(h, {"v", "job_id", "car", "outcome", "seq", "error", "run_s", "tensors"}, "result")
        outcome = h.get("outcome")
        if outcome not in OUTCOMES:
            raise ProtocolError("bad_schema", f"outcome must be one of {OUTCOMES}")
        err = h.get("error")
        code = text = None
        if err is not None:
            if not isinstance(err, dict):
                raise ProtocolError("bad_schema", "error must be {code, text}")
            code = _str(err, "code", 64)
            text = _str(err, "text", 500)
        return cls(job_id=check_job_id(h.get("job_id")), car=check_id("car", h.get("car")),
                   outcome=str(outcome), seq=_int(h, "seq"), outputs=arrays,
                   error_code=code, error_text=text,
                   run_s=_num(h, "run_s", 0, 1e7, optional=True))

    @property
    def output_bytes(self) -> bytes:
        return tensor_bytes(self.outputs)


# ---------------------------------------------------------------------------------------------
# Acknowledgements (fleet -> car) and error replies (car -> fleet)

MAX_ACK_IDS = 256


def encode_ack(job_ids: Sequence[str]) -> bytes:
    return _dumps({"v": VERSION, "job_ids": [check_job_id(j) for j in job_ids]})


def decode_ack(payload: bytes) -> list[str]:
    o = _loads(payload)
    _version(o)
    _only(o, {"v", "job_ids"}, "ack")
    ids = o.get("job_ids")
    if not isinstance(ids, list) or len(ids) > MAX_ACK_IDS:
        raise ProtocolError("bad_schema", f"job_ids must be a list of at most {MAX_ACK_IDS}")
    return [check_job_id(j) for j in ids]


@dataclass(frozen=True)
class ErrorReply:
    """The answer to a job payload too broken to carry a usable job id or submitter."""

    car: str
    seq: int
    code: str
    text: str
    job_id: str | None = None
    correlation: str | None = None  # the request's correlation data, hex

    def encode(self) -> bytes:
        return _dumps({"v": VERSION, "car": self.car, "seq": self.seq, "code": self.code,
                       "text": self.text[:500], "job_id": self.job_id,
                       "correlation": self.correlation})

    @classmethod
    def decode(cls, payload: bytes) -> ErrorReply:
        o = _loads(payload)
        _version(o)
        _only(o, {"v", "car", "seq", "code", "text", "job_id", "correlation"}, "error")
        jid = o.get("job_id")
        return cls(car=check_id("car", o.get("car")), seq=_int(o, "seq"),
                   code=_str(o, "code", 64) or "", text=_str(o, "text", 500) or "",
                   job_id=None if jid is None else check_job_id(jid),
                   correlation=_str(o, "correlation", 2 * MAX_CORRELATION_BYTES, optional=True))


# ---------------------------------------------------------------------------------------------
# Model manifests (retained on models/<sha256>/manifest) and chunks (models/<sha256>/chunks/<i>)

MAX_MODEL_CHUNKS = 4096
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class ModelManifest:
    sha256: str
    size: int
    name: str
    version: int  # per name; a car refuses a version older than one it has accepted
    created: float  # wall seconds
    expires: float  # wall seconds; a stale manifest is refused
    chunk_size: int
    key_id: str  # which signing key (hex, 16 chars)

    @property
    def chunks(self) -> int:
        return max(1, -(-self.size // self.chunk_size))

    def as_dict(self) -> dict[str, Any]:
        return {"v": VERSION, "sha256": self.sha256, "size": self.size, "name": self.name,
                "version": self.version, "created": self.created, "expires": self.expires,
                "chunk_size": self.chunk_size, "chunks": self.chunks, "key_id": self.key_id}

    def signed_bytes(self) -> bytes:
        """What the signature covers: the manifest's canonical JSON."""
        return _dumps(self.as_dict())

    @classmethod
    def from_obj(cls, o: object) -> ModelManifest:
        if not isinstance(o, dict):
            raise ProtocolError("bad_schema", "manifest must be an object")
        _version(o)
        _only(o, {"v", "sha256", "size", "name", "version", "created", "expires", "chunk_size",
                  "chunks", "key_id"}, "manifest")
        name = o.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ProtocolError("bad_schema", "name must match [A-Za-z0-9._-]{1,64}")
        key_id = o.get("key_id")
        if not isinstance(key_id, str) or not re.fullmatch(r"[0-9a-f]{16}", key_id):
            raise ProtocolError("bad_schema", "key_id must be 16 hex digits")
        m = cls(sha256=check_sha256(o.get("sha256")), size=_int(o, "size", 1, 1 << 34), name=name,
                version=_int(o, "version", 0, 2**31), created=_num(o, "created", 0, 1e11) or 0.0,
                expires=_num(o, "expires", 0, 1e11) or 0.0,
                chunk_size=_int(o, "chunk_size", 1024, 1 << 24), key_id=key_id)
        if _int(o, "chunks", 1, MAX_MODEL_CHUNKS) != m.chunks:
            raise ProtocolError("bad_schema", "chunks does not match size / chunk_size")
        return m


@dataclass(frozen=True)
class SignedManifest:
    manifest: ModelManifest
    signature: bytes  # Ed25519 over manifest.signed_bytes()

    def encode(self) -> bytes:
        import base64
        return _dumps({"manifest": self.manifest.as_dict(),
                       "sig": base64.b64encode(self.signature).decode()})

    @classmethod
    def decode(cls, payload: bytes) -> SignedManifest:
        import base64
        import binascii
        o = _loads(payload)
        _only(o, {"manifest", "sig"}, "signed manifest")
        sig = o.get("sig")
        if not isinstance(sig, str) or len(sig) > 200:
            raise ProtocolError("unsigned", "the manifest carries no signature")
        try:
            raw = base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("unsigned", "the signature is not base64") from None
        return cls(ModelManifest.from_obj(o.get("manifest")), raw)


# ---------------------------------------------------------------------------------------------
# Credit grants (fleet -> car, on cars/<car>/credits)

MAX_GRANT_CREDITS = 1e9


@dataclass(frozen=True)
class CreditGrant:
    """Credits the fleet granted for one verified result. `grant` is unique: a grant that
    arrives twice is recorded once."""

    grant: str
    car: str
    job_id: str
    task: str
    credits: float
    energy_wh: float
    t: float  # wall seconds when granted

    def encode(self) -> bytes:
        return _dumps({"v": VERSION, "grant": self.grant, "car": self.car, "job_id": self.job_id,
                       "task": self.task, "credits": round(self.credits, 9),
                       "energy_wh": round(self.energy_wh, 6), "t": round(self.t, 3)})

    @classmethod
    def decode(cls, payload: bytes) -> CreditGrant:
        o = _loads(payload)
        _version(o)
        _only(o, {"v", "grant", "car", "job_id", "task", "credits", "energy_wh", "t"}, "grant")
        return cls(grant=check_job_id(o.get("grant")), car=check_id("car", o.get("car")),
                   job_id=check_job_id(o.get("job_id")), task=_str(o, "task", 128) or "",
                   credits=_num(o, "credits", 0, MAX_GRANT_CREDITS) or 0.0,
                   energy_wh=_num(o, "energy_wh", 0, 1e9) or 0.0,
                   t=_num(o, "t", 0, 1e11) or 0.0)
