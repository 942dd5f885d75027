"""The governor's rules as invariants over generated timelines with noisy signals.

A hypothesis state machine drives a simulated parked car: time moves in uneven steps, SoC and
temperatures drift with noise, gears, doors, drivers, chargers, links, the broker, the grid
signal and the wall clock change at random, and roles go stale. After every decision the
invariants below are checked against the raw inputs, not against the governor's own state:

- nothing runs unless every safety condition of the design holds (rule by rule);
- the budget never exceeds the thermal derating line, the departure equation or the caps;
- hysteresis: after a stop for heat or the floor, RUN waits for the recovery threshold;
- the mode does not flap: changes in any hour stay under a bound set by dwell.min_off_s.
"""

from __future__ import annotations

import datetime as dt
import math

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from agent.bus.state import LinkStatus, Reading, Value, VehicleState
from agent.governor import Governor, GridSignal, Inputs, Mode, Policy
from agent.governor.decision import Decision
from agent.governor.policy import Caps, Departure, Dwell, Faults, Grid, Thermal, Vehicle, Window

POLICY = Policy(
    timezone="UTC", max_power_w=800.0, min_budget_w=10.0, soc_floor_percent=50.0,
    soc_hysteresis_percent=3.0, max_input_age_s=2.0,
    vehicle=Vehicle(battery_kwh=60.0, base_load_w=300.0, charge_efficiency=0.9),
    departure=Departure(weekly=tuple((d, 7 * 60 + 30) for d in range(5)), target_soc_percent=80.0,
                        margin_kwh=1.0, drain_s=900.0, handback_s=120.0),
    thermal=Thermal(pack_warn_c=40, pack_max_c=50, compute_warn_c=80, compute_max_c=95,
                    hysteresis_c=4, ki_w_per_c_s=0.5),
    dwell=Dwell(min_off_s=120.0, min_run_s=300.0),
    caps=Caps(energy_kwh_per_day=3.0, quiet_hours=(Window(1 * 60, 4 * 60),)),
    grid=Grid(max_price_per_kwh=0.5, max_carbon_g_per_kwh=400, max_age_s=900),
    faults=Faults(max_decode_errors_per_s=5, broker_down_max_s=600, clock_jump_s=120,
                  clock_jump_hold_s=60),
)
# Each upward change waits min_off after the previous change, and between two upward changes
# there are at most two downward ones (RUN -> STANDBY -> OFF).
MAX_CHANGES_PER_HOUR = 3 * (math.ceil(3600 / POLICY.dwell.min_off_s) + 1)
START_WALL = dt.datetime(2027, 1, 14, 9, 0, tzinfo=dt.UTC).timestamp()  # Thursday 09:00
EPS = 1e-6

noise = st.floats(-1.0, 1.0, allow_nan=False)


class ParkedCar(RuleBasedStateMachine):
    @initialize(soc=st.floats(20, 100), charging=st.booleans(), kw=st.sampled_from([0.0, 3.7, 7.4, 11.0]),
                pack=st.floats(10, 45), compute=st.floats(30, 85))
    def setup(self, soc: float, charging: bool, kw: float, pack: float, compute: float) -> None:
        self.mono, self.wall = 5000.0, START_WALL
        self.values: dict[str, Value] = {
            "gear": "P", "speed_kph": 0.0, "driver_present": False, "door_open": False,
            "soc_percent": soc, "charge_cable": charging, "charging_power_kw": kw if charging else 0.0,
            "pack_temp_max_c": pack, "compute_temp_c": compute,
            "departure_event": False, "cabin_preconditioning": False,
        }
        self.readings: dict[str, Reading] = {k: Reading(v, self.mono) for k, v in self.values.items()}
        self.frozen: set[str] = set()
        self.link = True
        self.decode_rate = 0.0
        self.broker_down_since: float | None = None
        self.grid: GridSignal | None = None
        self.gov = Governor(POLICY)
        self.changes: list[float] = []
        self.last: Decision | None = None
        self.energy_wh, self.day = 0.0, self._day()
        self.hot = {"pack": False, "compute": False}
        self.floor_latched = False
        self.jump_at: float | None = None
        self.prev_mode = Mode.OFF

    def _day(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.wall, dt.UTC).date()

    # -- what the world does --------------------------------------------------------------------

    @rule(dt_s=st.one_of(st.floats(0.05, 5.0), st.floats(5.0, 600.0)), soc_n=noise, temp_n=noise,
          heat=st.floats(-2.0, 3.0))
    def tick(self, dt_s: float, soc_n: float, temp_n: float, heat: float) -> None:
        self._advance(dt_s, soc_n, temp_n, heat)

    def _advance(self, dt_s: float, soc_n: float = 0.0, temp_n: float = 0.0, heat: float = 0.0) -> None:
        before_mono, before_wall = self.mono, self.wall
        last_budget = self.last.power_budget_w if self.last and self.last.mode is Mode.RUN else 0.0
        self.mono += dt_s
        self.wall += dt_s
        if self._day() != self.day:
            self.energy_wh, self.day = 0.0, self._day()
        self.energy_wh += last_budget * dt_s / 3600.0
        soc = float(self.values["soc_percent"]) + 0.3 * soc_n  # type: ignore[arg-type]
        self.values["soc_percent"] = min(100.0, max(0.0, soc))
        for role in ("pack_temp_max_c", "compute_temp_c"):
            self.values[role] = float(self.values[role]) + heat + temp_n  # type: ignore[arg-type]
        for role, v in self.values.items():
            if role not in self.frozen:
                self.readings[role] = Reading(v, self.mono - abs(soc_n) * 0.3)  # jitter in arrival
        assert before_mono < self.mono and before_wall < self.wall
        self._decide()

    @rule(cable=st.booleans(), kw=st.sampled_from([0.0, 0.3, 1.4, 2.3, 3.7, 7.4, 11.0]))
    def charger(self, cable: bool, kw: float) -> None:
        self.values["charge_cable"] = cable
        self.values["charging_power_kw"] = kw if cable else 0.0
        self._advance(0.2)

    @rule(role=st.sampled_from(["pack_temp_max_c", "compute_temp_c"]),
          temp=st.one_of(st.floats(0.0, 110.0), st.sampled_from([-14.5, -11, -9.5, -5, -0.5, 0, 2, 5, 9.9, 10, 12])))
    def temperature(self, role: str, temp: float) -> None:
        # Small values are offsets from warn: the thresholds and the hysteresis band are where
        # bugs live, so visit them often.
        warn = POLICY.thermal.pack_warn_c if role == "pack_temp_max_c" else POLICY.thermal.compute_warn_c
        self.values[role] = warn + temp if temp < 15 else temp
        self._advance(0.2)

    @rule(soc=st.floats(0.0, 100.0))
    def soc_jump(self, soc: float) -> None:
        self.values["soc_percent"] = soc
        self._advance(0.2)

    @rule(offset=st.sampled_from([-0.5, 1.0, 2.9, 3.1]), wait=st.sampled_from([0.2, 130.0]))
    def soc_near_floor(self, offset: float, wait: float) -> None:
        """SoC just around the floor in force now (the departure target off the charger)."""
        floor = POLICY.soc_floor_percent
        nd = POLICY.next_departure(self.wall)
        plugged = self.values["charge_cable"] is True and float(self.values["charging_power_kw"]) > 0  # type: ignore[arg-type]
        if not plugged and nd is not None and nd[0] - self.wall <= POLICY.departure.off_charger_horizon_s:
            floor = max(floor, nd[1])
        self.values["soc_percent"] = floor + offset
        self._advance(wait)

    @rule(hours=st.floats(0.5, 12.0))
    def long_wait(self, hours: float) -> None:
        self._advance(hours * 3600.0)

    @rule(kind=st.sampled_from(["gear", "speed", "driver_present", "door_open", "departure_event",
                                "cabin_preconditioning", "link", "decode", "broker", "freeze",
                                "forget", "grid", "clock"]),
          role=st.sampled_from(sorted(POLICY.required_roles) + ["charging_power_kw"]),
          gear=st.sampled_from(["R", "N", "D"]), grid=st.tuples(
              st.one_of(st.none(), st.floats(0.0, 1.0)), st.one_of(st.none(), st.floats(0, 800)),
              st.one_of(st.none(), st.floats(0.0, 1000.0))),
          jump=st.sampled_from([-7200.0, 600.0, 86400.0]))
    def disturb(self, kind: str, role: str, gear: str, grid: tuple[float | None, ...], jump: float) -> None:
        """One thing goes wrong (or the fleet says something); `settle` puts it right."""
        if kind == "gear":
            self.values["gear"] = gear
        elif kind == "speed":
            self.values["speed_kph"] = 3.0
        elif kind in ("driver_present", "door_open", "departure_event", "cabin_preconditioning"):
            self.values[kind] = True
        elif kind == "link":
            self.link = False
        elif kind == "decode":
            self.decode_rate = 10.0
        elif kind == "broker":
            self.broker_down_since = self.broker_down_since or self.mono
        elif kind == "freeze":
            self.frozen.add(role)  # the frames carrying it stop arriving
        elif kind == "forget":
            self.readings.pop(role, None)  # an SNA value reads as unknown
        elif kind == "grid":
            self.grid = GridSignal(self.mono, *grid)
        elif kind == "clock":
            self.wall += jump
            if self.last is not None:  # a jump before the first look cannot be seen, nor matter
                self.jump_at = self.mono
            if self._day() != self.day:
                self.energy_wh, self.day = 0.0, self._day()
        self._advance(0.2)

    @rule()
    def settle(self) -> None:
        self.values.update({"gear": "P", "speed_kph": 0.0, "driver_present": False, "door_open": False,
                            "departure_event": False, "cabin_preconditioning": False})
        self.link, self.decode_rate, self.broker_down_since = True, 0.0, None
        self.frozen.clear()
        self._advance(0.2)

    # -- the governor and the invariants ---------------------------------------------------------

    def _decide(self) -> None:
        st_ = VehicleState(dict(self.readings), LinkStatus(self.link, "" if self.link else "down", self.mono))
        inputs = Inputs(wall=self.wall, grid=self.grid, broker_down_since=self.broker_down_since,
                        decode_errors_per_s=self.decode_rate)
        d = self.gov.decide(st_, self.mono, inputs)
        self._check(d, st_)
        rank = {Mode.OFF: 0, Mode.STANDBY: 1, Mode.RUN: 2}
        if rank[d.mode] > rank[self.prev_mode] and self.changes:
            assert self.mono - self.changes[-1] >= POLICY.dwell.min_off_s, "restart inside min_off"
        if d.mode is not self.prev_mode:
            self.changes.append(self.mono)
            self.prev_mode = d.mode
        self.last = d

    def _fresh(self, st_: VehicleState, role: str) -> Value | None:
        return st_.value(role, self.mono, POLICY.max_input_age_s)

    def _check(self, d: Decision, st_: VehicleState) -> None:
        p = POLICY
        assert 0.0 <= d.power_budget_w <= p.max_power_w
        assert d.reasons or d.mode is Mode.RUN, "every stop says why"
        v = {role: self._fresh(st_, role) for role in self.values}
        # The latches, tracked from the raw readings the governor saw.
        for name, role in (("pack", "pack_temp_max_c"), ("compute", "compute_temp_c")):
            t = v[role]
            warn, mx = getattr(p.thermal, f"{name}_warn_c"), getattr(p.thermal, f"{name}_max_c")
            if isinstance(t, float):
                if t >= mx:
                    self.hot[name] = True
                elif t <= warn - p.thermal.hysteresis_c:
                    self.hot[name] = False
        charging = v["charge_cable"] is True and isinstance(v["charging_power_kw"], float) \
            and v["charging_power_kw"] > 0
        nd = p.next_departure(self.wall)
        soc = v["soc_percent"]
        if isinstance(soc, float):
            floor = p.soc_floor_percent
            if not charging and nd is not None and nd[0] - self.wall <= p.departure.off_charger_horizon_s:
                floor = max(floor, nd[1])
            if soc < floor:
                self.floor_latched = True
            elif soc >= floor + p.soc_hysteresis_percent:
                self.floor_latched = False
        if d.mode is not Mode.RUN:
            assert d.power_budget_w == 0.0 and not d.drain
            return

        # Rule 7 and consent: every fault stops.
        assert self.link and self.decode_rate <= p.faults.max_decode_errors_per_s
        assert self.broker_down_since is None or self.mono - self.broker_down_since <= p.faults.broker_down_max_s
        assert self.jump_at is None or self.mono - self.jump_at >= p.faults.clock_jump_hold_s
        # Rule 1: parked, nobody, nothing signalling a departure, every input fresh.
        for role in p.required_roles:
            assert v[role] is not None, role
        assert v["gear"] == "P" and v["speed_kph"] == 0.0 and v["driver_present"] is False
        assert v["door_open"] is False
        assert v["departure_event"] is not True and v["cabin_preconditioning"] is not True
        assert d.power_budget_w >= p.min_budget_w
        # Rule 5: below max, below the derating line, and cooled after a stop.
        for name, role in (("pack", "pack_temp_max_c"), ("compute", "compute_temp_c")):
            t = float(v[role])  # type: ignore[arg-type]
            warn, mx = getattr(p.thermal, f"{name}_warn_c"), getattr(p.thermal, f"{name}_max_c")
            assert t < mx and not self.hot[name]
            assert d.power_budget_w <= p.max_power_w * min(1.0, (mx - t) / (mx - warn)) + EPS
        # Rule 6: caps and quiet hours.
        local = p.local(self.wall)
        assert not any(w.contains(local) for w in p.caps.quiet_hours)
        assert self.energy_wh < p.caps.energy_kwh_per_day * 1000.0  # type: ignore[operator]
        if self.grid is not None and v["gear"] == "P":
            g = self.grid
            if g.power_cap_w is not None and self.mono - g.t <= p.grid.max_age_s:
                assert d.power_budget_w <= g.power_cap_w + EPS
        # Rules 3 and 4: the battery and the departure.
        assert isinstance(soc, float) and nd is not None
        left_s = nd[0] - self.wall
        assert left_s > p.departure.handback_s
        assert d.drain == (left_s <= p.departure.drain_s)
        if charging:
            hours = left_s / 3600.0
            need_wh = max(0.0, (nd[1] - soc) / 100 * p.vehicle.battery_kwh * 1000 + p.departure.margin_kwh * 1000)
            charger_w = float(v["charging_power_kw"]) * 1000  # type: ignore[arg-type]
            lhs = (charger_w - d.power_budget_w - p.vehicle.base_load_w) * hours * p.vehicle.charge_efficiency
            assert lhs >= need_wh - 1e-3, (lhs, need_wh)
        else:
            assert not self.floor_latched, "resumed inside the floor's hysteresis band"
            floor = p.soc_floor_percent
            if left_s <= p.departure.off_charger_horizon_s:
                floor = max(floor, nd[1])
            assert soc >= floor

    @invariant()
    def mode_does_not_flap(self) -> None:
        if not hasattr(self, "changes"):
            return
        for i, t in enumerate(self.changes):
            in_hour = sum(1 for u in self.changes[i:] if u - t < 3600.0)
            assert in_hour <= MAX_CHANGES_PER_HOUR, (in_hour, self.changes)

    @precondition(lambda self: hasattr(self, "gov"))
    @invariant()
    def governor_counts_no_more_changes_than_happened(self) -> None:
        assert self.gov.changes_last_hour(self.mono) <= MAX_CHANGES_PER_HOUR


ParkedCar.TestCase.settings = settings(
    max_examples=200, stateful_step_count=80, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestParkedCar = ParkedCar.TestCase
