"""Fuzzing the SLCAN parser: random and mutated lines against an independent oracle.

``python -m tests.bus.slcan_fuzz --lines 1000000`` is the full run (``make fuzz-bus``); the test
suite runs a small one. Checked on every run: no exception escapes ``feed``; the frames the parser
returns are exactly those a separate, regex-based reading of the same lines accepts; the counters
account for every terminated line (each lands in exactly one counter); and memory stays flat on a
stream that never sends a terminator.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
import tracemalloc
from dataclasses import dataclass

from agent.bus import slcan
from agent.bus.slcan import CanFrame, SlcanParser, encode_frame

_SPLIT = re.compile(rb"([\r\n\x07])")
_STD = re.compile(rb"([tr])([0-9A-Fa-f]{3})([0-9A-Fa-f])([0-9A-Fa-f]*)")
_EXT = re.compile(rb"([TR])([0-9A-Fa-f]{8})([0-9A-Fa-f])([0-9A-Fa-f]*)")
_ALPHABET = b"tTrRzZVNF0123456789ABCDEFabcdefG \x00\xff\r\n\x07"


def oracle(line: bytes) -> CanFrame | None:
    """What a strict reader makes of one line, written independently of SlcanParser."""
    m = _STD.fullmatch(line) or _EXT.fullmatch(line)
    if m is None:
        return None
    kind, ident, dlc_s, rest = m.groups()
    dlc, remote, extended = int(dlc_s, 16), kind in b"rR", kind in b"TR"
    if dlc > 8:
        return None
    body = 0 if remote else 2 * dlc
    if len(rest) not in (body, body + 4):
        return None
    stamp = int(rest[body:], 16) if len(rest) == body + 4 else None
    if stamp is not None and stamp > 59_999:
        return None
    arb_id = int(ident, 16)
    if arb_id > (0x1FFFFFFF if extended else 0x7FF):
        return None
    if remote:
        return CanFrame(arb_id, b"", extended, True, stamp, dlc)
    return CanFrame(arb_id, bytes.fromhex(rest[:body].decode()), extended, False, stamp)


def random_frame(rng: random.Random) -> CanFrame:
    extended = rng.random() < 0.3
    arb_id = rng.randrange(0x20000000 if extended else 0x800)
    stamp = rng.randrange(60_000) if rng.random() < 0.5 else None
    if rng.random() < 0.1:
        return CanFrame(arb_id, b"", extended, True, stamp, rng.randrange(9))
    return CanFrame(arb_id, rng.randbytes(rng.randrange(9)), extended, False, stamp)


def mutate(rng: random.Random, line: bytes) -> bytes:
    b = bytearray(line)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            del b[min(pos, len(b) - 1)]
        elif op == 1:
            b.insert(pos, rng.choice(_ALPHABET))
        elif op == 2 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 3:
            b = b[:pos]
        elif op == 4:
            b = b + b[: rng.randrange(len(b) + 1)]
        else:
            b = b.swapcase()
    return bytes(b)


def random_line(rng: random.Random) -> bytes:
    """One line of the fuzz stream, terminator included."""
    r = rng.random()
    if r < 0.35:
        return encode_frame(random_frame(rng))
    if r < 0.75:
        return mutate(rng, encode_frame(random_frame(rng))[:-1]) + rng.choice(
            (b"\r", b"\r", b"\n", b"\x07")
        )
    if r < 0.85:
        return rng.choice((b"\r", b"\x07", b"z\r", b"V1013\r", b"F00\r", b"N1234\r"))
    if r < 0.95:
        return bytes(rng.choice(_ALPHABET) for _ in range(rng.randrange(40))) + b"\r"
    return rng.randbytes(rng.randrange(80)) + b"\r"


@dataclass
class FuzzResult:
    lines: int
    terminators: int
    frames: int
    bad_lines: int
    counted_lines: int
    seconds: float


def run(lines: int, seed: int = 1) -> FuzzResult:
    """Feed `lines` random lines in random chunks; raise AssertionError on any disagreement."""
    rng = random.Random(seed)
    parser = SlcanParser()
    stream = b"".join(random_line(rng) for _ in range(lines)) + b"\r"
    expected: list[CanFrame] = []
    pieces = _SPLIT.split(stream)
    for piece, term in zip(pieces[0::2], pieces[1::2]):
        if term != b"\x07":
            f = oracle(piece)
            if f is not None:
                expected.append(f)
    terminators = stream.count(b"\r") + stream.count(b"\n") + stream.count(b"\x07")
    got: list[CanFrame] = []
    t0 = time.perf_counter()
    pos = 0
    while pos < len(stream):
        n = rng.choice((1, 7, 64, 512, 4096))
        got.extend(parser.feed(stream[pos : pos + n]))
        pos += n
    seconds = time.perf_counter() - t0
    c = parser.counters
    counted = sum(c[k] for k in slcan.BAD_LINE_COUNTERS) + sum(
        c[k] for k in ("frames", "empty_lines", "error_replies", "replies")
    )
    if got != expected:
        first = next(i for i, (a, b) in enumerate(zip(got + [None], expected + [None])) if a != b)  # type: ignore[operator]
        raise AssertionError(
            f"frame {first}: parser {got[first : first + 1]} oracle {expected[first : first + 1]}"
        )
    if counted != terminators:
        raise AssertionError(f"{terminators} terminated lines but counters hold {counted}: {c}")
    if parser.pending_bytes != 0:
        raise AssertionError("bytes left pending after the final CR")
    return FuzzResult(lines, terminators, len(got), parser.bad_lines, counted, seconds)


def memory_without_newlines(total_bytes: int, chunk: int = 4096, seed: int = 2) -> tuple[int, int]:
    """Feed a stream with no CR/LF/BEL; return (peak traced bytes, max pending bytes)."""
    rng = random.Random(seed)
    junk = bytes(b for b in rng.randbytes(chunk * 2) if b not in (0x0D, 0x0A, 0x07))[:chunk]
    parser = SlcanParser()
    tracemalloc.start()
    max_pending = 0
    try:
        for _ in range(total_bytes // len(junk)):
            parser.feed(junk)
            max_pending = max(max_pending, parser.pending_bytes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parser.counters["overlong"] == 1  # one endless line
    return peak, max_pending


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Fuzz the SLCAN parser against an independent oracle.")
    p.add_argument("--lines", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--junk-mb", type=int, default=64, help="size of the stream without newlines")
    args = p.parse_args(argv)
    done = frames = bad = counted = 0
    seconds = 0.0
    batch = 100_000
    while done < args.lines:
        n = min(batch, args.lines - done)
        r = run(n, seed=args.seed + done)
        done, frames, bad = done + n, frames + r.frames, bad + r.bad_lines
        counted, seconds = counted + r.counted_lines, seconds + r.seconds
        print(
            f"{done} lines: {frames} frames, {bad} bad lines, {counted} terminated lines "
            f"each in exactly one counter, parser at {done / seconds:,.0f} lines/s",
            flush=True,
        )
    peak, pending = memory_without_newlines(args.junk_mb << 20)
    print(
        f"{args.junk_mb} MiB without a newline: peak traced memory {peak} bytes, "
        f"at most {pending} bytes pending"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
