"""The fleet service against 20 simulated cars, one of which flips one byte in 1 % of its
results (hil/fleetscenario.py): falsified results caught, the cheater's reputation, and the
replication overhead of the honest cars after warm-up (replicas run per task; strict
redundancy 2 would be 2.0). Also the service's throughput on this machine."""

from __future__ import annotations

from hil.fleetscenario import run_cheater


def run() -> dict[str, float]:
    f = run_cheater(cars=20, cheater=7, measured=1000)
    figures = f.figures()
    figures["results_per_s"] = round((f.tasks * f.overall_overhead) / max(f.seconds, 1e-9), 1)
    return figures
