"""The host build as a process: options, signals, end of input, FIFO and tty plumbing,
hostile bus input, error reporting. Talks to it over its pty with pyserial."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from hil.shim import REPO, Shim, ShimError, candump_line
from tests.firmware.conftest import SlcanPort
from tests.fixtures.pty import open_pty


def run_shim(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the shim to completion with no input (for option errors and --help)."""
    return subprocess.run(
        [binary, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=10,
        stdin=subprocess.DEVNULL,
    )


def test_help_answers(shim_binary: str) -> None:
    proc = run_shim(shim_binary, "--help")
    assert proc.returncode == 0
    assert "--can-in" in proc.stdout and "--exit-on-eof" in proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus"],
        ["--uart-bps", "-1"],
        ["--uart-bps", "12x"],
        ["--serial", "AB"],
        ["--serial", "A-23"],
        ["--bitrate-index", "9"],
        ["--clock-start", "4294967296"],
        ["--uart"],
    ],
)
def test_bad_options_exit_2(shim_binary: str, args: list[str]) -> None:
    proc = run_shim(shim_binary, *args)
    assert proc.returncode == 2, proc.stderr
    assert "usage" in proc.stderr or "invalid" in proc.stderr


def test_missing_uart_path_is_a_clear_error(shim_binary: str) -> None:
    proc = run_shim(shim_binary, "--uart", "/nonexistent/tty")
    assert proc.returncode == 1
    assert "/nonexistent/tty" in proc.stderr


def test_missing_can_input_is_a_clear_error(shim_binary: str) -> None:
    proc = run_shim(shim_binary, "--can-in", "/nonexistent/bus.log")
    assert proc.returncode == 1
    assert "CAN input" in proc.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP])
def test_other_stop_signals_exit_cleanly(shim_binary: str, sig: signal.Signals) -> None:
    s = Shim(shim_binary, build=False).start()
    os.kill(s.pid, sig)
    deadline = time.monotonic() + 10
    while s.returncode() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.returncode() == 0
    s.stop()
    assert "fleetnode-shim: counters " in s.stderr_text()


def test_sigterm_exits_cleanly_with_counters(shim_binary: str) -> None:
    s = Shim(shim_binary, build=False).start()
    assert s.port.startswith("/dev/pts/")
    assert os.path.exists(s.port)
    assert s.stop() == 0
    assert "fleetnode-shim: counters rx=0 " in s.stderr_text()


def test_version_serial_and_custom_serial(shim_binary: str) -> None:
    with Shim(shim_binary, build=False, serial="FN42") as s:
        p = SlcanPort(s.port)
        assert p.cmd(b"V") == b"V1013\r"
        assert p.cmd(b"N") == b"NFN42\r"
        p.close()


def test_frames_flow_only_while_open(shim: Shim, port: SlcanPort) -> None:
    shim.send(0x100, b"\x01")  # channel closed: the controller is not receiving
    shim.wait_counters({"closed": 1})
    assert port.cmd(b"O") == b"\r"
    shim.send(0x101, b"\x02")
    assert port.read_reply() == b"t101102\r"
    assert shim.counters()["closed"] == 1


def test_hostile_bus_input_is_counted_not_fatal(shim: Shim, port: SlcanPort) -> None:
    assert port.cmd(b"O") == b"\r"
    garbage = [
        "123",
        "12#00",
        "800#00",
        "123#0",
        "123##1DEAD",
        "x" * 10_000,
        "123#00\x00",
        "(1) can0 123#00 extra",
        "\u00ff\u00fe",
        "123#112233445566778899",
    ]
    shim.send_lines(garbage)
    shim.send_raw(b"\xff\xfe\x80#00\n")
    garbage.append("raw")
    shim.send(0x321, b"\xaa")
    assert port.read_reply() == b"t3211AA\r"  # the only frame that came through
    c = shim.counters()
    assert c["input_bad"] == len(garbage)
    assert c["input_frames"] == 1
    assert shim.returncode() is None


def test_error_frames_become_status_flags(shim: Shim, port: SlcanPort) -> None:
    assert port.cmd(b"O") == b"\r"
    assert port.cmd(b"F") == b"F00\r"
    shim.send_error(0x4, b"\x00\x10")  # controller: RX error passive
    shim.send(0x001, b"")  # frames are handled in order, so F below sees the error
    assert port.read_reply() == b"t0010\r"
    assert port.cmd(b"F") == b"F20\r"
    shim.send_error(0x4, b"\x00\x40")  # back to error active
    shim.send_error(0x40)  # bus off
    shim.send(0x002, b"")
    assert port.read_reply() == b"t0020\r"
    assert port.cmd(b"F") == b"FA0\r"
    assert shim.counters()["canerr"] == 3


def test_exit_on_eof_writes_queued_frames_then_exits(shim_binary: str) -> None:
    s = Shim(shim_binary, build=False).start()  # exit_on_input_end is the default
    assert "--exit-on-eof" in s.command
    try:
        p = SlcanPort(s.port)
        assert p.cmd(b"O") == b"\r"
        s.send_many([(i, bytes([i]), False) for i in range(20)])
        s.end_input()
        lines = [p.read_reply() for _ in range(20)]
        assert lines == [f"t{i:03X}1{i:02X}\r".encode() for i in range(20)]
        p.close()
        deadline = time.monotonic() + 10
        while s.returncode() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert s.returncode() == 0
    finally:
        s.stop()


def test_without_exit_on_eof_the_shim_outlives_its_input(shim_binary: str) -> None:
    with Shim(shim_binary, build=False, exit_on_input_end=False) as s:
        port = SlcanPort(s.port)
        s.end_input()
        assert port.cmd(b"V") == b"V1013\r"  # still serving the UART after stdin ended
        assert port.cmd(b"N") == b"NA123\r"
        assert s.returncode() is None
        port.close()


def test_shim_does_not_outlive_a_parent_that_dies(shim_binary: str) -> None:
    """A test or simulator killed outright never stops its Shim; the shim must notice its
    stdin closing and exit rather than linger."""
    code = (
        "import sys; from hil.shim import Shim\n"
        f"s = Shim({shim_binary!r}, build=False).start()\n"
        "print(s.pid, flush=True)\n"
        "import os; os._exit(0)\n"  # no stop(), no __exit__
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.01)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_can_input_from_a_fifo_with_writers_coming_and_going(
    shim_binary: str, tmp_path: os.PathLike[str]
) -> None:
    fifo = os.path.join(os.fspath(tmp_path), "bus")
    os.mkfifo(fifo)
    with Shim(
        shim_binary, build=False, exit_on_input_end=False, extra_args=["--can-in", fifo]
    ) as s:
        p = SlcanPort(s.port)
        assert p.cmd(b"O") == b"\r"
        for n in range(2):  # a second writer after the first closed: the shim still listens
            with open(fifo, "w") as w:
                w.write(candump_line(0x200 + n, b"\x01\x02") + "\n")
            assert p.read_reply() == f"t{0x200 + n:03X}20102\r".encode()
        p.close()
        assert s.returncode() is None


def test_uart_option_uses_a_given_tty(shim_binary: str) -> None:
    pair = open_pty()
    try:
        with Shim(shim_binary, build=False, extra_args=["--uart", pair.slave_path]) as s:
            assert s.port == pair.slave_path
            pair.write(b"V\rO\r")
            got = b""
            deadline = time.monotonic() + 5
            while got != b"V1013\r\r" and time.monotonic() < deadline:
                got += os.read(pair.master_fd, 64)
            assert got == b"V1013\r\r"
            s.send(0x7E8, b"\x02\x41\x0d")
            got = b""
            while not got.endswith(b"\r") and time.monotonic() < deadline:
                got += os.read(pair.master_fd, 64)
            assert got == b"t7E8302410D\r"
    finally:
        pair.close()


def test_send_validates_frames(shim: Shim) -> None:
    with pytest.raises(ValueError):
        shim.send(0x800, b"")
    with pytest.raises(ValueError):
        shim.send(0x2000_0000, b"", extended=True)
    with pytest.raises(ValueError):
        shim.send(0x1, bytes(9))
    with pytest.raises(ValueError):
        shim.send_remote(0x1, dlc=9)


def test_sending_to_a_dead_shim_is_a_clear_error(shim_binary: str) -> None:
    s = Shim(shim_binary, build=False).start()
    os.kill(s.pid, 9)
    deadline = time.monotonic() + 5
    while s.returncode() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(ShimError):
        for _ in range(100):  # the first write may still land in the pipe buffer
            s.send(0x1, b"")
    s.stop()


def test_host_leaving_closes_the_channel_and_drops_what_it_did_not_read(shim: Shim) -> None:
    """A host that closes the port without C is gone: the shim closes the channel and throws
    away frames it never read, so the next host does not take old frames for new ones."""
    p = SlcanPort(shim.port)
    assert p.cmd(b"O") == b"\r"
    shim.send_many([(0x100 + i, b"\x01", False) for i in range(5)])
    shim.wait_counters({"out": 5})  # written to the pty, never read
    p.close()
    shim.wait_counters({"detached": 1})
    assert not shim.channel_is_open()
    shim.send(0x200, b"\x02")
    shim.wait_counters({"closed": 1})  # nobody listening: not queued for later

    p = SlcanPort(shim.port)
    assert p.cmd(b"V") == b"V1013\r"  # the first bytes on the reopened port: nothing stale
    assert p.cmd(b"O") == b"\r"  # the channel had been closed (O on an open channel is BEL)
    shim.send(0x300, b"\x03")
    assert p.read_reply() == b"t300103\r"
    p.close()
    assert "host detached" in shim.stderr_text()
