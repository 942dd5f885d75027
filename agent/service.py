"""The agent process: bus -> governor -> runner -> fleet link, wired and supervised.

This module owns the wiring and nothing else: every decision is the governor's, every byte on a
wire belongs to its layer's protocol module. It registers `fleetnode run` and `fleetnode unit`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from agent.clock import Clock, SystemClock
from agent.config import AgentConfig, ConfigError
from agent.sdnotify import Watchdog, notify

STAGES = ("bus", "governor", "runner", "fleet")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the on-car agent",
        description="Run the agent: read the vehicle bus, decide with the governor, run fleet jobs, "
        "report over MQTT. Options override the config file.",
    )
    p.add_argument("--config", help="agent config file (TOML, table [agent])")
    p.add_argument("--port", dest="serial_port", help="serial port of the CAN shim (e.g. /dev/ttyACM0 or a pty)")
    p.add_argument("--profile", help="vehicle profile name or TOML path (default: reference)")
    p.add_argument("--dbc", help="DBC file, for profiles that do not ship one")
    p.add_argument("--car-id", dest="car_id", help="this car's id on the fleet")
    p.add_argument("--broker-host", dest="broker_host", help="MQTT broker host")
    p.add_argument("--broker-port", dest="broker_port", type=int, help="MQTT broker port")
    p.add_argument("--pool", help="job pool (shared subscription group)")
    p.add_argument("--state-dir", dest="state_dir", help="where the outbox, ledger and model cache live")
    p.add_argument("--policy", dest="policy_file", help="owner policy (TOML)")
    p.add_argument("--json", action="store_true", help="print each status as one JSON line")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: run until signalled)")
    p.set_defaults(func=_cmd_run)

    u = sub.add_parser("unit", help="print the hardened systemd unit for this installation",
                       description="Print fleetnode.service, rendered with this installation's paths.")
    u.add_argument("--serial", default="/dev/ttyACM0", help="the shim's serial device (default /dev/ttyACM0)")
    u.add_argument("--broker-net", default="127.0.0.0/8", help="the broker's IP network, for IPAddressAllow=")
    u.set_defaults(func=_cmd_unit)


def _cmd_unit(args: argparse.Namespace) -> int:
    from agent.deploy import render_unit

    try:
        sys.stdout.write(render_unit(args.serial, args.broker_net))
    except ValueError as e:
        print(f"fleetnode unit: {e}", file=sys.stderr)
        return 2
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    overrides = {k: getattr(args, k) for k in (
        "serial_port", "profile", "dbc", "car_id", "broker_host", "broker_port", "pool", "state_dir", "policy_file")}
    try:
        base = AgentConfig.load(args.config) if args.config else AgentConfig()
        cfg = AgentConfig.from_mapping({}, **{**_asdict(base), **{k: v for k, v in overrides.items() if v is not None}})
    except ConfigError as e:
        print(f"fleetnode run: {e}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.duration > 0:
        threading.Timer(args.duration, stop.set).start()
    agent = Agent(cfg, SystemClock(), out=sys.stdout, json_lines=args.json)
    return agent.run(stop)


def _asdict(cfg: AgentConfig) -> dict[str, Any]:
    from dataclasses import asdict

    d = asdict(cfg)
    d.pop("extra", None)
    return d


class Agent:
    """One running agent. `run(stop)` blocks until `stop` is set; returns the exit code."""

    def __init__(self, cfg: AgentConfig, clock: Clock, out: TextIO | None = None, json_lines: bool = False) -> None:
        self.cfg = cfg
        self.clock = clock
        self.out = out
        self.json_lines = json_lines
        self.watchdog = Watchdog(STAGES)

    def _say(self, record: dict[str, Any], text: str) -> None:
        if self.out is None:
            return
        self.out.write((json.dumps(record) if self.json_lines else text) + "\n")
        self.out.flush()

    def run(self, stop: threading.Event) -> int:
        raise NotImplementedError  # wired once the layers land
