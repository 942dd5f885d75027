"""The SLCAN wire format: round trips, strict rejection with one counter per bad line, resync."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.bus import slcan
from agent.bus.errors import SlcanError
from agent.bus.slcan import BAD_LINE_COUNTERS, CanFrame, SlcanParser, encode_frame, version_reply


def data_frames(max_id: int, extended: bool) -> st.SearchStrategy[CanFrame]:
    return st.builds(
        CanFrame,
        arb_id=st.integers(0, max_id),
        data=st.binary(max_size=8),
        extended=st.just(extended),
        timestamp_ms=st.none() | st.integers(0, 59_999),
    )


def frames_strategy() -> st.SearchStrategy[CanFrame]:
    rtr = st.builds(
        CanFrame,
        arb_id=st.integers(0, slcan.MAX_STD_ID),
        data=st.just(b""),
        extended=st.booleans(),
        remote=st.just(True),
        dlc=st.integers(0, 8),
    )
    return data_frames(slcan.MAX_STD_ID, False) | data_frames(slcan.MAX_EXT_ID, True) | rtr


def test_encode_known_lines() -> None:
    assert encode_frame(CanFrame(0x123, bytes([0x11, 0x22, 0x33]))) == b"t1233112233\r"
    assert encode_frame(CanFrame(0x1ABCDEF0, b"", extended=True)) == b"T1ABCDEF00\r"
    assert encode_frame(CanFrame(0x7FF, b"\xff", timestamp_ms=0xEA5F)) == b"t7FF1FFEA5F\r"
    assert encode_frame(CanFrame(0x100, b"", remote=True, dlc=8)) == b"r1008\r"
    assert encode_frame(CanFrame(0x100, b"", extended=True, remote=True, dlc=2)) == b"R000001002\r"


@pytest.mark.parametrize(
    "frame",
    [
        CanFrame(0x800, b""),
        CanFrame(0x20000000, b"", extended=True),
        CanFrame(-1, b""),
        CanFrame(0x1, bytes(9)),
        CanFrame(0x1, b"\x01", remote=True),
        CanFrame(0x1, b"", timestamp_ms=60_000),
        CanFrame(0x1, b"", remote=True, dlc=9),
    ],
)
def test_encode_refuses_impossible_frames(frame: CanFrame) -> None:
    with pytest.raises(SlcanError):
        encode_frame(frame)


@settings(max_examples=300, deadline=None)
@given(st.lists(frames_strategy(), max_size=20), st.integers(1, 40))
def test_round_trip_through_any_chunking(frames: list[CanFrame], chunk: int) -> None:
    wire = b"".join(encode_frame(f) for f in frames)
    parser = SlcanParser()
    out: list[CanFrame] = []
    for i in range(0, len(wire), chunk):
        out.extend(parser.feed(wire[i : i + chunk]))
    assert out == frames
    assert parser.bad_lines == 0
    assert parser.counters["frames"] == len(frames)


@pytest.mark.parametrize(
    ("line", "counter"),
    [
        (b"x123", "unknown_type"),
        (b"\x00\xff", "unknown_type"),
        (b"t12", "bad_length"),
        (b"t1232AA", "bad_length"),  # DLC 2, one data byte
        (b"t1232AABBC", "bad_length"),  # one stray digit
        (b"t1232AABBCCDDEE", "bad_length"),
        (b"t12G1AA", "bad_hex"),
        (b"t1231 A", "bad_hex"),
        (b"t123-1AA", "bad_hex"),
        (b"t1_31AA", "bad_hex"),  # int() would accept the underscore
        (b"t1239", "bad_dlc"),
        (b"t123F", "bad_dlc"),
        (b"t8000", "bad_id"),
        (b"TFFFFFFFF0", "bad_id"),
        (b"t1230EA60", "bad_timestamp"),
        (b"V12", "bad_length"),
        (b"z1", "bad_length"),
    ],
)
def test_each_bad_line_counts_once_under_its_name(line: bytes, counter: str) -> None:
    parser = SlcanParser()
    good = encode_frame(CanFrame(0x321, b"\x01\x02"))
    frames = parser.feed(good + line + b"\r" + good)
    assert frames == [CanFrame(0x321, b"\x01\x02")] * 2
    assert parser.counters[counter] == 1
    assert parser.bad_lines == 1


def test_replies_and_acks_are_not_bad_lines() -> None:
    parser = SlcanParser()
    assert parser.feed(b"\r\x07z\rZ\rV1013\rNA123\rF00\r") == []
    assert parser.counters["empty_lines"] == 1
    assert parser.counters["error_replies"] == 1
    assert parser.counters["replies"] == 5
    assert parser.bad_lines == 0


def test_resynchronises_on_bel_and_lf() -> None:
    parser = SlcanParser()
    frames = parser.feed(b"t12\x07t1231AA\r\nt2340\r")
    assert frames == [CanFrame(0x123, b"\xaa"), CanFrame(0x234, b"")]
    assert parser.counters["bel_with_data"] == 1


def test_stream_without_newlines_keeps_memory_flat() -> None:
    parser = SlcanParser()
    for _ in range(2000):
        assert parser.feed(b"t1238" + b"A" * 250) == []
        assert parser.pending_bytes <= slcan.MAX_LINE_BYTES
    assert parser.counters["overlong"] == 1  # one endless line, counted once
    assert parser.feed(b"\rt1230\r") == [CanFrame(0x123, b"")]
    assert parser.bad_lines == 1


def test_overlong_terminated_line_is_rejected() -> None:
    parser = SlcanParser()
    assert parser.feed(b"t1238" + b"0" * 40 + b"\r") == []
    assert parser.counters["overlong"] == 1


def test_reset_counts_a_partial_line() -> None:
    parser = SlcanParser()
    parser.feed(b"t1232AA")
    parser.reset()
    assert parser.feed(b"BB\rt1230\r") == [CanFrame(0x123, b"")]
    assert parser.counters["unterminated"] == 1
    assert parser.counters["unknown_type"] == 1  # "BB": the tail after the cut


def test_commands() -> None:
    assert slcan.cmd_bitrate(500_000) == b"S6\r"
    assert slcan.cmd_bitrate(1_000_000) == b"S8\r"
    with pytest.raises(SlcanError):
        slcan.cmd_bitrate(750_000)  # S7 means 800k or 750k depending on firmware: refused
    seq = slcan.open_sequence(500_000, timestamps=True)
    assert seq == b"\r\rC\rS6\rZ1\rL\r"
    assert b"O\r" not in seq  # the agent only ever opens listen-only


def test_timestamp_delta_wraps() -> None:
    assert slcan.timestamp_delta_ms(59_990, 10) == 20
    assert slcan.timestamp_delta_ms(100, 250) == 150


def test_bad_counter_names_are_disjoint_from_the_others() -> None:
    assert set(BAD_LINE_COUNTERS).isdisjoint(slcan.OTHER_COUNTERS)


@pytest.mark.parametrize("stream,want", [
    (b"V1013\r", "V1013"),
    (b"t1238AABBCCDDEEFF0011\rV1013\rt12300\r", "V1013"),  # frames keep streaming around the reply
    (b"\x07V0a0B\r", "V0a0B"),
    (b"t12V1013\r", None),  # inside a cut line, not a reply
    (b"V101\r", None),
    (b"V1013", None),  # not terminated yet
    (b"V10134\r", None),
    (b"", None),
])
def test_version_reply_is_found_only_as_a_whole_line(stream: bytes, want: str | None) -> None:
    assert version_reply(stream) == want
