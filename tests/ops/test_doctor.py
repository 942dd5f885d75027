"""`fleetnode doctor` against the HIL bench's running setup (simulated car -> real firmware shim on
a pty -> real agent -> real mosquitto): all OK; then a stopped broker, a wrong serial port and a
read-only state directory each FAIL with the fix."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.bus.profile import VehicleProfile
from agent.doctor import (
    FAIL,
    KAT_MODEL,
    KAT_SHA256,
    OK,
    WARN,
    kat_input,
    ntp_synchronised,
    run_checks,
)
from agent.fleet.broker import Broker
from agent.inference import load_model
from agent.service import ModelStore
from hil.bench import AgentProcess, CarOnBus
from hil.sim import CarInputs, CarState
from tests.fixtures.pty import open_pty

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "hil" / "policies" / "demo.toml"
CAR = "car-doctor"


def write_config(path: Path, **keys: object) -> Path:
    path.write_text("[agent]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items()))
    return path


def doctor(config: Path, wrap: list[str] | None = None) -> tuple[int, dict[str, dict[str, str]]]:
    cmd = [*(wrap or []), sys.executable, "-m", "agent.cli", "doctor", "--config", str(config), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.stdout.strip(), r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] == (r.returncode == 0)
    return r.returncode, {c["name"]: c for c in report["checks"]}


def clock_status() -> str:
    """The clock check depends on the machine, not on the bench: OK where NTP keeps it synchronised."""
    return OK if ntp_synchronised()[0] else WARN


@pytest.fixture
def bench(tmp_path: Path, mosquitto: Broker) -> Iterator[dict[str, object]]:
    car = CarOnBus(VehicleProfile.load("reference"),
                   CarState(soc_percent=70.0, inputs=CarInputs(charger_kw=7.0)), workdir=tmp_path)
    car.start()
    keys = {"car_id": CAR, "serial_port": car.port, "broker_port": mosquitto.port,
            "state_dir": str(tmp_path / "agent"), "policy_file": str(POLICY)}
    config = write_config(tmp_path / "agent.toml", **keys)
    agent = AgentProcess(None, ["run", "--config", str(config), "--json"])
    try:
        # The agent has made its state files once it reports a decision.
        assert_eventually(lambda: any('"decision"' in line for line in agent.lines), agent)
        yield {"keys": keys, "config": config, "broker": mosquitto, "agent": agent, "dir": tmp_path}
    finally:
        agent.stop()
        car.stop()


def assert_eventually(pred, agent: AgentProcess, timeout_s: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + timeout_s
    while not pred():
        assert time.monotonic() < deadline and agent.alive, agent.lines[-5:]
        time.sleep(0.05)


def test_doctor_on_the_running_bench_is_all_ok_then_each_fault_fails_with_its_fix(bench: dict) -> None:  # type: ignore[type-arg]
    keys, tmp = bench["keys"], bench["dir"]
    rc, checks = doctor(bench["config"])
    assert {n: c["status"] for n, c in checks.items()} == {
        "config": OK, "policy": OK, "serial port": OK, "profile": OK, "broker": OK, "state dir": OK,
        "state file": OK, "outbox": OK, "ledger": OK, "model cache": OK, "engine": OK, "clock": clock_status()}, \
        [c for c in checks.values() if c["status"] != OK]
    assert rc == 0
    detail = checks["serial port"]["detail"]
    assert "the shim answers the version query (V10" in detail or "a shim streams SLCAN frames" in detail

    # A wrong serial port: a path with no device, and a pty with no shim behind it.
    rc, checks = doctor(write_config(tmp / "wrong-port.toml", **{**keys, "serial_port": str(tmp / "ttyNONE")}))
    assert rc == 1 and checks["serial port"]["status"] == FAIL
    assert "does not exist" in checks["serial port"]["detail"] and "serial_port" in checks["serial port"]["fix"]
    silent = open_pty()
    try:
        rc, checks = doctor(write_config(tmp / "no-shim.toml", **{**keys, "serial_port": silent.slave_path}))
    finally:
        silent.close()
    assert rc == 1 and checks["serial port"]["status"] == FAIL
    assert "no answer to the SLCAN version query" in checks["serial port"]["detail"]

    # A read-only state directory: a read-only bind mount for root (who ignores mode bits), else chmod.
    state = Path(keys["state_dir"])
    if os.geteuid() == 0:
        wrap = ["unshare", "-m", "sh", "-c",
                'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"', str(state)]
        rc, checks = doctor(bench["config"], wrap)
    else:
        state.chmod(0o500)
        try:
            rc, checks = doctor(bench["config"])
        finally:
            state.chmod(0o700)
    assert rc == 1 and checks["state dir"]["status"] == FAIL, checks["state dir"]
    assert "not writable" in checks["state dir"]["detail"] and "writable by the agent's user" in checks["state dir"]["fix"]
    assert checks["state file"]["status"] == OK and checks["outbox"]["status"] == OK  # still read

    # The broker stopped.
    bench["broker"].stop()
    rc, checks = doctor(bench["config"])
    assert rc == 1 and checks["broker"]["status"] == FAIL
    assert "not reachable" in checks["broker"]["detail"] and "start the broker" in checks["broker"]["fix"]
    assert checks["serial port"]["status"] == OK, checks["serial port"]  # one fault, one FAIL


def test_the_engine_known_answer_is_litert_s() -> None:
    path = ModelStore.BUILTIN_DIR / f"{KAT_MODEL}.tflite"
    oracle = load_model(path, backend="litert")
    spec = oracle.inputs[0]
    outs = oracle.run([kat_input(spec.shape, np.dtype(spec.dtype))])
    assert hashlib.sha256(b"".join(o.tobytes() for o in outs)).hexdigest() == KAT_SHA256


def by_name(config: Path) -> dict[str, tuple[str, str, str]]:
    return {c.name: (c.status, c.detail, c.fix) for c in run_checks(str(config))}


def test_bad_config_fails_alone_and_names_the_key(tmp_path: Path) -> None:
    f = tmp_path / "agent.toml"
    f.write_text('[agent]\nbroker_port = "1883"\n')
    checks = list(run_checks(str(f)))
    assert [(c.name, c.status) for c in checks] == [("config", FAIL)]
    assert "broker_port" in checks[0].detail and str(f) in checks[0].fix


def test_damaged_state_files_and_models_fail(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "models").mkdir(parents=True)
    (state / "state.sqlite").write_bytes(b"this is not a database" * 100)
    good = b"model bytes"
    (state / "models" / f"{hashlib.sha256(good).hexdigest()}.tflite").write_bytes(good)
    (state / "models" / f"{hashlib.sha256(b'other').hexdigest()}.tflite").write_bytes(b"tampered")
    checks = by_name(write_config(tmp_path / "agent.toml", state_dir=str(state),
                                  serial_port=str(tmp_path / "none")))
    assert checks["state file"][0] == FAIL and "cannot read" in checks["state file"][1]
    assert "move state.sqlite aside" in checks["state file"][2]
    assert "outbox" not in checks and "ledger" not in checks  # nothing more is read from it
    assert checks["model cache"][0] == FAIL and "1 model(s) do not match" in checks["model cache"][1]
    assert checks["engine"][0] == OK


def test_free_space_below_the_storage_floor_fails(tmp_path: Path) -> None:
    from agent.storage import free_bytes

    state = tmp_path / "state"
    state.mkdir()
    floor = free_bytes(state) + (1 << 30)  # more than there is
    checks = by_name(write_config(tmp_path / "agent.toml", state_dir=str(state), storage_floor_bytes=floor))
    status, detail, fix = checks["state dir"]
    assert status == FAIL and "below the floor" in detail and "reason storage" in detail
    assert "storage_floor_bytes" in fix
    checks = by_name(write_config(tmp_path / "ok.toml", state_dir=str(state), storage_floor_bytes=0))
    assert checks["state dir"][0] in (OK, WARN) and "MiB free" in checks["state dir"][1]
    assert checks["state file"][0] == OK and "creates it" in checks["state file"][1]


def test_files_of_an_older_agent_warn_until_taken_over(tmp_path: Path) -> None:
    from agent.fleet.outbox import Outbox

    state = tmp_path / "state"
    Outbox(state / "outbox.sqlite").close()
    checks = by_name(write_config(tmp_path / "agent.toml", state_dir=str(state)))
    assert checks["old state"][0] == WARN and "outbox.sqlite" in checks["old state"][1]
    assert "start the agent once" in checks["old state"][2]


def test_outbox_that_the_fleet_does_not_acknowledge_warns(tmp_path: Path) -> None:
    from agent.fleet.outbox import Outbox

    state = tmp_path / "state"
    box = Outbox(state / "state.sqlite")
    box.accept("j1", "sub", 1000.0)
    box.answer("j1", "t", lambda seq: b"x", wall=1000.0)  # answered long ago, never acknowledged
    box.close()
    checks = by_name(write_config(tmp_path / "agent.toml", state_dir=str(state)))
    assert checks["outbox"][0] == WARN and "1 unacknowledged" in checks["outbox"][1]
    with sqlite3.connect(state / "state.sqlite") as db:  # doctor only read it
        assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 1


def test_text_output_shows_each_fix_and_exits_1(tmp_path: Path) -> None:
    f = write_config(tmp_path / "agent.toml", serial_port=str(tmp_path / "none"), broker_port=1,
                     state_dir=str(tmp_path / "s"))
    r = subprocess.run([sys.executable, "-m", "agent.cli", "doctor", "--config", str(f)], capture_output=True,
                       text=True, timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    serial = next(i for i, line in enumerate(lines) if line.startswith("FAIL  serial port"))
    assert "fix: plug in the CAN shim" in lines[serial + 1]
    assert re.fullmatch(r"\d+ OK, \d+ WARN, 2 FAIL", lines[-1]), lines[-1]  # the serial port, the broker


def test_a_certificate_near_expiry_warns_and_a_wrong_file_fails(tmp_path: Path) -> None:
    from agent.fleet.pki import CertificateAuthority

    ca = CertificateAuthority.create(tmp_path / "pki")
    soon = ca.issue_car("car-7", days=5)
    tls = {"tls_ca": str(ca.cert_path), "tls_cert": str(soon.cert), "tls_key": str(soon.key)}
    checks = by_name(write_config(tmp_path / "a.toml", car_id="car-7", broker_port=1, **tls))
    assert checks["certificate"][0] == WARN and "expires in 4 days" in checks["certificate"][1]
    assert "issue a new certificate" in checks["certificate"][2]
    assert checks["broker"][0] == FAIL
    checks = by_name(write_config(tmp_path / "b.toml", car_id="car-7", **{**tls, "tls_cert": str(soon.key)}))
    assert checks["certificate"][0] == FAIL and "not a PEM certificate" in checks["certificate"][1]
    assert "broker" not in checks  # no connection is tried with a certificate that cannot work


def test_a_shim_alone_answers_the_version_query(tmp_path: Path) -> None:
    from agent.config import AgentConfig
    from agent.doctor import _serial
    from hil.shim import Shim

    with Shim() as shim:  # the real firmware, host build, on a pty; nobody else reads it
        (check,) = _serial(AgentConfig(serial_port=shim.port))
    assert check.status == OK and check.detail == f"{shim.port}: the shim answers the version query (V1013)"
