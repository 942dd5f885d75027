"""Run one scenario on the bench: the simulated car, the real shim, agent, broker and fleet side.

Owns simulated time. The bench moves a `ClockDriver` in steps of `scenario.step_s`; the agent
process runs on the `SharedClock` of the same file. Each step: time moves on, the timeline's
due events are applied, the physics advances with the compute power the agent's meter showed
over the step, the car's frames (encoded by the vehicle profile with cantools) go through the
firmware shim onto the pty, and the bench waits until the agent's governor has looked at them
before it moves time again (lockstep: a night takes as long as the agent needs to read it, not
as long as the night). `speed` caps simulated seconds per real second (1.0 is real time).

Every step is checked against the governor's safety rules from the simulator's side (what
the car really was, not what the agent believed): compute must not draw power while the car
is not parked, a driver is in, consent is off, the bus is silent, the pack is below the floor
off the charger, a temperature is over its maximum, or the wall clock just jumped.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from agent.bus.profile import VehicleProfile
from agent.clock import ClockDriver
from agent.fleet import protocol as p
from agent.fleet.broker import Broker, start_broker
from agent.fleet.fleetside import FleetClient, Task
from agent.governor.policy import Policy
from agent.ledger.store import STATE_FILE
from hil.bench import AgentProcess, CarOnBus
from hil.scenario import Scenario, TimelineEvent
from hil.sim import CarInputs, CarParams, CarState, step

CAR = "hil-car"
GRACE_S = 1.5  # simulated seconds a stop may take: the frame's max age (0.5 s) plus a step or two
ACK_TIMEOUT_S = 0.3  # real seconds to wait for the governor before moving time anyway
BIG_STEP_S = 5.0  # while no frames flow and nothing computes, time moves in larger steps
POWER_MODEL = {"watts_per_core": 150.0, "idle_w": 0.0, "cores": 2, "min_duty": 0.05}


@dataclass
class Sample:
    t: float
    soc: float
    charger_kw: float
    compute_w: float
    pack_c: float
    compute_c: float
    mode: str
    reasons: tuple[str, ...]


@dataclass
class Verdict:
    name: str
    ok: bool
    detail: str


@dataclass
class Result:
    scenario: Scenario
    samples: list[Sample] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # the timeline as it happened
    departure_soc: float | None = None
    baseline_soc: float | None = None
    meter_wh: float = 0.0
    ledger_wh: float = 0.0
    jobs: dict[str, int] = field(default_factory=dict)
    steps: int = 0
    real_s: float = 0.0
    acks_missed: int = 0
    agent_rc: int | None = None
    report_md: Path | None = None
    report_png: Path | None = None

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)

    @property
    def failed(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.ok]


def car_setup(sc: Scenario) -> tuple[CarState, CarParams]:
    """The car at the start of a scenario, from its [car] and [charger] tables."""
    params_names = {f.name for f in fields(CarParams)}
    state_names = {"soc_percent", "pack_temp_c", "compute_temp_c"}
    input_names = {f.name for f in fields(CarInputs)}
    unknown = set(sc.car) - params_names - state_names - input_names
    if unknown:
        raise ValueError(f"{sc.path}: [car] has unknown field(s) {', '.join(sorted(unknown))}")
    bad = [k for k, v in sc.car.items() if k in params_names | state_names
           and (isinstance(v, bool) or not isinstance(v, (int, float)))]
    if bad:
        raise ValueError(f"{sc.path}: [car] {', '.join(sorted(bad))} must be numbers")
    params = CarParams(**{k: float(v) if not isinstance(v, int) or k != "cells_series" else v
                          for k, v in sc.car.items() if k in params_names})
    inputs = CarInputs(charge_cable=bool(sc.charger.get("plugged", False)),
                       charger_kw=float(sc.charger.get("kw", 0.0)), dc=bool(sc.charger.get("dc", False)),
                       **{k: v for k, v in sc.car.items() if k in input_names})
    state = CarState(inputs=inputs, **{k: float(v) for k, v in sc.car.items() if k in state_names})
    state.pack_temp_c = float(sc.car.get("pack_temp_c", params.ambient_c + 2.0))
    state.compute_temp_c = float(sc.car.get("compute_temp_c", params.ambient_c + 2.0))
    return state, params


def apply_physical(ev: TimelineEvent, s: CarState, params: CarParams) -> bool:
    """Apply an event that changes the car itself; False for events of the bench's world."""
    i, a = s.inputs, ev.params
    match ev.kind:
        case "plug":
            i.charge_cable, i.charger_kw, i.dc = True, float(a["kw"]), bool(a["dc"])
        case "unplug":
            i.charge_cable = False
        case "charger_limit":
            i.charger_kw = float(a["kw"])
        case "charge_limit":
            i.charge_limit_percent = float(a["percent"])
        case "door_open" | "door_close":
            i.door_open = ev.kind == "door_open"
        case "driver_in" | "driver_out":
            i.driver_present = ev.kind == "driver_in"
        case "depart":
            i.departure_event = i.door_open = i.driver_present = True
        case "precondition_on" | "precondition_off":
            i.cabin_preconditioning = ev.kind == "precondition_on"
        case "ambient":
            params.ambient_c = float(a["c"])
        case _:
            return False
    return True


def baseline_departure_soc(sc: Scenario) -> float | None:
    """The SoC at departure with no compute at all: what the charger alone could provide."""
    if sc.departure_s is None:
        return None
    state, params = car_setup(sc)
    events = [e for e in sc.events if e.at_s <= sc.departure_s]
    t, n, dt = 0.0, 0, 10.0
    while t < sc.departure_s:
        while n < len(events) and events[n].at_s <= t:
            apply_physical(events[n], state, params)
            n += 1
        h = min(dt, sc.departure_s - t)
        state = step(state, params, h)
        t += h
    return state.soc_percent


class Bench:
    """One scenario run. `run()` returns a Result with its verdicts; it never raises for a
    failing expectation, only for a bench that cannot start (no mosquitto, no shim build)."""

    def __init__(self, sc: Scenario, workdir: Path | None = None, speed: float | None = None,
                 progress: Callable[[str], None] | None = None, progress_every_s: float = 2.0) -> None:
        self.sc = sc
        self.work = Path(workdir or tempfile.mkdtemp(prefix=f"fleetnode-hil-{sc.name}-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.speed = speed
        self.progress = progress
        self.progress_every_s = progress_every_s
        self.result = Result(sc)
        self.profile = VehicleProfile.load(sc.profile, str(sc.dbc) if sc.dbc else None)
        self.policy_path = self.work / "policy.toml"
        self.policy_path.write_text(sc.policy_toml())
        self.policy = Policy.from_toml(self.policy_path)
        self.rng = np.random.default_rng(11)
        self.consent = self.policy.consent
        self._silent_until = -1.0
        self._noise_until = -1.0
        self._noise_per_step = 0
        self._broker_back_at: float | None = None
        self._wall_jump_at: float | None = None
        self._departed_at: float | None = None
        self._job_seq = 0
        self._open: list[Task] = []  # tasks this bench submitted that have not finished
        self._grid_seq = 0
        self._grid_cap: tuple[float, float] | None = None  # (watts, until simulated s)
        self.frames = FrameScheduler(self.profile, self.policy.max_input_age_s)
        self.neighbour: Neighbour | None = None

    # -- the world -----------------------------------------------------------------------------

    def _say(self, t: float, text: str) -> None:
        self.result.log.append(f"{self.sc.clock_text(t)}  {text}")

    def _apply(self, ev: TimelineEvent, t: float, car: CarOnBus, broker: Broker, clock: ClockDriver,
               agent: AgentProcess, fleet: FleetClient) -> None:
        self._say(t, ev.describe())
        if apply_physical(ev, car.state, car.params):
            if ev.kind == "depart":
                self._departed_at = t
                self.result.departure_soc = car.state.soc_percent
            return
        a = ev.params
        match ev.kind:
            case "serial_unplug":
                car.unplug()
            case "serial_plug":
                car.plug()
                self.frames.reset()
            case "shim_reset":
                car.unplug()
                car.plug()
                self.frames.reset()
            case "bus_noise":
                self._noise_until, self._noise_per_step = t + float(a["seconds"]), int(a["bad_per_step"])
            case "bus_gap":
                self._silent_until = t + float(a["seconds"])
            case "broker_down":
                broker.stop()
                self._broker_back_at = t + float(a["seconds"])
            case "wall_jump":
                clock.jump_wall(float(a["seconds"]))
                self._wall_jump_at = t
            case "consent":
                self._set_consent(bool(a["on"]), agent)
            case "submit":
                for _ in range(int(a["jobs"])):
                    self._submit(fleet)
            case "grid":
                self._grid_seq += 1
                msg = p.GridMessage(t=clock.time(), seq=self._grid_seq, valid_s=float(a["valid_s"]),
                                    price_per_kwh=a.get("price_per_kwh"), carbon_g_per_kwh=a.get("carbon_g_per_kwh"),
                                    power_cap_w=a.get("power_cap_w"), reason=str(a["reason"]))
                fleet.publish_grid(msg)
                self._grid_cap = (msg.power_cap_w, t + msg.valid_s) if msg.power_cap_w is not None else None
                self._wait_grid(agent)

    def _set_consent(self, on: bool, agent: AgentProcess) -> None:
        text = self.policy_path.read_text()
        marker = "consent = true" if not on else "consent = false"
        self.policy_path.write_text(text.replace(marker, f"consent = {'true' if on else 'false'}", 1))
        seen = len(agent.lines)
        agent.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not any("policy reloaded" in ln for ln in agent.lines[seen:]):
            time.sleep(0.01)  # the agent's own output, read by its pump thread; bounded
        self.consent = on

    def _wait_grid(self, agent: AgentProcess) -> None:
        """Time stands still until the agent has the signal: MQTT runs on real time."""
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if any(f'"grid_seq": {self._grid_seq}' in ln for ln in agent.lines[-50:]):
                return
            time.sleep(0.01)  # the agent's own output, read by its pump thread; bounded

    def _submit(self, fleet: FleetClient) -> Task:
        x = self.rng.integers(-128, 128, size=(1, 16), dtype=np.int8)
        self._job_seq += 1
        return fleet.submit(f"job-{self._job_seq}", p.ModelRef(builtin="thin_path"), [x], max_run_s=600.0)

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> Result:
        sc, res = self.sc, self.result
        res.baseline_soc = baseline_departure_soc(sc)
        state, params = car_setup(sc)
        clock = ClockDriver(self.work / "clock", sc.start_wall)
        (self.work / "power.json").write_text(json.dumps(POWER_MODEL))
        broker = start_broker(self.work / "broker")
        car = CarOnBus(self.profile, state, params, workdir=self.work)
        roles = set(self.profile.roles)
        env_before = os.environ.get("FLEETNODE_POWER_MODEL")
        os.environ["FLEETNODE_POWER_MODEL"] = str(self.work / "power.json")
        agent: AgentProcess | None = None
        fleet = FleetClient("127.0.0.1", broker.port, submitter="hil", job_timeout_s=3600.0)
        t0 = time.monotonic()
        try:
            car.plug()
            fleet.__enter__()
            agent = AgentProcess(None, [
                "run", "--port", car.port, "--broker-port", str(broker.port), "--car-id", CAR,
                "--state-dir", str(self.work / "agent"), "--policy", str(self.policy_path),
                "--profile", sc.profile, *(["--dbc", str(sc.dbc)] if sc.dbc else []),
                "--clock", str(clock.path), "--json"])
            if sc.neighbour:
                self.neighbour = Neighbour(self, broker.port, sc.start_wall)
            self._loop(car, clock, broker, agent, fleet, roles)
        finally:
            if self.neighbour is not None:
                self.neighbour.stop()
            if env_before is None:
                os.environ.pop("FLEETNODE_POWER_MODEL", None)
            else:
                os.environ["FLEETNODE_POWER_MODEL"] = env_before
            if agent is not None:
                # Stopping the agent hands back what its queue still holds (results it sends
                # before it exits); the fleet must hear of every job it sent.
                res.agent_rc = agent.stop()
                (self.work / "agent.log").write_text("\n".join(agent.lines) + "\n")
                fleet.wait_for(lambda f: not self._unanswered(f), 5.0)
            # The meter's last reading, now that no job runs any more.
            res.meter_wh = clock.report().energy_at(clock.monotonic()) / 3600.0
            self._collect_jobs(fleet)
            fleet.__exit__(None, None, None)
            car.stop()
            broker.stop()
            clock.close()
            res.real_s = time.monotonic() - t0
        res.ledger_wh = self._ledger_wh()
        if agent is not None and any("Traceback" in ln for ln in agent.lines):
            res.violations.append("the agent printed a traceback")
        self._judge()
        return res

    def _loop(self, car: CarOnBus, clock: ClockDriver, broker: Broker, agent: AgentProcess,
              fleet: FleetClient, roles: set[str]) -> None:
        sc, res = self.sc, self.result
        dt = sc.step_s
        t, n_ev = 0.0, 0
        frames_seen = 0
        energy_prev = 0.0
        last_progress = -1e9
        real0 = time.monotonic()
        pending: dict[str, float] = {}  # violation kind -> since when (simulated s)
        end = sc.duration_s if self._departed_at is None else self._departed_at + 120.0
        # The agent must be up before time starts: wait for its first look at the car.
        self._wait_ack(clock, car, 0, startup=True)
        while t < end:
            quiet = not car.plugged or t < self._silent_until
            report = clock.report()
            power_w = report.power_w
            h = BIG_STEP_S if quiet and power_w == 0.0 and self.neighbour is None else dt
            clock.advance(h)
            t += h
            while n_ev < len(sc.events) and sc.events[n_ev].at_s <= t:
                self._apply(sc.events[n_ev], t, car, broker, clock, agent, fleet)
                n_ev += 1
                if self._departed_at is not None:
                    end = min(end, self._departed_at + 120.0)
            if self._broker_back_at is not None and t >= self._broker_back_at:
                broker.start()
                self._broker_back_at = None
                self._say(t, "broker back")
            energy = clock.report().energy_at(clock.monotonic())
            car.state.inputs.compute_kw = max(0.0, energy - energy_prev) / h / 1000.0
            energy_prev = energy
            car.state = step(car.state, car.params, h)
            if self._departed_at is not None and t - self._departed_at >= 30.0:
                car.state.inputs.gear, car.state.inputs.speed_kph = "D", 30.0
            sent = 0
            if car.plugged and t >= self._silent_until:
                values = {k: v for k, v in car.state.roles(car.params).items() if k in roles}
                frames = self.frames.due(t, values)
                lines = []
                if t < self._noise_until:
                    lines = self._noise(frames)
                sent = car.send(frames, lines)
            if sent:
                frames_seen = self._wait_ack(clock, car, frames_seen + sent)
            else:  # no frames: the governor looks on its own tick
                self._wait_ack(clock, car, 0)
            if self.neighbour is not None:
                self.neighbour.step(t, h)
            res.steps += 1
            self._stream(fleet, t)
            self._check(t, car, power_w, pending)
            st = fleet.cars.get(CAR)
            s = car.state
            res.samples.append(Sample(t, s.soc_percent, s.charging_power_kw(car.params), power_w, s.pack_temp_c,
                                      s.compute_temp_c, st.mode if st else "?", st.reasons if st else ()))
            if self.speed:
                ahead = t / self.speed - (time.monotonic() - real0)
                if ahead > 0:
                    time.sleep(ahead)  # pacing to the requested speed, not waiting for a result
            if self.progress is not None and time.monotonic() - last_progress >= self.progress_every_s:
                last_progress = time.monotonic()
                self.progress(self._progress_line(t, s, car.params, st, fleet))
            if not agent.alive:
                res.violations.append(f"the agent exited at {sc.clock_text(t)} (status {agent.proc.poll()})")
                break
        # The end: the car goes to sleep (its bus falls silent). The governor turns OFF and the
        # agent hands back what its queue holds, live, so the fleet hears of every job it sent.
        car.unplug()
        self._say(t, "end of the scenario: the car sleeps, its bus falls silent")
        for n in range(8 if self.neighbour is None else 3000):
            if n >= 8 and not any(not task.finished for task in list(fleet.tasks.values())):
                break  # the neighbour finished what the car handed back
            clock.advance(dt)
            t += dt
            self._wait_ack(clock, car, 0)
            if self.neighbour is not None:
                self.neighbour.step(t, dt)
        fleet.wait_for(lambda f: not self._unanswered(f), 5.0)
        if self.progress is not None:
            self.progress(self._progress_line(t, car.state, car.params, fleet.cars.get(CAR), fleet) + "  done")

    def _wait_ack(self, clock: ClockDriver, car: CarOnBus, frames: int, startup: bool = False) -> int:
        """Wait until the governor looked at the present instant (and read `frames` frames)."""
        seen, ok = wait_ack(clock, frames, 60.0 if startup else ACK_TIMEOUT_S)
        if not ok:
            if startup:
                raise RuntimeError("the agent never looked at the car within 60 s")
            self.result.acks_missed += 1
        return seen

    def _noise(self, frames: list[tuple[int, bytes, bool]]) -> list[str]:
        """Malformed frames among the good ones: known ids with short payloads (decode errors)
        and lines the shim must refuse."""
        out = []
        for k in range(self._noise_per_step):
            arb_id, data, ext = frames[k % len(frames)]
            short = data[: max(0, len(data) - 3)]
            out.append(f"{arb_id:03X}#{short.hex().upper()}" if not ext else f"{arb_id:08X}#{short.hex().upper()}")
            out.append("ZZZ#NOTHEX")
        return out

    def _stream(self, fleet: FleetClient, t: float) -> None:
        """Keep `stream_jobs` tasks outstanding until the car leaves (the fleet does not know when
        it will: a car that stops taking jobs simply gets none)."""
        want = self.sc.stream_jobs
        if not want or self._departed_at is not None:
            return
        # Only this bench's open tasks are looked at: the fleet's table grows all night.
        self._open = [task for task in self._open if not task.finished]
        for _ in range(max(0, want - len(self._open))):
            self._open.append(self._submit(fleet))

    # -- checks --------------------------------------------------------------------------------

    def _check(self, t: float, car: CarOnBus, power_w: float, pending: dict[str, float]) -> None:
        s, i, pol = car.state, car.state.inputs, self.policy
        conditions = {
            "rule 1: computing while not parked (gear or speed)": i.gear != "P" or i.speed_kph > 0,
            "rule 1: computing with the driver in the car": i.driver_present,
            "rule 1: computing with the door open": i.door_open,
            "rule 1: computing during a departure": i.departure_event,
            "rule 1: computing without the owner's consent": not self.consent,
            "rule 7: computing with the serial link down": not car.plugged,
            "rule 7: computing while the bus is silent": t < self._silent_until,
            "rule 3: computing off the charger below the SoC floor":
                s.charging_power_kw(car.params) <= 0 and s.soc_percent < pol.soc_floor_percent - 0.5,
            "rule 5: computing above the pack's maximum temperature": s.pack_temp_c + 1.5 > pol.thermal.pack_max_c,
            "rule 5: computing above the compute module's maximum temperature":
                s.compute_temp_c > pol.thermal.compute_max_c,
            "rule 7: computing right after a wall-clock jump":
                self._wall_jump_at is not None and t - self._wall_jump_at < pol.faults.clock_jump_hold_s - GRACE_S,
        }
        cap = self._grid_cap
        over_cap = cap is not None and t < cap[1] and power_w > cap[0] + 1e-6
        conditions["grid: computing above the fleet's demand-response power cap"] = over_cap
        for kind, bad in conditions.items():
            if not bad:
                pending.pop(kind, None)
                continue
            since = pending.setdefault(kind, t)
            if power_w > 0 and t - since > GRACE_S:
                self.result.violations.append(f"{self.sc.clock_text(t)} {kind} ({power_w:.0f} W)")
                pending[kind] = math.inf  # one report per episode

    def _unanswered(self, fleet: FleetClient) -> list[str]:
        """Jobs sent to a car that have not been answered yet."""
        out = []
        for task in list(fleet.tasks.values()):
            if task.finished:
                continue
            out.extend(r.job_id for r in task.replicas if not r.done and r.sent_at is not None)
        return out

    def _car_received(self) -> set[str]:
        """Every job id the car's outbox ever recorded (taken, answered, or waiting to be sent)."""
        db = self.work / "agent" / STATE_FILE
        if not db.exists():
            return set()
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return {str(row[0]) for table in ("accepted", "outbox", "answered")
                    for row in con.execute(f"SELECT job_id FROM {table}")}
        finally:
            con.close()

    def _collect_jobs(self, fleet: FleetClient) -> None:
        tasks = list(fleet.tasks.values())
        c = fleet.counters
        received = self._car_received()
        unanswered = self._unanswered(fleet)
        # A job published while the car held no subscription is discarded by the broker (MQTT
        # shared subscriptions have no queue without a subscriber); the fleet sends it again
        # after its timeout. Only a job the car took and never answered is the car's fault.
        lost = [j for j in unanswered if j in received]
        self.result.jobs = {
            "submitted": len(tasks), "ok": sum(t.status == "ok" for t in tasks),
            "failed": sum(t.status in ("failed", "rejected", "mismatch") for t in tasks),
            "pending": sum(not t.finished for t in tasks), "unanswered": len(lost),
            "never_reached_car": len(unanswered) - len(lost),
            "on_neighbour": sum(Neighbour.CAR_ID in t.cars for t in tasks),
            "completed_twice": len(fleet.completed) - len(set(fleet.completed)),
            "jobs_sent": c["jobs_sent"], "results": c["results_received"],
            "duplicates_dropped": c["results_duplicate"], "handed_back": c["attempts_preempted"],
            "late": c["results_late"], "unknown": c["results_unknown_job"],
        }

    def _ledger_wh(self) -> float:
        db = self.work / "agent" / STATE_FILE
        if not db.exists():
            return 0.0
        con = sqlite3.connect(db)
        try:
            return float(con.execute("SELECT COALESCE(SUM(energy_wh), 0) FROM jobs").fetchone()[0])
        finally:
            con.close()

    def _judge(self) -> None:
        sc, res, ex = self.sc, self.result, self.sc.expect
        v = res.verdicts
        if ex.no_violations:
            v.append(Verdict("no governor rule violated", not res.violations,
                             "none at any simulated instant" if not res.violations else "; ".join(res.violations[:5])))
        if ex.departure_soc and sc.departure_s is not None:
            target = self.policy.departure.target_soc_percent
            could = res.baseline_soc if res.baseline_soc is not None else 0.0
            need = min(target, could) - 0.2  # the display rounds to 0.1 %
            got = res.departure_soc
            if got is None:
                v.append(Verdict("SoC at departure", False, "the car never departed"))
            else:
                v.append(Verdict("SoC at departure", got >= need,
                                 f"{got:.1f} % at departure; target {target:.0f} %, the charger alone "
                                 f"could give {could:.1f} %, so at least {need:.1f} % was owed"))
        if ex.jobs_answered:
            j = res.jobs
            bad = []
            if j.get("unanswered"):
                bad.append(f"{j['unanswered']} jobs the car took were never answered")
            if j.get("completed_twice"):
                bad.append(f"{j['completed_twice']} tasks completed twice")
            v.append(Verdict("every submitted job answered exactly once", not bad,
                             "; ".join(bad) or f"{j.get('ok', 0)} of {j.get('submitted', 0)} done, "
                             f"{j.get('handed_back', 0)} handed back and re-sent, "
                             f"{j.get('duplicates_dropped', 0)} duplicate deliveries dropped, "
                             f"{j.get('failed', 0)} failed (expired in a queue, answered as such), "
                             f"{j.get('pending', 0)} still waiting for a car "
                             f"({j.get('never_reached_car', 0)} discarded by the broker while the car held "
                             "no subscription, to be sent again after the fleet's timeout)"))
        err = abs(res.ledger_wh - res.meter_wh)
        scale = max(res.ledger_wh, res.meter_wh)
        v.append(Verdict("ledger energy matches the simulator", err <= ex.ledger_tolerance * scale + 1e-6,
                         f"ledger {res.ledger_wh:.4f} Wh, simulator {res.meter_wh:.4f} Wh "
                         f"({100 * err / scale if scale else 0:.2f} %, allowed {100 * ex.ledger_tolerance:.0f} %)"))
        if ex.all_tasks_done:
            pending = res.jobs.get("pending", 0)
            v.append(Verdict("every task finished, elsewhere if need be", pending == 0,
                             f"{pending} tasks never finished" if pending else
                             f"all {res.jobs.get('submitted', 0)} finished; {res.jobs.get('on_neighbour', 0)} "
                             f"on {Neighbour.CAR_ID}, {res.jobs.get('handed_back', 0)} of them after a hand-back"))
        done = res.jobs.get("ok", 0)
        if ex.min_jobs_done:
            v.append(Verdict(f"at least {ex.min_jobs_done} jobs done", done >= ex.min_jobs_done, f"{done} done"))
        if ex.max_jobs_done is not None:
            v.append(Verdict(f"at most {ex.max_jobs_done} jobs done", done <= ex.max_jobs_done, f"{done} done"))
        for m in ex.modes:
            window = [s for s in res.samples if m.from_s <= s.t <= m.to_s]
            if not window:
                v.append(Verdict(f"mode {m.text}", False, "no sample in the window"))
                continue
            problems = []
            if m.mode is not None:
                off = [s for s in window if s.mode != m.mode]
                if off:
                    problems.append(f"{off[0].mode} at {sc.clock_text(off[0].t)}, expected {m.mode}")
            if m.not_mode is not None:
                off = [s for s in window if s.mode == m.not_mode]
                if off:
                    problems.append(f"{m.not_mode} at {sc.clock_text(off[0].t)}")
            if m.reason is not None and not any(m.reason in s.reasons for s in window):
                problems.append(f"reason {m.reason} never given")
            want = " and ".join(x for x in (m.mode and f"mode {m.mode}", m.not_mode and f"never {m.not_mode}",
                                            m.reason and f"reason {m.reason}") if x)
            v.append(Verdict(f"{want} during {m.text}", not problems, "; ".join(problems) or "as expected"))

    def _progress_line(self, t: float, s: CarState, params: CarParams, st: p.CarState | None,
                       fleet: FleetClient) -> str:
        tasks = list(fleet.tasks.values())
        done = sum(task.status == "ok" for task in tasks)
        mode = st.mode if st else "?"
        return (f"{self.sc.name:<22} {self.sc.clock_text(t)} {mode:<7} SoC {s.soc_percent:5.1f} % "
                f"charger {s.charging_power_kw(params):5.1f} kW  jobs {done}/{len(tasks)}")


class FrameScheduler:
    """The frames a car sends at t: each message on its own period (a third of the shortest
    max age of the roles it carries, as a car sends gear at 10 Hz and temperatures at 1 Hz),
    and at once whenever its content changes."""

    def __init__(self, profile: VehicleProfile, max_input_age_s: float) -> None:
        self.profile = profile
        self.max_input_age_s = max_input_age_s
        self._periods: dict[tuple[int, bool], float] = {}
        self._last_sent: dict[tuple[int, bool], tuple[float, bytes]] = {}

    def reset(self) -> None:
        """After a new serial link: the agent needs every message again at once."""
        self._last_sent.clear()

    def due(self, t: float, values: dict[str, Any]) -> list[tuple[int, bytes, bool]]:
        if not self._periods:
            for role, value in values.items():
                for f in self.profile.encode({role: value}):
                    key = (f.arb_id, f.extended)
                    age = min(self.profile.max_age(role), self.max_input_age_s)
                    self._periods[key] = min(self._periods.get(key, math.inf), age / 3.0)
        out = []
        for f in self.profile.encode(values):  # type: ignore[arg-type]
            key = (f.arb_id, f.extended)
            last = self._last_sent.get(key)
            if last is None or last[1] != f.data or t - last[0] >= self._periods.get(key, 0.0) - 1e-9:
                self._last_sent[key] = (t, f.data)
                out.append((f.arb_id, f.data, f.extended))
        return out


def wait_ack(clock: ClockDriver, frames: int, timeout_s: float) -> tuple[int, bool]:
    """Wait until the agent's governor looked at the present instant, having read `frames`
    frames; returns (frames read, whether it did so within timeout_s)."""
    deadline = time.monotonic() + timeout_s
    mono = clock.monotonic()
    while True:
        r = clock.report()
        if r.ack_mono >= mono and r.ack_frames >= frames:
            return r.ack_frames, True
        if time.monotonic() > deadline:
            return r.ack_frames, False
        time.sleep(0.0002)  # polling shared memory the agent writes; bounded by the deadline


class Neighbour:
    """Another car of the pool, parked and charging in its own garage all scenario long: the
    real agent on its own shim and pty, on the same simulated time. Where work handed back by
    the scenario's car finishes."""

    CAR_ID = "hil-car-2"

    def __init__(self, bench: Bench, broker_port: int, start_wall: float) -> None:
        self.work = bench.work / "neighbour"
        self.work.mkdir(parents=True, exist_ok=True)
        self.profile = bench.profile
        self.frames = FrameScheduler(bench.profile, bench.policy.max_input_age_s)
        self.roles = set(bench.profile.roles)
        self.clock = ClockDriver(self.work / "clock", start_wall)
        self.car = CarOnBus(bench.profile, CarState(soc_percent=65.0, inputs=CarInputs(charger_kw=11.0, charge_limit_percent=90.0)),
                            CarParams(), workdir=self.work)
        self.car.plug()
        self.agent = AgentProcess(None, [
            "run", "--port", self.car.port, "--broker-port", str(broker_port), "--car-id", self.CAR_ID,
            "--state-dir", str(self.work / "agent"), "--policy", str(bench.policy_path),
            "--profile", bench.sc.profile, *(["--dbc", str(bench.sc.dbc)] if bench.sc.dbc else []),
            "--clock", str(self.clock.path), "--json"])
        self._seen = 0
        self._energy = 0.0
        self.missed = 0
        if not wait_ack(self.clock, 0, 60.0)[1]:
            raise RuntimeError(f"{self.CAR_ID}'s agent never looked at its car within 60 s")

    def step(self, t: float, h: float) -> None:
        self.clock.advance(h)
        energy = self.clock.report().energy_at(self.clock.monotonic())
        self.car.state.inputs.compute_kw = max(0.0, energy - self._energy) / h / 1000.0
        self._energy = energy
        self.car.state = step(self.car.state, self.car.params, h)
        values = {k: v for k, v in self.car.state.roles(self.car.params).items() if k in self.roles}
        sent = self.car.send(self.frames.due(t, values))
        self._seen, ok = wait_ack(self.clock, self._seen + sent, ACK_TIMEOUT_S)
        self.missed += not ok

    def stop(self) -> None:
        self.agent.stop()
        self.car.stop()
        self.clock.close()


def run(sc: Scenario, **kw: Any) -> Result:
    return Bench(sc, **kw).run()

