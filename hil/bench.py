"""The HIL bench: a simulated car on a CAN bus, behind the real bridge firmware, on a serial line.

`CarOnBus` steps the physics of `hil.sim` in real time and puts the frames of its state, encoded
by the agent's own vehicle profile, on the firmware shim's simulated bus. The agent opens
`CarOnBus.port`: a stable symlink to the shim's pty, so the cable can be unplugged (the shim
stops, the link disappears) and plugged back (a new shim, the same path) as udev's
/dev/serial/by-id links behave on a car.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self

from agent.bus.profile import VehicleProfile
from hil.shim import Shim, ShimError
from hil.sim import CarParams, CarState, Event, apply_due, step


class CarOnBus:
    """A running simulated car. Thread-safe; use as a context manager.

    Args:
        profile: the vehicle profile whose DBC the car speaks (the agent uses the same one).
        state: the car at t = 0; params: its physics.
        events: timed changes of the driver's and charger's inputs (seconds after start).
        rate_hz: how often the car sends its frames (a real car: 10-50 Hz per message).
        on_event: called with each event as it is applied (for live output).
    """

    def __init__(
        self,
        profile: VehicleProfile,
        state: CarState | None = None,
        params: CarParams | None = None,
        events: Sequence[Event] = (),
        rate_hz: float = 20.0,
        on_event: Callable[[Event], None] | None = None,
        workdir: str | Path | None = None,
    ) -> None:
        self.profile = profile
        self.state = state or CarState()
        self.params = params or CarParams()
        self.events = list(events)
        self.period_s = 1.0 / rate_hz
        self.on_event = on_event
        self._done: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shim: Shim | None = None
        self._dir = Path(workdir or tempfile.mkdtemp(prefix="fleetnode-bench-"))
        self.port = str(self._dir / "ttyFLEET0")
        self.frames_sent = 0

    # -- the cable -----------------------------------------------------------------------------

    def plug(self) -> None:
        """Start the bridge firmware and point the stable port path at its pty."""
        with self._lock:
            if self._shim is not None:
                return
            shim = Shim().start()
            tmp = self.port + ".new"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(shim.port, tmp)
            os.replace(tmp, self.port)
            self._shim = shim

    def unplug(self) -> None:
        """Pull the cable: the shim process ends and the port path disappears."""
        with self._lock:
            shim, self._shim = self._shim, None
            if os.path.lexists(self.port):
                os.unlink(self.port)
        if shim is not None:
            shim.stop()

    @property
    def plugged(self) -> bool:
        return self._shim is not None

    # -- the car -------------------------------------------------------------------------------

    def start(self) -> Self:
        self.plug()
        self._thread = threading.Thread(target=self._run, name="car-on-bus", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.unplug()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_compute_kw(self, kw: float) -> None:
        with self._lock:
            self.state.inputs.compute_kw = max(0.0, kw)

    def send(self, frames: Sequence[tuple[int, bytes, bool]], raw_lines: Sequence[str] = ()) -> int:
        """Put frames (and any raw candump lines, for noise) on the bus now; returns the number of
        frames sent, 0 when the cable is out or was pulled between two steps."""
        with self._lock:
            shim = self._shim
        if shim is None:
            return 0
        try:
            if raw_lines:
                shim.send_lines([*raw_lines[: len(raw_lines) // 2]])
            shim.send_many(frames)
            if raw_lines:
                shim.send_lines([*raw_lines[len(raw_lines) // 2:]])
        except (OSError, ShimError):
            return 0
        self.frames_sent += len(frames)
        return len(frames)

    def roles(self) -> dict[str, object]:
        with self._lock:
            return self.state.roles(self.params)

    def _run(self) -> None:
        last = time.monotonic()
        next_t = last
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                self.state = step(self.state, self.params, now - last)
                applied = apply_due(self.state, self.events, self._done)
                frames = self.profile.encode(self.state.roles(self.params))  # type: ignore[arg-type]
                shim = self._shim
            last = now
            for ev in applied:
                if self.on_event is not None:
                    self.on_event(ev)
            if shim is not None:
                try:
                    shim.send_many([(f.arb_id, f.data, f.extended) for f in frames])
                    self.frames_sent += len(frames)
                except (OSError, ShimError):  # the cable was pulled between two steps
                    pass
            next_t += self.period_s
            self._stop.wait(max(0.0, next_t - time.monotonic()))


class AgentProcess:
    """The real agent (`python -m agent.cli ARGS`) as a child process, its output line by line.

    Each line goes to `on_line` as it arrives and stays in `lines`. `stop()` sends SIGTERM, as
    systemd does; an agent that does not stop within the timeout prints its threads' stacks
    (SIGUSR1) and is killed.
    """

    def __init__(self, on_line: Callable[[str], None] | None, args: Sequence[str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "agent.cli", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines: list[str] = []
        self._on_line = on_line
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            if self._on_line is not None:
                self._on_line(line)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 15.0) -> int:
        self.proc.terminate()
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)
            try:
                rc = self.proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        self._thread.join(timeout=5)
        return rc
