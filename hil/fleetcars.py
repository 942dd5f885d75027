"""Simulated cars for the fleet service: real fleet links, the real engine, an optional cheat.

Each `SimCar` is a `FleetLink` (its outbox, its acks, the signed model fetch) in RUN, with a
worker thread that runs every job on our engine and sends the result. A cheater flips one byte
of every `cheat_every`-th result it sends (100: 1 % of its results). Grants the fleet sends are
recorded in the car's own ledger, as the agent does, so `fleetnode report --db` shows them.
Used by tests/fleetside and bench/bench_fleet.py.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.fleet.link import FleetLink
from agent.fleet.models import TrustStore
from agent.fleet.protocol import CreditGrant
from agent.ledger import Ledger
from agent.service import record_grant

RUN = {"mode": "RUN", "power_budget_w": 800.0, "reasons": []}
VEHICLE = {"soc_percent": 80.0, "charging_power_kw": 7.2, "gear": "P", "speed_kph": 0.0}


class SimCar:
    def __init__(self, car_id: str, host: str, port: int, workdir: Path, trusted: TrustStore,
                 cheat_every: int = 0, queue: int = 4, **link_kw: Any) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.car_id = car_id
        self.cheat_every = cheat_every
        self.ledger = Ledger(workdir / "ledger.sqlite")
        self.ledger_path = workdir / "ledger.sqlite"
        link_kw.setdefault("ack_timeout_s", 1.0)
        link_kw.setdefault("max_ack_timeout_s", 3.0)
        self.link = FleetLink(car_id, host, port, outbox_path=workdir / "outbox.sqlite",
                              audit_path=workdir / "audit.sqlite", model_dir=workdir / "models",
                              trusted_keys=trusted, job_queue_size=queue,
                              on_grant=self._grant,
                              **link_kw)
        self.sent = 0
        self.flipped: list[str] = []  # job ids of the results this car falsified
        self._models: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._work, name=f"sim-{car_id}", daemon=True)

    def _grant(self, g: CreditGrant) -> None:
        record_grant(self.ledger, g)  # as the agent does

    def start(self) -> SimCar:
        self.link.start()
        self.link.apply_decision(RUN, VEHICLE)
        self._thread.start()
        return self

    def close(self) -> None:
        self.link.jobs().close()
        self.link.close()
        self._thread.join(timeout=5)
        self.ledger.close()

    def _model(self, sha: str) -> Any:
        from agent.inference import load_model

        if sha not in self._models:
            assert self.link.models is not None
            self._models[sha] = load_model(self.link.models.path(sha))
        return self._models[sha]

    def _work(self) -> None:
        for job in self.link.jobs():
            try:
                assert job.model.sha256 is not None
                outs = self._model(job.model.sha256).run(job.inputs)
            except Exception as e:  # noqa: BLE001 -- a simulated car answers, whatever happens
                self.link.send_result(job.job_id, "failed", error=("engine", str(e)[:200]))
                continue
            self.sent += 1
            if self.cheat_every and self.sent % self.cheat_every == 0:
                outs = flip_one_byte(outs)
                self.flipped.append(job.job_id)
            self.link.send_result(job.job_id, "ok", outs, run_s=0.002)


def flip_one_byte(outs: Sequence[np.ndarray]) -> list[np.ndarray]:
    first = np.array(outs[0], copy=True)
    flat = first.reshape(-1).view(np.uint8)
    flat[0] ^= 0x01
    return [first, *[np.array(o, copy=True) for o in outs[1:]]]


def start_cars(n: int, host: str, port: int, workdir: Path, trusted: TrustStore,
               cheaters: Sequence[int] = (), cheat_every: int = 100, **kw: Any) -> list[SimCar]:
    cars = [SimCar(f"car{i:02d}", host, port, workdir / f"car{i:02d}", trusted,
                   cheat_every=cheat_every if i in cheaters else 0, **kw) for i in range(n)]
    for c in cars:
        c.start()
    return cars
