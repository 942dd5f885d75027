"""CAN log files: candump (can-utils ``candump -L``) and SavvyCAN's GVRET CSV, into timed frames.

Used by ``fleetnode bus replay``. A log is outside input: a line that cannot be read is skipped
and counted (with the first few line numbers kept for the error message), never a crash.
The candump writer here produces the lines the host build of the firmware shim reads.
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
    r"(?:\((?P<t>\d+(?:\.\d+)?)\)\s+)?(?:(?P<iface>[A-Za-z0-9_.-]+)\s+)?"
    r"(?P<id>[0-9A-Fa-f]{3}|[0-9A-Fa-f]{8})#(?P<rest>R[0-8]?|[0-9A-Fa-f.]*)(?:\s+[RT])?"
)


class LogError(BusError):
    """A log file that cannot be replayed at all (missing, unknown format, no frame in it)."""


@dataclass(frozen=True)
class TimedFrame:
    t: float  # seconds, from the log's own clock
    frame: CanFrame


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
    return TimedFrame(t, frame)


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
            log.frames[i] = TimedFrame(i * 0.001, tf.frame)
    return log


def parse_savvycan(text: str) -> CanLog:
    """GVRET CSV: ``Time Stamp,ID,Extended,[Dir,]Bus,LEN,D1..D8``, time in microseconds."""
    log = CanLog([], fmt="savvycan")
    rows = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(rows, [])]
    try:
        col_t, col_id = header.index("time stamp"), header.index("id")
        col_ext, col_len = header.index("extended"), header.index("len")
        col_d1 = header.index("d1")
    except ValueError as e:
        raise LogError(f"not a SavvyCAN GVRET CSV header: {header}") from e
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
            log.frames.append(TimedFrame(int(row[col_t]) / 1e6, frame))
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


def candump_line(tf: TimedFrame, iface: str = "can0") -> str:
    """The ``candump -L`` line for a frame (what the shim's host build reads on stdin)."""
    f = tf.frame
    ident = f"{f.arb_id:08X}" if f.extended else f"{f.arb_id:03X}"
    body = f"R{f.dlc or 0}" if f.remote else f.data.hex().upper()
    return f"({tf.t:.6f}) {iface} {ident}#{body}\n"
