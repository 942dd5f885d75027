"""Conformance with a real peer: python-can's `slcan` interface opens the shim's pty the way
an application would (it sends C, S<n> and O itself) and must receive exactly the frames
put on the simulated bus. python-can slices lines by position, so this also pins our line
layout: id width, DLC digit, data, and the timestamp appended after the data under Z1."""

from __future__ import annotations

import itertools
import random
import re
import time
from collections.abc import Iterator
from typing import Any

import can
import pytest
from can.interfaces.slcan import slcanBus

from hil.shim import Shim
from tests.firmware.conftest import SlcanPort

# (id, data, extended, remote, dlc)
FRAMES: list[tuple[int, bytes, bool, bool, int]] = [
    (0x000, b"", False, False, 0),
    (0x123, bytes.fromhex("DEADBEEF"), False, False, 4),
    (0x7FF, bytes(range(0xF8, 0x100)), False, False, 8),
    (0x1FFF_FFFF, bytes.fromhex("0011223344556677"), True, False, 8),
    (0x0000_0001, b"", True, False, 0),
    (0x18FE_F100, b"\x7f", True, False, 1),
    (0x456, b"", False, True, 3),
    (0x1234_5678, b"", True, True, 8),
]


def open_bus(shim: Shim, **kwargs: Any) -> slcanBus:
    """python-can sends O without waiting for its answer; frames put on the bus before the
    firmware has processed it are (rightly) not delivered, so wait for the channel."""
    kwargs.setdefault("bitrate", 500000)
    bus = slcanBus(channel=shim.port, sleep_after_open=0, timeout=0.01, **kwargs)
    shim.wait_channel_open()
    return bus


@pytest.fixture
def bus(shim: Shim) -> Iterator[slcanBus]:
    b = open_bus(shim)
    yield b
    b.shutdown()


def inject(shim: Shim, frames: list[tuple[int, bytes, bool, bool, int]]) -> None:
    for frame_id, data, extended, remote, dlc in frames:
        if remote:
            shim.send_remote(frame_id, dlc, extended=extended)
        else:
            shim.send(frame_id, data, extended=extended)


def recv(bus: slcanBus, timeout_s: float = 5.0) -> can.Message:
    msg = bus.recv(timeout=timeout_s)
    assert msg is not None, "no frame within the deadline"
    return msg


def as_tuple(msg: can.Message) -> tuple[int, bytes, bool, bool, int]:
    return (msg.arbitration_id, bytes(msg.data), msg.is_extended_id, msg.is_remote_frame, msg.dlc)


def test_python_can_receives_exactly_the_injected_frames(shim: Shim, bus: slcanBus) -> None:
    inject(shim, FRAMES)
    got = [as_tuple(recv(bus)) for _ in FRAMES]
    assert got == FRAMES
    c = shim.counters()
    assert (c["rx"], c["out"], c["overflow"]) == (len(FRAMES), len(FRAMES), 0)


def test_python_can_receives_a_random_stream_in_order(shim: Shim, bus: slcanBus) -> None:
    rng = random.Random(4)
    frames: list[tuple[int, bytes, bool, bool, int]] = []
    for _ in range(300):
        ext = rng.random() < 0.3
        data = rng.randbytes(rng.randint(0, 8))
        frames.append((rng.randint(0, 0x1FFF_FFFF if ext else 0x7FF), data, ext, False, len(data)))
    inject(shim, frames)
    got = [as_tuple(recv(bus)) for _ in frames]
    assert got == frames


def test_python_can_reads_version_and_serial(shim: Shim, bus: slcanBus) -> None:
    assert bus.get_version(5.0) == (10, 13)
    assert bus.get_serial_number(5.0) == "A123"


def test_listen_only_open_from_python_can(shim: Shim) -> None:
    b = open_bus(shim, listen_only=True)  # sends L instead of O
    try:
        shim.send(0x0AA, b"\x01")
        assert as_tuple(recv(b)) == (0x0AA, b"\x01", False, False, 1)
    finally:
        b.shutdown()
    assert "listen-only, 500000 bit/s" in shim.stderr_text()


@pytest.mark.parametrize("bitrate, bps", [(125000, 125000), (500000, 500000), (750000, 800000)])
def test_bitrate_commands(shim: Shim, bitrate: int, bps: int) -> None:
    """python-can maps 750 kbit/s to S7 (the CANable meaning); Lawicel's S7 is 800 kbit/s,
    and that is what this firmware opens the controller at."""
    b = open_bus(shim, bitrate=bitrate)
    try:
        shim.send(0x010, b"")
        recv(b)  # the channel is open once a frame flows
    finally:
        b.shutdown()
    assert f"listen-only, {bps} bit/s" in shim.stderr_text()


def test_transmit_from_python_can_is_refused_and_goes_nowhere(shim: Shim) -> None:
    bus = open_bus(shim)
    try:
        for msg in (
            can.Message(arbitration_id=0x7DF, data=b"\x02\x01\x0d", is_extended_id=False),
            can.Message(arbitration_id=0x18DB33F1, data=b"\x02\x01\x00", is_extended_id=True),
            can.Message(arbitration_id=0x123, is_remote_frame=True, dlc=2, is_extended_id=False),
        ):
            bus.send(msg)  # python-can does not look at the reply; the shim answers BEL
        # All three handled before the marker goes on the bus: anything they produced would
        # reach the port ahead of it.
        shim.wait_counters({"txrefused": 3})
        marker = (0x7E8, b"\x03\x41\x0d\x00", False, False, 4)
        inject(shim, [marker])
        assert as_tuple(recv(bus)) == marker  # nothing the host sent came back out as a frame
        c = shim.counters()
    finally:
        bus.shutdown()
    assert c["txrefused"] == 3
    assert c["out"] == 1
    assert c["input_frames"] == 1  # the only frame the firmware ever handled is our marker
    assert shim.stop() == 0
    assert shim.stdout_after_port == b""  # no other output channel carried anything


def test_transmit_commands_get_bel_on_the_wire(shim: Shim, port: SlcanPort) -> None:
    assert port.cmd(b"O") == b"\r"
    for command in (b"t1230", b"t12381122334455667788", b"T1234567811", b"r1230", b"R123456780"):
        assert port.cmd(command) == b"\a"
    shim.send(0x001, b"\x01")
    assert port.read_reply() == b"t001101\r"  # the very next byte on the wire is our frame
    assert shim.counters()["txrefused"] == 5


STAMPED = re.compile(rb"^t([0-9A-F]{3})([0-8])((?:[0-9A-F]{2})*)([0-9A-F]{4})\r$")


def read_stamp(raw: SlcanPort, shim: Shim, frame_id: int) -> int:
    shim.send(frame_id, b"\x5a")
    line = raw.read_reply()
    m = STAMPED.match(line)
    assert m, line
    assert int(m.group(1), 16) == frame_id and m.group(3) == b"5A"
    return int(m.group(4), 16)


def test_timestamps_under_z1(shim_binary: str) -> None:
    """Z1 (set while closed, before python-can opens): python-can still parses every frame;
    each line then carries a 4-digit millisecond stamp that follows the firmware clock and
    wraps from 0xEA5F to 0 (the clock starts 100 ms before a wrap)."""
    clock_start = 59_900
    t_spawn = time.monotonic()
    with Shim(shim_binary, build=False, clock_start_ms=clock_start) as s:
        t_ready = time.monotonic()
        raw = SlcanPort(s.port)
        assert raw.cmd(b"Z1") == b"\r"
        raw.close()

        b = open_bus(s)
        try:
            inject(s, FRAMES)
            assert [as_tuple(recv(b)) for _ in FRAMES] == FRAMES
        finally:
            b.shutdown()  # sends C; Z1 stays set

        raw = SlcanPort(s.port)
        raw.sync()  # python-can left without reading the reply to its C
        assert raw.cmd(b"O") == b"\r"
        # Probe until the stamps have wrapped (a condition, with a deadline).
        stamps: list[tuple[int, float, float]] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            t_before = time.monotonic()
            st = read_stamp(raw, s, 0x100 + len(stamps) % 0x100)
            stamps.append((st, t_before, time.monotonic()))
            if st < clock_start:
                break
        raw.close()

    values = [st for st, _, _ in stamps]
    assert values[-1] < clock_start, values  # wrapped within the deadline
    assert all(v <= 0xEA5F for v in values)
    wraps = sum(1 for a, b in itertools.pairwise(values) if b < a)
    assert wraps <= 1, values  # monotonic apart from the single wrap
    # Each stamp is the firmware clock, clock_start + ms since it started (it started between
    # t_spawn and t_ready), taken modulo 60000, when the frame arrived (t_before..t_after).
    for st, t_before, t_after in stamps:
        lo = clock_start + int((t_before - t_ready) * 1000) - 1
        hi = clock_start + int((t_after - t_spawn) * 1000) + 1
        assert any(lo <= st + k * 60_000 <= hi for k in range(2 + hi // 60_000)), (st, lo, hi)


def test_acceptance_filter_set_before_python_can_opens(shim: Shim) -> None:
    raw = SlcanPort(shim.port)
    # Filter 1 and filter 2 both: standard id 0x1D6, RTR and data don't care.
    assert raw.cmd(b"M3AC03AC0") == b"\r"
    assert raw.cmd(b"m001F001F") == b"\r"
    raw.close()
    b = open_bus(shim)
    try:
        inject(
            shim,
            [
                (0x1D7, b"\x01", False, False, 1),
                (0x0D6, b"", False, False, 0),
                (0x1D6, b"\x02", False, False, 1),
            ],
        )
        assert as_tuple(recv(b)) == (0x1D6, b"\x02", False, False, 1)
    finally:
        b.shutdown()
    c = shim.counters()
    assert (c["filtered"], c["rx"]) == (2, 1)
