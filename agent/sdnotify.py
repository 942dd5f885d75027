"""systemd's notify protocol (READY=1, STATUS=, WATCHDOG=1) over $NOTIFY_SOCKET, without libsystemd."""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send one notification; returns False when not run under systemd (no socket)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):  # abstract namespace
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            s.connect(path)
            s.sendall(message.encode())
        except OSError:
            return False
    return True


class Watchdog:
    """Pings systemd's watchdog only when every named stage reported progress since the last ping.

    A timer thread that pings regardless would keep a wedged agent alive; this does not.
    """

    def __init__(self, stages: tuple[str, ...]) -> None:
        self._stages = stages
        self._progress: set[str] = set()

    def progress(self, stage: str) -> None:
        if stage not in self._stages:
            raise KeyError(stage)
        self._progress.add(stage)

    def stalled(self) -> tuple[str, ...]:
        return tuple(s for s in self._stages if s not in self._progress)

    def maybe_ping(self) -> bool:
        if self.stalled():
            return False
        self._progress.clear()
        notify("WATCHDOG=1")
        return True
