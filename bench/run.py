"""The benchmark harness: runs every bench/bench_*.py and writes its figures as JSON.

Each benchmark module exposes `run() -> dict` returning its figures (medians, ratios, units in
the key names). The harness adds the machine they ran on and writes bench/results/<name>.json.
Figures are compared side by side inside one run (ours vs LiteRT), never against constants.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from agent.inference.bench import machine

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run fleetnode's benchmarks; write bench/results/*.json.")
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all bench/bench_*.py)")
    args = p.parse_args(argv)
    names = args.names or sorted(f.stem[len("bench_"):] for f in Path(__file__).parent.glob("bench_*.py"))
    RESULTS.mkdir(exist_ok=True)
    failed = 0
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.time()
        try:
            figures = importlib.import_module(f"bench.bench_{name}").run()
        except Exception as e:  # noqa: BLE001 -- one broken benchmark must not hide the others
            print(f"   FAILED: {type(e).__name__}: {e}", file=sys.stderr)
            failed += 1
            continue
        record = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "seconds": round(time.time() - t0, 1), "machine": machine(), "figures": figures}
        out = RESULTS / f"{name}.json"
        out.write_text(json.dumps(record, indent=2) + "\n")
        for k, v in figures.items():
            print(f"   {k}: {v}")
        print(f"   -> {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
