"""The clock, injected everywhere: the governor, the runner's deadlines, the telemetry deadbands.

Production code takes a `Clock`; tests pass a `FakeClock` and move time by hand, so every rule
that depends on time is testable in virtual time. On the HIL bench the agent runs on a
`SharedClock`: simulated time that the bench's `ClockDriver` moves through a small shared file,
so a whole night passes in a minute or two while every part of the agent keeps its own clock.
"""

from __future__ import annotations

import mmap
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (ages, deadlines, timeouts)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch (schedules, tariffs, ledger timestamps)."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when told to. Thread-safe."""

    def __init__(self, start_wall: float = 1_800_000_000.0, start_mono: float = 1000.0) -> None:
        self._wall = start_wall
        self._mono = start_mono
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def time(self) -> float:
        with self._lock:
            return self._wall

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go backwards")
        with self._lock:
            self._mono += seconds
            self._wall += seconds

    def jump_wall(self, seconds: float) -> None:
        """Move only the wall clock (an NTP step), as a clock-jump fault does."""
        with self._lock:
            self._wall += seconds


# The shared clock file: the HIL bench owns simulated time and the agent process reads it. One
# page, little-endian; each side writes only its own words, under its own sequence counter (a
# seqlock: odd while a write is in progress), so neither ever waits for the other.
#   bench words:  0 seq, 8 monotonic s, 16 wall s
#   agent words: 32 seq, 40 ack monotonic s (the governor last looked at this time), 48 frames
#                the bus reader had taken in by then, 56 compute power W, 64 compute energy J
#                up to 72 the monotonic time of that power reading
_BENCH = struct.Struct("<Qdd")
_AGENT = struct.Struct("<QdQddd")
_AGENT_AT = 32
CLOCK_FILE_SIZE = 128


class ClockFileError(OSError):
    """A shared clock file that is missing, too short, or never settles (a writer died mid-write)."""


def _read_stable(buf: mmap.mmap, layout: struct.Struct, at: int, timeout_s: float = 5.0) -> tuple[Any, ...]:
    deadline: float | None = None
    while True:
        fields = layout.unpack_from(buf, at)
        if fields[0] % 2 == 0 and layout.unpack_from(buf, at)[0] == fields[0]:
            return fields[1:]
        # A writer between its two sequence stores (its thread may be descheduled): let it run.
        now = time.monotonic()
        deadline = deadline if deadline is not None else now + timeout_s
        if now > deadline:
            raise ClockFileError("the shared clock file never settled: its writer stopped mid-write")
        time.sleep(0)


def _write(buf: mmap.mmap, layout: struct.Struct, at: int, values: tuple[Any, ...]) -> None:
    odd = struct.unpack_from("<Q", buf, at)[0] | 1
    struct.pack_into("<Q", buf, at, odd)
    layout.pack_into(buf, at, odd, *values)
    struct.pack_into("<Q", buf, at, odd + 1)


def _open_map(path: str | Path, create: bool) -> mmap.mmap:
    p = Path(path)
    try:
        if create:
            with open(p, "wb") as f:
                f.write(b"\0" * CLOCK_FILE_SIZE)
        with open(p, "r+b") as f:
            if f.seek(0, 2) < CLOCK_FILE_SIZE:
                raise ClockFileError(f"{p} is not a clock file: shorter than {CLOCK_FILE_SIZE} bytes")
            return mmap.mmap(f.fileno(), CLOCK_FILE_SIZE)
    except ClockFileError:
        raise
    except OSError as e:
        raise ClockFileError(f"cannot open the shared clock file {p}: {e}") from e


class SharedClock:
    """The agent's side of a shared clock file: time is whatever the bench last wrote.

    Besides reading time it reports two things back, which a real car measures with its own
    hardware: when the governor last looked (so the bench moves time on only after the agent has
    seen the frames of the present instant) and the compute module's power and energy counter
    (the runner's busy cores, integrated on this clock, as a RAPL-style meter would count them).
    """

    def __init__(self, path: str | Path) -> None:
        self._buf = _open_map(path, create=False)
        self._lock = threading.Lock()
        self._ack = (0.0, 0)
        self._power_w = 0.0
        self._energy_j = 0.0
        self._power_at: float | None = None

    def monotonic(self) -> float:
        return float(_read_stable(self._buf, _BENCH, 0)[0])

    def time(self) -> float:
        return float(_read_stable(self._buf, _BENCH, 0)[1])

    def ack(self, frames: int) -> None:
        """The governor looked at the vehicle state now, with `frames` frames read so far."""
        with self._lock:
            self._ack = (self.monotonic(), max(0, int(frames)))
            self._publish()

    def meter(self, power_w: float, at: float | None = None) -> None:
        """The compute module draws `power_w` (above idle) from monotonic time `at` (default:
        now) until the next call. The runner passes the times it reckons jobs' energy from."""
        with self._lock:
            now = self.monotonic() if at is None else at
            if self._power_at is not None:
                self._energy_j += self._power_w * max(0.0, now - self._power_at)
                now = max(now, self._power_at)
            self._power_w, self._power_at = max(0.0, float(power_w)), now
            self._publish()

    def _publish(self) -> None:
        at = self._power_at if self._power_at is not None else self._ack[0]
        _write(self._buf, _AGENT, _AGENT_AT, (*self._ack, self._power_w, self._energy_j, at))


@dataclass(frozen=True)
class AgentReport:
    """What the agent last wrote into the shared clock file."""

    ack_mono: float
    ack_frames: int
    power_w: float
    energy_j: float
    power_at: float

    def energy_at(self, mono: float) -> float:
        """The compute energy counter (J) at `mono`, the present power held since power_at."""
        return self.energy_j + self.power_w * max(0.0, mono - self.power_at)


class ClockDriver:
    """The bench's side of a shared clock file: it alone moves time. Also a `Clock` itself."""

    def __init__(self, path: str | Path, start_wall: float, start_mono: float = 1000.0) -> None:
        self.path = Path(path)
        self._buf = _open_map(path, create=True)
        self._mono, self._wall = start_mono, start_wall
        _write(self._buf, _BENCH, 0, (self._mono, self._wall))

    def monotonic(self) -> float:
        return self._mono

    def time(self) -> float:
        return self._wall

    def advance(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError("a monotonic clock cannot go backwards")
        self._mono += seconds
        self._wall += seconds
        _write(self._buf, _BENCH, 0, (self._mono, self._wall))

    def jump_wall(self, seconds: float) -> None:
        """Step only the wall clock, as a bad NTP server or an RTC reset does."""
        self._wall += seconds
        _write(self._buf, _BENCH, 0, (self._mono, self._wall))

    def report(self) -> AgentReport:
        return AgentReport(*_read_stable(self._buf, _AGENT, _AGENT_AT))

    def close(self) -> None:
        self._buf.close()
