"""The cheater scenario: N simulated cars, one of which falsifies 1 % of its results, against the
fleet service with adaptive replication. Shared by tests/fleetside and bench/bench_fleet.py.

Phase 1 (warm-up) sends batches until every honest car is trusted; phase 2 sends one more batch
and measures the honest cars' replication overhead on it: replicas run per task, over the tasks
no cheater touched (strict redundancy 2 would be 2.0).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.fleet.broker import start_broker
from agent.fleetside.replication import Rule
from agent.fleetside.store import Store
from hil.fleetcars import SimCar, start_cars
from hil.fleetservice import FleetService, make_key

MODEL = Path(__file__).resolve().parents[1] / "agent" / "inference" / "models" / "thin_path.tflite"


@dataclass
class CheaterFigures:
    tasks: int
    flipped: int  # results the cheater falsified
    caught: int  # of those, judged wrong by a quorum
    flipped_in_results: int  # falsified outputs served by GET /results (must be 0)
    results_wrong: int  # any output in /results that differs from our own engine's (must be 0)
    cheater_reputation: int
    honest_min_reputation: int
    warmup_tasks: int
    measured_tasks: int
    honest_overhead: float  # replicas run per task after warm-up, tasks without the cheater
    overall_overhead: float  # replicas run per task after warm-up, all tasks
    seconds: float
    cars: list[dict[str, Any]]
    service_credits: dict[str, float]
    sim_cars: list[SimCar]

    def figures(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}


def inputs_for(n: int, seed: int, start: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"x{start + i}": rng.integers(-128, 128, (1, 16), dtype=np.int8) for i in range(n)}


def run_cheater(workdir: Path | None = None, cars: int = 20, cheater: int = 7,
                rule: Rule | None = None, warmup_batch: int = 400, measured: int = 600,
                max_warmup: int = 4000, timeout_s: float = 300.0,
                keep: bool = False) -> CheaterFigures:
    """Runs the scenario; with keep=True the cars stay up (their ledgers open) for the caller to
    read and close, else everything is torn down before returning."""
    from agent.inference import load_model

    workdir = workdir or Path(tempfile.mkdtemp(prefix="fleet-cheater-"))
    rule = rule or Rule()
    t0 = time.monotonic()
    broker = start_broker(workdir / "mosquitto")
    key, trust = make_key(workdir / "keys")
    svc = FleetService.start("", key, broker.host, broker.port,
                             store=Store(str(workdir / "fleet.sqlite"), rule=rule))
    sims = start_cars(cars, broker.host, broker.port, workdir / "cars", trust, cheaters=[cheater],
                      cheat_every=100)
    honest = {s.car_id for s in sims} - {sims[cheater].car_id}
    model_bytes = MODEL.read_bytes()
    reference = load_model(model_bytes)
    try:
        sent: dict[str, np.ndarray] = {}
        batches: list[str] = []

        def run_batch(inputs: dict[str, np.ndarray]) -> str:
            status, body = svc.api.submit(model_bytes, inputs)
            if status != 201:
                raise RuntimeError(f"POST /v1/batches: {status} {body}")
            b = svc.api.wait_batch(body["id"], timeout_s)
            if b["state"] != "done":
                raise RuntimeError(f"batch {body['id']} did not finish: {b}")
            sent.update(inputs)
            batches.append(body["id"])
            return str(body["id"])

        warmup = 0
        while True:
            run_batch(inputs_for(warmup_batch, seed=len(batches), start=len(sent)))
            warmup += warmup_batch
            reps = {c["car"]: c["reputation"] for c in svc.store.cars()}
            if all(rule.trusted(reps.get(h, 0)) for h in honest) or warmup >= max_warmup:
                break
        last = run_batch(inputs_for(measured, seed=len(batches), start=len(sent)))

        cheater_id = sims[cheater].car_id
        flipped = set(sims[cheater].flipped)
        caught = wrong = in_results = 0
        for bid in batches:
            atts = {a["job_id"]: a for a in svc.store.attempts(bid)}
            caught += sum(1 for j in flipped if j in atts and atts[j]["verdict"] == "wrong")
            results = svc.api.results(bid)
            served = {r["job_id"] for r in svc.store.stored_results(bid)}
            in_results += len(flipped & served)
            for name, out in results.items():
                want = reference.run([sent[name]])[0]
                wrong += int(not np.array_equal(out, want))
        per_task: dict[str, list[str]] = {}
        for a in svc.store.attempts(last):
            if a["state"] == "ok":
                per_task.setdefault(a["task"], []).append(a["car"])
        clean = [cs for cs in per_task.values() if cheater_id not in cs]
        wait_grants_delivered(svc, sims, timeout_s)
        cars_now = svc.store.cars()
        reps = {c["car"]: c["reputation"] for c in cars_now}
        return CheaterFigures(
            tasks=len(sent), flipped=len(flipped), caught=caught, flipped_in_results=in_results,
            results_wrong=wrong, cheater_reputation=int(reps.get(cheater_id, -1)),
            honest_min_reputation=min(int(reps.get(h, 0)) for h in honest),
            warmup_tasks=warmup, measured_tasks=len(per_task),
            honest_overhead=round(statistics.fmean(len(cs) for cs in clean), 3) if clean else 0.0,
            overall_overhead=round(statistics.fmean(len(cs) for cs in per_task.values()), 3),
            seconds=round(time.monotonic() - t0, 1), cars=cars_now,
            service_credits={c["car"]: c["credits"] for c in cars_now}, sim_cars=sims)
    finally:
        if not keep:
            for s in sims:
                s.close()
        svc.stop()
        broker.kill()


def wait_grants_delivered(svc: FleetService, sims: list[SimCar], timeout_s: float) -> bool:
    """Until every car's ledger holds the credits the service granted it (or the deadline)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        owed = {c["car"]: c["credits"] for c in svc.store.cars()}
        if not svc.store.unsent_grants(1) and all(
                abs(s.ledger.summary(0, 1e11).granted - owed.get(s.car_id, 0.0)) < 1e-6 for s in sims):
            return True
        time.sleep(0.1)
    return False
