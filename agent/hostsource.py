"""The psutil host source: a laptop or dev box seen as a parked car, written into a StateStore.

battery = the host's battery, charger = AC power, thermal = the CPU's temperature sensors. A
host never drives, so gear, speed, driver and doors are constants; what psutil cannot read is
left unknown and the governor treats it as unsafe. A host without a battery is mains powered:
it reads as a car plugged in and held at its charge limit (the laptop policy then lets compute
draw from "the charger" through vehicle.compute_from_charger_at_limit_w).

`fleetnode host` runs this source with the governor and prints each decision, so the agent's
rules can be watched on any machine.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import psutil

from agent.bus.state import StateStore, Value
from agent.clock import Clock, SystemClock

# Sensor groups that measure the CPU package or cores, most specific first.
CPU_SENSORS = ("coretemp", "k10temp", "zenpower", "cpu_thermal", "cpu-thermal", "soc_thermal",
               "acpitz")
FULL_PERCENT = 99.5  # at or above this on AC, a laptop is held at its charge limit


def host_roles(battery: Any, temps: Mapping[str, Sequence[Any]] | None,
               adapter_w: float) -> dict[str, Value | None]:
    """Map psutil readings to vehicle roles. None means unknown (the governor stops on it)."""
    roles: dict[str, Value | None] = {
        "gear": "P", "speed_kph": 0.0, "driver_present": False, "door_open": False,
        "vehicle_awake": True, "departure_event": False, "cabin_preconditioning": False,
    }
    if battery is None:  # mains powered
        roles.update(soc_percent=100.0, charge_cable=True, charging_power_kw=0.0,
                     charge_limit_reached=True)
    else:
        pct = getattr(battery, "percent", None)
        soc = float(pct) if isinstance(pct, (int, float)) and math.isfinite(pct) \
            and 0 <= pct <= 100 else None
        plugged = getattr(battery, "power_plugged", None)
        roles["soc_percent"] = soc
        roles["charge_cable"] = plugged if isinstance(plugged, bool) else None
        if plugged is True:
            full = soc is not None and soc >= FULL_PERCENT
            roles["charging_power_kw"] = 0.0 if full else adapter_w / 1000.0
            roles["charge_limit_reached"] = full
        elif plugged is False:
            roles["charging_power_kw"] = 0.0
            roles["charge_limit_reached"] = False
        else:
            roles["charging_power_kw"] = None
            roles["charge_limit_reached"] = None
    roles["compute_temp_c"] = cpu_temperature(temps)
    return roles


def cpu_temperature(temps: Mapping[str, Sequence[Any]] | None) -> float | None:
    """The hottest CPU sensor of the first group present, or None when there is none."""
    if not temps:
        return None
    for group in CPU_SENSORS:
        values = [float(t.current) for t in temps.get(group, ())
                  if isinstance(getattr(t, "current", None), (int, float))
                  and math.isfinite(t.current) and -40.0 < t.current < 150.0]
        if values:
            return max(values)
    return None


class HostSource:
    """Samples psutil every `period_s` and writes the roles into `store`, stamped by `clock`."""

    def __init__(self, store: StateStore, clock: Clock | None = None, *, period_s: float = 2.0,
                 adapter_w: float = 65.0,
                 read_battery: Callable[[], Any] | None = None,
                 read_temps: Callable[[], Mapping[str, Sequence[Any]]] | None = None) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.period_s = period_s
        self.adapter_w = adapter_w
        self._read_battery = read_battery or psutil.sensors_battery
        # sensors_temperatures does not exist on every platform psutil supports.
        self._read_temps = cast(Callable[[], Mapping[str, Sequence[Any]]],
                                read_temps or getattr(psutil, "sensors_temperatures", dict))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0

    def poll_once(self) -> dict[str, Value | None]:
        now = self.clock.monotonic()
        try:
            roles = host_roles(self._read_battery(), self._read_temps(), self.adapter_w)
        except (OSError, RuntimeError, ValueError, AttributeError) as e:
            self.errors += 1
            self.store.set_link(False, f"host sensors unreadable: {e}", now)
            return {}
        self.store.set_link(True, "", now)
        for role, value in roles.items():
            self.store.update(role, value, now)
        return roles

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="host-source", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.period_s)


# -- fleetnode host ------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "host", help="run the governor on this machine's battery, AC and CPU temperature",
        description="Read the host through psutil (battery = the car's battery, AC = the charger, "
                    "CPU temperature = the compute module) and print the governor's decision as "
                    "one JSON line per interval.")
    p.add_argument("--policy", type=Path, default=None,
                   help="policy TOML (default: agent/governor/policies/laptop.toml)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between decisions")
    p.add_argument("--count", type=int, default=0, help="stop after this many decisions (0: run on)")
    p.add_argument("--adapter-w", type=float, default=65.0, help="the AC adapter's power in watts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.governor import Governor, Inputs, Policy, PolicyError

    path = args.policy or Path(__file__).parent / "governor" / "policies" / "laptop.toml"
    try:
        policy = Policy.from_toml(path)
    except PolicyError as e:
        print(f"fleetnode host: {e}", file=sys.stderr)
        return 2
    if args.interval <= 0:
        print("fleetnode host: --interval must be > 0", file=sys.stderr)
        return 2
    clock = SystemClock()
    store = StateStore()
    source = HostSource(store, clock, period_s=args.interval, adapter_w=args.adapter_w)
    gov = Governor(policy)
    n = 0
    while True:
        roles = source.poll_once()
        now = clock.monotonic()
        d = gov.decide(store.snapshot(), now, Inputs(wall=clock.time()))
        line = {"t": round(clock.time(), 3), **d.as_dict(),
                "host": {k: roles.get(k) for k in ("soc_percent", "charge_cable", "compute_temp_c")}}
        print(json.dumps(line), flush=True)
        n += 1
        if args.count and n >= args.count:
            return 0
        time.sleep(args.interval)
