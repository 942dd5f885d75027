"""`fleetnode policy FILE`: check an owner's policy and say what it will do next.

The governor itself does no I/O; this module reads the file and prints, nothing else.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from agent.governor.policy import DAYS, Policy, PolicyError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "policy", help="check a policy file and show its next departures, tariff and limits",
        description="Validate an owner's policy TOML (every bad field is named) and print what "
                    "it means from now on: the next departures and their targets, the tariff "
                    "price now, quiet hours, caps and thermal limits.")
    p.add_argument("file", type=Path, help="the policy TOML")
    p.add_argument("--at", default=None, metavar="ISO8601", help="as of this time (default: now)")
    p.add_argument("--departures", type=int, default=3, help="how many departures to list")
    p.set_defaults(func=run)


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def describe(p: Policy, wall: float, departures: int = 3) -> str:
    local = p.local(wall)
    cur = p.tariff.currency
    out = [f"as of {local:%a %d %b %Y %H:%M} ({p.timezone})",
           f"consent: {'yes' if p.consent else 'NO: compute stays off'}",
           f"power: up to {p.max_power_w:g} W (nothing under {p.min_budget_w:g} W)",
           f"battery: floor {p.soc_floor_percent:g} % off the charger, resume at "
           f"{p.soc_floor_percent + p.soc_hysteresis_percent:g} %"
           + ("; compute only while charging" if p.require_charging else "")]
    weekly = ", ".join(f"{DAYS[d]} {_hhmm(m)}" for d, m in p.departure.weekly) or "none"
    out.append(f"weekly departures: {weekly} (target {p.departure.target_soc_percent:g} %, "
               f"margin {p.departure.margin_kwh:g} kWh)")
    t = wall
    for _ in range(departures):
        nd = p.next_departure(t)
        if nd is None:
            break
        when = p.local(nd[0])
        out.append(f"  next: {when:%a %d %b %H:%M}, target {nd[1]:g} %, in {(nd[0] - wall) / 3600:.1f} h")
        t = nd[0]
    price = p.tariff.price_at(local)
    out.append(f"tariff now: {price:.2f} {cur}/kWh"
               + (f" (ceiling {p.caps.max_price_per_kwh:.2f})" if p.caps.max_price_per_kwh is not None else ""))
    caps = []
    if p.caps.energy_kwh_per_day is not None:
        caps.append(f"{p.caps.energy_kwh_per_day:g} kWh/day")
    if p.caps.cost_per_day is not None:
        caps.append(f"{p.caps.cost_per_day:g} {cur}/day")
    out.append(f"caps: {', '.join(caps) or 'none'}")
    quiet = [f"{_hhmm(w.start_min)}-{_hhmm(w.end_min)}" for w in p.caps.quiet_hours]
    inside = any(w.contains(local) for w in p.caps.quiet_hours)
    out.append(f"quiet hours: {', '.join(quiet) or 'none'}" + (" (now inside)" if inside else ""))
    th = p.thermal
    out.append(f"thermal: pack {th.pack_warn_c:g}/{th.pack_max_c:g} °C, compute "
               f"{th.compute_warn_c:g}/{th.compute_max_c:g} °C (warn/max), resume "
               f"{th.hysteresis_c:g} °C below warn")
    out.append(f"dwell: {p.dwell.min_off_s:g} s off before a restart, runs of {p.dwell.min_run_s:g} s "
               f"before a price signal may stop them")
    out.append(f"required roles: {', '.join(p.required_roles)}")
    return "\n".join(out) + "\n"


def policy_and_moment(command: str, path: Path | None, at: str | None
                      ) -> tuple[Policy, float] | None:
    """The policy (default Policy() without a path) and the moment `--at` names (default now).

    Says what is wrong on stderr and returns None, for subcommands to exit with 2.
    """
    try:
        policy = Policy.from_toml(path) if path is not None else Policy()
    except PolicyError as e:
        print(f"fleetnode {command}: {e}", file=sys.stderr)
        return None
    try:
        wall = dt.datetime.fromisoformat(at).timestamp() if at else time.time()
    except ValueError:
        print(f"fleetnode {command}: --at {at!r} is not an ISO 8601 time", file=sys.stderr)
        return None
    return policy, wall


def run(args: argparse.Namespace) -> int:
    loaded = policy_and_moment("policy", args.file, args.at)
    if loaded is None:
        return 2
    policy, wall = loaded
    print(f"{args.file}: valid")
    sys.stdout.write(describe(policy, wall, max(0, args.departures)))
    return 0
