"""The fleet service in one process, for tests and benchmarks: store, dispatcher and HTTP API
(uvicorn on a free loopback port, in a thread), a signing key the simulated cars trust, and a
small HTTP client for the API."""

from __future__ import annotations

import io
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.fleet.broker import free_port
from agent.fleet.models import TrustStore, create_key, load_private, load_public, sign_manifest
from agent.fleetside.api import ApiConfig, create_app
from agent.fleetside.dispatcher import Dispatcher, DispatcherConfig
from agent.fleetside.store import Store


def make_key(workdir: Path) -> tuple[Path, TrustStore]:
    """A model signing key and the trust store of cars that accept its models."""
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / "fleet.key"
    create_key(key)
    return key, TrustStore([load_public(Path(f"{key}.pub"))])


@dataclass
class Api:
    """A client of the HTTP API: JSON in, JSON or bytes out, errors as (status, body)."""

    base: str
    token: str

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, timeout: float = 30.0) -> tuple[int, bytes]:
        h = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as e:
            return int(e.code), bytes(e.read())

    def json(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        status, body = self.request(method, path, **kw)
        return status, json.loads(body) if body else None

    def submit(self, model: bytes, inputs: dict[str, np.ndarray], redundancy: str = "adaptive",
               **fields: str) -> tuple[int, Any]:
        buf = io.BytesIO()
        np.savez(buf, **inputs)  # type: ignore[arg-type]
        body, ctype = multipart({"redundancy": redundancy, **fields},
                                {"model": ("model.tflite", model), "inputs": ("inputs.npz", buf.getvalue())})
        return self.json("POST", "/v1/batches", body=body, headers={"Content-Type": ctype})

    def results(self, bid: str) -> dict[str, np.ndarray]:
        status, body = self.request("GET", f"/v1/batches/{bid}/results")
        if status != 200:
            raise RuntimeError(f"results: HTTP {status}: {body[:200]!r}")
        with np.load(io.BytesIO(body), allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def wait_batch(self, bid: str, timeout: float) -> dict[str, Any]:
        """Polls GET /v1/batches/{id} until its state is no longer "running" (or the deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            status, b = self.json("GET", f"/v1/batches/{bid}")
            if status != 200:
                raise RuntimeError(f"batch {bid}: HTTP {status}: {b}")
            if b["state"] != "running" or time.monotonic() > deadline:
                return dict(b)
            time.sleep(0.1)


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type."""
    boundary = f"fleetnode-{secrets.token_hex(12)}"
    parts = []
    for k, v in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    for k, (fname, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{fname}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclass
class FleetService:
    """`fleetnode fleet serve` in this process. `stop()` when done."""

    store: Store
    dispatcher: Dispatcher
    api: Api
    _server: Any = None
    _thread: threading.Thread | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, db: str, key: Path, broker_host: str, broker_port: int, *,
              token_quota: int = 100_000, store: Store | None = None, **dispatch_kw: Any) -> FleetService:
        import uvicorn

        store = store or Store(db)
        token = store.add_token(f"t{secrets.token_hex(3)}", token_quota)
        disp = Dispatcher(store, DispatcherConfig(host=broker_host, port=broker_port, **dispatch_kw))
        private = load_private(key)
        app = create_app(store, ApiConfig(
            signer=lambda model, name: sign_manifest(private, model, name, 1, time.time()),
            on_batch=lambda _bid: disp.wake(), max_upload_bytes=8 << 20))
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               lifespan="off"))
        thread = threading.Thread(target=server.run, name="fleet-api", daemon=True)
        thread.start()
        disp.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        if not server.started:
            raise RuntimeError("the API server did not start")
        return cls(store, disp, Api(f"http://127.0.0.1:{port}", token), server, thread)

    def stop(self) -> None:
        self.dispatcher.stop()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.store.close()
