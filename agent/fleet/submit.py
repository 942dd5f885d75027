"""`fleetnode fleet submit MODEL INPUTS`: send one job per input to the fleet, wait for every
result, cross-check replicas from different cars, and report per task."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from agent.fleet import protocol as p
from agent.fleet.fleetside import FleetClient, Task
from agent.fleet.models import load_private, sign_manifest


class SubmitError(Exception):
    pass


def load_inputs(path: Path) -> list[tuple[str, list[np.ndarray]]]:
    """A .npy is one job with one input; a .npz is one job per array (named by its key)."""
    if path.suffix == ".npy":
        return [(p.check_job_id(path.stem) if _ok_id(path.stem) else "job0",
                 [np.load(path, allow_pickle=False)])]
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return [(k if _ok_id(k) else f"job{i}", [z[k]]) for i, k in enumerate(z.files)]
    raise SubmitError(f"{path}: inputs must be a .npy or .npz file")


def _ok_id(s: str) -> bool:
    try:
        p.check_job_id(s)
        return len(s) <= 64
    except p.ProtocolError:
        return False


def resolve_model(client: FleetClient, spec: str, key: Path | None) -> p.ModelRef:
    if spec.startswith("builtin:"):
        return p.ModelRef.from_obj({"builtin": spec.split(":", 1)[1]})
    if len(spec) == 64 and all(c in "0123456789abcdef" for c in spec):
        return p.ModelRef(sha256=spec)
    path = Path(spec)
    if not path.is_file():
        raise SubmitError(f"{spec}: not a file, a sha256 or builtin:NAME")
    data = path.read_bytes()
    manifest = Path(f"{path}.manifest.json")
    if key is not None:
        signed = sign_manifest(load_private(key), data, _name(path), 1, time.time())
    elif manifest.exists():
        signed = p.SignedManifest.decode(manifest.read_bytes())
    else:
        raise SubmitError(f"{path}: needs --key or {manifest} (fleetnode fleet keys sign)")
    if signed.manifest.sha256 != hashlib.sha256(data).hexdigest():
        raise SubmitError(f"{manifest} is for another model")
    client.publish_model(data, signed)
    return p.ModelRef(sha256=signed.manifest.sha256)


def _name(path: Path) -> str:
    stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in path.stem)[:64]
    return stem or "model"


def task_report(t: Task) -> dict[str, Any]:
    return {"task": t.task_id, "status": t.status, "cars": t.cars, "attempts": t.attempts,
            "error": t.error,
            "outputs_sha256": hashlib.sha256(p.tensor_bytes(t.outputs)).hexdigest() if t.outputs else None}


def submit_to_server(args: Any) -> int:
    """`fleetnode fleet submit --server URL`: one batch through the fleet service's HTTP API."""
    from agent.fleet.apiclient import ApiClient

    token = args.token or os.environ.get("FLEETNODE_TOKEN")
    if not token:
        print("--server needs --token or $FLEETNODE_TOKEN (fleetnode fleet tokens add NAME)",
              file=sys.stderr)
        return 2
    try:
        jobs = load_inputs(args.inputs)
        model = Path(args.model).read_bytes()
    except (OSError, ValueError, SubmitError) as e:
        print(f"cannot read the model or the inputs: {e}", file=sys.stderr)
        return 2
    api = ApiClient(args.server.rstrip("/"), token)
    try:
        status, body = api.submit(model, {name: inputs[0] for name, inputs in jobs},
                                  redundancy=str(args.redundancy))
        if status != 201:
            print(f"the service refused the batch (HTTP {status}): "
                  f"{body.get('message') if isinstance(body, dict) else body}", file=sys.stderr)
            return 2
        bid = body["id"]
        print(f"batch {bid}: {body['tasks']} tasks", file=sys.stderr)
        b = api.wait_batch(bid, args.timeout)
        results = api.results(bid)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"the fleet service at {args.server}: {e}", file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        np.savez(args.out / f"{bid}.npz", **results)  # type: ignore[arg-type]
    print(json.dumps(b, separators=(",", ":")) if args.json else
          f"-- batch {bid}: {b['done']}/{b['tasks']} done, {b['failed']} failed, "
          f"{b['mismatches']} mismatches, {b['state']}")
    return 0 if b["state"] == "done" and b["failed"] == 0 else 1


def submit_command(args: Any, connection: Mapping[str, Any]) -> int:
    """Runs `fleetnode fleet submit`; `connection` holds FleetClient's broker keyword arguments
    (host, port, pool, tls), which the command line builds."""
    if getattr(args, "server", None):
        return submit_to_server(args)
    try:
        jobs = load_inputs(args.inputs)
    except (OSError, ValueError, SubmitError) as e:
        print(f"cannot read inputs: {e}", file=sys.stderr)
        return 2
    # Two runs at once must not share a session; job ids must never repeat within the cars'
    # dedup window (they would be taken for duplicates and not run), hence the random run id.
    submitter = args.submitter or "".join(
        c if c.isalnum() or c in "_-" else "-" for c in f"submit-{socket.gethostname()}")[:56] + \
        f"-{os.getpid() % 100000}"
    try:
        redundancy = int(args.redundancy)
    except ValueError:
        print("without --server, --redundancy must be an integer", file=sys.stderr)
        return 2
    run = secrets.token_hex(4)
    with FleetClient(**connection, submitter=submitter, job_timeout_s=args.job_timeout) as fc:
        if not fc.wait_connected(10):
            print(f"cannot reach the broker at {args.host}:{args.port}: {fc.session.last_error}",
                  file=sys.stderr)
            return 2
        try:
            model = resolve_model(fc, args.model, args.key)
        except (SubmitError, OSError, ValueError, p.ProtocolError) as e:
            print(f"model: {e}", file=sys.stderr)
            return 2
        tasks = [fc.submit(f"{run}-{name}"[:100], model, inputs, redundancy, args.max_run_s)
                 for name, inputs in jobs]
        finished = fc.wait(args.timeout)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
        worst = 0
        for t in tasks:
            rep = task_report(t)
            if args.json:
                print(json.dumps(rep, separators=(",", ":")))
            else:
                print(f"{t.task_id}: {t.status} cars={','.join(t.cars) or '-'}"
                      f"{' ' + t.error if t.error else ''}")
            if args.out is not None and t.status == "ok":
                np.savez(args.out / f"{t.task_id}.npz", *t.outputs)
            worst = max(worst, {"ok": 0, "mismatch": 3}.get(t.status, 1))
        if not args.json:
            print(f"-- {sum(t.status == 'ok' for t in tasks)}/{len(tasks)} ok, "
                  f"{sum(t.status == 'mismatch' for t in tasks)} mismatched, "
                  f"{'all finished' if finished else 'timed out'}")
        return worst
