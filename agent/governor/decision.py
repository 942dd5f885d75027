"""What the governor says: a mode, a power budget and the reasons, for machines and for people."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Mode(enum.Enum):
    OFF = "OFF"  # compute must not run; the agent is not even available
    STANDBY = "STANDBY"  # safe to stay up, not allowed to compute now
    RUN = "RUN"  # compute allowed within power_budget_w


@dataclass(frozen=True)
class Reason:
    code: str  # machine-readable, stable: "not_parked", "stale_input", ...
    text: str  # one sentence for people

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "text": self.text}


@dataclass(frozen=True)
class Decision:
    mode: Mode
    power_budget_w: float
    reasons: tuple[Reason, ...]
    # RUN while draining before a known departure: running jobs may finish, none may start,
    # and the fleet link should take no new jobs.
    drain: bool = False

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(r.code for r in self.reasons)

    @property
    def summary(self) -> str:
        return "; ".join(r.text for r in self.reasons) or "all conditions met"

    def as_dict(self) -> dict[str, object]:
        return {
            "mode": self.mode.value,
            "power_budget_w": round(self.power_budget_w, 1),
            "drain": self.drain,
            "reasons": [r.as_dict() for r in self.reasons],
        }
