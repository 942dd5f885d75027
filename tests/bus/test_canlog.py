"""CAN log files for replay: candump and SavvyCAN CSV in, bad lines counted, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.bus.canlog import (
    CanLog,
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
        1700000000.25, CanFrame(0x102, bytes.fromhex("0100000100000000")), "can0"
    )
    dotted = parse_candump_line("vcan0 1ABCDEF0#DE.AD")
    assert dotted is not None
    assert dotted.frame == CanFrame(0x1ABCDEF0, b"\xde\xad", extended=True)
    assert dotted.bus == "vcan0"
    rtr = parse_candump_line("123#R4")
    assert rtr is not None and rtr.frame == CanFrame(0x123, b"", remote=True, dlc=4)
    assert rtr.bus == ""  # no interface: the log names no bus


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
        "(1.0) can0123456789abc 123#00",  # 16 characters: not a Linux interface name
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
    tf = TimedFrame(12.5, CanFrame(0x1ABCDEF0, b"\x01\x02", extended=True), "vcan1")
    assert candump_line(tf) == "(12.500000) vcan1 1ABCDEF0#0102\n"
    assert parse_candump_line(candump_line(tf)) == tf
    # A SavvyCAN bus number becomes its interface name; an unnamed bus is can0.
    assert candump_line(TimedFrame(1.0, tf.frame, "1")).split()[1] == "can1"
    assert candump_line(TimedFrame(1.0, tf.frame)).split()[1] == "can0"


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
    assert [tf.bus for tf in log.frames] == ["0", "0"]


def test_savvycan_bus_column_names_the_bus_and_a_bad_bus_is_a_bad_line() -> None:
    text = (
        "Time Stamp,ID,Extended,Dir,Bus,LEN,D1,D2,D3,D4,D5,D6,D7,D8\n"
        "1000,00000102,false,Rx,0,1,01,,,,,,,\n"
        "2000,00000102,false,Rx,01,1,02,,,,,,,\n"  # "01" is bus 1
        "3000,00000102,false,Rx,x,1,03,,,,,,,\n"
        "4000,00000102,false,Rx,,1,04,,,,,,,\n"
        "5000,00000102,false,Rx,-1,1,05,,,,,,,\n"
        "6000,00000102,false,Rx,256,1,06,,,,,,,\n"
    )
    log = parse_savvycan(text)
    assert [(tf.bus, tf.frame.data) for tf in log.frames] == [("0", b"\x01"), ("1", b"\x02")]
    assert (log.bad_lines, log.bad_line_numbers) == (4, [4, 5, 6, 7])
    no_column = parse_savvycan("Time Stamp,ID,Extended,LEN,D1\n1000,00000102,false,1,01\n")
    assert no_column.buses() == {"": 1}


def two_bus_candump() -> CanLog:
    return parse_candump(
        "(1.0) can0 102#01\n(1.1) can1 102#0203\n(1.2) can0 103#04\n(1.3) vcan2 104#05\n"
    )


def test_buses_are_counted_in_order_of_appearance() -> None:
    log = two_bus_candump()
    assert log.buses() == {"can0": 2, "can1": 1, "vcan2": 1}
    assert log.describe_buses() == "can0 (2 frames), can1 (1 frame), vcan2 (1 frame)"


@pytest.mark.parametrize(
    ("wanted", "bus"), [("can1", "can1"), ("1", "can1"), ("0", "can0"), (" 2 ", "vcan2")]
)
def test_a_bus_is_chosen_by_name_or_by_number(wanted: str, bus: str) -> None:
    log = two_bus_candump()
    assert log.resolve_bus(wanted) == bus
    chosen = log.select(bus)
    assert {tf.bus for tf in chosen.frames} == {bus}
    assert len(chosen.frames) == log.buses()[bus]


@pytest.mark.parametrize(
    ("text", "wanted", "why"),
    [
        ("can0 102#01\ncan1 102#02\n", "3", "is not in the log"),
        ("can0 102#01\ncan1 102#02\n", "vcan0", "is not in the log"),
        ("can0 102#01\nvcan0 102#02\n", "0", "matches several buses"),
    ],
)
def test_a_bus_that_is_not_there_or_ambiguous_is_refused_with_the_list(
    text: str, wanted: str, why: str
) -> None:
    log = parse_candump(text)
    with pytest.raises(LogError, match=why) as e:
        log.resolve_bus(wanted)
    assert log.describe_buses() in str(e.value)


def test_a_log_that_names_no_bus_is_one_bus() -> None:
    log = parse_candump("102#01\n103#02\n")
    assert log.buses() == {"": 2}
    assert log.resolve_bus("1") == ""
    assert len(log.select("").frames) == 2


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
