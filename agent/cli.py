"""The `fleetnode` command. Each layer registers its own subcommands from its `cli.py`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

import agent

# Each module exposes `register(subparsers)`, adding one or more subcommands whose parsers set
# `func` to a callable taking the parsed namespace and returning an exit code.
SUBCOMMAND_MODULES = (
    "agent.service",
    "agent.doctor",
    "agent.bus.cli",
    "agent.fleet.cli",
    "agent.inference.cli",
    "agent.inference.bench",
    "agent.governor.cli",  # policy
    "agent.runner.cli",  # calibrate
    "agent.ledger.cli",  # report
    "agent.hostsource",  # host
    "hil.cli",  # hil run (the bench; shipped with the package, imports the agent, not the reverse)
)


class _Version(argparse.Action):
    """`--version`: loads the engine only when asked, to name the ISA it picked on this machine."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        from agent.service import engine_isa

        print(f"fleetnode {agent.__version__} (engine: {engine_isa()})")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fleetnode",
        description="Lend a parked electric car's inference computer to a fleet, safely.",
    )
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print the version and the native engine's instruction set, then exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
