"""The agent's configuration file (TOML): which car, which serial line, which broker, which policy.

Config files are outside input: unknown keys, wrong types and impossible values are refused
with one error naming the key, before anything starts.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the offending key."""


CAR_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class AgentConfig:
    car_id: str = "car-1"
    serial_port: str = "/dev/ttyACM0"
    profile: str = "reference"
    dbc: str = ""  # a DBC file for profiles that do not ship one (e.g. tesla-model3)
    broker_host: str = "127.0.0.1"
    broker_port: int = 1883
    pool: str = "default"
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    state_dir: str = "/var/lib/fleetnode"
    policy_file: str = ""
    trusted_keys: str = ""  # a directory (or file) of Ed25519 public keys that sign fleet models
    status_interval_s: float = 1.0
    # Below this much free space in state_dir the agent takes no jobs (results need room).
    storage_floor_bytes: int = 16 << 20
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> AgentConfig:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as e:
            raise ConfigError(f"config file {path} does not exist") from e
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read config {path}: {e}") from e
        return cls.from_mapping(data.get("agent", data))

    @classmethod
    def from_mapping(cls, data: dict[str, Any], **overrides: Any) -> AgentConfig:
        known = {f.name: f for f in fields(cls) if f.name != "extra"}
        values: dict[str, Any] = {}
        for key, value in {**data, **{k: v for k, v in overrides.items() if v is not None}}.items():
            if key not in known:
                raise ConfigError(f"unknown config key {key!r}")
            want = type(known[key].default)
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise ConfigError(f"config key {key!r} must be {want.__name__}, not {type(value).__name__}")
            values[key] = value
        cfg = cls(**values)
        if not CAR_ID.match(cfg.car_id):
            raise ConfigError("config key 'car_id' must be 1-64 of [A-Za-z0-9_-], starting alphanumeric")
        if not 0 < cfg.broker_port < 65536:
            raise ConfigError("config key 'broker_port' must be within 1..65535")
        if not CAR_ID.match(cfg.pool):
            raise ConfigError("config key 'pool' must be 1-64 of [A-Za-z0-9_-]")
        tls = (cfg.tls_ca, cfg.tls_cert, cfg.tls_key)
        if any(tls) and not all(tls):
            raise ConfigError("config keys 'tls_ca', 'tls_cert' and 'tls_key' go together: give all three or none")
        if cfg.status_interval_s <= 0:
            raise ConfigError("config key 'status_interval_s' must be > 0")
        if cfg.storage_floor_bytes < 0:
            raise ConfigError("config key 'storage_floor_bytes' must be >= 0")
        return cfg
