"""The governor's rules, as one pure step: (state, policy, now, memory, inputs) -> (Decision, memory).

No I/O, no clock reads, no globals: everything the rules remember between calls (hysteresis
latches, the PI integrator, dwell timers, energy and cost used today, the last clock pair for
jump detection) lives in the immutable `Memory` returned with each decision.

Each rule adds reasons of one severity (see decision.CODES). Composition:
  any OFF reason -> OFF; any STOP reason -> STANDBY; else the budget is the smallest LIMIT,
  STANDBY if that is below min_budget_w; SOFT reasons (price, grid) give STANDBY unless the
  current RUN is younger than dwell.min_run_s. Finally any move up (OFF -> STANDBY -> RUN)
  waits dwell.min_off_s after the last change; moves down are never delayed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from agent.bus.state import GEARS, ROLES, VehicleState
from agent.governor.decision import Decision, Mode, Reason
from agent.governor.inputs import Inputs
from agent.governor.policy import Policy

_RANK = {Mode.OFF: 0, Mode.STANDBY: 1, Mode.RUN: 2}
SENSORS = (("pack", "pack_temp_max_c"), ("compute", "compute_temp_c"))


@dataclass(frozen=True)
class Memory:
    """Everything the governor carries from one step to the next. Start from Memory()."""

    mode: Mode = Mode.OFF
    since: float | None = None  # monotonic time of the last mode change
    budget_w: float = 0.0  # the budget last granted, charged to today's energy until the next step
    last_mono: float | None = None
    last_wall: float | None = None
    clock_hold_until: float | None = None
    floor_latched: bool = False
    hot: frozenset[str] = frozenset()  # sensors stopped above max, waiting to cool below warn-hyst
    integral: tuple[tuple[str, float], ...] = (("pack", 0.0), ("compute", 0.0))  # °C·s, <= 0
    day: str | None = None  # local date the energy and cost figures belong to
    energy_wh: float = 0.0
    cost: float = 0.0
    changes: tuple[float, ...] = ()  # monotonic times of mode changes within the last hour


@dataclass
class _Ctx:
    state: VehicleState
    policy: Policy
    now: float
    wall: float | None
    inputs: Inputs
    mem: Memory
    dt_s: float
    off: list[Reason] = field(default_factory=list)
    stop: list[Reason] = field(default_factory=list)
    soft: list[Reason] = field(default_factory=list)
    limits: list[tuple[float, Reason]] = field(default_factory=list)
    info: list[Reason] = field(default_factory=list)
    drain: bool = False
    next_departure: tuple[float, float] | None = None
    floor_latched: bool = False
    hot: set[str] = field(default_factory=set)
    integral: dict[str, float] = field(default_factory=dict)
    wall_missing_said: bool = False

    def value(self, role: str) -> object:
        """The role's value if fresh and of its declared type; anything else reads as unknown."""
        v = self.state.value(role, self.now, self.policy.max_input_age_s)
        kind = ROLES.get(role)
        if v is None or kind is None:
            return None
        if kind is bool:
            return v if isinstance(v, bool) else None
        if kind is float:
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            return float(v) if ok else None
        if role == "gear":
            return v if v in GEARS else None
        return v if isinstance(v, kind) else None

    def number(self, role: str) -> float | None:
        v = self.value(role)
        return v if isinstance(v, float) else None

    def need_wall(self, what: str) -> bool:
        if self.wall is not None:
            return True
        if not self.wall_missing_said:
            self.stop.append(Reason("no_wall_clock", f"the wall time is unknown, so {what} cannot be judged"))
            self.wall_missing_said = True
        return False


# -- rules ---------------------------------------------------------------------------------------


def rule_faults(c: _Ctx) -> None:
    f = c.policy.faults
    if not c.state.link.up:
        c.off.append(Reason("link_down", f"vehicle link down: {c.state.link.reason or 'no reason given'}"))
    if c.inputs.decode_errors_per_s > f.max_decode_errors_per_s:
        mismatched = c.inputs.length_mismatches_per_s
        why = (f" ({mismatched:.1f}/s with a length the DBC does not give: a second bus on the line, "
               "or the wrong DBC?)" if mismatched > 0 else "")
        c.off.append(Reason("decode_errors", f"{c.inputs.decode_errors_per_s:.1f} CAN decode errors per second "
                                             f"exceed the limit of {f.max_decode_errors_per_s:g}{why}"))
    down = c.inputs.broker_down_since
    if down is not None and c.now - down > f.broker_down_max_s:
        c.off.append(Reason("broker_down", f"the fleet broker has been unreachable for {(c.now - down) / 60:.0f} min"))
    if c.mem.clock_hold_until is not None and c.now < c.mem.clock_hold_until:
        c.off.append(Reason("clock_jump", "the wall clock jumped; waiting for it to settle"))
    if not c.policy.consent:
        c.off.append(Reason("no_consent", "the owner has not consented"))
    if c.inputs.storage_fault is not None:
        # A result that cannot be stored cannot be delivered: take no work, but stay up.
        c.stop.append(Reason("storage", c.inputs.storage_fault))


def rule_fresh_inputs(c: _Ctx) -> None:
    age = c.policy.max_input_age_s
    roles = list(c.policy.required_roles)
    if c.value("charge_cable") is True and "charging_power_kw" not in roles:
        roles.append("charging_power_kw")  # plugged in: charging or not is a fact we need
    for role in roles:
        if c.value(role) is None:
            c.stop.append(Reason("stale_input", f"{role} is unknown, invalid or older than {age:g} s"))


def rule_parked(c: _Ctx) -> None:
    gear = c.value("gear")
    if gear is not None and gear != "P":
        c.stop.append(Reason("not_parked", f"gear is {gear}, not P"))
    speed = c.number("speed_kph")
    if speed is not None and speed != 0.0:
        c.stop.append(Reason("moving", f"the car moves at {speed:g} km/h"))
    if c.value("driver_present") is True:
        c.stop.append(Reason("driver_present", "a driver is present"))


def rule_departure_events(c: _Ctx) -> None:
    if c.value("door_open") is True:
        c.stop.append(Reason("door_open", "a door is open"))
    if c.value("departure_event") is True:
        c.stop.append(Reason("departure_event", "the car signals a departure"))
    if c.value("cabin_preconditioning") is True:
        c.stop.append(Reason("preconditioning", "the cabin is being preconditioned for a departure"))


def rule_schedule(c: _Ctx) -> None:
    dep = c.policy.departure
    if not dep.known or not c.need_wall("the departure schedule"):
        return
    assert c.wall is not None
    c.next_departure = c.policy.next_departure(c.wall)
    if c.next_departure is None:
        return
    left = c.next_departure[0] - c.wall
    if left <= dep.handback_s:
        c.stop.append(Reason("departure_imminent", f"departure in {left / 60:.0f} min: work handed back"))
    elif left <= dep.drain_s:
        c.drain = True
        c.info.append(Reason("departure_drain", f"departure in {left / 60:.0f} min: no new jobs"))


def rule_energy_source(c: _Ctx) -> None:
    """Battery floor off the charger; the departure guarantee on it; the charge-limit hold."""
    p, v = c.policy, c.policy.vehicle
    soc = c.number("soc_percent")
    c.floor_latched = c.mem.floor_latched
    if soc is None:
        return  # unknown SoC already stopped us through rule_fresh_inputs if it is required
    cable = c.value("charge_cable") is True
    charger_kw = c.number("charging_power_kw") if cable else None
    charging = charger_kw is not None and charger_kw > 0.0
    held = cable and not charging and c.value("charge_limit_reached") is True \
        and v.compute_from_charger_at_limit_w > 0.0
    target = c.next_departure[1] if c.next_departure else None

    floor = p.soc_floor_percent
    if not (charging or held) and target is not None and c.next_departure is not None \
            and c.wall is not None \
            and c.next_departure[0] - c.wall <= p.departure.off_charger_horizon_s:
        floor = max(floor, target)  # off the charger the battery is all the departure has
    if soc < floor:
        c.floor_latched = True
    elif soc >= floor + p.soc_hysteresis_percent:
        c.floor_latched = False

    if charging:
        assert charger_kw is not None
        surplus_w = charger_kw * 1000.0 - v.base_load_w
        if c.floor_latched:
            c.limits.append((surplus_w, Reason(
                "charger_surplus", f"SoC {soc:.0f} % is below the floor: only the charger's surplus "
                                   f"of {max(0.0, surplus_w):.0f} W may be used")))
        if c.next_departure is not None and c.wall is not None and target is not None:
            hours = max(1e-6, (c.next_departure[0] - c.wall) / 3600.0)
            need_wh = max(0.0, (target - soc) / 100.0 * v.battery_kwh * 1000.0
                          + p.departure.margin_kwh * 1000.0)
            bound = surplus_w - need_wh / (hours * v.charge_efficiency)
            c.limits.append((bound, Reason(
                "departure_reserve", f"{need_wh / 1000:.1f} kWh still needed for {target:.0f} % in "
                                     f"{hours:.1f} h leave {max(0.0, bound):.0f} W for compute")))
    elif held:
        c.limits.append((v.compute_from_charger_at_limit_w, Reason(
            "charge_limit_hold", f"held at the charge limit: compute may draw "
                                 f"{v.compute_from_charger_at_limit_w:.0f} W from the charger")))
    else:
        if p.require_charging:
            c.stop.append(Reason("not_charging", "the car is not charging and the policy requires it"))
        if c.floor_latched:
            what = "the departure target" if target is not None and floor == target else "the floor"
            c.stop.append(Reason("soc_floor", f"SoC {soc:.0f} % is below {what} of {floor:.0f} % "
                                              f"(resumes at {floor + p.soc_hysteresis_percent:.0f} %)"))


def rule_thermal(c: _Ctx) -> None:
    """PI derating between warn and max, stop above max, resume below warn - hysteresis.

    budget = Pmax·(max − T)/(max − warn) + ki·I, I = ∫(warn − T)dt kept ≤ 0: the proportional
    part is a straight derating line, the integral pulls further down while the part stays
    above warn and bleeds off once below it, so a restart after cooling ramps up gently.
    """
    t, pmax = c.policy.thermal, c.policy.max_power_w
    c.hot = set(c.mem.hot)
    integral = dict(c.mem.integral)
    for name, role in SENSORS:
        warn, mx = getattr(t, f"{name}_warn_c"), getattr(t, f"{name}_max_c")
        temp = c.number(role)
        i = integral.get(name, 0.0)
        if temp is None:
            c.integral[name] = i
            continue
        if temp >= mx:
            c.hot.add(name)
        elif name in c.hot and temp <= warn - t.hysteresis_c:
            c.hot.discard(name)
        i = i + (warn - temp) * c.dt_s
        i = min(0.0, i)
        if t.ki_w_per_c_s > 0:
            i = max(i, -pmax / t.ki_w_per_c_s)
        c.integral[name] = i
        if name in c.hot:
            c.stop.append(Reason(f"{name}_too_hot", f"{name} at {temp:.0f} °C (max {mx:g} °C; resumes "
                                                    f"below {warn - t.hysteresis_c:g} °C)"))
            continue
        ff = pmax * min(1.0, max(0.0, (mx - temp) / (mx - warn)))
        budget = min(pmax, max(0.0, ff + t.ki_w_per_c_s * i))
        if budget < pmax:
            c.limits.append((budget, Reason("thermal_derate", f"{name} at {temp:.0f} °C: derated to "
                                                              f"{budget:.0f} W")))


def rule_caps(c: _Ctx) -> None:
    caps, p = c.policy.caps, c.policy
    energy = max(c.mem.energy_wh, c.inputs.energy_today_wh or 0.0)
    cost = max(c.mem.cost, c.inputs.cost_today or 0.0)
    if caps.energy_kwh_per_day is not None and energy >= caps.energy_kwh_per_day * 1000.0:
        c.stop.append(Reason("energy_cap", f"{energy / 1000:.2f} kWh used today reached the cap "
                                           f"of {caps.energy_kwh_per_day:g} kWh"))
    if caps.cost_per_day is not None and cost >= caps.cost_per_day:
        c.stop.append(Reason("cost_cap", f"{cost:.2f} {p.tariff.currency} spent today reached the "
                                         f"cap of {caps.cost_per_day:g}"))
    if caps.quiet_hours and c.need_wall("quiet hours"):
        assert c.wall is not None
        if any(w.contains(p.local(c.wall)) for w in caps.quiet_hours):
            c.stop.append(Reason("quiet_hours", "inside the owner's quiet hours"))
    if caps.max_price_per_kwh is not None and c.need_wall("the tariff"):
        assert c.wall is not None
        price = p.tariff.price_at(p.local(c.wall))
        if price > caps.max_price_per_kwh:
            c.soft.append(Reason("tariff_price", f"electricity costs {price:.2f} {p.tariff.currency}/kWh "
                                                 f"now, above the owner's {caps.max_price_per_kwh:.2f}"))


def rule_grid(c: _Ctx) -> None:
    g, lim = c.inputs.grid, c.policy.grid
    if g is None or not 0.0 <= c.now - g.t <= lim.max_age_s:
        return
    if lim.max_price_per_kwh is not None and g.price_per_kwh is not None \
            and g.price_per_kwh > lim.max_price_per_kwh:
        c.soft.append(Reason("grid_price", f"the grid price {g.price_per_kwh:.2f}/kWh is above "
                                           f"{lim.max_price_per_kwh:.2f}"))
    if lim.max_carbon_g_per_kwh is not None and g.carbon_g_per_kwh is not None \
            and g.carbon_g_per_kwh > lim.max_carbon_g_per_kwh:
        c.soft.append(Reason("grid_carbon", f"the grid emits {g.carbon_g_per_kwh:.0f} g CO2/kWh, above "
                                            f"{lim.max_carbon_g_per_kwh:.0f}"))
    if g.power_cap_w is not None and math.isfinite(g.power_cap_w):
        c.limits.append((g.power_cap_w, Reason("grid_power_cap", f"the grid asks for at most "
                                                                 f"{max(0.0, g.power_cap_w):.0f} W")))


RULES = (rule_faults, rule_fresh_inputs, rule_parked, rule_departure_events, rule_schedule,
         rule_energy_source, rule_thermal, rule_caps, rule_grid)


# -- composition ---------------------------------------------------------------------------------


def _account(policy: Policy, now: float, mem: Memory, inputs: Inputs) -> tuple[Memory, float]:
    """Charge the last interval's budget to today, detect clock jumps; returns (memory, dt)."""
    f = policy.faults
    dt_s = 0.0 if mem.last_mono is None else now - mem.last_mono
    hold = mem.clock_hold_until
    if dt_s < 0:  # a monotonic clock that went backwards is a fault, not time travel
        hold, dt_s = now + f.clock_jump_hold_s, 0.0
    wall = inputs.wall
    if wall is not None and mem.last_wall is not None and mem.last_mono is not None \
            and abs((wall - mem.last_wall) - (now - mem.last_mono)) > f.clock_jump_s:
        hold = now + f.clock_jump_hold_s
    energy, cost, day = mem.energy_wh, mem.cost, mem.day
    if wall is not None:
        today = policy.local(wall).date().isoformat()
        if day != today:
            energy, cost, day = 0.0, 0.0, today
    if mem.mode is Mode.RUN and dt_s > 0:
        wh = mem.budget_w * dt_s / 3600.0
        at = mem.last_wall if mem.last_wall is not None else wall
        price = policy.tariff.price_at(policy.local(at)) if at is not None else policy.tariff.default_per_kwh
        energy += wh
        cost += wh / 1000.0 * price
    return replace(mem, clock_hold_until=hold, energy_wh=energy, cost=cost, day=day), dt_s


def step(state: VehicleState, policy: Policy, now: float, memory: Memory | None = None,
         inputs: Inputs | None = None) -> tuple[Decision, Memory]:
    """One decision. `now` is monotonic seconds, as the state's timestamps; wall time is in inputs."""
    inputs = inputs or Inputs()
    mem, dt_s = _account(policy, now, memory or Memory(), inputs)
    c = _Ctx(state, policy, now, inputs.wall, inputs, mem, dt_s)
    for rule in RULES:
        rule(c)

    budget = 0.0
    drain = False
    if c.off:
        mode, reasons = Mode.OFF, c.off + c.stop
    elif c.stop:
        mode, reasons = Mode.STANDBY, c.stop
    else:
        budget = min([policy.max_power_w] + [b for b, _ in c.limits])
        limiting = [r for b, r in c.limits if b <= budget + 1e-9]
        young_run = mem.mode is Mode.RUN and mem.since is not None \
            and now - mem.since < policy.dwell.min_run_s
        if budget < policy.min_budget_w or budget <= 0.0:
            mode, reasons, budget = Mode.STANDBY, limiting or [Reason(
                "budget_too_small", f"a budget of {max(0.0, budget):.0f} W is not worth running")], 0.0
        elif c.soft and not young_run:
            mode, reasons, budget = Mode.STANDBY, c.soft, 0.0
        else:
            mode, drain = Mode.RUN, c.drain
            reasons = limiting + c.info
            if c.soft:
                reasons += [Reason("dwell_min_run", "the run is younger than the minimum run time")] + c.soft

    if _RANK[mode] > _RANK[mem.mode] and mem.since is not None \
            and now - mem.since < policy.dwell.min_off_s:
        wait = policy.dwell.min_off_s - (now - mem.since)
        mode, budget, drain = mem.mode, 0.0, False
        reasons = [Reason("dwell_min_off", f"stopped {now - mem.since:.0f} s ago: restart in "
                                           f"{wait:.0f} s")] + c.stop
    since, changes = mem.since, tuple(t for t in mem.changes if now - t < 3600.0)
    if mode is not mem.mode:
        since, changes = now, changes + (now,)
    new = replace(
        mem, mode=mode, since=since, budget_w=budget if mode is Mode.RUN else 0.0,
        last_mono=now, last_wall=inputs.wall,  # a pair, or no wall: jumps compare like with like
        floor_latched=c.floor_latched, hot=frozenset(c.hot),
        integral=tuple(sorted(c.integral.items())) or mem.integral, changes=changes,
    )
    return Decision(mode, budget, tuple(reasons), drain), new


def decide(state: VehicleState, policy: Policy, now: float, inputs: Inputs | None = None) -> Decision:
    """The stateless entry: one decision with no history (no hysteresis, dwell or accounting)."""
    return step(state, policy, now, Memory(), inputs)[0]


class Governor:
    """A step function with its memory kept for the caller. Its only inputs are the arguments."""

    def __init__(self, policy: Policy, memory: Memory | None = None) -> None:
        self.policy = policy
        self.memory = memory or Memory()

    def decide(self, state: VehicleState, now: float, inputs: Inputs | None = None) -> Decision:
        decision, self.memory = step(state, self.policy, now, self.memory, inputs)
        return decision

    def changes_last_hour(self, now: float) -> int:
        return sum(1 for t in self.memory.changes if now - t < 3600.0)
