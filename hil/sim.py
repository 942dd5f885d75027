"""The simulated car: battery, charger, thermal and driver, stepped in virtual or real time.

The simulator owns physics only. It produces role values (the same roles the agent's vehicle
profile maps DBC signals to); `hil.bench` turns them into CAN frames with the profile and puts
them on the serial line. A scenario is a list of timed events that change the driver's and the
charger's inputs; everything else (SoC, current, temperatures) follows from the physics:

- the pack: open-circuit voltage against SoC (a lithium-ion NMC curve per cell, `cells_series`
  cells), an internal resistance, so the terminal voltage sags under load and rises on charge,
  and the current that carries the power balance (positive into the pack, as the DBC has it);
- the charger: AC (what the EVSE offers, 3.7-11 kW) or DC fast charge (its power tapers above
  `dc_taper_from_percent`), stopped at the owner's charge limit and resumed below it less
  `limit_hysteresis_percent`, as cars do; the car's loads are served first from what it gives;
- loads: the car's base load while awake, cabin preconditioning, driving, and the compute
  module (what the agent really runs, set by the bench from the agent's power meter);
- thermal: first-order RC models of pack and compute module towards the ambient temperature,
  heated by I²R in the pack and by the compute power in the module.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

# Open-circuit voltage of one NMC cell against SoC (%): the usual flat middle, steep ends.
OCV_SOC = (0.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0)
OCV_V = (3.00, 3.35, 3.45, 3.55, 3.62, 3.68, 3.74, 3.81, 3.89, 3.98, 4.08, 4.20)


def cell_ocv(soc_percent: float) -> float:
    """Open-circuit cell voltage at `soc_percent`, interpolated linearly in the table."""
    s = min(100.0, max(0.0, soc_percent))
    i = min(len(OCV_SOC) - 1, max(1, bisect.bisect_left(OCV_SOC, s)))
    s0, s1, v0, v1 = OCV_SOC[i - 1], OCV_SOC[i], OCV_V[i - 1], OCV_V[i]
    return v0 + (v1 - v0) * (s - s0) / (s1 - s0)


@dataclass
class CarParams:
    pack_kwh: float = 75.0
    cells_series: int = 96
    pack_resistance_ohm: float = 0.08  # the pack's internal resistance (all cells, wiring)
    base_load_kw: float = 0.25  # the vehicle's own draw while awake and parked
    precond_kw: float = 2.5  # cabin preconditioning (heat pump / compressor)
    ambient_c: float = 20.0
    charge_efficiency: float = 0.92  # share of the charger's power that reaches the DC bus
    dc_taper_from_percent: float = 80.0  # DC fast charge power falls linearly from here to 100 %
    limit_hysteresis_percent: float = 1.0  # a car held at its limit resumes charging below it
    pack_thermal_kj_per_k: float = 1200.0  # heat capacity of the pack
    pack_cooling_kw_per_k: float = 0.05  # its conductance to the ambient
    compute_thermal_kj_per_k: float = 2.0  # heat capacity of the compute module and heat sink
    compute_cooling_kw_per_k: float = 0.04  # its conductance to the ambient (fan at full)
    compute_idle_kw: float = 0.1  # drawn by the module whether it computes or not

    @property
    def compute_tau_s(self) -> float:
        return self.compute_thermal_kj_per_k / self.compute_cooling_kw_per_k


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
    dc: bool = False  # a DC fast charger (its power tapers at high SoC)
    charge_limit_percent: float = 90.0
    compute_kw: float = 0.0  # what the agent's compute draws (set by the bench)


@dataclass
class CarState:
    soc_percent: float = 70.0
    pack_temp_c: float = 25.0
    compute_temp_c: float = 35.0
    t: float = 0.0
    inputs: CarInputs = field(default_factory=CarInputs)
    held_at_limit: bool = False  # reached the charge limit; charging resumes below the hysteresis
    pack_current_a: float = 0.0  # the last step's current, positive into the pack

    def charging_power_kw(self, params: CarParams) -> float:
        """What the charger delivers into the car now."""
        i = self.inputs
        if not i.charge_cable or i.charger_kw <= 0 or self.held_at_limit or self.soc_percent >= i.charge_limit_percent:
            return 0.0
        kw = i.charger_kw
        if i.dc and self.soc_percent > params.dc_taper_from_percent:
            span = 100.0 - params.dc_taper_from_percent
            kw *= max(0.05, (100.0 - self.soc_percent) / span)
        return kw

    def load_kw(self, params: CarParams) -> float:
        """The car's own loads and the compute module, on the DC bus."""
        i = self.inputs
        drive_kw = 15.0 * (i.speed_kph / 100.0) ** 2 + 0.05 * i.speed_kph if i.speed_kph > 0 else 0.0
        precond = params.precond_kw if i.cabin_preconditioning else 0.0
        return params.base_load_kw + precond + drive_kw + params.compute_idle_kw + i.compute_kw

    def pack_voltage_v(self, params: CarParams, current_a: float | None = None) -> float:
        ocv = cell_ocv(self.soc_percent) * params.cells_series
        a = self.pack_current_a if current_a is None else current_a
        return ocv + a * params.pack_resistance_ohm

    def roles(self, params: CarParams) -> dict[str, object]:
        """The car as its CAN bus tells it, in the agent's role vocabulary."""
        charge_kw = self.charging_power_kw(params)
        at_limit = self.inputs.charge_cable and (self.held_at_limit or self.soc_percent >= self.inputs.charge_limit_percent)
        return {
            "soc_percent": round(self.soc_percent, 1),
            "gear": self.inputs.gear,
            "speed_kph": round(self.inputs.speed_kph, 1),
            "driver_present": self.inputs.driver_present,
            "door_open": self.inputs.door_open,
            "charge_cable": self.inputs.charge_cable,
            "charging_power_kw": round(charge_kw, 2),
            "pack_voltage_v": round(self.pack_voltage_v(params), 1),
            "pack_current_a": round(self.pack_current_a, 1),
            "pack_temp_min_c": round(self.pack_temp_c - 1.5, 1),
            "pack_temp_max_c": round(self.pack_temp_c + 1.5, 1),
            "vehicle_awake": True,
            "departure_event": self.inputs.departure_event,
            "cabin_preconditioning": self.inputs.cabin_preconditioning,
            "charge_limit_reached": bool(at_limit),
            "compute_temp_c": round(self.compute_temp_c, 1),
        }


def pack_current(ocv_v: float, r_ohm: float, pack_kw: float) -> float:
    """The current (A, positive into the pack) that puts `pack_kw` into the pack's terminals
    (negative: takes it out), from P = (OCV + I R) I. The discharge side is limited to the most
    power the pack can give (OCV^2 / 4R), beyond which no current delivers the demand."""
    p = pack_kw * 1000.0
    if r_ohm <= 0:
        return p / ocv_v
    disc = ocv_v * ocv_v + 4.0 * r_ohm * p
    return (-ocv_v + math.sqrt(max(0.0, disc))) / (2.0 * r_ohm)


def step(state: CarState, params: CarParams, dt: float) -> CarState:
    """Advance the physics by dt seconds (pure: returns a new state)."""
    if not dt >= 0:
        raise ValueError("dt must be >= 0")
    i = state.inputs
    charge_kw = state.charging_power_kw(params)
    pack_kw = charge_kw * params.charge_efficiency - state.load_kw(params)
    ocv = cell_ocv(state.soc_percent) * params.cells_series
    current = pack_current(ocv, params.pack_resistance_ohm, pack_kw)
    # The energy the cells store or give is OCV * I; the I²R part heats the pack.
    soc = state.soc_percent + ocv * current / 1000.0 * dt / 3600.0 / params.pack_kwh * 100.0
    soc = min(100.0, max(0.0, soc))
    held = state.held_at_limit
    if i.charge_cable and soc >= i.charge_limit_percent:
        held = True
    elif not i.charge_cable or soc < i.charge_limit_percent - params.limit_hysteresis_percent:
        held = False
    heat_kw = current**2 * params.pack_resistance_ohm / 1000.0
    temp = _rc(state.pack_temp_c, params.ambient_c, heat_kw, params.pack_thermal_kj_per_k,
               params.pack_cooling_kw_per_k, dt)
    compute_c = _rc(state.compute_temp_c, params.ambient_c, params.compute_idle_kw + i.compute_kw,
                    params.compute_thermal_kj_per_k, params.compute_cooling_kw_per_k, dt)
    if not (math.isfinite(temp) and math.isfinite(compute_c)):
        raise ArithmeticError("temperature diverged")
    return replace(state, soc_percent=soc, pack_temp_c=temp, compute_temp_c=compute_c, t=state.t + dt,
                   held_at_limit=held, pack_current_a=current)


def _rc(temp_c: float, ambient_c: float, heat_kw: float, c_kj_per_k: float, g_kw_per_k: float,
        dt: float) -> float:
    """A first-order RC node heated by `heat_kw`: exact over dt for a constant heat input."""
    target = ambient_c + heat_kw / g_kw_per_k
    return target + (temp_c - target) * math.exp(-dt * g_kw_per_k / c_kj_per_k)


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
