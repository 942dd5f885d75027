"""The fleet at scale on this machine: `fleetnode fleet simulate` cars against a real mosquitto and
the fleet service (store, dispatcher, API in this process, SQLite), stepping N up while the p99
dispatch latency (attempt sent by the dispatcher to result stored, from the attempts table) stays
under 1 s. Each step offers every car one job every LOAD_PERIOD_S seconds for STEP_S seconds.

Figures: the largest N sustained, its p99/p50 latency, broker CPU (% of one core) and resident
memory per 1,000 cars (psutil on the mosquitto process), messages and bytes per car per day
(counted by the cars, extrapolated from the window), and database rows written per second.
docs/scale.md builds the capacity study on them."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from agent.fleet.broker import start_broker
from agent.fleetside.simulate import per_car_per_day, per_thousand, percentile
from agent.fleetside.store import Store
from hil.fleetservice import FleetService, make_key

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "agent" / "inference" / "models" / "thin_path.tflite"
STEPS = (50, 100, 200, 400, 800, 1600)
STEP_S = 12.0
LOAD_PERIOD_S = 10.0  # each car is offered one job per this many seconds
BUDGET_S = 150.0  # the whole step search stops here
P99_LIMIT_S = 1.0


def _rows(store: Store) -> int:
    with store.tx() as c:
        return sum(int(c.get(f"SELECT COUNT(*) FROM {t}")[0]) for t in ("attempts", "results", "grants"))


def _step(n: int, svc: FleetService, broker_pid: int, prefix: str) -> dict[str, Any]:
    proc = psutil.Process(broker_pid)
    sim = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "fleet", "simulate", "--port", str(svc.extra["port"]),
         "--vehicles", str(n), "--duration", str(STEP_S + 30), "--json", "--prefix", prefix,
         "--service-ms", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 30
        online = 0
        while time.monotonic() < deadline:
            online = sum(1 for c in svc.store.cars() if c["online"] and c["car"].startswith(prefix))
            if online >= n:
                break
            time.sleep(0.2)
        else:  # not sustained: the fleet did not even see every car's birth in time
            return {"n": n, "p99_s": math.inf, "online": online}
        rss0 = proc.memory_info().rss
        cpu0 = proc.cpu_times()
        rows0 = _rows(svc.store)
        t0 = time.monotonic()
        wall0 = time.time()
        batches = []
        per_tick = max(1, round(n / LOAD_PERIOD_S))
        k = 0
        while time.monotonic() - t0 < STEP_S:
            inputs = {f"x{k}_{i}": np.full((1, 16), i % 100, np.int8) for i in range(per_tick)}
            status, body = svc.api.submit(MODEL.read_bytes(), inputs, redundancy="1")
            if status != 201:
                raise RuntimeError(f"POST /v1/batches: {status} {body}")
            batches.append(body["id"])
            k += 1
            time.sleep(max(0.0, t0 + k - time.monotonic()))
        for bid in batches:
            svc.api.wait_batch(bid, 30)
        seconds = time.monotonic() - t0
        cpu1 = proc.cpu_times()
        rss1 = proc.memory_info().rss
        rows = _rows(svc.store) - rows0
    finally:
        sim.terminate()  # SIGTERM: the simulation's workers are joined in its finally
        out, _ = sim.communicate(timeout=60)
    lat = [a["received"] - a["sent"] for b in batches for a in svc.store.attempts(b)
           if a["received"] is not None and a["sent"] >= wall0 - 1]
    tot = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    broker_cpu = ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / seconds * 100.0
    return {"n": n, "p99_s": percentile(lat, 99), "p50_s": percentile(lat, 50), "results": len(lat),
            "jobs_offered": k * per_tick, "broker_cpu_pct": broker_cpu, "broker_rss": rss1,
            "broker_rss_delta": rss1 - rss0, "rows_per_s": rows / seconds, "seconds": seconds,
            "totals": tot}


def run() -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="fleet-sim-"))
    broker = start_broker(work / "mosquitto")
    key, _ = make_key(work / "keys")
    svc = FleetService.start("", key, broker.host, broker.port,
                             store=Store(str(work / "fleet.sqlite")), job_timeout_s=10.0)
    svc.extra["port"] = broker.port
    steps: list[dict[str, Any]] = []
    t0 = time.monotonic()
    try:
        assert broker.pid is not None
        rss_idle = psutil.Process(broker.pid).memory_info().rss
        for i, n in enumerate(STEPS):
            if time.monotonic() - t0 > BUDGET_S - (STEP_S + 15) * (1 + n / 800):
                break
            s = _step(n, svc, broker.pid, f"s{i}x")
            steps.append(s)
            if "online" in s:
                print(f"   N={n}: only {s['online']} cars online after 30 s", flush=True)
            else:
                print(f"   N={n}: p99 {s['p99_s']:.3f} s, {s['results']} results, broker CPU "
                      f"{s['broker_cpu_pct']:.1f} %", flush=True)
            if not s["p99_s"] < P99_LIMIT_S:
                break
    finally:
        svc.stop()
        broker.kill()
    ok = [s for s in steps if s["p99_s"] < P99_LIMIT_S]
    if not ok:
        raise RuntimeError(f"no step sustained p99 < {P99_LIMIT_S} s: {steps}")
    best = ok[-1]
    n = best["n"]
    tot = best["totals"]
    msgs = tot.get("msgs_out", 0) + tot.get("msgs_in", 0)
    nbytes = tot.get("bytes_out", 0) + tot.get("bytes_in", 0)
    window = float(tot.get("seconds") or best["seconds"])  # how long the cars ran
    return {
        "sustained_vehicles": float(n),
        "search_capped_by_budget": float(best is steps[-1]),
        "next_step_vehicles": float(steps[-1]["n"]) if best is not steps[-1] else 0.0,
        "p99_dispatch_latency_s": round(best["p99_s"], 4),
        "p50_dispatch_latency_s": round(best["p50_s"], 4),
        "results_measured": float(best["results"]),
        "jobs_per_car_per_hour_offered": round(3600.0 / LOAD_PERIOD_S, 1),
        "broker_cpu_pct_of_core_per_1000_cars": round(per_thousand(best["broker_cpu_pct"], n), 2),
        "broker_rss_mb_per_1000_cars": round(per_thousand((best["broker_rss"] - rss_idle) / 1e6, n), 2),
        "broker_rss_mb_total": round(best["broker_rss"] / 1e6, 1),
        "messages_per_car_per_day": round(per_car_per_day(msgs, n, window)),
        "bytes_per_car_per_day": round(per_car_per_day(nbytes, n, window)),
        "db_rows_written_per_s": round(best["rows_per_s"], 1),
        "steps": float(len(steps)),
    }
