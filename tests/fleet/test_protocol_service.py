"""The protocol's messages for the fleet service: the compute class in the state and the
credit grant. Decoders refuse anything off-schema with a ProtocolError."""

from __future__ import annotations

import json

import pytest

from agent.fleet import protocol as p


def _grant(**kw: object) -> bytes:
    o: dict[str, object] = {"v": 1, "grant": "b1-0.ab", "car": "car1", "job_id": "b1-0.ab",
                            "task": "b1-0", "credits": 0.0017, "energy_wh": 0.07, "t": 1.8e9}
    o.update(kw)
    return json.dumps(o).encode()


def test_a_grant_round_trips_and_hostile_grants_are_refused() -> None:
    g = p.CreditGrant("b1-0.ab", "car1", "b1-0.ab", "b1-0", 0.0017, 0.07, 1.8e9)
    assert p.CreditGrant.decode(g.encode()) == g
    assert p.CreditGrant.decode(_grant()) == g
    for bad in (_grant(credits=-1), _grant(credits=1e12), _grant(credits=True), _grant(car="a/b"),
                _grant(grant="x" * 200), _grant(extra=1), _grant(v=2), b"\xff", b"[]",
                _grant(energy_wh=float("nan"))):
        with pytest.raises(p.ProtocolError):
            p.CreditGrant.decode(bad)
    assert p.Topics.credits("car1") == "fleetnode/v1/cars/car1/credits"


def test_the_state_carries_the_compute_class_and_old_states_without_it_still_decode() -> None:
    cls = p.ComputeClass("fleetnode", "0.1.0")
    npu = p.ComputeClass("litert", "2.3.0", "libvx_delegate.so", "1.2")
    assert cls.key == "fleetnode/0.1.0" and npu.key != cls.key
    st = p.CarState(car="c1", online=True, mode="RUN", reasons=(), available_w=1.0,
                    accepting_jobs=True, compute=npu)
    assert p.CarState.decode(st.encode()).compute == npu
    old = json.loads(st.encode())
    del old["compute"]
    assert p.CarState.decode(json.dumps(old).encode()).compute is None
    for bad in ({"engine": "x"}, {"engine": "a b", "version": "1"}, {"engine": "x", "version": "1", "gpu": "y"},
                "fleetnode", {"engine": "x" * 65, "version": "1"}):
        o = json.loads(st.encode())
        o["compute"] = bad
        with pytest.raises(p.ProtocolError):
            p.CarState.decode(json.dumps(o).encode())
    assert p.engine_class().engine == "fleetnode"
