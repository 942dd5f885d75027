"""What the governor says: a mode, a power budget and the reasons, for machines and for people.

Owns the Decision type and the catalogue of reason codes. Codes are stable API (telemetry,
dashboards and the ledger key on them); the text beside each is for people and may change.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Mode(enum.Enum):
    OFF = "OFF"  # compute must not run; the agent is not even available (fault, no consent)
    STANDBY = "STANDBY"  # safe to stay up, not allowed to compute now
    RUN = "RUN"  # compute allowed within power_budget_w


class Severity(enum.Enum):
    OFF = "off"  # forces OFF
    STOP = "stop"  # forces STANDBY
    SOFT = "soft"  # forces STANDBY, but cannot end a RUN younger than dwell.min_run_s
    LIMIT = "limit"  # lowers the budget; STANDBY only if the budget falls below min_budget_w
    INFO = "info"  # said while running


# code -> (severity, what it means). docs/governor.md lists every code; a test keeps them in step.
CODES: dict[str, tuple[Severity, str]] = {
    "link_down": (Severity.OFF, "the serial link to the vehicle bus is down or the shim is silent"),
    "decode_errors": (Severity.OFF, "CAN decode errors exceed faults.max_decode_errors_per_s"),
    "broker_down": (Severity.OFF, "the MQTT broker has been unreachable longer than faults.broker_down_max_s"),
    "clock_jump": (Severity.OFF, "wall and monotonic clocks disagreed; hold for faults.clock_jump_hold_s"),
    "no_consent": (Severity.OFF, "the owner has not consented"),
    "internal_error": (Severity.OFF, "the agent's own decision loop failed; it fails safe (said by the service)"),
    "storage": (Severity.STOP, "the state dir cannot be written (full, read-only, I/O errors, below the free-space floor)"),
    "stale_input": (Severity.STOP, "a required role is unknown, invalid (SNA) or too old"),
    "not_parked": (Severity.STOP, "gear is not P"),
    "moving": (Severity.STOP, "speed is not zero"),
    "driver_present": (Severity.STOP, "a driver is present"),
    "door_open": (Severity.STOP, "a door is open: a departure may be starting"),
    "departure_event": (Severity.STOP, "the car signals a departure (unlock, key nearby, charge port)"),
    "preconditioning": (Severity.STOP, "cabin preconditioning runs: a departure is near"),
    "departure_imminent": (Severity.STOP, "a scheduled departure is within departure.handback_s"),
    "no_wall_clock": (Severity.STOP, "schedules, tariffs or quiet hours need the wall time, which is unknown"),
    "not_charging": (Severity.STOP, "policy requires charging and the car is not charging"),
    "soc_floor": (Severity.STOP, "off the charger, SoC is below the floor (or the departure target)"),
    "pack_too_hot": (Severity.STOP, "pack above thermal.pack_max_c; resumes below warn - hysteresis"),
    "compute_too_hot": (Severity.STOP, "compute module above thermal.compute_max_c; resumes below warn - hysteresis"),
    "energy_cap": (Severity.STOP, "today's compute energy reached caps.energy_kwh_per_day"),
    "cost_cap": (Severity.STOP, "today's compute cost reached caps.cost_per_day"),
    "quiet_hours": (Severity.STOP, "inside the owner's quiet hours"),
    "dwell_min_off": (Severity.STOP, "stopped less than dwell.min_off_s ago: no restart yet"),
    "tariff_price": (Severity.SOFT, "the tariff price is above caps.max_price_per_kwh"),
    "grid_price": (Severity.SOFT, "the fleet's grid price signal is above grid.max_price_per_kwh"),
    "grid_carbon": (Severity.SOFT, "the fleet's grid carbon signal is above grid.max_carbon_g_per_kwh"),
    "departure_reserve": (Severity.LIMIT, "the charger's surplus after the departure target's needs bounds the budget"),
    "charger_surplus": (Severity.LIMIT, "below the floor on the charger: only the charger's surplus may be used"),
    "charge_limit_hold": (Severity.LIMIT, "held at the charge limit: only what the profile lets compute draw"),
    "thermal_derate": (Severity.LIMIT, "between warn and max temperature: the PI controller lowers the budget"),
    "grid_power_cap": (Severity.LIMIT, "the fleet's grid signal caps the power"),
    "budget_too_small": (Severity.LIMIT, "policy.max_power_w is below policy.min_budget_w"),
    "departure_drain": (Severity.INFO, "a departure is within departure.drain_s: no new jobs"),
    "dwell_min_run": (Severity.INFO, "a price or grid signal says stop, but the run is younger than dwell.min_run_s"),
}


@dataclass(frozen=True)
class Reason:
    code: str  # machine-readable, stable: a key of CODES
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
