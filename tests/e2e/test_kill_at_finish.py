"""SIGKILL the real agent exactly as a job finishes, again and again (at four instants: outcome
reported, inside the result's transaction, just committed, just published), restarting it on
the same state dir each time. Every task's result reaches the fleet once, the owner's ledger
counts each delivered job once, and no delivered job is missing from it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from agent.fleet.broker import Broker
from agent.fleet.fleetside import FleetClient
from hil.bench import CarOnBus
from tests.e2e.killable_agent import PHASES
from tests.e2e.state_rig import (
    agent_args,
    submit_batch,
    tally,
    wait_outbox_empty,
    write_policy,
)

REPO = Path(__file__).resolve().parents[2]
N = 48
KILLS = 16


class Life:
    """One run of the agent with a failpoint; its output is kept for the failure message."""

    def __init__(self, args: list[str], phase: str | None) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("FLEETNODE_KILL_AT", None)
        if phase:
            env["FLEETNODE_KILL_AT"] = phase
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.e2e.killable_agent", *args],
                                     cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._pump.join(5)
        return self.proc.returncode


def test_sigkill_as_jobs_finish_loses_and_double_counts_nothing(
        car: CarOnBus, mosquitto: Broker, tmp_path: Path,
        fault_figures: Callable[..., None]) -> None:
    state_dir = tmp_path / "agent"
    args = agent_args(car.port, mosquitto.port, state_dir, write_policy(tmp_path))
    kills = 0
    started = time.monotonic()
    # No job timeout within the run: every re-send is the car's own doing, after a restart.
    with FleetClient("127.0.0.1", mosquitto.port, submitter="sub", job_timeout_s=600) as fleet:
        submit_batch(fleet, N)
        while kills < KILLS:
            phase = PHASES[kills % len(PHASES)]
            life = Life(args, phase)
            # A life ends at its first finished job; while the batch has work left, that is soon.
            rc = None
            while rc is None and len(fleet.completed) < N:
                rc = life.wait(0.2)
                assert time.monotonic() - started < 120, life.lines[-15:]
            if rc is None:
                life.stop()
                break
            assert rc == -signal.SIGKILL, (phase, rc, life.lines[-15:])
            kills += 1
        assert kills == KILLS, f"the batch ran out of work after {kills} kills"
        lives_s = time.monotonic() - started
        last = Life(args, None)
        try:
            assert fleet.wait(60), {t: s.status for t, s in fleet.tasks.items() if s.status != "ok"}
            assert wait_outbox_empty(state_dir, 15)  # every result acknowledged
        finally:
            assert last.stop() == 0, last.lines[-15:]
        t = tally(fleet, N, state_dir)
    fault_figures(f"SIGKILL as jobs finish ({'/'.join(PHASES)})", faults=kills, **t.figures(),
                  s_per_life=round(lives_s / max(1, kills), 1),
                  preempted=fleet.counters["attempts_preempted"])
    assert not any("Traceback" in line for line in last.lines), last.lines[-30:]
    # No job timeout ran out, so no task ran twice on the fleet's account either.
    assert (t.lost, t.double_counted, t.missing_from_ledger, t.unanswered_rows,
            t.handed_up_twice, t.reruns) == (0, 0, 0, 0, 0, 0), t
    assert t.delivered == N
