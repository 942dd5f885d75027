"""The SLCAN (Lawicel) wire format: the one owner of it, for the agent and for the shim's host side.

Frames travel as ASCII lines: ``tiiil<dd…>[zzzz]\\r`` (11-bit id, three hex digits),
``Tiiiiiiiil<dd…>[zzzz]\\r`` (29-bit id, eight hex digits), ``r``/``R`` for remote frames (a DLC
but no data). ``l`` is the DLC, 0-8. ``zzzz`` is the adapter's optional timestamp (``Z1``), in
milliseconds, wrapping after 0xEA5F (59,999). Lines end in CR; a BEL is the adapter's error reply.

The parser is strict and table-driven: every line is checked for length, hex digits, DLC, id range
and timestamp range before a single field is converted, and every rejected line increments exactly
one named counter, so the counters account for every bad line. A line longer than any valid line
is dropped at once (memory stays flat on a stream without terminators) and the parser resumes at
the next CR, LF or BEL.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from agent.bus.errors import SlcanError

MAX_STD_ID = 0x7FF
MAX_EXT_ID = 0x1FFFFFFF
MAX_DLC = 8
TIMESTAMP_WRAP_MS = 0xEA60  # timestamps run 0 … 0xEA5F (59,999 ms), then wrap to 0

# The longest valid line: "T" + 8 id digits + DLC + 16 data digits + 4 timestamp digits.
LONGEST_FRAME_LINE = 1 + 8 + 1 + 2 * MAX_DLC + 4
MAX_LINE_BYTES = 32

CR = 0x0D
LF = 0x0A
BEL = 0x07

_HEX_DIGITS = b"0123456789ABCDEFabcdef"
_TERMINATOR = re.compile(rb"[\r\n\x07]")

# Standard SLCAN bit-rate codes. S7 is 800 kbit/s on Lawicel and Linux slcand but 750 kbit/s on
# CANable firmware, so 750 kbit/s is refused rather than guessed.
BITRATE_CODES: dict[int, bytes] = {
    10_000: b"S0",
    20_000: b"S1",
    50_000: b"S2",
    100_000: b"S3",
    125_000: b"S4",
    250_000: b"S5",
    500_000: b"S6",
    800_000: b"S7",
    1_000_000: b"S8",
}

# Rejection counters: each bad line increments exactly one of these.
BAD_LINE_COUNTERS = (
    "overlong",  # longer than MAX_LINE_BYTES (dropped while still arriving)
    "unknown_type",  # first byte is not a frame or reply type we know
    "bad_length",  # length does not match the type and DLC
    "bad_hex",  # a non-hex byte where hex digits must be
    "bad_dlc",  # DLC digit above 8
    "bad_id",  # 11-bit id above 0x7FF or 29-bit id above 0x1FFFFFFF
    "bad_timestamp",  # timestamp above 0xEA5F
    "bel_with_data",  # a line cut short by BEL (BEL alone is a well-formed error reply)
    "unterminated",  # a partial line dropped by reset() when the link was lost mid-line
)
# Lines that are well formed but carry no frame.
OTHER_COUNTERS = (
    "frames",
    "empty_lines",  # a bare CR: the adapter's "OK" reply, or the LF of a CRLF ending
    "error_replies",  # a bare BEL: the adapter refused a command
    "replies",  # z/Z transmit acks, V/v version, N serial number, F status flags
)
COUNTER_NAMES = BAD_LINE_COUNTERS + OTHER_COUNTERS


@dataclass(frozen=True, slots=True)
class CanFrame:
    """One classic CAN frame as the shim saw it.

    ``timestamp_ms`` is the adapter's wrapping millisecond stamp (None when timestamps are off).
    ``dlc`` matters only for remote frames, which request ``dlc`` bytes and carry none.
    """

    arb_id: int
    data: bytes
    extended: bool = False
    remote: bool = False
    timestamp_ms: int | None = None
    dlc: int | None = None


def check_frame(frame: CanFrame) -> None:
    """Raise SlcanError if the frame cannot exist on a classic CAN bus."""
    limit = MAX_EXT_ID if frame.extended else MAX_STD_ID
    if not 0 <= frame.arb_id <= limit:
        kind = "29-bit" if frame.extended else "11-bit"
        raise SlcanError(f"id 0x{frame.arb_id:X} is out of range for a {kind} frame")
    if frame.remote:
        if frame.data:
            raise SlcanError("a remote frame carries no data")
        if frame.dlc is not None and not 0 <= frame.dlc <= MAX_DLC:
            raise SlcanError(f"DLC {frame.dlc} is out of range 0-8")
    elif len(frame.data) > MAX_DLC:
        raise SlcanError(f"{len(frame.data)} data bytes; classic CAN carries at most 8")
    if frame.timestamp_ms is not None and not 0 <= frame.timestamp_ms < TIMESTAMP_WRAP_MS:
        raise SlcanError(f"timestamp {frame.timestamp_ms} ms is out of range 0-59999")


def encode_frame(frame: CanFrame) -> bytes:
    """One SLCAN line for the frame, CR included. Raises SlcanError for an impossible frame."""
    check_frame(frame)
    if frame.extended:
        head = b"R" if frame.remote else b"T"
        ident = b"%08X" % frame.arb_id
    else:
        head = b"r" if frame.remote else b"t"
        ident = b"%03X" % frame.arb_id
    if frame.remote:
        body = b"%X" % (frame.dlc or 0)
    else:
        body = b"%X" % len(frame.data) + binascii.hexlify(frame.data).upper()
    stamp = b"" if frame.timestamp_ms is None else b"%04X" % frame.timestamp_ms
    return head + ident + body + stamp + b"\r"


# --- host -> adapter commands -------------------------------------------------------------------


def cmd_bitrate(bitrate: int) -> bytes:
    code = BITRATE_CODES.get(bitrate)
    if code is None:
        known = ", ".join(str(b) for b in BITRATE_CODES)
        raise SlcanError(f"no SLCAN code for {bitrate} bit/s (known: {known})")
    return code + b"\r"


def cmd_open() -> bytes:
    """Open the channel in normal mode. The agent never uses it: it opens listen-only."""
    return b"O\r"


def cmd_listen_only() -> bytes:
    """Open the channel listen-only: the adapter acknowledges nothing and transmits nothing."""
    return b"L\r"


def cmd_close() -> bytes:
    return b"C\r"


def cmd_timestamps(on: bool) -> bytes:
    return b"Z1\r" if on else b"Z0\r"


def cmd_version() -> bytes:
    return b"V\r"


def cmd_status() -> bytes:
    return b"F\r"


_VERSION_REPLY = re.compile(rb"(?:^|[\r\n\x07])V([0-9A-Fa-f]{4})\r")


def version_reply(data: bytes) -> str | None:
    """The shim's answer to cmd_version() within `data` (e.g. 'V1013'), or None if none is there.

    Frames and other replies may surround it: the adapter keeps streaming while it answers."""
    m = _VERSION_REPLY.search(data)
    return None if m is None else "V" + m.group(1).decode("ascii")


def open_sequence(bitrate: int, timestamps: bool = False) -> bytes:
    """What the agent sends on every (re)connect: close, set bit rate, timestamps, listen-only.

    The leading CRs flush whatever half-typed command the adapter may hold from a previous session.
    """
    return (
        b"\r\r"
        + cmd_close()
        + cmd_bitrate(bitrate)
        + cmd_timestamps(timestamps)
        + cmd_listen_only()
    )


# --- adapter -> host lines ----------------------------------------------------------------------

# Reply lines that are not frames: type byte -> exact length (including the type byte).
_REPLY_LENGTHS = {ord("z"): 1, ord("Z"): 1, ord("V"): 5, ord("v"): 5, ord("N"): 5, ord("F"): 3}
_FRAME_TYPES = {
    ord("t"): (3, False, False),
    ord("T"): (8, True, False),
    ord("r"): (3, False, True),
    ord("R"): (8, True, True),
}


class SlcanParser:
    """Turns an SLCAN byte stream into CanFrames, counting every line it rejects.

    ``feed`` never raises on input and never holds more than ``max_line`` pending bytes.
    """

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        if max_line < LONGEST_FRAME_LINE:
            raise ValueError(f"max_line must be at least {LONGEST_FRAME_LINE}")
        self.max_line = max_line
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self._pending = b""
        self._skipping = False  # inside an overlong line, already counted, until a terminator

    @property
    def bad_lines(self) -> int:
        """Every rejected line, whatever the reason."""
        return sum(self.counters[name] for name in BAD_LINE_COUNTERS)

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)

    def reset(self) -> None:
        """Forget a partial line (the link dropped): it must not join the next session's bytes."""
        if self._pending and not self._skipping:
            self.counters["unterminated"] += 1
        self._pending = b""
        self._skipping = False

    def feed(self, data: bytes) -> list[CanFrame]:
        frames: list[CanFrame] = []
        if self._skipping:
            m = _TERMINATOR.search(data)
            if m is None:
                return frames
            self._skipping = False
            data = data[m.end() :]
        buf = self._pending + data if self._pending else data
        start = 0
        for m in _TERMINATOR.finditer(buf):
            end = m.start()
            line = buf[start:end]
            start = end + 1
            if buf[end] == BEL:
                if line:
                    self.counters["bel_with_data"] += 1
                else:
                    self.counters["error_replies"] += 1
                continue
            if not line:
                self.counters["empty_lines"] += 1
                continue
            if len(line) > self.max_line:
                self.counters["overlong"] += 1
                continue
            frame = self._parse_line(line)
            if frame is not None:
                frames.append(frame)
        rest = buf[start:]
        if len(rest) > self.max_line:
            self.counters["overlong"] += 1
            self._skipping = True
            rest = b""
        self._pending = bytes(rest)
        return frames

    def _parse_line(self, line: bytes) -> CanFrame | None:
        counters = self.counters
        kind = _FRAME_TYPES.get(line[0])
        if kind is None:
            want = _REPLY_LENGTHS.get(line[0])
            if want is None:
                counters["unknown_type"] += 1
            elif len(line) != want:
                counters["bad_length"] += 1
            else:
                counters["replies"] += 1
            return None
        id_len, extended, remote = kind
        n = len(line)
        if n < id_len + 2:
            counters["bad_length"] += 1
            return None
        if line[1:].translate(None, _HEX_DIGITS):
            counters["bad_hex"] += 1
            return None
        dlc = int(line[id_len + 1 : id_len + 2], 16)
        if dlc > MAX_DLC:
            counters["bad_dlc"] += 1
            return None
        data_end = id_len + 2 + (0 if remote else 2 * dlc)
        if n == data_end:
            stamp = None
        elif n == data_end + 4:
            stamp = int(line[data_end:], 16)
            if stamp >= TIMESTAMP_WRAP_MS:
                counters["bad_timestamp"] += 1
                return None
        else:
            counters["bad_length"] += 1
            return None
        arb_id = int(line[1 : id_len + 1], 16)
        if arb_id > (MAX_EXT_ID if extended else MAX_STD_ID):
            counters["bad_id"] += 1
            return None
        counters["frames"] += 1
        if remote:
            return CanFrame(arb_id, b"", extended, True, stamp, dlc)
        return CanFrame(
            arb_id, binascii.unhexlify(line[id_len + 2 : data_end]), extended, False, stamp
        )


def timestamp_delta_ms(earlier: int, later: int) -> int:
    """Milliseconds from one adapter timestamp to the next, across at most one wrap."""
    return (later - earlier) % TIMESTAMP_WRAP_MS
