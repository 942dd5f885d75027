"""CAN log files: candump (can-utils ``candump -L``) and SavvyCAN's GVRET CSV, into timed frames.

Used by ``fleetnode bus replay``. A log is outside input: a line that cannot be read is skipped
and counted (with the first few line numbers kept for the error message), never a crash.
The candump writer here produces the lines the host build of the firmware shim reads.

A log may hold several buses at once (SavvyCAN's ``Bus`` column, candump's interface names). A
DBC describes one bus, and two buses may use one id for different messages, so a replay plays one
bus: ``CanLog.select`` picks it by name or number, and a log with several buses and no choice is
refused with the list of buses and their frame counts.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from agent.bus.errors import BusError, SlcanError
from agent.bus.slcan import CanFrame, check_frame

_CANDUMP = re.compile(
    r"(?:\((?P<t>\d+(?:\.\d+)?)\)\s+)?(?:(?P<iface>[A-Za-z0-9_.-]{1,15})\s+)?"
    r"(?P<id>[0-9A-Fa-f]{3}|[0-9A-Fa-f]{8})#(?P<rest>R[0-8]?|[0-9A-Fa-f.]*)(?:\s+[RT])?"
)


# SavvyCAN numbers the buses of its capture devices from 0; a larger number is not a bus.
MAX_BUS_NUMBER = 255


class LogError(BusError):
    """A log file that cannot be replayed at all (missing, unknown format, no frame in it)."""


@dataclass(frozen=True)
class TimedFrame:
    t: float  # seconds, from the log's own clock
    frame: CanFrame
    bus: str = ""  # the log's name for the bus: "0" (SavvyCAN), "can1" (candump); "" if unnamed


def bus_label(bus: str) -> str:
    return bus if bus else "(unnamed)"


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _bus_number(bus: str) -> int | None:
    """The number a bus name ends in: 0 for "0", "can0" and "vcan0"; None for "" or "slcan"."""
    m = re.search(r"[0-9]+$", bus)
    return int(m[0]) if m else None


@dataclass
class CanLog:
    frames: list[TimedFrame]
    bad_lines: int = 0
    bad_line_numbers: list[int] = field(default_factory=list)
    fmt: str = ""

    def _bad(self, lineno: int) -> None:
        self.bad_lines += 1
        if len(self.bad_line_numbers) < 10:
            self.bad_line_numbers.append(lineno)

    def buses(self) -> dict[str, int]:
        """Every bus name in the log with its frame count, in order of first appearance."""
        counts: dict[str, int] = {}
        for tf in self.frames:
            counts[tf.bus] = counts.get(tf.bus, 0) + 1
        return counts

    def describe_buses(self) -> str:
        """``0 (1200 frames), 1 (800 frames)``: for messages that ask the user to choose."""
        return ", ".join(
            f"{bus_label(b)} ({n} frame{'' if n == 1 else 's'})" for b, n in self.buses().items()
        )

    def resolve_bus(self, wanted: str) -> str:
        """The log's name for the bus the user asked for.

        ``wanted`` is a name as the log writes it ("1", "can1", "vcan0") or a bare number, which
        also matches the one interface name ending in that number ("0" -> "can0" or "vcan0").
        A log that names no bus at all is one bus, whatever it is called. Raises LogError
        naming the buses found when none (or more than one) matches.
        """
        wanted = wanted.strip()
        buses = self.buses()
        if wanted in buses:
            return wanted
        if set(buses) == {""}:
            return ""
        hits = []
        if _is_number(wanted):
            hits = [b for b in buses if b and _bus_number(b) == int(wanted)]
        if len(hits) == 1:
            return hits[0]
        why = "matches several buses" if hits else "is not in the log"
        raise LogError(f"bus {wanted!r} {why}; the log holds {self.describe_buses()}")

    def select(self, bus: str) -> CanLog:
        """The log of one bus (a name ``resolve_bus`` returned); bad-line counts are kept."""
        return CanLog(
            [tf for tf in self.frames if tf.bus == bus],
            self.bad_lines,
            list(self.bad_line_numbers),
            self.fmt,
        )


def parse_candump_line(line: str) -> TimedFrame | None:
    """One candump line; None if it is not a classic CAN frame (error frames, CAN FD, junk)."""
    m = _CANDUMP.fullmatch(line.strip())
    if m is None:
        return None
    id_text, rest = m["id"], m["rest"]
    extended = len(id_text) == 8
    arb_id = int(id_text, 16)
    if extended and arb_id & 0x20000000:
        return None  # CAN_ERR_FLAG: a controller event, not a bus frame
    if rest.startswith("R"):
        frame = CanFrame(arb_id, b"", extended, True, None, int(rest[1:] or "0"))
    else:
        digits = rest.replace(".", "")
        if len(digits) % 2 or len(digits) > 16:
            return None
        frame = CanFrame(arb_id, bytes.fromhex(digits), extended)
    try:
        check_frame(frame)
    except SlcanError:
        return None
    t = float(m["t"]) if m["t"] else math.nan
    return TimedFrame(t, frame, m["iface"] or "")


def parse_candump(text: str) -> CanLog:
    log = CanLog([], fmt="candump")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        tf = parse_candump_line(line)
        if tf is None:
            log._bad(n)
        else:
            log.frames.append(tf)
    # A log without timestamps plays at 1 ms per frame.
    for i, tf in enumerate(log.frames):
        if math.isnan(tf.t):
            log.frames[i] = TimedFrame(i * 0.001, tf.frame, tf.bus)
    return log


def parse_savvycan(text: str) -> CanLog:
    """GVRET CSV: ``Time Stamp,ID,Extended,[Dir,]Bus,LEN,D1..D8``, time in microseconds.

    The ``Bus`` column (0, 1, … as SavvyCAN numbers its capture devices' buses) names each
    frame's bus; a row whose bus is not a number is unreadable. Without the column, one bus.
    """
    log = CanLog([], fmt="savvycan")
    rows = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(rows, [])]
    try:
        col_t, col_id = header.index("time stamp"), header.index("id")
        col_ext, col_len = header.index("extended"), header.index("len")
        col_d1 = header.index("d1")
    except ValueError as e:
        raise LogError(f"not a SavvyCAN GVRET CSV header: {header}") from e
    col_bus = header.index("bus") if "bus" in header else None
    for n, row in enumerate(rows, 2):
        if not row or not "".join(row).strip():
            continue
        try:
            length = int(row[col_len])
            if not 0 <= length <= 8:
                raise ValueError("LEN out of range")
            data = bytes(int(row[col_d1 + i], 16) for i in range(length))
            frame = CanFrame(int(row[col_id], 16), data, row[col_ext].strip().lower() == "true")
            check_frame(frame)
            bus = ""
            if col_bus is not None:
                bus = row[col_bus].strip()
                if not _is_number(bus) or int(bus) > MAX_BUS_NUMBER:
                    raise ValueError("Bus is not a bus number")
                bus = str(int(bus))  # "00" and "0" are one bus
            log.frames.append(TimedFrame(int(row[col_t]) / 1e6, frame, bus))
        except (ValueError, IndexError, SlcanError):
            log._bad(n)
    return log


def load_log(path: str | Path) -> CanLog:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise LogError(f"cannot read log {p}: {e}") from e
    first = text.lstrip()[:200].lower()
    log = parse_savvycan(text) if first.startswith("time stamp,") else parse_candump(text)
    if not log.frames:
        raise LogError(f"{p}: no CAN frame in it ({log.bad_lines} unreadable lines)")
    return log


def candump_line(tf: TimedFrame, iface: str | None = None) -> str:
    """The ``candump -L`` line for a frame (what the shim's host build reads on stdin).

    The interface is ``iface``, else the frame's own bus (SavvyCAN's bus 1 as can1), else can0.
    """
    if iface is None:
        iface = f"can{tf.bus}" if _is_number(tf.bus) else tf.bus or "can0"
    f = tf.frame
    ident = f"{f.arb_id:08X}" if f.extended else f"{f.arb_id:03X}"
    body = f"R{f.dlc or 0}" if f.remote else f.data.hex().upper()
    return f"({tf.t:.6f}) {iface} {ident}#{body}\n"
