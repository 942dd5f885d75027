"""The state dir failing under the real agent: full mid-batch (a tmpfs), turned read-only by
the kernel mid-batch (an ext4 with errors=remount-ro), and start-up on each. Every part real:
simulated car -> firmware shim (pty) -> `fleetnode run` -> mosquitto -> fleet submitter."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

import pytest

from agent.clock import SystemClock
from agent.config import AgentConfig
from agent.fleet.broker import Broker
from agent.fleet.fleetside import FleetClient
from agent.logs import read_lines
from agent.service import Agent
from hil.bench import AgentProcess, CarOnBus
from tests.e2e.state_rig import (
    CAR,
    Tally,
    agent_args,
    running,
    standby_for_storage,
    submit_batch,
    tally,
    wait_outbox_empty,
    write_policy,
)
from tests.fixtures.smallfs import Ext4Fs, SmallFs

REPO = Path(__file__).resolve().parents[2]
N = 40


def start_once(state_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`fleetnode run` until it exits by itself (it must, at once, on a bad state dir)."""
    return subprocess.run([sys.executable, "-m", "agent.cli", *agent_args(
        str(tmp_path / "no-such-tty"), 1, state_dir, write_policy(tmp_path))],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def start_in_process(state_dir: Path, tmp_path: Path,
                     capfd: pytest.CaptureFixture[str]) -> subprocess.CompletedProcess[str]:
    """The same start, as `fleetnode run` does it, without paying for a new interpreter."""
    cfg = AgentConfig(serial_port=str(tmp_path / "no-such-tty"), broker_port=1,
                      state_dir=str(state_dir), policy_file=str(write_policy(tmp_path)),
                      storage_floor_bytes=0)
    rc = Agent(cfg, SystemClock(), out=sys.stdout).run(threading.Event())
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess([], rc, out, err)


def assert_one_clear_error(run: subprocess.CompletedProcess[str], path: Path, cause: str) -> None:
    assert run.returncode == 2, run
    err = run.stderr.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and cause in err[0], run.stderr
    assert "Traceback" not in run.stderr + run.stdout


def test_start_on_a_full_state_dir_is_one_clear_error_and_exit_2(
        small_fs: SmallFs, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    small_fs.fill()
    assert_one_clear_error(start_in_process(small_fs.path, tmp_path, capfd), small_fs.path, "is full")


def test_start_on_a_read_only_state_dir_is_one_clear_error_and_exit_2(
        small_fs: SmallFs, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    small_fs.read_only()
    assert_one_clear_error(start_in_process(small_fs.path, tmp_path, capfd), small_fs.path,
                           "is read-only")


def test_start_on_a_damaged_state_file_is_one_clear_error_and_exit_2(tmp_path: Path) -> None:
    state = tmp_path / "agent"
    state.mkdir()
    (state / "state.sqlite").write_bytes(b"not a database " * 1000)
    assert_one_clear_error(start_once(state, tmp_path), state / "state.sqlite", "damaged")


def run_agent(car: CarOnBus, broker: Broker, state_dir: Path, tmp_path: Path) -> AgentProcess:
    return AgentProcess(None, agent_args(car.port, broker.port, state_dir, write_policy(tmp_path)))


def storage_lines(agent: AgentProcess) -> list[str]:
    return [str(r["msg"]) for r in read_lines(list(agent.lines)) if str(r["msg"]).startswith("storage:")]


class FaultedBatch:
    """The agent on `state_dir`, a submitter, and a batch of N jobs hit by `inject` mid-way.
    On entry the fault is in place and what a user sees during it has been checked."""

    def __init__(self, car: CarOnBus, broker: Broker, state_dir: Path, tmp_path: Path,
                 inject: Callable[[], None]) -> None:
        self.start = lambda: run_agent(car, broker, state_dir, tmp_path)
        self.state_dir = state_dir
        self.inject = inject
        self.agent = self.start()
        self.lives = [self.agent]
        self.fleet = FleetClient("127.0.0.1", broker.port, submitter="sub", job_timeout_s=8)

    def __enter__(self) -> Self:
        try:
            self.fleet.__enter__()
            fault_mid_batch(self.agent, self.fleet, self.inject)
        except BaseException:
            self.__exit__()
            raise
        return self

    def restart(self) -> None:
        self.agent = self.start()
        self.lives.append(self.agent)

    def finish(self) -> Tally:
        """Every task done, every result acknowledged, the agent stopped: the tally."""
        fleet = self.fleet
        assert fleet.wait(120), {t: s.status for t, s in fleet.tasks.items() if s.status != "ok"}
        assert wait_outbox_empty(self.state_dir, 15)  # every result acknowledged
        assert self.agent.stop() == 0
        return tally(fleet, N, self.state_dir)

    def __exit__(self, *exc: object) -> None:
        self.agent.stop()
        self.fleet.__exit__(None, None, None)

    def assert_clean(self, t: Tally) -> None:
        for a in self.lives:
            assert not any("Traceback" in line for line in a.lines), "\n".join(a.lines[-30:])
        assert (t.lost, t.double_counted, t.missing_from_ledger, t.unanswered_rows,
                t.handed_up_twice) == (0, 0, 0, 0, 0), t
        assert t.delivered == N


def fault_mid_batch(agent: AgentProcess, fleet: FleetClient, inject: Callable[[], None]) -> None:
    """Run the batch a while, inject the fault, and check what a user sees during it."""
    assert fleet.wait_for(running, 30), (fleet.cars, agent.lines[-10:])
    submit_batch(fleet, N)
    assert fleet.wait_for(lambda f: len(f.completed) >= 10, 60), agent.lines[-10:]
    inject()
    assert fleet.wait_for(standby_for_storage, 10), (fleet.cars.get(CAR), agent.lines[-10:])
    assert len(fleet.completed) < N, "the fault must hit the batch mid-flight"
    # It says why on its status line, stays up and online (bus and fleet link alive) ...
    assert fleet.wait_for(lambda f: any("STANDBY" in ln and "the state dir" in ln
                                        for ln in agent.lines), 5), agent.lines[-10:]
    done = len(fleet.completed)
    assert not fleet.wait_for(lambda f: not agent.alive or not f.cars[CAR].online
                              or f.cars[CAR].mode == "OFF", 2.0)
    # ... and takes no work meanwhile: no result is stored, so none can be delivered (a few
    # stored just before the fault may still go out).
    assert len(fleet.completed) <= done + 8


def test_state_dir_full_mid_batch_standby_then_resumes_by_itself_nothing_lost(
        small_fs: SmallFs, car: CarOnBus, mosquitto: Broker, tmp_path: Path,
        fault_figures: Callable[..., None]) -> None:
    with FaultedBatch(car, mosquitto, small_fs.path, tmp_path, small_fs.fill) as batch:
        freed = time.monotonic()
        small_fs.free()
        assert batch.fleet.wait_for(running, 15), (batch.fleet.cars.get(CAR), batch.agent.lines[-10:])
        resume_s = time.monotonic() - freed
        t = batch.finish()
    lines = storage_lines(batch.agent)
    fault_figures("state dir full mid-batch (8 MiB tmpfs)", faults=1, **t.figures(),
                  resume_s=round(resume_s, 1), reruns=t.reruns, storage_log_lines=len(lines))
    batch.assert_clean(t)
    assert len(lines) == 2 and "is full" in lines[0] and "written again" in lines[1], lines
    assert resume_s < 10


def test_state_dir_turned_read_only_mid_batch_standby_then_after_repair_nothing_lost(
        ext4_fs: Ext4Fs, car: CarOnBus, mosquitto: Broker, tmp_path: Path,
        fault_figures: Callable[..., None]) -> None:
    with FaultedBatch(car, mosquitto, ext4_fs.path, tmp_path, ext4_fs.fail) as batch:
        assert batch.agent.stop() == 0  # SIGTERM: a clean exit, even with nothing writable
        lines = storage_lines(batch.agent)
        # The kernel's read-only filesystem stays so until it is checked: the owner's service
        # unmounts, fscks and mounts it, and starts the agent again.
        ext4_fs.repair()
        batch.restart()
        t = batch.finish()
    fault_figures("state dir read-only mid-batch (ext4, errors=remount-ro)", faults=1,
                  **t.figures(), reruns=t.reruns, storage_log_lines=len(lines))
    batch.assert_clean(t)
    assert len(lines) == 1 and ("read-only" in lines[0] or "I/O error" in lines[0]), lines
