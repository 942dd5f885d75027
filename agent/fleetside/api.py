"""The fleet service's HTTP JSON API (Starlette on uvicorn). Every route but the OpenAPI document
needs `Authorization: Bearer <token>` (tokens from `fleetnode fleet tokens add`).

    POST   /v1/batches                multipart: model (.tflite), inputs (.npz), redundancy
                                      (1..8 or "adaptive"), optional deadline (unix seconds)
    GET    /v1/batches/{id}           progress: tasks, done, in flight, mismatches, state
    GET    /v1/batches/{id}/results   .npz of outputs by input name (settled tasks only)
    DELETE /v1/batches/{id}           cancel: no attempt of it is sent again
    GET    /v1/cars                   cars: mode, reasons, reputation, credits (no location)
    GET    /metrics                   Prometheus text format
    GET    /openapi.json              this API, described
    GET    /, /cars/{id}, /v1/dashboard...  the dashboard (agent/fleetside/dashboard.py)

Errors are JSON `{"error": code, "message": text}` (agent/fleetside/errors.py) with a 4xx or 5xx
status that names the problem.
An upload is read with a size limit before anything parses it; the model must load in our
engine and every input must match the model's input shape and dtype.
"""

from __future__ import annotations

import io
import math
import time
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent.fleet import protocol as proto
from agent.fleetside.errors import ApiError, error_response
from agent.fleetside.store import ADAPTIVE, QuotaError, Store, StoreError, UnknownBatch

MAX_UPLOAD_BYTES = 64 << 20
MAX_TASKS = 100_000


@dataclass
class ApiConfig:
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_run_s: float = 60.0
    signer: Callable[[bytes, str], proto.SignedManifest] | None = None  # (model, name) -> manifest
    on_batch: Callable[[str], None] | None = None  # a batch was created (wake the dispatcher)
    link_health: Callable[[], dict[str, Any]] | None = None  # the broker link, for the dashboard


def create_app(store: Store, cfg: ApiConfig | None = None) -> Starlette:
    cfg = cfg or ApiConfig()

    def guarded(fn: Callable[[Request, str], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            auth = request.headers.get("authorization", "")
            scheme, _, token = auth.partition(" ")
            name = store.token_name(token.strip()) if scheme.lower() == "bearer" and token else None
            if name is None:
                return error_response(401, "unauthorized", "a valid bearer token is needed "
                                                   "(fleetnode fleet tokens add NAME)")
            try:
                return await fn(request, name)
            except ApiError as e:
                return error_response(e.status, e.code, e.message)
            except UnknownBatch as e:
                return error_response(404, "unknown_batch", str(e))
            except QuotaError as e:
                return error_response(429, "quota", str(e))
            except StoreError as e:
                return error_response(503, "store", str(e))
        return handler

    async def post_batch(request: Request, token: str) -> Response:
        body = await _read_limited(request, cfg.max_upload_bytes)
        form = await _form(request, body)
        model_bytes = _file(form, "model")
        inputs_bytes = _file(form, "inputs")
        redundancy = _redundancy(form.get("redundancy", "adaptive"))
        deadline = _deadline(form.get("deadline"))
        specs, n_out = _check_model(model_bytes)
        tasks = _check_inputs(inputs_bytes, specs)
        if cfg.signer is None:
            raise ApiError(503, "no_signing_key", "the service has no model signing key (--key)")
        signed = cfg.signer(model_bytes, "batch")
        sha = signed.manifest.sha256
        store.put_model(sha, model_bytes, signed.encode(),
                        [{"name": s.name, "dtype": str(s.dtype), "shape": list(s.shape)} for s in specs],
                        n_out)
        bid = store.create_batch(token, sha, redundancy, tasks, cfg.max_run_s, deadline)
        if cfg.on_batch is not None:
            cfg.on_batch(bid)
        return JSONResponse({"id": bid, "tasks": len(tasks), "model": sha}, status_code=201)

    async def get_batch(request: Request, token: str) -> Response:
        b = _own(store, request.path_params["bid"], token)
        return JSONResponse(b)

    async def get_results(request: Request, token: str) -> Response:
        b = _own(store, request.path_params["bid"], token)
        buf = io.BytesIO()
        arrays: dict[str, np.ndarray] = {}
        for name, outputs in store.results(b["id"]):
            _, outs = proto.decode_envelope(outputs, b"R", 1 << 30)
            if len(outs) == 1:
                arrays[name] = outs[0]
            else:
                for k, a in enumerate(outs):
                    arrays[f"{name}.{k}"] = a
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        return Response(buf.getvalue(), media_type="application/octet-stream",
                        headers={"x-fleetnode-state": str(b["state"]),
                                 "x-fleetnode-results": str(len(arrays))})

    async def delete_batch(request: Request, token: str) -> Response:
        b = _own(store, request.path_params["bid"], token)
        return JSONResponse(store.cancel(b["id"]))

    async def get_cars(request: Request, token: str) -> Response:
        return JSONResponse({"cars": store.cars()})

    async def get_metrics(request: Request, token: str) -> Response:
        lines = []
        for key, v in sorted(store.metrics().items()):
            lines.append(f"{key} {v:g}")
        return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    from agent.fleetside.dashboard import DashboardConfig, routes

    return Starlette(routes=[
        *routes(store, guarded, DashboardConfig(link_health=cfg.link_health)),
        Route("/v1/batches", guarded(post_batch), methods=["POST"]),
        Route("/v1/batches/{bid}", guarded(get_batch), methods=["GET"]),
        Route("/v1/batches/{bid}", guarded(delete_batch), methods=["DELETE"]),
        Route("/v1/batches/{bid}/results", guarded(get_results), methods=["GET"]),
        Route("/v1/cars", guarded(get_cars), methods=["GET"]),
        Route("/metrics", guarded(get_metrics), methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ])


def _own(store: Store, bid: str, token: str) -> dict[str, Any]:
    b = store.batch(bid)
    if b["token"] != token:  # another token's batch is not even said to exist
        raise UnknownBatch(f"no batch {bid!r}")
    return b


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            n = int(declared)
        except ValueError:
            raise ApiError(400, "bad_request", "Content-Length is not a number") from None
        if n > limit:
            raise ApiError(413, "too_large", f"the upload of {n} bytes exceeds the limit of {limit}")
    chunks = []
    got = 0
    async for chunk in request.stream():
        got += len(chunk)
        if got > limit:
            raise ApiError(413, "too_large", f"the upload exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _form(request: Request, body: bytes) -> dict[str, Any]:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    replay = Request(request.scope, receive)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(415, "not_multipart", "POST /v1/batches takes multipart/form-data")
    try:
        form = await replay.form(max_files=4, max_fields=16)
    except Exception as e:  # noqa: BLE001 -- the multipart parser's errors are the client's
        raise ApiError(400, "bad_multipart", f"cannot read the multipart body: {e}") from None
    out: dict[str, Any] = {}
    for key, value in form.multi_items():
        if isinstance(value, str):
            out[key] = value
        else:
            out[key] = await value.read()
    return out


def _file(form: dict[str, Any], key: str) -> bytes:
    v = form.get(key)
    if not isinstance(v, bytes):
        raise ApiError(400, f"missing_{key}", f"the form needs a file field {key!r}")
    return v


def _redundancy(v: object) -> int:
    if v == "adaptive":
        return ADAPTIVE
    try:
        r = int(str(v))
    except ValueError:
        r = -1
    if not 1 <= r <= 8:
        raise ApiError(422, "bad_redundancy", "redundancy must be an integer 1..8 or \"adaptive\"")
    return r


def _deadline(v: object) -> float | None:
    if v is None or v == "":
        return None
    try:
        d = float(str(v))
    except ValueError:
        d = math.nan
    if not math.isfinite(d) or d < time.time():
        raise ApiError(422, "bad_deadline", "deadline must be a future time in unix seconds")
    return d


def _check_model(data: bytes) -> tuple[list[Any], int]:
    from agent.inference import ModelError, load_model

    try:
        model = load_model(data)
    except ModelError as e:
        raise ApiError(422, "bad_model", f"the engine refuses the model: {e}") from None
    if len(model.inputs) != 1:
        raise ApiError(422, "bad_model", f"batches take models with one input; this one has "
                                         f"{len(model.inputs)}")
    return list(model.inputs), len(model.outputs)


def _check_inputs(data: bytes, specs: list[Any]) -> list[tuple[str, bytes]]:
    spec = specs[0]
    try:
        z = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ApiError(422, "bad_inputs", f"inputs must be an .npz file: {e}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ApiError(422, "bad_inputs", "inputs must be an .npz file (one array per task)")
    tasks = []
    with z:
        if not z.files:
            raise ApiError(422, "bad_inputs", "the .npz holds no arrays")
        if len(z.files) > MAX_TASKS:
            raise ApiError(422, "bad_inputs", f"at most {MAX_TASKS} inputs per batch")
        for name in z.files:
            if len(name) > 128:
                raise ApiError(422, "bad_inputs", "input names are at most 128 characters")
            try:
                a = z[name]
            except (ValueError, OSError, zipfile.BadZipFile) as e:
                raise ApiError(422, "bad_inputs", f"input {name!r}: {e}") from None
            if a.dtype != spec.dtype or tuple(a.shape) != tuple(spec.shape):
                raise ApiError(422, "inputs_mismatch",
                               f"input {name!r} is {a.dtype}{list(a.shape)}; the model's input "
                               f"{spec.name!r} is {spec.dtype}{list(spec.shape)}")
            tasks.append((name, proto.tensor_bytes([a])))
    return tasks


_ERR = {"description": "error", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}, "message": {"type": "string"}}}}}}
OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "fleetnode fleet service", "version": "1"},
    "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": {
        "/v1/batches": {"post": {
            "summary": "Submit a batch: one task per array of the inputs .npz",
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["model", "inputs"],
                "properties": {"model": {"type": "string", "format": "binary"},
                               "inputs": {"type": "string", "format": "binary"},
                               "redundancy": {"type": "string", "default": "adaptive",
                                              "description": "1..8 or adaptive"},
                               "deadline": {"type": "number", "description": "unix seconds"}}}}}},
            "responses": {"201": {"description": "the batch id"}, "401": _ERR, "413": _ERR,
                          "422": _ERR, "429": _ERR}}},
        "/v1/batches/{id}": {
            "get": {"summary": "Progress of a batch", "responses": {"200": {"description": "progress"},
                                                                    "404": _ERR}},
            "delete": {"summary": "Cancel a batch", "responses": {"200": {"description": "progress"},
                                                                  "404": _ERR}}},
        "/v1/batches/{id}/results": {"get": {
            "summary": "Outputs by input name, as .npz (settled tasks only)",
            "responses": {"200": {"description": ".npz",
                                  "content": {"application/octet-stream": {}}}, "404": _ERR}}},
        "/v1/cars": {"get": {"summary": "Cars: mode, reasons, reputation, credits",
                             "responses": {"200": {"description": "cars"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics",
                             "responses": {"200": {"description": "text format"}}}},
    },
}
