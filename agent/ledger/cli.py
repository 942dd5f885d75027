"""`fleetnode report`: the owner's view of the ledger (today, the week), optionally as a chart."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agent.governor.cli import policy_and_moment
from agent.ledger.report import build, plot, render_text
from agent.ledger.store import Ledger, LedgerError, default_path
from agent.storage import StorageError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "report", help="what lending the car cost and earned: today and the last 7 days",
        description="Print the owner's view of the energy ledger: hours lent, kWh from the grid "
                    "and the battery, cost under the tariff, earnings, SoC at departure vs target.")
    p.add_argument("--db", type=Path, default=None,
                   help=f"ledger file (default: $FLEETNODE_LEDGER or {default_path()})")
    p.add_argument("--policy", type=Path, default=None,
                   help="policy TOML for the tariff, currency and time zone (default: UTC, 0.30/kWh)")
    p.add_argument("--plot", type=Path, metavar="FILE.png", default=None,
                   help="also draw the report as a PNG chart")
    p.add_argument("--at", default=None, metavar="ISO8601",
                   help="report as of this time (default: now), e.g. 2026-11-23T08:00+01:00")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    loaded = policy_and_moment("report", args.policy, args.at)
    if loaded is None:
        return 2
    policy, wall = loaded
    path = args.db or default_path()
    if not path.exists():
        print(f"fleetnode report: no ledger at {path} (nothing lent yet?)", file=sys.stderr)
        return 1
    try:
        with Ledger(path, policy.tariff, policy.timezone) as ledger:
            report = build(ledger, wall)
            sys.stdout.write(render_text(report, ledger, policy.tariff.currency))
            if args.plot:
                out = plot(report, ledger, args.plot, policy.tariff.currency)
                print(f"chart written to {out}")
    except (LedgerError, StorageError) as e:
        print(f"fleetnode report: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"fleetnode report: cannot write the chart: {e}", file=sys.stderr)
        return 1
    return 0
