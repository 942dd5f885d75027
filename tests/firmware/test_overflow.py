"""Overflow: the bus outruns the UART. With the UART modelled at 115200 bit/s, a burst of
1000 frames cannot all be written; the firmware keeps the oldest in order, drops the rest,
counts every drop, and raises the queue-full and data-overrun flags."""

from __future__ import annotations

import re

from hil.shim import Shim
from tests.firmware.conftest import SlcanPort

FRAME = re.compile(rb"^t([0-9A-F]{3})8([0-9A-F]{16})\r$")
RING_CAPACITY = 64  # FW_RING_CAPACITY of the host build


def test_overflow_drops_newest_counts_all_and_flags(shim_binary: str) -> None:
    n = 1000
    with Shim(shim_binary, build=False, uart_bps=115200) as s:
        p = SlcanPort(s.port)
        assert p.cmd(b"O") == b"\r"
        s.send_many([(i & 0x7FF, i.to_bytes(2, "big") + bytes(6), False) for i in range(n)])
        c = s.wait_counters({"input_frames": n})  # the whole burst has been on the bus
        # Every frame is either queued or counted lost.
        assert c["rx"] + c["overflow"] == n, (c, s.stderr_text())
        assert c["overflow"] > 0
        assert c["highwater"] == RING_CAPACITY

        lines = [p.read_reply(timeout_s=30) for _ in range(c["rx"])]
        seqs = []
        for line in lines:
            m = FRAME.match(line)
            assert m, line
            seqs.append(int(m.group(2)[:4], 16))
        # Order kept, nothing duplicated, and the oldest frames (before the ring filled) all
        # arrived: drops only ever hit the newest.
        assert seqs == sorted(set(seqs))
        assert seqs[:RING_CAPACITY] == list(range(RING_CAPACITY))

        assert p.cmd(b"F") == b"F09\r"  # receive queue full + data overrun
        assert p.cmd(b"F") == b"F00\r"  # reading the flags cleared them
        reply = p.cmd(b"?").decode()
        fields = dict(f.split("=") for f in reply.strip("?\r ").split(" "))
        assert int(fields["overflow"], 16) == c["overflow"]
        assert int(fields["rx"], 16) == int(fields["out"], 16) == c["rx"] == len(lines)
        p.close()
    assert f"overflow={c['overflow']} " in s.stderr_text()  # also in the exit report
