"""hil/shim.py: the bench's CAN interface. Owns starting and stopping the bridge firmware's
host build (firmware_shim/build/fleetnode-shim) and putting frames on its simulated bus.

The firmware runs unchanged as a process: its UART is a pseudo-terminal whose slave path is
`Shim.port` (what the agent, python-can or pyserial open), and every frame given to
`Shim.send` is written to its stdin as a candump line and injected as if the CAN controller
had just received it. Nothing can travel the other way: the firmware has no transmit path.

    with Shim() as shim:
        bus = can.Bus(interface="slcan", channel=shim.port, bitrate=500000, sleep_after_open=0)
        shim.wait_channel_open()  # python-can sends O without waiting for the reply
        shim.send(0x123, b"\\xde\\xad")
        msg = bus.recv(timeout=2.0)

`python -m hil.shim [shim options]` builds the binary if needed and runs it in the foreground.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

REPO = Path(__file__).resolve().parent.parent
FIRMWARE_DIR = REPO / "firmware_shim"
DEFAULT_BINARY = FIRMWARE_DIR / "build" / "fleetnode-shim"

SFF_MAX = 0x7FF
EFF_MAX = 0x1FFF_FFFF
CAN_ERR_FLAG = 0x2000_0000
COUNTERS_PREFIX = "fleetnode-shim: counters "


class ShimError(Exception):
    """The shim could not be built, started, fed or stopped; the message says which."""


def build(timeout_s: float = 300.0) -> Path:
    """Run `make -C firmware_shim host` (a no-op when up to date) and return the binary.

    A lock file serialises concurrent builds from parallel test processes.
    Raises ShimError if make fails or takes longer than timeout_s.
    """
    lock_dir = FIRMWARE_DIR / "build"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            proc = subprocess.run(
                ["make", "-s", "-C", str(FIRMWARE_DIR), "host"],
                check=False,
                capture_output=True,
                text=True,
                timeout=timeout_s,
            )
        except subprocess.TimeoutExpired as e:
            raise ShimError(f"building the shim took more than {timeout_s:.0f} s") from e
        except OSError as e:
            raise ShimError(f"cannot run make to build the shim: {e}") from e
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if proc.returncode != 0:
        raise ShimError(f"building the shim failed:\n{proc.stdout}{proc.stderr}")
    return DEFAULT_BINARY


def candump_line(
    frame_id: int, data: bytes = b"", extended: bool = False, remote: bool = False, dlc: int = 0
) -> str:
    """One frame in candump log format, as the shim reads it (no trailing newline).

    data is ignored for a remote frame, whose requested length is dlc (0..8).
    Raises ValueError for an id out of range for its format, more than 8 data bytes or a
    bad dlc.
    """
    limit = EFF_MAX if extended else SFF_MAX
    if not 0 <= frame_id <= limit:
        raise ValueError(f"CAN id {frame_id:#x} out of range (max {limit:#x})")
    ident = f"{frame_id:08X}" if extended else f"{frame_id:03X}"
    if remote:
        if not 0 <= dlc <= 8:
            raise ValueError(f"remote frame length {dlc} not in 0..8")
        return f"{ident}#R{dlc}"
    if len(data) > 8:
        raise ValueError(f"{len(data)} data bytes: classic CAN carries at most 8")
    return f"{ident}#{bytes(data).hex().upper()}"


def parse_counters(line: str) -> dict[str, int]:
    """The shim's counters line (stderr) as a dict of name -> value."""
    fields = line[len(COUNTERS_PREFIX) :].split() if line.startswith(COUNTERS_PREFIX) else []
    out: dict[str, int] = {}
    for field in fields:
        name, sep, value = field.partition("=")
        if not sep or not value.isdigit():
            raise ShimError(f"malformed counters line: {line!r}")
        out[name] = int(value)
    if not out:
        raise ShimError(f"not a counters line: {line!r}")
    return out


class Shim:
    """The bridge firmware's host build, running as a child process.

    Parameters (all optional):
      binary: path of fleetnode-shim; default firmware_shim/build/fleetnode-shim.
      build: run make first (cheap when up to date). With build=False the binary must exist.
      uart_bps: model a UART of this many bit/s (8N1); 0 = as fast as the pty takes it.
      clock_start_ms: the firmware's millis() at start (to put SLCAN timestamps near a wrap).
      serial: the 4-character N reply.
      exit_on_input_end: pass --exit-on-eof, so the shim exits when its stdin closes: after
        end_input(), and also when this process dies without stopping it (no orphans).
      extra_args: more command-line options for the binary.
      start_timeout_s: how long to wait for the pty path.
    Raises ShimError when it cannot build or start.
    """

    def __init__(
        self,
        binary: Path | str | None = None,
        *,
        build: bool = True,
        uart_bps: int = 0,
        clock_start_ms: int = 0,
        serial: str | None = None,
        exit_on_input_end: bool = True,
        extra_args: Sequence[str] = (),
        start_timeout_s: float = 10.0,
    ) -> None:
        self._binary = Path(binary) if binary is not None else DEFAULT_BINARY
        self._build = build
        self._args: list[str] = []
        if uart_bps:
            self._args += ["--uart-bps", str(int(uart_bps))]
        if clock_start_ms:
            self._args += ["--clock-start", str(int(clock_start_ms))]
        if serial is not None:
            self._args += ["--serial", serial]
        if exit_on_input_end:
            self._args.append("--exit-on-eof")
        self._args += list(extra_args)
        self._start_timeout_s = start_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._stderr_final = ""
        self._lock = threading.Lock()
        self.port: str = ""
        self.command: list[str] = []
        # What the shim printed on stdout after the port line (filled by stop(); the shim
        # prints nothing there, so anything here is a bug).
        self.stdout_after_port = b""

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the process and wait for it to print its pty path (then in `.port`)."""
        if self._proc is not None:
            raise ShimError("shim already started")
        if self._build and binary_is_default(self._binary):
            build()
        if not os.access(self._binary, os.X_OK):
            raise ShimError(f"{self._binary} missing: run `make -C firmware_shim host`")
        self.command = [str(self._binary), *self._args]
        # stderr goes to a file, not a pipe: nobody may have to drain it for the shim to run.
        self._stderr = tempfile.TemporaryFile(prefix="fleetnode-shim-", suffix=".log")  # noqa: SIM115 (closed by stop())
        self._proc = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr
        )
        assert self._proc.stdout is not None
        line = _readline(self._proc.stdout, self._start_timeout_s)
        if not line.startswith("/"):
            code = self._proc.poll()
            self.stop()
            raise ShimError(
                f"shim did not start (exit {code}, said {line!r}): {self.stderr_text()}"
            )
        self.port = line
        return self

    def stop(self, timeout_s: float = 5.0) -> int:
        """SIGTERM, wait up to timeout_s (then SIGKILL); return the exit status."""
        proc = self._proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None and not proc.stdout.closed:
            self.stdout_after_port = proc.stdout.read()  # the child is gone: this hits EOF
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass  # stdin may already be broken if the shim died first
        if self._stderr is not None:
            self._stderr_final = self.stderr_text()  # stays readable after stop()
            self._stderr.close()
            self._stderr = None
        return int(proc.returncode)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self._require().pid

    def returncode(self) -> int | None:
        """None while running."""
        return self._require().poll()

    # -- the simulated bus ---------------------------------------------------------------

    def send(self, frame_id: int, data: bytes, extended: bool = False) -> None:
        """Put one data frame on the bus. ValueError for an impossible frame."""
        self.send_line(candump_line(frame_id, data, extended=extended))

    def send_remote(self, frame_id: int, dlc: int = 0, extended: bool = False) -> None:
        """Put one remote-request frame on the bus."""
        self.send_line(candump_line(frame_id, extended=extended, remote=True, dlc=dlc))

    def send_error(self, error_class: int, data: bytes = b"") -> None:
        """Report a controller error as a SocketCAN error frame would (linux/can/error.h
        classes, e.g. 0x4 with data[1]=0x10 for error passive, 0x40 for bus off)."""
        if not 0 < error_class <= EFF_MAX or len(data) > 8:
            raise ValueError("error class must be 1..0x1FFFFFFF with at most 8 data bytes")
        self.send_line(f"{CAN_ERR_FLAG | error_class:08X}#{bytes(data).hex().upper()}")

    def send_many(self, frames: Sequence[tuple[int, bytes, bool]]) -> None:
        """Put several (id, data, extended) frames on the bus in one write, back to back."""
        self.send_lines([candump_line(i, d, extended=e) for i, d, e in frames])

    def send_line(self, line: str) -> None:
        """Write one raw candump line (the shim validates and counts bad ones)."""
        self.send_lines([line])

    def send_lines(self, lines: Sequence[str]) -> None:
        """Write several raw candump lines in one write."""
        self.send_raw("".join(f"{line}\n" for line in lines).encode("utf-8"))

    def send_raw(self, payload: bytes) -> None:
        """Write bytes to the bus input as they are (for feeding it hostile input)."""
        proc = self._require()
        assert proc.stdin is not None
        with self._lock:
            try:
                proc.stdin.write(payload)
                proc.stdin.flush()
            except (BrokenPipeError, ValueError) as e:
                raise ShimError(f"shim is gone (exit {proc.poll()}): {self.stderr_text()}") from e

    def end_input(self) -> None:
        """Close the bus input (EOF). With exit_on_input_end (the default) the shim then
        writes what is queued, waits up to 2 s for the host to read it, and exits."""
        proc = self._require()
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()

    # -- observation ---------------------------------------------------------------------

    def counters(self, timeout_s: float = 5.0) -> dict[str, int]:
        """Ask the running shim for its counters (SIGUSR1; it answers on stderr)."""
        proc = self._require()
        start = self._stderr_size()
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self._stderr_from(start).splitlines(keepends=True):
                if line.startswith(COUNTERS_PREFIX) and line.endswith("\n"):
                    return parse_counters(line.rstrip("\n"))
            if proc.poll() is not None:
                break
            time.sleep(0.005)  # polling a file the child appends to; bounded by the deadline
        raise ShimError(f"no counters from the shim within {timeout_s} s: {self.stderr_text()}")

    def wait_counters(self, expected: dict[str, int], timeout_s: float = 5.0) -> dict[str, int]:
        """Poll counters() until every name in expected has at least that value; return
        them. The shim's inputs (pty, stdin) are separate streams, so this is how a caller
        knows one was handled before it acts on the other. ShimError after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            c = self.counters(timeout_s)
            if all(c.get(k, 0) >= v for k, v in expected.items()):
                return c
            if time.monotonic() > deadline:
                raise ShimError(f"counters {c} did not reach {expected} within {timeout_s} s")
            time.sleep(0.01)  # bounded by the deadline; each poll adds a line to the log

    def channel_is_open(self) -> bool:
        """Whether the host has opened the SLCAN channel (O or L) and not closed it since.
        Frames sent while it is closed are not delivered, as on a real adapter."""
        text = self.stderr_text()
        return text.rfind("channel open") > text.rfind("channel closed")

    def wait_channel_open(self, timeout_s: float = 5.0) -> None:
        """Block until the host has opened the channel; ShimError after timeout_s.
        Use it before sending frames a freshly connected host must see."""
        deadline = time.monotonic() + timeout_s
        while not self.channel_is_open():
            if time.monotonic() > deadline or self.returncode() is not None:
                raise ShimError(f"channel not opened within {timeout_s} s: {self.stderr_text()}")
            time.sleep(0.005)  # polling a file the child appends to; bounded by the deadline

    def stderr_text(self) -> str:
        """Everything the shim wrote to stderr so far."""
        if self._stderr is None:
            return self._stderr_final
        return self._stderr_from(0)

    def _stderr_size(self) -> int:
        return os.fstat(self._stderr.fileno()).st_size if self._stderr is not None else 0

    def _stderr_from(self, offset: int) -> str:
        if self._stderr is None:
            return self._stderr_final[offset:]
        size = self._stderr_size()
        data = os.pread(self._stderr.fileno(), max(0, size - offset), offset)
        return data.decode("utf-8", "replace")

    def _require(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise ShimError("shim not started")
        return self._proc


def binary_is_default(path: Path) -> bool:
    return path.resolve() == DEFAULT_BINARY.resolve()


def _readline(stream: IO[bytes], timeout_s: float) -> str:
    """One line from a child's stdout, or "" at EOF or after timeout_s."""
    fd = stream.fileno()
    buf = b""
    deadline = time.monotonic() + timeout_s
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 1)
        if not chunk:
            break
        buf += chunk
    return buf.decode("utf-8", "replace").strip()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        binary = build()
    except ShimError as e:
        print(e, file=sys.stderr)
        return 1
    os.execv(binary, [str(binary), *args])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
