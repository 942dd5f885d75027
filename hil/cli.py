"""`fleetnode hil run`: run HIL scenarios, print a progress line each, write their reports."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    h = sub.add_parser("hil", help="the hardware-in-the-loop bench",
                       description="Run scenarios of a simulated car against the real shim, agent and broker.")
    hs = h.add_subparsers(dest="hil_command", metavar="COMMAND")
    r = hs.add_parser("run", help="run scenarios and write their reports",
                      description="Run HIL scenarios (files under hil/scenarios/, by name or path). Each "
                      "writes hil/reports/NAME.md and NAME.png; the exit status is 1 if any expectation "
                      "fails, and each failure is named.")
    r.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="scenario names or TOML paths")
    r.add_argument("--all", action="store_true", help="every scenario under hil/scenarios/")
    r.add_argument("--short", action="store_true", help="the shortened version of each ([short] table)")
    r.add_argument("--speed", type=float, default=None,
                   help="at most this many simulated seconds per real second (default: as fast as the agent "
                   "keeps up; 1 is real time)")
    r.add_argument("--reports", type=Path, default=None, help="where reports go (default hil/reports/)")
    r.set_defaults(func=_cmd_run)
    h.set_defaults(func=lambda args: (h.print_help(), 2)[1])


def _cmd_run(args: argparse.Namespace) -> int:
    from hil import report, scenario
    from hil.runner import Bench, car_setup

    paths = scenario.all_scenarios() if args.all else [scenario.find(s) for s in args.scenarios]
    if not paths:
        print("fleetnode hil run: name a scenario or pass --all", file=sys.stderr)
        return 2
    if args.speed is not None and not args.speed > 0:
        print("fleetnode hil run: --speed must be > 0", file=sys.stderr)
        return 2
    try:
        loaded = [scenario.load(p, short=args.short) for p in paths]
        for sc in loaded:
            car_setup(sc)  # the [car] and [charger] tables, checked before anything starts
    except (scenario.ScenarioError, ValueError, TypeError) as e:
        print(f"fleetnode hil run: {e}", file=sys.stderr)
        return 2
    def stop(*_: object) -> None:
        raise SystemExit(143)  # unwinds each bench's cleanup: agent, shim and broker end too

    signal.signal(signal.SIGTERM, stop)
    failures: list[str] = []
    for sc in loaded:
        res = Bench(sc, speed=args.speed, progress=lambda line: print(line, flush=True)).run()
        md, png = report.write(res, args.reports or report.REPORT_DIR)
        print(f"{sc.name}: {'PASS' if res.ok else 'FAIL'}  report {md}  plot {png}", flush=True)
        failures += [f"{sc.name}: {v.name}: {v.detail}" for v in res.failed]
    for f in failures:
        print(f"FAILED {f}", file=sys.stderr)
    return 1 if failures else 0
