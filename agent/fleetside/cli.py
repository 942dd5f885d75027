"""`fleetnode fleet serve`, `simulate` and `tokens`: the fleet service's commands.

Only argparse at import time; the service's modules load when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_DB = "fleet.sqlite"


def _db_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=DEFAULT_DB,
                   help=f"the database: a SQLite file (default ./{DEFAULT_DB}) or "
                        "postgresql://user@host:port/dbname (several dispatchers may share it)")


def _broker_arg(args: argparse.Namespace) -> bool:
    """--broker HOST:PORT into args.host and args.port; False (after saying why) if malformed."""
    if args.broker:
        bhost, _, bport = args.broker.rpartition(":")
        if not bhost or not bport.isdigit():
            print(f"--broker must be HOST:PORT, not {args.broker!r}", file=sys.stderr)
            return False
        args.host, args.port = bhost, int(bport)
    return True


def register(sub: Any, connection_args: Any, tls_from_args: Any) -> None:
    """Adds `serve`, `simulate` and `tokens` to the `fleet` subcommands; the broker options and their TLS
    reading come from the fleet link's command line (agent/fleet/cli.py), which calls this."""
    s = sub.add_parser(
        "serve", help="run the fleet service: durable dispatcher, HTTP API, dashboard",
        description="Keep batches in a database, send their tasks to the cars through the broker, "
                    "verify results by adaptive replication, grant credits, and serve the HTTP API "
                    "and the dashboard at / (docs/fleet.md, docs/dashboard.md).")
    connection_args(s)
    _db_arg(s)
    s.add_argument("--broker", metavar="HOST:PORT", help="the broker (instead of --host and --port)")
    s.add_argument("--listen", default="127.0.0.1:8080", help="HTTP address (default 127.0.0.1:8080)")
    s.add_argument("--key", type=Path, required=True,
                   help="model signing key (fleetnode fleet keys create); cars must trust KEY.pub")
    s.add_argument("--name", default="", help="this dispatcher's name (MQTT client id, lease owner); "
                                               "keep it across restarts so queued results come back")
    s.add_argument("--submitter", default="fleet", help="results topic level (default 'fleet')")
    s.add_argument("--job-timeout", type=float, default=30.0, help="resend an attempt unanswered after S s")
    s.add_argument("--max-run-s", type=float, default=60.0, help="run-time limit per job on the car")
    s.add_argument("--lease", type=float, default=10.0,
                   help="seconds a dispatcher holds its tasks; a dead one's pass to a peer after it")
    s.add_argument("--trust-after", type=int, default=100,
                   help="consecutive validated results before a car's results stand alone (default 100)")
    s.add_argument("--spot-check", type=float, default=0.1,
                   help="share of a trusted car's results replicated anyway (default 0.1)")
    s.add_argument("--max-upload-mb", type=float, default=64.0, help="largest upload (default 64 MB)")
    s.set_defaults(func=serve_command, tls_from_args=tls_from_args)

    m = sub.add_parser(
        "simulate", help="run N lightweight simulated cars against the broker and the service",
        description="Start N simulated cars, each a real MQTT 5 client speaking the fleet protocol: "
                    "retained birth state in RUN with a last will, telemetry by exception, jobs from "
                    "the pool's shared subscription answered after --service-ms with a deterministic "
                    "stand-in result that replicas agree on. Runs until --duration or Ctrl-C; prints "
                    "progress every second and the traffic totals at the end (docs/scale.md).")
    connection_args(m)
    m.add_argument("--broker", metavar="HOST:PORT", help="the broker (instead of --host and --port)")
    m.add_argument("--vehicles", type=int, required=True, metavar="N", help="how many cars")
    m.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    m.add_argument("--service-ms", type=float, default=20.0, help="run time per job (default 20 ms)")
    m.add_argument("--capacity", type=int, default=4, help="jobs a car takes at once (default 4)")
    m.add_argument("--processes", type=int, help="worker processes (default: one per core)")
    m.add_argument("--prefix", default="sim", help="car id prefix (default 'sim': sim0000, sim0001, ...)")
    m.add_argument("--json", action="store_true", help="print the final totals as one JSON object")
    m.add_argument("--quiet", action="store_true", help="no progress line")
    m.set_defaults(func=simulate_command, tls_from_args=tls_from_args)

    t = sub.add_parser("tokens", help="API bearer tokens of the fleet service",
                       description="Tokens are stored hashed; a new token is printed once.")
    ts = t.add_subparsers(dest="tokens_command", metavar="ACTION")
    ta = ts.add_parser("add", help="create a token NAME and print it")
    ta.add_argument("name")
    ta.add_argument("--quota", type=int, default=10_000, help="tasks in flight allowed (default 10000)")
    _db_arg(ta)
    ta.set_defaults(func=tokens_command)
    tl = ts.add_parser("list", help="list token names and quotas")
    _db_arg(tl)
    tl.set_defaults(func=tokens_command)
    t.set_defaults(func=lambda a: (t.print_help(), 2)[1])


def tokens_command(args: argparse.Namespace) -> int:
    from agent.fleet.protocol import ProtocolError
    from agent.fleetside.store import Store, StoreError

    try:
        store = Store(args.db)
    except StoreError as e:
        print(f"fleetnode fleet tokens: {e}", file=sys.stderr)
        return 2
    try:
        if args.tokens_command == "add":
            print(store.add_token(args.name, args.quota))
        else:
            for name, quota in store.tokens():
                print(f"{name}\tquota {quota}")
    except (StoreError, ProtocolError) as e:
        print(f"fleetnode fleet tokens: {e}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


def simulate_command(args: argparse.Namespace) -> int:
    import json
    import signal
    import time

    from agent.fleet.protocol import ProtocolError, check_id
    from agent.fleetside.simulate import SimConfig, format_progress, simulate

    if not _broker_arg(args):
        return 2
    problems = []
    if args.vehicles < 1:
        problems.append("--vehicles must be at least 1")
    if args.duration is not None and args.duration <= 0:
        problems.append("--duration must be positive")
    if args.service_ms < 0:
        problems.append("--service-ms must not be negative")
    if not 1 <= args.capacity <= 1000:
        problems.append("--capacity must be within 1..1000")
    if args.processes is not None and args.processes < 1:
        problems.append("--processes must be at least 1")
    try:
        check_id("car", f"{args.prefix}{args.vehicles}")
    except ProtocolError as e:
        problems.append(f"--prefix: {e}")
    if problems:
        print("fleetnode fleet simulate: " + "; ".join(problems), file=sys.stderr)
        return 2
    cfg = SimConfig(host=args.host, port=args.port, pool=args.pool, service_s=args.service_ms / 1000.0,
                    capacity=args.capacity, tls=args.tls_from_args(args), prefix=args.prefix)
    show = not args.quiet and not args.json

    def progress(elapsed: float, tot: dict[str, int]) -> None:
        if show:
            print(format_progress(elapsed, tot, args.vehicles), end="", file=sys.stderr, flush=True)

    def terminate(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM ends the run as Ctrl-C does: goodbyes, workers joined

    signal.signal(signal.SIGTERM, terminate)
    t0 = time.monotonic()
    tot = simulate(args.vehicles, cfg, args.duration, args.processes, progress)
    seconds = round(time.monotonic() - t0, 2)
    if show:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps({"vehicles": args.vehicles, "seconds": seconds, **tot}), flush=True)
    else:
        print(f"seconds={seconds} " + " ".join(f"{k}={v}" for k, v in tot.items()), flush=True)
    if not tot["connected"]:
        print(f"fleetnode fleet simulate: no car reached the broker at {args.host}:{args.port}",
              file=sys.stderr)
        return 1
    return 0


def serve_command(args: argparse.Namespace) -> int:
    import logging
    import time

    import uvicorn

    from agent.fleet.models import load_private, sign_manifest
    from agent.fleetside.api import ApiConfig, create_app
    from agent.fleetside.dispatcher import Dispatcher, DispatcherConfig
    from agent.fleetside.replication import Rule
    from agent.fleetside.store import Store, StoreError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not _broker_arg(args):
        return 2
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"--listen must be HOST:PORT, not {args.listen!r}", file=sys.stderr)
        return 2
    try:
        key = load_private(args.key)
    except (OSError, ValueError) as e:
        print(f"cannot read the signing key {args.key}: {e}", file=sys.stderr)
        return 2
    try:
        rule = Rule(trust_after=args.trust_after, spot_check=args.spot_check)
        store = Store(args.db, rule=rule)
    except (StoreError, ValueError) as e:
        print(f"fleetnode fleet serve: {e}", file=sys.stderr)
        return 2
    dispatcher = Dispatcher(store, DispatcherConfig(
        host=args.host, port=args.port, tls=args.tls_from_args(args), pool=args.pool,
        submitter=args.submitter, name=args.name, job_timeout_s=args.job_timeout,
        lease_s=args.lease))

    def signer(model: bytes, name: str) -> Any:
        return sign_manifest(key, model, name, 1, time.time())

    app = create_app(store, ApiConfig(max_upload_bytes=int(args.max_upload_mb * (1 << 20)),
                                      max_run_s=args.max_run_s, signer=signer,
                                      on_batch=lambda _bid: dispatcher.wake(),
                                      link_health=dispatcher.link_health))
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=int(port), log_level="warning",
                                           lifespan="off"))
    dispatcher.start()
    print(f"fleet service {dispatcher.name}: http://{host}:{port} (dashboard at /) db {store._safe_url()} "
          f"broker {args.host}:{args.port}", flush=True)
    try:
        server.run()
    finally:
        dispatcher.stop()
        store.close()
    return 0
