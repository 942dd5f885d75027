"""The agent's configuration file (TOML): which car, which serial line, which broker, which policy.

Config files are outside input: unknown keys, wrong types and impossible values are refused
with one error naming the key, before anything starts.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the offending key."""


CAR_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _key(default: Any, doc: str, valid: str = "") -> Any:
    """A config key: its default, one line for the reference (docs/operations.md), its range."""
    return field(default=default, metadata={"doc": doc, "valid": valid})


@dataclass(frozen=True)
class AgentConfig:
    car_id: str = _key("car-1", "this car's id on the fleet (its MQTT topics and client id)",
                       "1-64 of A-Z a-z 0-9 _ -, starting alphanumeric")
    serial_port: str = _key("/dev/ttyACM0", "serial device of the CAN shim (a UART, or a pty on the bench)")
    profile: str = _key("reference", "vehicle profile: a built-in name or a TOML path")
    dbc: str = _key("", "a DBC file, for profiles that do not ship one (e.g. tesla-model3)")
    broker_host: str = _key("127.0.0.1", "MQTT broker host")
    broker_port: int = _key(1883, "MQTT broker port", "1..65535")
    pool: str = _key("default", "job pool (the shared subscription group)", "1-64 of A-Z a-z 0-9 _ -")
    tls_ca: str = _key("", "CA certificate (PEM) that signed the broker's certificate",
                       "tls_ca, tls_cert and tls_key: all three or none")
    tls_cert: str = _key("", "this car's client certificate (PEM)")
    tls_key: str = _key("", "this car's private key (PEM)")
    state_dir: str = _key("/var/lib/fleetnode",
                          "where state.sqlite (outbox and ledger), the audit log and the model cache live")
    policy_file: str = _key("", "the owner's policy (TOML); empty: the built-in defaults")
    trusted_keys: str = _key("", "a directory (or file) of Ed25519 public keys that sign fleet models")
    status_interval_s: float = _key(1.0, "seconds between status lines when nothing changes", "> 0")
    storage_floor_bytes: int = _key(16 << 20, "below this much free space in state_dir the agent takes no jobs "
                                    "(STANDBY, reason storage)", ">= 0")
    metrics_listen: str = _key("", "HOST:PORT of the Prometheus endpoint on this computer; empty: off",
                               "an IP address and a port 0..65535 (0: any free port)")
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> AgentConfig:
        try:
            data = tomllib.loads(Path(path).read_text())
        except FileNotFoundError as e:
            raise ConfigError(f"config file {path} does not exist") from e
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read config {path}: {e}") from e
        if not any(isinstance(v, dict) for v in data.values()):
            return cls.from_mapping(data)  # agent keys without a table header
        for table in data:
            if table not in ("agent", "metrics"):
                raise ConfigError(f"unknown config table [{table}] (known: [agent], [metrics])")
        agent, metrics = data.get("agent", {}), data.get("metrics", {})
        if not isinstance(agent, dict) or not isinstance(metrics, dict):
            raise ConfigError("config entries 'agent' and 'metrics' must be tables")
        for key in metrics:
            if key != "listen":
                raise ConfigError(f"unknown config key {key!r} in [metrics] (known: 'listen')")
        if "metrics_listen" in agent:
            raise ConfigError("config key 'metrics_listen' is written as 'listen' in [metrics]")
        mapped = {"metrics_listen": metrics["listen"]} if "listen" in metrics else {}
        return cls.from_mapping({**agent, **mapped})

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
        if cfg.metrics_listen:
            parse_listen(cfg.metrics_listen)
        return cfg


def parse_listen(text: str) -> tuple[str, int]:
    """'127.0.0.1:9464' or '[::1]:9464' -> (host, port); ConfigError names [metrics] listen."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([0-9.]+):(\d{1,5})", text)
    err = ConfigError(f"config key 'listen' in [metrics] must be IP:PORT (e.g. 127.0.0.1:9464), not {text!r}")
    if m is None:
        raise err
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise err from None
    if not 0 <= int(port) <= 65535:
        raise err
    return host, int(port)


def reference_markdown() -> str:
    """The config reference table of docs/operations.md, made from the fields above."""
    rows = ["| key | type | default | valid values | meaning |", "|---|---|---|---|---|"]
    for f in fields(AgentConfig):
        if f.name == "extra":
            continue
        name = "[metrics] listen" if f.name == "metrics_listen" else f"[agent] {f.name}"
        default = json.dumps(f.default)
        rows.append(f"| `{name}` | {type(f.default).__name__} | `{default}` | "
                    f"{f.metadata.get('valid') or 'any'} | {f.metadata['doc']} |")
    return "\n".join(rows) + "\n"
