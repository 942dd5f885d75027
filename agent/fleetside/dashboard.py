"""The fleet dashboard: pages and live data for people who run a fleet, served by `fleet serve`.

    GET /                      the dashboard page (static HTML; it holds no data)
    GET /cars/{id}             a car's page: mode timeline, validation history (never location)
    GET /static/{file}         the pages' script and style sheet (package data, no build step)
    GET /v1/dashboard          one snapshot, JSON (bearer token)
    GET /v1/dashboard/stream   snapshots as server-sent events, text/event-stream (bearer token)
    GET /v1/cars/{id}/history  a car's timeline and validation history, JSON (bearer token)

Authentication is the API's own (agent/fleetside/api.py wraps every data route): the pages ask
for a token in a login form, keep it in the browser's localStorage and send it as
`Authorization: Bearer` on every request. The stream is read with fetch(), not EventSource, so
the token travels in that header too and never in a URL, a log line or the browser's history.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from agent.fleet import protocol as proto
from agent.fleetside.errors import ApiError
from agent.fleetside.store import Store

STATIC = Path(__file__).with_name("static")
TIMELINE_S = 24 * 3600.0  # the car page's timeline covers the last day

Handler = Callable[[Request, str], Awaitable[Response]]
Guard = Callable[[Handler], Callable[[Request], Awaitable[Response]]]


@dataclass
class DashboardConfig:
    interval_s: float = 1.0  # between two looks at the store for the stream
    heartbeat_s: float = 15.0  # a comment line when nothing changed, so proxies keep the stream
    max_stream_s: float = 600.0  # then the stream ends and the page opens a new one
    link_health: Callable[[], dict[str, Any]] | None = None  # the dispatcher's broker link


def snapshot(store: Store, cfg: DashboardConfig) -> dict[str, Any]:
    snap = store.dashboard()
    for b in snap["batches"]:
        b.pop("token", None)  # which token submitted a batch is not the dashboard's to show
    snap["link"] = cfg.link_health() if cfg.link_health is not None else None
    return snap


def sse_event(data: dict[str, Any], event: str = "snapshot") -> bytes:
    """One server-sent event: its name and one line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def routes(store: Store, guarded: Guard, cfg: DashboardConfig | None = None) -> list[BaseRoute]:
    cfg = cfg or DashboardConfig()

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)

    async def car_page(request: Request) -> Response:
        return FileResponse(STATIC / "car.html", headers=_PAGE_HEADERS)

    async def get_snapshot(request: Request, token: str) -> Response:
        return JSONResponse(await run_in_threadpool(snapshot, store, cfg))

    async def stream(request: Request, token: str) -> Response:
        return StreamingResponse(_events(request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def _events(request: Request) -> AsyncIterator[bytes]:
        start = last_sent = time.monotonic()
        previous = ""
        yield f"retry: {int(cfg.interval_s * 2000)}\n\n".encode()
        while time.monotonic() - start < cfg.max_stream_s:
            snap = await run_in_threadpool(snapshot, store, cfg)
            body = json.dumps({k: v for k, v in snap.items() if k != "t"}, sort_keys=True)
            if body != previous:
                previous, last_sent = body, time.monotonic()
                yield sse_event(snap)
            elif time.monotonic() - last_sent >= cfg.heartbeat_s:
                last_sent = time.monotonic()
                yield b": still here\n\n"
            if await _disconnected_within(request, cfg.interval_s):
                return

    async def car_history(request: Request, token: str) -> Response:
        car = request.path_params["car"]
        try:
            proto.check_id("car", car)
        except proto.ProtocolError as e:
            raise ApiError(400, "bad_car", str(e)) from None

        def read() -> dict[str, Any] | None:
            row = store.car(car)
            if row is None:
                return None
            return {"car": row, "timeline": store.car_timeline(car, time.time() - TIMELINE_S),
                    "attempts": store.car_attempts(car), "t": time.time()}

        out = await run_in_threadpool(read)
        if out is None:
            raise ApiError(404, "unknown_car", f"no car {car!r}")
        return JSONResponse(out)

    return [
        Route("/", index, methods=["GET"]),
        Route("/cars/{car}", car_page, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        Route("/v1/dashboard", guarded(get_snapshot), methods=["GET"]),
        Route("/v1/dashboard/stream", guarded(stream), methods=["GET"]),
        Route("/v1/cars/{car}/history", guarded(car_history), methods=["GET"]),
    ]


async def _disconnected_within(request: Request, seconds: float) -> bool:
    """Waits `seconds`, returning early (True) when the client goes away."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return True
        await asyncio.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
    return False


# The pages run only our own script and style sheet, and no other site may frame them.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
