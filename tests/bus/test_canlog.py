"""CAN log files for replay: candump and SavvyCAN CSV in, bad lines counted, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.bus.canlog import (
    LogError,
    TimedFrame,
    candump_line,
    load_log,
    parse_candump,
    parse_candump_line,
    parse_savvycan,
)
from agent.bus.slcan import CanFrame


def test_candump_forms() -> None:
    assert parse_candump_line("(1700000000.250000) can0 102#0100000100000000") == TimedFrame(
        1700000000.25, CanFrame(0x102, bytes.fromhex("0100000100000000"))
    )
    dotted = parse_candump_line("vcan0 1ABCDEF0#DE.AD")
    assert dotted is not None
    assert dotted.frame == CanFrame(0x1ABCDEF0, b"\xde\xad", extended=True)
    rtr = parse_candump_line("123#R4")
    assert rtr is not None and rtr.frame == CanFrame(0x123, b"", remote=True, dlc=4)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "garbage",
        "(1.0) can0 123#ABC",  # odd digit count
        "(1.0) can0 123#001122334455667788",  # 9 bytes
        "(1.0) can0 800#00",  # 11-bit id out of range
        "(1.0) can0 20000004#0004000000000000",  # error frame, not a bus frame
        "(1.0) can0 123##1001122",  # CAN FD
        "(1.0) can0 12#00",
    ],
)
def test_candump_rejects(line: str) -> None:
    assert parse_candump_line(line) is None


def test_candump_log_counts_bad_lines_and_times_untimed_ones() -> None:
    log = parse_candump("# comment\n102#00\nnope\n\n103#01\n")
    assert [tf.frame.arb_id for tf in log.frames] == [0x102, 0x103]
    assert [tf.t for tf in log.frames] == [0.0, 0.001]
    assert (log.bad_lines, log.bad_line_numbers) == (1, [3])


def test_candump_line_round_trip() -> None:
    tf = TimedFrame(12.5, CanFrame(0x1ABCDEF0, b"\x01\x02", extended=True))
    assert candump_line(tf) == "(12.500000) can0 1ABCDEF0#0102\n"
    assert parse_candump_line(candump_line(tf)) == tf


def test_savvycan_csv() -> None:
    text = (
        "Time Stamp,ID,Extended,Dir,Bus,LEN,D1,D2,D3,D4,D5,D6,D7,D8\n"
        "166064000,00000102,false,Rx,0,2,01,FF,,,,,,\n"
        "166164000,1ABCDEF0,true,Rx,0,1,7A,,,,,,,\n"
        "166264000,00000102,false,Rx,0,9,01,02,03,04,05,06,07,08\n"
        "bad,row\n"
    )
    log = parse_savvycan(text)
    assert [tf.frame for tf in log.frames] == [
        CanFrame(0x102, b"\x01\xff"),
        CanFrame(0x1ABCDEF0, b"\x7a", extended=True),
    ]
    assert log.frames[1].t - log.frames[0].t == pytest.approx(0.1)
    assert log.bad_lines == 2


def test_load_log_detects_format_and_refuses_empty(tmp_path: Path) -> None:
    csv = tmp_path / "log.csv"
    csv.write_text("Time Stamp,ID,Extended,Bus,LEN,D1\n1000,00000102,false,0,1,01\n")
    assert load_log(csv).fmt == "savvycan"
    junk = tmp_path / "junk.log"
    junk.write_bytes(b"\xff\xfe junk\n")
    with pytest.raises(LogError, match="no CAN frame"):
        load_log(junk)
    with pytest.raises(LogError, match="cannot read"):
        load_log(tmp_path / "missing.log")
    with pytest.raises(LogError, match="header"):
        parse_savvycan("Time Stamp,Foo\n")
