"""Fixtures for the firmware tests: the shim binary, built once, and a raw SLCAN port."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import serial

from hil.shim import Shim, build


@pytest.fixture(scope="session")
def shim_binary() -> str:
    return str(build())


@pytest.fixture
def shim(shim_binary: str) -> Iterator[Shim]:
    with Shim(shim_binary, build=False) as s:
        yield s


class SlcanPort:
    """A raw pyserial view of the shim's UART, for what python-can cannot say (Z, M, F, ?)."""

    def __init__(self, path: str) -> None:
        self.serial = serial.Serial(path, baudrate=115200, timeout=0.05)
        self._buf = b""

    def close(self) -> None:
        self.serial.close()

    def write(self, data: bytes) -> None:
        self.serial.write(data)
        self.serial.flush()

    def read_reply(self, timeout_s: float = 5.0) -> bytes:
        """Next reply or frame line: bytes up to and including CR or BEL."""
        deadline = time.monotonic() + timeout_s
        while True:
            for i, b in enumerate(self._buf):
                if b in (0x0D, 0x07):
                    out, self._buf = self._buf[: i + 1], self._buf[i + 1 :]
                    return out
            if time.monotonic() > deadline:
                raise TimeoutError(f"no complete reply within {timeout_s} s; have {self._buf!r}")
            self._buf += self.serial.read(max(1, self.serial.in_waiting))

    def sync(self, timeout_s: float = 5.0) -> None:
        """Skip whatever a previous user of the port left unread: ask for V, drop every reply
        up to its answer (what a host does after reconnecting)."""
        self.write(b"\rV\r")
        while self.read_reply(timeout_s) != b"V1013\r":
            pass

    def cmd(self, command: bytes, timeout_s: float = 5.0) -> bytes:
        """Send one command and return its reply. Only for use while no frames are flowing."""
        self.write(command + b"\r")
        return self.read_reply(timeout_s)


@pytest.fixture
def port(shim: Shim) -> Iterator[SlcanPort]:
    p = SlcanPort(shim.port)
    yield p
    p.close()
