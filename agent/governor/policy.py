"""The owner's policy: what the governor may allow. Loaded from TOML; validated on load."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


class PolicyError(ValueError):
    """A policy file that cannot be trusted: named field, clear message."""


@dataclass(frozen=True)
class Policy:
    consent: bool = True
    max_input_age_s: float = 2.0
    soc_floor_percent: float = 50.0
    max_power_w: float = 1000.0
    require_charging: bool = True

    @classmethod
    def from_toml(cls, path: str | Path) -> "Policy":
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise PolicyError(f"cannot read policy {path}: {e}") from e
        return cls.from_mapping(data.get("policy", data))

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> "Policy":
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                raise PolicyError(f"unknown policy field {key!r}")
            default = known[key].default
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise PolicyError(f"policy field {key!r} must be true or false")
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise PolicyError(f"policy field {key!r} must be a number")
                value = float(value)
            kwargs[key] = value
        policy = cls(**kwargs)
        if not 0.0 <= policy.soc_floor_percent <= 100.0:
            raise PolicyError("soc_floor_percent must be within 0..100")
        if policy.max_input_age_s <= 0 or policy.max_power_w < 0:
            raise PolicyError("max_input_age_s must be > 0 and max_power_w >= 0")
        return policy
