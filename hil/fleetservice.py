"""The fleet service in one process, for tests and benchmarks: store, dispatcher and HTTP API
(uvicorn on a free loopback port, in a thread) and a signing key the simulated cars trust."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.fleet.apiclient import ApiClient as Api
from agent.fleet.apiclient import multipart
from agent.fleet.broker import free_port
from agent.fleet.models import TrustStore, create_key, load_private, load_public, sign_manifest
from agent.fleetside.api import ApiConfig, create_app
from agent.fleetside.dispatcher import Dispatcher, DispatcherConfig
from agent.fleetside.store import Store

__all__ = ["Api", "FleetService", "make_key", "multipart"]


def make_key(workdir: Path) -> tuple[Path, TrustStore]:
    """A model signing key and the trust store of cars that accept its models."""
    workdir.mkdir(parents=True, exist_ok=True)
    key = workdir / "fleet.key"
    create_key(key)
    return key, TrustStore([load_public(Path(f"{key}.pub"))])


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
            on_batch=lambda _bid: disp.wake(), max_upload_bytes=8 << 20,
            link_health=disp.link_health))
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
