"""A client of the fleet service's HTTP API (docs/fleet.md), for `fleetnode fleet submit
--server` and the tests: the standard library's urllib, no dependency of the service's."""

from __future__ import annotations

import io
import json
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class ApiClient:
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
