"""The clock, injected everywhere: the governor, the runner's deadlines, the telemetry deadbands.

Production code takes a `Clock`; tests pass a `FakeClock` and move time by hand, so every rule
that depends on time is testable in virtual time.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


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
