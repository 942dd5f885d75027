"""`fleetnode fleet watch`: the live table of cars (mode, reasons, SoC, available power) and the
fleet's totals, from the cars' retained state. For people, a table; for scripts, JSON lines and
an exit after `--count` state messages or `--timeout` seconds. The last results the cars sent
are listed too, seen passively: a watcher never acknowledges (takes) a result."""

from __future__ import annotations

import json
import time
from typing import Any, TextIO

from agent.fleet.fleetside import FleetClient


def snapshot(client: FleetClient) -> dict[str, Any]:
    return {
        "cars": [{"car": c.car, "online": c.online, "mode": c.mode, "reasons": list(c.reasons),
                  "soc_percent": c.soc_percent, "charging": c.charging,
                  "available_w": c.available_w, "accepting_jobs": c.accepting_jobs,
                  "pool": c.pool, "seq": c.seq, "t": c.t} for c in client.car_states()],
        "totals": client.totals(),
        "results": [{"car": car, "job_id": job, "outcome": outcome, "run_s": run_s}
                    for car, job, outcome, run_s in list(client.seen_results)[-5:]],
    }


def render_table(snap: dict[str, Any]) -> str:
    rows = [("CAR", "ONLINE", "MODE", "REASON", "SOC %", "CHARGING", "AVAIL W", "JOBS")]
    for c in snap["cars"]:
        rows.append((
            c["car"], "yes" if c["online"] else "no", c["mode"], ",".join(c["reasons"]) or "-",
            "-" if c["soc_percent"] is None else f"{c['soc_percent']:.0f}",
            {True: "yes", False: "no", None: "-"}[c["charging"]],
            f"{c['available_w']:.0f}", "yes" if c["accepting_jobs"] else "no",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    t = snap["totals"]
    lines.append(f"cars available: {t['cars_available']} of {t['cars']} ({t['cars_online']} online), "
                 f"kW available: {t['kw_available']:.2f}")
    for r in snap.get("results", []):
        took = "" if r["run_s"] is None else f" in {r['run_s'] * 1000:.1f} ms"
        lines.append(f"result: {r['job_id']} from {r['car']}: {r['outcome']}{took}")
    return "\n".join(lines)


def watch(client: FleetClient, out: TextIO, as_json: bool = False, count: int | None = None,
          timeout: float | None = None, interval: float = 0.5) -> int:
    """Print the table on every change. Returns 0, or 1 if `timeout` ran out before `count`
    state messages arrived (retained states count: `--count N` waits for N cars' states)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    printed = -1
    clear = not as_json and out.isatty()
    def progress(c: FleetClient) -> int:
        return c.states_received + c.counters["results_seen"]

    while True:
        seen = progress(client)
        if seen != printed:
            snap = snapshot(client)
            printed = seen
            if as_json:
                out.write(json.dumps(snap, separators=(",", ":")) + "\n")
            else:
                out.write(("\x1b[H\x1b[2J" if clear else "") + render_table(snap) + "\n\n")
            out.flush()
        if count is not None and client.states_received >= count:
            if progress(client) != printed:
                continue  # states arrived after the last snapshot: print the one they make first
            return 0
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return 0 if count is None else 1
        def changed(c: FleetClient, seen: int = seen) -> bool:
            return progress(c) != seen

        client.wait_for(changed, interval if left is None else min(interval, left))
