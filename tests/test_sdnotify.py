"""systemd notifications go over a real datagram socket; the watchdog pings only on progress."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agent.sdnotify import Watchdog, notify


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> socket.socket:
    path = tmp_path / "notify"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(2.0)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    return s


def test_notify_sends_the_message(notify_socket: socket.socket) -> None:
    assert notify("READY=1")
    assert notify_socket.recv(64) == b"READY=1"


def test_no_socket_no_notification(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not notify("READY=1")


def test_watchdog_pings_only_when_every_stage_progressed(notify_socket: socket.socket) -> None:
    wd = Watchdog(("bus", "governor", "fleet"))
    wd.progress("bus")
    wd.progress("governor")
    assert wd.stalled() == ("fleet",)
    assert not wd.maybe_ping()  # the fleet stage is wedged: systemd must restart us
    wd.progress("fleet")
    assert wd.maybe_ping()
    assert notify_socket.recv(64) == b"WATCHDOG=1"
    assert wd.stalled() == ("bus", "governor", "fleet")  # each ping needs fresh progress
    with pytest.raises(KeyError):
        wd.progress("nonsense")
