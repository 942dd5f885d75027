"""A car as a separate process for the crash tests: a FleetLink and a stand-in for the engine.

The stand-in (`standin` of agent/fleetside/simulate.py) computes `(x * 3 + 1) mod 256` on int8
inputs after `--work-ms` of sleep per job, which is enough to check that every result arrives once and belongs to its job. The real agent
wires the inference engine in its place. Prints "READY" once connected and taking jobs.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

from agent.fleet.link import FleetLink
from agent.fleet.mqtt import TlsConfig
from agent.fleetside.simulate import standin as compute  # the simulated engine, one owner

RUN = {"mode": "RUN", "power_budget_w": 800.0, "reasons": []}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--car", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--outbox", required=True)
    ap.add_argument("--work-ms", type=float, default=20.0)
    ap.add_argument("--queue", type=int, default=4)
    ap.add_argument("--tls", nargs=3, metavar=("CA", "CERT", "KEY"))
    args = ap.parse_args()
    tls = TlsConfig(*map(Path, args.tls)) if args.tls else None
    link = FleetLink(args.car, args.host, args.port, outbox_path=args.outbox,
                     job_queue_size=args.queue, ack_timeout_s=2.0, tls=tls)
    with link:
        if not link.wait_connected(20):
            print("NOCONNECT", link.session.last_error, flush=True)
            return 2
        link.publish_state(RUN, {"soc_percent": 80.0, "charging_power_kw": 7.0})
        link.set_accepting_jobs(True)
        print("READY", flush=True)
        stop = threading.Event()

        def report() -> None:
            while not stop.wait(0.5):
                print("STATS", link.stats(), flush=True)

        threading.Thread(target=report, daemon=True).start()
        for job in link.jobs():
            time.sleep(args.work_ms / 1000.0)  # the engine's run time
            link.send_result(job.job_id, "ok", [compute(job.inputs[0])], run_s=args.work_ms / 1000.0)
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
