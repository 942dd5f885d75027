"""`fleetnode calibrate`: fit watts per busy core from an energy meter, write the power model."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from agent.runner.calibrate import MeterError, calibrate, find_meter
from agent.runner.power import PowerModel, PowerModelError, default_model_path


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "calibrate", help="measure watts per busy core for the runner's power model",
        description="Keep 0..N cores busy, read an energy meter (RAPL, or the battery while "
                    "discharging), fit watts = idle + watts_per_core * cores, and write the model "
                    "the runner uses to turn a power budget into a number of busy cores.")
    p.add_argument("--out", type=Path, default=None,
                   help=f"where to write the model (default: {default_model_path()})")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores to measure up to")
    p.add_argument("--seconds", type=float, default=5.0, help="measurement time per load level")
    p.add_argument("--meter", choices=("auto", "rapl", "battery"), default="auto",
                   help="energy meter to read (default: the first readable)")
    p.add_argument("--watts-per-core", type=float, default=None,
                   help="skip measuring: write a model with this figure (from a datasheet)")
    p.add_argument("--idle-w", type=float, default=0.0, help="with --watts-per-core: the idle draw")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = args.out or default_model_path()
    if args.cores < 1 or args.seconds <= 0:
        print("fleetnode calibrate: --cores must be >= 1 and --seconds > 0", file=sys.stderr)
        return 2
    try:
        if args.watts_per_core is not None:
            model = PowerModel(watts_per_core=args.watts_per_core, idle_w=args.idle_w, cores=args.cores)
        else:
            meter = find_meter(args.meter)
            print(f"measuring with {meter.name}: {args.seconds:g} s at each of 0..{args.cores} busy cores")
            model, _ = calibrate(meter, args.cores, args.seconds,
                                 report=lambda k, w: print(f"  {k} busy cores: {w:7.2f} W", flush=True))
        out.parent.mkdir(parents=True, exist_ok=True)
        model.save(out)
    except (MeterError, PowerModelError) as e:
        print(f"fleetnode calibrate: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"fleetnode calibrate: cannot write {out}: {e}", file=sys.stderr)
        return 1
    print(f"{model.watts_per_core:.2f} W per busy core, {model.idle_w:.2f} W idle, "
          f"{model.cores} cores -> {out}")
    return 0
