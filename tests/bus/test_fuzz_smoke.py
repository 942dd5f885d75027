"""A small run of the SLCAN fuzzer (the million-line run is `make fuzz-bus`)."""

from __future__ import annotations

import random

from agent.bus import slcan
from agent.bus.profile import VehicleProfile
from agent.bus.reader import BusReader
from agent.bus.state import StateStore
from agent.clock import FakeClock
from tests.bus.helpers import wait_for_state, wait_until
from tests.bus.slcan_fuzz import memory_without_newlines, oracle, random_line, run
from tests.fixtures.pty import PtyPair


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


def test_reader_on_a_pty_survives_fuzz_and_counts_every_line(pty_pair: PtyPair) -> None:
    rng = random.Random(11)
    stream = b"".join(random_line(rng) for _ in range(3_000)) + b"\r"
    terminators = sum(stream.count(t) for t in (b"\r", b"\n", b"\x07"))
    store = StateStore()
    reader = BusReader(pty_pair.slave_path, VehicleProfile.load("reference"), store, FakeClock())
    reader.start()
    try:
        wait_for_state(store, lambda s: s.link.up)
        for i in range(0, len(stream), 1000):
            pty_pair.write(stream[i : i + 1000])
        wait_until(lambda: reader.counters["bytes"] == len(stream), timeout=20)
        c = reader.counters
        lines = sum(c[k] for k in slcan.BAD_LINE_COUNTERS) + sum(
            c[k] for k in ("frames", "empty_lines", "error_replies", "replies")
        )
        assert lines == terminators
        assert c["frames"] == c["decoded_frames"] + c["ignored_frames"] + c["decode_errors"]
        assert reader.running and store.snapshot().link.up
    finally:
        reader.stop()
