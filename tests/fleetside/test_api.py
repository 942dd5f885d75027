"""The HTTP API on a real uvicorn: auth, errors that name the problem, hostile uploads refused
with 4xx while the service keeps running, progress, results, cancel, cars, metrics."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.fleet.broker import Broker
from agent.fleet.models import TrustStore
from agent.fleetside.store import Store
from hil.fleetservice import Api, FleetService, multipart
from tests.fleetside.conftest import MODEL


@pytest.fixture
def service(tmp_path: Path, mosquitto: Broker, fleet_key: tuple[Path, TrustStore]) -> Iterator[FleetService]:
    svc = FleetService.start("", fleet_key[0], mosquitto.host, mosquitto.port,
                             store=Store(str(tmp_path / "fleet.sqlite")), token_quota=50)
    yield svc
    svc.stop()


def _x(n: int) -> dict[str, np.ndarray]:
    return {f"x{i}": np.full((1, 16), i, np.int8) for i in range(n)}


def test_every_route_needs_a_valid_bearer_token_and_the_openapi_document_is_served(
        service: FleetService) -> None:
    bad = Api(service.api.base, "fn_not-a-token")
    for method, path in (("GET", "/v1/cars"), ("GET", "/v1/batches/x"), ("GET", "/metrics"),
                         ("DELETE", "/v1/batches/x"), ("GET", "/v1/dashboard"),
                         ("GET", "/v1/dashboard/stream"), ("GET", "/v1/cars/car00/history")):
        status, body = bad.json(method, path)
        assert status == 401 and body["error"] == "unauthorized", (method, path)
    status, doc = bad.json("GET", "/openapi.json")
    assert status == 200 and "/v1/batches" in doc["paths"] and doc["openapi"].startswith("3.")


@pytest.mark.parametrize(("model", "inputs", "fields", "status", "code"), [
    (MODEL.read_bytes()[:100], _x(1), {}, 422, "bad_model"),  # truncated
    (b"\x00" * 4096, _x(1), {}, 422, "bad_model"),  # not a model at all
    (None, {"x": np.zeros((1, 8), np.int8)}, {}, 422, "inputs_mismatch"),  # wrong shape
    (None, {"x": np.zeros((1, 16), np.float32)}, {}, 422, "inputs_mismatch"),  # wrong dtype
    (None, _x(1), {"redundancy": "9"}, 422, "bad_redundancy"),
    (None, _x(1), {"redundancy": "many"}, 422, "bad_redundancy"),
    (None, _x(1), {"deadline": "yesterday"}, 422, "bad_deadline"),
    (None, _x(60), {}, 429, "quota"),  # the token's quota is 50 tasks in flight
])
def test_bad_batches_are_refused_with_an_error_that_names_the_problem(
        service: FleetService, model: bytes | None, inputs: dict[str, np.ndarray],
        fields: dict[str, str], status: int, code: str) -> None:
    got, body = service.api.submit(model if model is not None else MODEL.read_bytes(), inputs,
                                   **({"redundancy": "adaptive"} | fields))
    assert (got, body["error"]) == (status, code), body
    assert body["message"]
    assert service.api.json("GET", "/v1/cars")[0] == 200  # still serving


def test_garbage_inputs_a_missing_field_and_a_body_over_the_limit_are_refused(service: FleetService) -> None:
    body, ctype = multipart({"redundancy": "2"}, {"model": ("m", MODEL.read_bytes()),
                                                  "inputs": ("i", b"PK\x03\x04 truncated zip")})
    status, out = service.api.json("POST", "/v1/batches", body=body, headers={"Content-Type": ctype})
    assert status == 422 and out["error"] == "bad_inputs"
    body, ctype = multipart({}, {"model": ("m", MODEL.read_bytes())})
    status, out = service.api.json("POST", "/v1/batches", body=body, headers={"Content-Type": ctype})
    assert status == 400 and out["error"] == "missing_inputs"
    status, out = service.api.json("POST", "/v1/batches", body=b"{}", headers={"Content-Type": "application/json"})
    assert status == 415
    # A 2 GB body, announced: refused from its Content-Length, nothing read.
    host, port = service.api.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"POST /v1/batches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {service.api.token}\r\n"
                  f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {2 << 30}\r\n\r\n".encode()
                  + b"x" * 65536)
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    # The same, streamed without a length: cut off at the limit.
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(f"POST /v1/batches HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {service.api.token}\r\n"
                  "Content-Type: multipart/form-data; boundary=b\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b"%x\r\n%s\r\n" % (1 << 20, b"y" * (1 << 20))
        reply = b""
        try:
            for _ in range(16):  # 16 MB, twice the service's 8 MB limit
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert service.api.json("GET", "/v1/cars")[0] == 200


def test_progress_cancel_unknown_batches_cars_and_metrics(service: FleetService) -> None:
    status, b = service.api.submit(MODEL.read_bytes(), _x(5), redundancy="2")
    assert status == 201 and b["tasks"] == 5
    status, p = service.api.json("GET", f"/v1/batches/{b['id']}")
    assert status == 200 and p["tasks"] == 5 and p["state"] == "running" and p["redundancy"] == 2
    for key in ("done", "in_flight", "mismatches"):
        assert key in p
    status, p = service.api.json("DELETE", f"/v1/batches/{b['id']}")
    assert status == 200 and p["state"] == "cancelled" and p["pending"] == 0
    assert service.api.results(b["id"]) == {}  # nothing settled, nothing served
    other = Api(service.api.base, service.store.add_token("bob", 10))
    assert other.json("GET", f"/v1/batches/{b['id']}")[0] == 404  # another token's batch
    status, err = service.api.json("GET", "/v1/batches/nope")
    assert status == 404 and err["error"] == "unknown_batch"
    status, cars = service.api.json("GET", "/v1/cars")
    assert status == 200 and cars == {"cars": []}
    status, text = service.api.request("GET", "/metrics")
    assert status == 200 and b'fleet_tasks{state="cancelled"} 5' in text


def test_results_come_as_npz_by_input_name(service: FleetService, sim_cars: object) -> None:
    from agent.inference import load_model

    sim_cars(2)  # type: ignore[operator]
    inputs = _x(6)
    status, b = service.api.submit(MODEL.read_bytes(), inputs, redundancy="1")
    assert status == 201
    assert service.api.wait_batch(b["id"], 60)["state"] == "done"
    out = service.api.results(b["id"])
    model = load_model(MODEL.read_bytes())
    assert sorted(out) == sorted(inputs)
    assert all(np.array_equal(out[k], model.run([v])[0]) for k, v in inputs.items())
    status, cars = service.api.json("GET", "/v1/cars")
    assert {c["car"] for c in cars["cars"]} == {"car00", "car01"}
    for c in cars["cars"]:
        assert set(c) >= {"mode", "reasons", "reputation", "credits"}
        assert not {"lat", "lon", "location", "gps"} & set(c)


def test_fleet_submit_server_sends_a_batch_through_the_api_and_writes_its_results(
        service: FleetService, sim_cars: object, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main as fleetnode
    from agent.inference import load_model

    sim_cars(2)  # type: ignore[operator]
    inputs = _x(4)
    np.savez(tmp_path / "in.npz", **inputs)  # type: ignore[arg-type]
    rc = fleetnode(["fleet", "submit", str(MODEL), str(tmp_path / "in.npz"), "--server", service.api.base,
                    "--token", service.api.token, "--redundancy", "adaptive", "--out", str(tmp_path / "out"),
                    "--timeout", "60"])
    out = capsys.readouterr()
    assert rc == 0, out
    assert "4/4 done" in out.out
    (npz,) = (tmp_path / "out").glob("*.npz")
    model = load_model(MODEL.read_bytes())
    with np.load(npz) as z:
        assert all(np.array_equal(z[k], model.run([v])[0]) for k, v in inputs.items())
    assert fleetnode(["fleet", "submit", str(MODEL), str(tmp_path / "in.npz"), "--server",
                      service.api.base, "--token", "wrong"]) == 2
    assert "HTTP 401" in capsys.readouterr().err


def test_the_dashboard_pages_snapshot_stream_and_car_history(service: FleetService) -> None:
    import json
    import urllib.request

    with urllib.request.urlopen(service.api.base + "/", timeout=10) as r:  # the page holds no data
        assert r.status == 200 and b'id="login"' in r.read()
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    with urllib.request.urlopen(service.api.base + "/static/dash.js", timeout=10) as r:
        assert b"Authorization" in r.read()
    assert service.api.submit(MODEL.read_bytes(), _x(3), redundancy="2")[0] == 201
    status, snap = service.api.json("GET", "/v1/dashboard")
    assert status == 200 and snap["batches"][0]["tasks"] == 3
    assert "token" not in snap["batches"][0]  # who submitted is not shown
    assert snap["link"]["connected"] is True and snap["link"]["reconnects"] == 0
    req = urllib.request.Request(service.api.base + "/v1/dashboard/stream",
                                 headers={"Authorization": f"Bearer {service.api.token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        lines = [r.readline() for _ in range(5)]
    assert lines[0].startswith(b"retry: ") and lines[2] == b"event: snapshot\n"
    event = json.loads(lines[3].removeprefix(b"data: "))
    assert event["batches"][0]["id"] == snap["batches"][0]["id"]
    assert service.api.json("GET", "/v1/cars/nobody/history")[0] == 404
    status, body = service.api.json("GET", "/v1/cars/a%2Bb/history")
    assert status == 400 and body["error"] == "bad_car"
