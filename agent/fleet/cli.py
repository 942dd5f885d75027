"""`fleetnode fleet …` (watch, submit, serve, tokens, keys) and `fleetnode audit`.

`serve` and `tokens` are the fleet service's (agent/fleetside/cli.py registers them)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.fleet.mqtt import TlsConfig


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
    p.add_argument("--pool", default="default", help="job pool (default 'default')")
    p.add_argument("--tls-ca", type=Path, help="CA certificate that signed the broker's certificate")
    p.add_argument("--tls-cert", type=Path, help="this client's certificate (PEM)")
    p.add_argument("--tls-key", type=Path, help="this client's private key (PEM)")


def tls_from_args(args: Any) -> TlsConfig | None:
    parts = (args.tls_ca, args.tls_cert, args.tls_key)
    if not any(parts):
        return None
    if not all(parts):
        raise SystemExit("--tls-ca, --tls-cert and --tls-key go together")
    return TlsConfig(args.tls_ca, args.tls_cert, args.tls_key)


def client_kwargs(args: Any) -> dict[str, Any]:
    return {"host": args.host, "port": args.port, "pool": args.pool, "tls": tls_from_args(args)}


def _cmd_watch(args: argparse.Namespace) -> int:
    from agent.fleet.fleetside import FleetClient
    from agent.fleet.watch import watch
    with FleetClient(**client_kwargs(args), watch_results=True) as client:
        if not client.wait_connected(args.connect_timeout):
            print(f"cannot reach the broker at {args.host}:{args.port}: {client.session.last_error}",
                  file=sys.stderr)
            return 2
        return watch(client, sys.stdout, args.json, args.count, args.timeout)


def _cmd_submit(args: argparse.Namespace) -> int:
    from agent.fleet.submit import submit_command
    return submit_command(args, client_kwargs(args))


def _cmd_keys(args: argparse.Namespace) -> int:
    from agent.fleet.models import keys_command
    return keys_command(args)


def _cmd_audit(args: argparse.Namespace) -> int:
    from agent.fleet.audit import AuditLog, dump_json
    if not args.log.exists():
        print(f"no audit log at {args.log}", file=sys.stderr)
        return 2
    audit = AuditLog(args.log)
    try:
        import time
        since = time.time() - args.since_s if args.since_s is not None else None
        entries = list(audit.entries(since=since, topic_contains=args.topic, limit=args.limit))
        if args.json:
            for e in entries:
                print(dump_json(e))
        else:
            for e in entries:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.t))
                print(f"{stamp}  {e.topic}  qos={e.qos}{' retained' if e.retain else ''}  "
                      f"{e.size} B  {e.content}")
            s = audit.summary()["topics"]
            total = sum(v["messages"] for v in s.values())  # type: ignore[attr-defined]
            print(f"-- {len(entries)} shown; {total} messages in the log (retention "
                  f"{audit.retention_s / 86400:g} days)")
    finally:
        audit.close()
    return 0


def register(subparsers: Any) -> None:
    fleet = subparsers.add_parser("fleet", help="the fleet side: watch cars, submit jobs, manage keys",
                                  description="The fleet side of the MQTT link.")
    sub = fleet.add_subparsers(dest="fleet_command", metavar="SUBCOMMAND")
    fleet.set_defaults(func=lambda a: (fleet.print_help(), 2)[1])

    w = sub.add_parser("watch", help="live table of cars and the fleet's available power",
                       description="Show each car's mode, reasons, SoC and available power, and "
                                   "the totals, from the cars' retained state.")
    _connection_args(w)
    w.add_argument("--json", action="store_true", help="print one JSON object per update")
    w.add_argument("--count", type=int, help="exit after N state messages (N cars' retained states)")
    w.add_argument("--timeout", type=float, help="exit after S seconds (status 1 if --count not reached)")
    w.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to reach the broker")
    w.set_defaults(func=_cmd_watch)

    s = sub.add_parser("submit", help="send jobs to the fleet and collect the results",
                       description="Send one job per input to available cars, collect every result, "
                                   "cross-check replicas from different cars.")
    _connection_args(s)
    s.add_argument("model", help="a .tflite file (sent signed to the cars), a sha256 of a model the "
                                 "cars hold, or builtin:NAME")
    s.add_argument("inputs", type=Path, help=".npy (one job) or .npz (one job per array)")
    s.add_argument("--redundancy", default="1",
                   help="cars per job, cross-checked (default 1); with --server also 'adaptive'")
    s.add_argument("--server", metavar="URL",
                   help="send the batch to a fleet service (fleetnode fleet serve) instead of the broker")
    s.add_argument("--token", help="the service's bearer token (default $FLEETNODE_TOKEN)")
    s.add_argument("--key", type=Path, help="signing key (from `fleet keys create`) for a .tflite model")
    s.add_argument("--submitter", default=None,
                   help="submitter id (default: submit-<host>-<pid>)")
    s.add_argument("--timeout", type=float, default=300.0, help="give up after S seconds")
    s.add_argument("--job-timeout", type=float, default=30.0, help="resend a job unanswered after S seconds")
    s.add_argument("--max-run-s", type=float, default=60.0, help="run-time limit per job on the car")
    s.add_argument("--out", type=Path, help="write each task's outputs to DIR/<task>.npz")
    s.add_argument("--json", action="store_true", help="print one JSON object per task")
    s.set_defaults(func=_cmd_submit)

    from agent.fleetside.cli import register as register_service  # argparse only
    register_service(sub, _connection_args, tls_from_args)

    k = sub.add_parser("keys", help="create and inspect model signing keys",
                       description="Ed25519 keys that sign model manifests; cars trust public keys.")
    ks = k.add_subparsers(dest="keys_command", metavar="ACTION")
    kc = ks.add_parser("create", help="create a key pair: KEY (private) and KEY.pub")
    kc.add_argument("path", type=Path)
    kc.set_defaults(func=_cmd_keys)
    ki = ks.add_parser("show", help="print a key's id and public key")
    ki.add_argument("path", type=Path)
    ki.set_defaults(func=_cmd_keys)
    kg = ks.add_parser("sign", help="write MODEL.manifest.json: a signed manifest for a model file")
    kg.add_argument("path", type=Path, help="private key")
    kg.add_argument("model", type=Path)
    kg.add_argument("--name", default=None)
    kg.add_argument("--version", type=int, default=1)
    kg.add_argument("--valid-days", type=float, default=30.0)
    kg.set_defaults(func=_cmd_keys)
    k.set_defaults(func=lambda a: (k.print_help(), 2)[1])

    a = subparsers.add_parser("audit", help="show every message this car sent to the fleet",
                              description="Read the car's local audit log of sent messages.")
    a.add_argument("--log", type=Path, default=Path("/var/lib/fleetnode/audit.sqlite"),
                   help="audit log (default /var/lib/fleetnode/audit.sqlite)")
    a.add_argument("--since-s", type=float, help="only the last S seconds")
    a.add_argument("--topic", help="only topics containing this text")
    a.add_argument("--limit", type=int, help="at most N messages")
    a.add_argument("--json", action="store_true", help="one JSON object per message")
    a.set_defaults(func=_cmd_audit)


def main(argv: Sequence[str] | None = None) -> int:
    """This module's commands alone (the full CLI is agent/cli.py)."""
    parser = argparse.ArgumentParser(prog="fleetnode")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
