"""The wire format: round trips, and every kind of hostile payload becomes a ProtocolError."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.fleet import protocol as p


def job(**kw: object) -> p.JobRequest:
    base: dict[str, object] = {
        "job_id": "task-1.r0.a1", "submitter": "sub", "model": p.ModelRef(builtin="thin_path"),
        "inputs": [np.arange(6, dtype=np.int8).reshape(2, 3), np.array([1.5, -2.0], dtype=np.float32)],
    }
    base.update(kw)
    return p.JobRequest(**base)  # type: ignore[arg-type]


def test_topics_are_versioned_and_cars_are_separate_subtrees() -> None:
    assert p.Topics.state("car1") == "fleetnode/v1/cars/car1/state"
    assert p.Topics.results("car1", "sub") == "fleetnode/v1/cars/car1/results/sub"
    assert p.Topics.shared_jobs("pool-a") == "$share/pool-a/fleetnode/v1/pools/pool-a/jobs"
    assert p.Topics.parse_car_topic("fleetnode/v1/cars/car1/results/sub") == ("car1", "results")
    for bad in ("a/b", "+", "#", "$x", "", "x" * 65, "car 1"):
        with pytest.raises(p.ProtocolError):
            p.Topics.state(bad)


def test_job_round_trip_keeps_dtypes_shapes_and_bytes() -> None:
    j = job(exclude=("car2",), task="task-1")
    back = p.JobRequest.decode(j.encode())
    assert back.job_id == j.job_id and back.exclude == ("car2",) and back.model == j.model
    assert [a.dtype for a in back.inputs] == [np.int8, np.float32]
    assert all(np.array_equal(a, b) for a, b in zip(back.inputs, j.inputs))


def test_result_round_trip_and_canonical_output_bytes() -> None:
    r = p.JobResult("j1", "car1", "ok", 7, [np.array([[1, -1]], dtype=np.int8)], run_s=0.5)
    back = p.JobResult.decode(r.encode())
    assert back.seq == 7 and back.outcome == "ok" and back.output_bytes == r.output_bytes
    other = p.JobResult("j1", "car2", "ok", 1, [np.array([[1, -2]], dtype=np.int8)])
    assert other.output_bytes != r.output_bytes


def test_state_and_will() -> None:
    s = p.CarState("car1", True, "RUN", ("x",), 800.0, True, 55.5, True, "default", 3, 1.8e9)
    assert p.CarState.decode(s.encode()) == s
    w = p.CarState.decode(p.CarState.offline("car1").encode())
    assert not w.online and w.mode == "OFF" and w.available_w == 0


@pytest.mark.parametrize("mutate, code", [
    (lambda b: b[:5], "malformed"),
    (lambda b: b"XX" + b[2:], "malformed"),
    (lambda b: b[:2] + b"\x02" + b[3:], "bad_version"),
    (lambda b: b + b"\x00", "size_mismatch"),
    (lambda b: b[:-1], "size_mismatch"),
    (lambda b: b[:4] + struct.pack(">I", 1 << 30) + b[8:], "malformed"),
    (lambda b: b"\x00" * (p.MAX_JOB_BYTES + 1), "too_large"),
])
def test_broken_job_envelopes_are_refused_with_a_code(mutate, code) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(p.ProtocolError) as e:
        p.JobRequest.decode(mutate(job().encode()))
    assert e.value.code == code


def _with_header(h: dict[str, object], data: bytes = b"") -> bytes:
    raw = json.dumps(h).encode()
    return b"FN\x01J" + struct.pack(">I", len(raw)) + raw + data


GOOD = {"v": 1, "job_id": "a", "submitter": "s", "model": {"builtin": "m"}, "tensors": []}


@pytest.mark.parametrize("patch, code", [
    ({"job_id": "a/b"}, "bad_job_id"),
    ({"submitter": "+"}, "bad_id"),
    ({"model": {"sha256": "zz"}}, "bad_sha256"),
    ({"model": {"path": "/etc/passwd"}}, "bad_model_ref"),
    ({"tensors": [{"dtype": "float64", "shape": [1]}]}, "bad_dtype"),
    ({"tensors": [{"dtype": "int8", "shape": [-1]}]}, "bad_shape"),
    ({"tensors": [{"dtype": "int8", "shape": [1 << 30, 1 << 30, 1 << 30]}]}, "size_mismatch"),
    ({"tensors": [{"dtype": "int8", "shape": [1]}] * 17}, "bad_schema"),
    ({"max_run_s": float("inf")}, "malformed"),
    ({"extra": 1}, "bad_schema"),
    ({"v": 2}, "bad_version"),
])
def test_schema_violations_are_refused_with_a_code(patch, code) -> None:  # type: ignore[no-untyped-def]
    payload = _with_header({**GOOD, **patch})  # json.dumps writes inf as Infinity
    with pytest.raises(p.ProtocolError) as e:
        p.JobRequest.decode(payload)
    assert e.value.code == code


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_either_decode_or_raise_protocol_error(data: bytes) -> None:
    for decode in (p.JobRequest.decode, p.JobResult.decode, p.CarState.decode, p.decode_ack,
                   p.Telemetry.decode, p.ErrorReply.decode):
        try:
            decode(data)
        except p.ProtocolError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_tails_after_a_valid_prefix_never_escape(data: bytes) -> None:
    good = job().encode()
    try:
        p.JobRequest.decode(good[:40] + data)
    except p.ProtocolError:
        pass


def test_telemetry_filter_sends_by_exception_and_heartbeats() -> None:
    f = p.TelemetryFilter(heartbeat_s=300)
    hb, fields = f.offer({"soc_percent": 50.0, "mode": "RUN"}, now=0.0)  # type: ignore[misc]
    assert hb and fields == {"soc_percent": 50.0, "mode": "RUN"}
    assert f.offer({"soc_percent": 50.9, "mode": "RUN"}, now=10.0) is None  # inside the deadband
    assert f.offer({"soc_percent": 51.2}, now=20.0) == (False, {"soc_percent": 51.2})
    assert f.offer({"mode": "STANDBY"}, now=30.0) == (False, {"mode": "STANDBY"})
    assert f.offer({}, now=299.0) is None
    hb2 = f.offer({}, now=320.0)
    assert hb2 is not None and hb2[0] and hb2[1]["soc_percent"] == 51.2
    with pytest.raises(KeyError):
        f.offer({"latitude": 48.1}, now=400.0)  # nothing undocumented leaves the car
