"""The simulated car: battery, charger, thermal and driver, stepped in virtual or real time.

The simulator owns physics only. It produces role values (the same roles the agent's vehicle
profile maps DBC signals to); `hil.bench` turns them into CAN frames with the profile and puts
them on the serial line. A scenario is a list of timed events that change the driver's and the
charger's inputs; everything else (SoC, current, temperatures) follows from the physics.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace


@dataclass
class CarParams:
    pack_kwh: float = 75.0
    nominal_v: float = 360.0
    base_load_kw: float = 0.25  # the vehicle's own draw while awake and parked
    ambient_c: float = 20.0
    pack_thermal_kj_per_k: float = 1200.0  # heat capacity of the pack
    pack_cooling_kw_per_k: float = 0.05
    pack_resistance_ohm: float = 0.06
    compute_c_per_kw: float = 45.0  # steady-state rise of the compute module over ambient at 1 kW
    compute_tau_s: float = 60.0  # its thermal time constant


@dataclass
class CarInputs:
    """What the outside world decides: the driver, the charger, the compute load."""

    gear: str = "P"
    speed_kph: float = 0.0
    driver_present: bool = False
    door_open: bool = False
    departure_event: bool = False  # unlock / key approach / charge-port release
    cabin_preconditioning: bool = False
    charge_cable: bool = True
    charger_kw: float = 7.0  # what the charger offers when the cable is in
    charge_limit_percent: float = 90.0
    compute_kw: float = 0.0  # what the agent's compute draws (set by the bench)


@dataclass
class CarState:
    soc_percent: float = 70.0
    pack_temp_c: float = 25.0
    compute_temp_c: float = 35.0
    t: float = 0.0
    inputs: CarInputs = field(default_factory=CarInputs)

    def charging_power_kw(self, params: CarParams) -> float:
        i = self.inputs
        if not i.charge_cable or self.soc_percent >= i.charge_limit_percent:
            return 0.0
        return i.charger_kw

    def roles(self, params: CarParams) -> dict[str, object]:
        """The car as its CAN bus tells it, in the agent's role vocabulary."""
        charge_kw = self.charging_power_kw(params)
        net_kw = charge_kw - params.base_load_kw - self.inputs.compute_kw
        pack_v = params.nominal_v * (0.9 + 0.2 * self.soc_percent / 100.0)
        return {
            "soc_percent": round(self.soc_percent, 1),
            "gear": self.inputs.gear,
            "speed_kph": round(self.inputs.speed_kph, 1),
            "driver_present": self.inputs.driver_present,
            "door_open": self.inputs.door_open,
            "charge_cable": self.inputs.charge_cable,
            "charging_power_kw": round(charge_kw, 2),
            "pack_voltage_v": round(pack_v, 1),
            "pack_current_a": round(net_kw * 1000.0 / pack_v, 1),
            "pack_temp_min_c": round(self.pack_temp_c - 1.5, 1),
            "pack_temp_max_c": round(self.pack_temp_c + 1.5, 1),
            "vehicle_awake": True,
            "departure_event": self.inputs.departure_event,
            "cabin_preconditioning": self.inputs.cabin_preconditioning,
            "charge_limit_reached": self.inputs.charge_cable and self.soc_percent >= self.inputs.charge_limit_percent,
            "compute_temp_c": round(self.compute_temp_c, 1),
        }


def step(state: CarState, params: CarParams, dt: float) -> CarState:
    """Advance the physics by dt seconds (pure: returns a new state)."""
    if dt < 0:
        raise ValueError("dt must be >= 0")
    i = state.inputs
    charge_kw = state.charging_power_kw(params)
    drive_kw = 15.0 * (i.speed_kph / 100.0) ** 2 if i.speed_kph > 0 else 0.0
    net_kw = charge_kw - params.base_load_kw - i.compute_kw - drive_kw
    soc = state.soc_percent + net_kw * dt / 3600.0 / params.pack_kwh * 100.0
    soc = min(100.0, max(0.0, soc))
    current_a = abs(net_kw) * 1000.0 / params.nominal_v
    heat_kw = current_a**2 * params.pack_resistance_ohm / 1000.0
    cool_kw = params.pack_cooling_kw_per_k * (state.pack_temp_c - params.ambient_c)
    temp = state.pack_temp_c + (heat_kw - cool_kw) * dt / params.pack_thermal_kj_per_k
    target_c = params.ambient_c + 15.0 + params.compute_c_per_kw * i.compute_kw
    compute_c = target_c + (state.compute_temp_c - target_c) * math.exp(-dt / params.compute_tau_s)
    if not (math.isfinite(temp) and math.isfinite(compute_c)):
        raise ArithmeticError("temperature diverged")
    return replace(state, soc_percent=soc, pack_temp_c=temp, compute_temp_c=compute_c, t=state.t + dt)


@dataclass(frozen=True)
class Event:
    at_s: float
    what: str  # shown to the person watching the bench
    change: Callable[[CarInputs], None]


def apply_due(state: CarState, events: Iterable[Event], done: set[int]) -> list[Event]:
    """Apply every event whose time has come and that has not run yet; return those applied."""
    applied = []
    for n, ev in enumerate(events):
        if n not in done and ev.at_s <= state.t:
            ev.change(state.inputs)
            done.add(n)
            applied.append(ev)
    return applied
