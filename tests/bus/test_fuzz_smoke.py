"""A small run of the SLCAN fuzzer (the million-line run is `make fuzz-bus`)."""

from __future__ import annotations

from agent.bus import slcan
from tests.bus.slcan_fuzz import memory_without_newlines, oracle, run


def test_fuzz_smoke_matches_oracle_and_counts_every_line() -> None:
    r = run(20_000, seed=7)
    assert r.counted_lines == r.terminators
    assert r.frames > 5_000 and r.bad_lines > 5_000  # both kinds were exercised


def test_memory_stays_flat_without_newlines() -> None:
    peak, pending = memory_without_newlines(4 << 20)
    assert pending <= slcan.MAX_LINE_BYTES
    assert peak < 64 * 1024  # a few chunks in flight, not the 4 MiB fed


def test_oracle_agrees_on_known_lines() -> None:
    assert oracle(b"t1232AABB") == slcan.CanFrame(0x123, b"\xaa\xbb")
    assert oracle(b"t8000") is None
    assert oracle(b"t1239") is None
