"""`fleetnode bus …`: watch the roles the agent reads from a serial port, replay a CAN log onto one.

fleetnode bus monitor --port PORT [--profile NAME|FILE] [--dbc FILE] [--json] [--count N]
fleetnode bus replay LOG --port PORT [--bus N] [--profile NAME|FILE] [--speed X] [--loop]
                       [--shim PATH | --direct]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import tty
from pathlib import Path
from typing import IO, Any

from agent.bus.canlog import CanLog, LogError, TimedFrame, bus_label, candump_line, load_log
from agent.bus.errors import BusError
from agent.bus.profile import VehicleProfile, profile_bus, shipped_profiles
from agent.bus.reader import BusReader
from agent.bus.slcan import encode_frame
from agent.bus.state import ROLES, StateStore, Value, VehicleState
from agent.clock import SystemClock

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SHIM = REPO_ROOT / "firmware_shim" / "build" / "fleetnode-shim"


def register(subparsers: Any) -> None:
    bus = subparsers.add_parser(
        "bus",
        help="the vehicle bus: monitor roles on a serial port, replay CAN logs",
        description="The vehicle bus: SLCAN serial line -> DBC -> roles.",
    )
    sub = bus.add_subparsers(dest="bus_command", metavar="BUS_COMMAND")
    bus.set_defaults(func=lambda _args: (bus.print_help(), 2)[1])

    mon = sub.add_parser(
        "monitor",
        help="live view of every role, its value and its age",
        description="Read PORT (a UART or pty speaking SLCAN), decode with the profile and show "
        "every role with its value and age. Unknown, SNA and stale values show as unknown "
        "(null in JSON).",
    )
    mon.add_argument("--port", required=True, help="serial device, e.g. /dev/ttyACM0 or a pty")
    mon.add_argument(
        "--profile",
        default="reference",
        help=f"shipped profile name ({', '.join(shipped_profiles())}) or a path to a .toml",
    )
    mon.add_argument("--dbc", help="the car's DBC file (overrides the profile's own)")
    mon.add_argument("--json", action="store_true", help="one JSON object per line: role -> value")
    mon.add_argument("--count", type=int, help="exit after N views / JSON objects")
    mon.add_argument("--interval", type=float, default=0.5, help="seconds between views")
    mon.add_argument(
        "--silence-limit", type=float, default=1.0, help="seconds of silence = link down"
    )
    mon.set_defaults(func=cmd_monitor)

    rep = sub.add_parser(
        "replay",
        help="play a candump log or SavvyCAN CSV onto a pty through the shim",
        description="Play LOG (candump -L, or SavvyCAN GVRET CSV) at real or scaled speed. The "
        "frames go through the firmware shim's host build, whose pty is linked at PORT for the "
        "agent (or `bus monitor`) to open. A serial line carries one bus and a DBC describes one "
        "bus, so a log recorded on several buses (SavvyCAN's Bus column, candump's interface "
        "names) plays one of them, chosen with --bus or by the profile's [vehicle] bus; without "
        "either it is refused with the list of buses and their frame counts.",
    )
    rep.add_argument("log", help="candump log or SavvyCAN CSV file")
    rep.add_argument("--port", required=True, help="path to create as a link to the shim's pty")
    rep.add_argument(
        "--bus",
        help="the bus to play: a number (SavvyCAN's Bus column; 1 also picks can1 or vcan1 of "
        "a candump log) or an interface name as the log writes it (can1)",
    )
    rep.add_argument(
        "--profile",
        help="a profile (shipped name or .toml) whose [vehicle] bus names the bus to play; "
        "refused if it contradicts --bus",
    )
    rep.add_argument(
        "--speed", type=float, default=1.0, help="time scale: 2 = twice as fast, 0 = no waits"
    )
    rep.add_argument("--loop", action="store_true", help="start over at the end, until interrupted")
    rep.add_argument("--shim", help=f"the shim binary (default: $FLEETNODE_SHIM or {DEFAULT_SHIM})")
    rep.add_argument(
        "--direct",
        action="store_true",
        help="no shim: write SLCAN lines to a pty directly (for benches without the firmware build)",
    )
    rep.set_defaults(func=cmd_replay)


# --- monitor ------------------------------------------------------------------------------------


def role_values(profile: VehicleProfile, snap: VehicleState, now: float) -> dict[str, Value | None]:
    return {role: snap.value(role, now, profile.max_age(role)) for role in ROLES}


def render_table(
    profile: VehicleProfile,
    snap: VehicleState,
    now: float,
    counters: dict[str, int],
    last_error: str | None = None,
) -> str:
    link = "up" if snap.link.up else f"DOWN ({snap.link.reason})"
    bus = f" (bus {profile.bus})" if profile.bus is not None else ""
    lines = [
        f"profile {profile.name}{bus}   link {link}",
        f"{'role':<20} {'value':>12} {'age':>8}",
    ]
    for role in ROLES:
        value = snap.value(role, now, profile.max_age(role))
        age = snap.age(role, now)
        shown = (
            "unknown"
            if value is None
            else (f"{value:.2f}" if isinstance(value, float) else str(value))
        )
        if value is None and age is not None:
            shown = "stale"
        age_s = "-" if age is None else f"{age:.2f}s"
        if role not in profile.bindings:
            shown, age_s = "not mapped", ""
        lines.append(f"{role:<20} {shown:>12} {age_s:>8}")
    bad = {
        k: v for k, v in counters.items() if v and k not in ("bytes", "frames", "decoded_frames")
    }
    lines.append(
        f"frames {counters.get('frames', 0)}   decoded {counters.get('decoded_frames', 0)}   {bad}"
    )
    note = mismatch_note(counters, last_error)
    if note:
        lines.append(note)
    return "\n".join(lines)


def mismatch_note(counters: dict[str, int], last_error: str | None) -> str:
    """The line that reports frames of a DBC id with another length ("" when there is none)."""
    n = counters.get("length_mismatches", 0)
    if not n:
        return ""
    latest = f" (latest: {last_error})" if last_error else ""
    return f"{n} frame(s) with a length the DBC does not give, not decoded{latest}"


def cmd_monitor(args: argparse.Namespace) -> int:
    if args.count is not None and args.count < 1:
        print("fleetnode bus monitor: --count must be at least 1", file=sys.stderr)
        return 2
    try:
        profile = VehicleProfile.load(args.profile, args.dbc)
    except BusError as e:
        print(f"fleetnode bus monitor: {e}", file=sys.stderr)
        return 2
    clock = SystemClock()
    store = StateStore()
    reader = BusReader(args.port, profile, store, clock, silence_limit_s=args.silence_limit)
    reader.start()
    live = sys.stdout.isatty() and not args.json
    shown = 0
    mismatches_said = 0
    try:
        while args.count is None or shown < args.count:
            time.sleep(args.interval)
            now = clock.monotonic()
            snap = store.snapshot()
            counters = reader.counters
            if args.json:
                print(json.dumps(role_values(profile, snap, now)), flush=True)
                # JSON lines carry roles only: the length mismatches go to stderr when they grow.
                if counters["length_mismatches"] > mismatches_said:
                    mismatches_said = counters["length_mismatches"]
                    note = mismatch_note(counters, reader.last_decode_error)
                    print(f"fleetnode bus monitor: {note}", file=sys.stderr, flush=True)
            else:
                view = render_table(profile, snap, now, counters, reader.last_decode_error)
                print(("\x1b[H\x1b[J" if live else "") + view + ("" if live else "\n"), flush=True)
            shown += 1
    except BrokenPipeError:
        pass  # `| head` closed the pipe: a normal way to stop
    finally:
        reader.stop()
    return 0


# --- replay -------------------------------------------------------------------------------------


class ReplaySink:
    """Where replayed frames go: the shim's stdin (candump lines) or, with --direct, a pty."""

    def __init__(self, shim: str | None, direct: bool) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.master_fd = -1
        self.slave_fd = -1
        self.dropped = 0
        if direct:
            import pty

            self.master_fd, self.slave_fd = pty.openpty()
            tty.setraw(self.slave_fd)
            os.set_blocking(self.master_fd, False)
            self.slave_path = os.ttyname(self.slave_fd)
            return
        binary = shim or os.environ.get("FLEETNODE_SHIM") or str(DEFAULT_SHIM)
        if not (Path(binary).is_file() or shutil.which(binary)):
            raise LogError(
                f"shim binary {binary} not found: run `make firmware`, pass --shim, or use --direct"
            )
        self.proc = subprocess.Popen(
            [binary, "--exit-on-eof"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode(errors="replace").strip()
        if not line.startswith("/dev/"):
            self.close()
            raise LogError(f"shim did not report its pty (got {line!r})")
        self.slave_path = line
        # Keep reading the shim's stdout so it can never block on a full pipe.
        threading.Thread(target=self._drain, args=(self.proc.stdout,), daemon=True).start()

    @staticmethod
    def _drain(stream: IO[bytes]) -> None:
        while stream.read(4096):
            pass

    def send(self, tf: TimedFrame) -> None:
        if self.proc is not None:
            stdin: IO[bytes] | None = self.proc.stdin
            assert stdin is not None
            stdin.write(candump_line(tf).encode())
            stdin.flush()
            return
        try:
            os.write(self.master_fd, encode_frame(tf.frame))
        except BlockingIOError:
            self.dropped += 1  # nobody reads the port: a UART loses bytes the same way

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.stdin is not None:
                try:
                    self.proc.stdin.close()
                except BrokenPipeError:
                    pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait(timeout=5)
            self.proc = None
        for fd in (self.master_fd, self.slave_fd):
            if fd >= 0:
                os.close(fd)
        self.master_fd = self.slave_fd = -1


def link_port(port: Path, target: str) -> None:
    if port.exists() and not port.is_symlink():
        raise LogError(f"{port} exists and is not a link; refusing to replace it")
    tmp = port.with_name(port.name + ".replay-tmp")
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, port)


def schedule(log: CanLog, speed: float) -> list[float]:
    """When each frame goes out, in seconds after the start: the log's own spacing / speed.

    speed 0 sends everything at once; a log whose clock steps backwards sends that frame at once.
    """
    if speed <= 0:
        return [0.0] * len(log.frames)
    t0 = log.frames[0].t
    out: list[float] = []
    last = 0.0
    for tf in log.frames:
        last = max(last, (tf.t - t0) / speed)
        out.append(last)
    return out


def play(log: CanLog, sink: ReplaySink, speed: float, loop: bool) -> int:
    offsets = schedule(log, speed)
    sent = 0
    while True:
        start = time.monotonic()
        for tf, at in zip(log.frames, offsets):
            delay = at - (time.monotonic() - start)
            if delay > 0:
                time.sleep(delay)
            sink.send(tf)
            sent += 1
        if not loop:
            return sent


def _terminate(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # run the cleanup below: stop the shim, remove the port link


def pick_bus(
    log: CanLog, path: str, wanted: str | None, profile: str | None, expected: str | None
) -> CanLog:
    """The one bus of LOG to play: ``--bus`` (wanted) or the profile's bus (expected).

    Raises LogError listing the buses when the log holds several and neither names one, when the
    named bus is not in the log, or when --bus and the profile disagree.
    """
    buses = log.buses()
    if wanted is None and expected is None:
        if len(buses) > 1:
            raise LogError(
                f"{path} holds {len(buses)} buses: {log.describe_buses()}. A DBC describes one "
                "bus and buses reuse ids for other messages, so one bus is played: choose it "
                "with --bus N (or a --profile whose [vehicle] bus names it)"
            )
        return log
    chosen = log.resolve_bus(wanted) if wanted is not None else None
    try:
        from_profile = log.resolve_bus(expected) if expected is not None else None
    except LogError as e:
        if chosen is None:
            raise LogError(f"profile {profile}: {e}") from e
        from_profile = None  # reported as a disagreement below
    if expected is not None and chosen is not None and chosen != from_profile:
        raise LogError(
            f"--bus {wanted} is bus {bus_label(chosen)} of {path}, but profile {profile} expects "
            f"bus {expected}; the profile's DBC would decode another bus's frames"
        )
    bus = chosen if chosen is not None else from_profile
    assert bus is not None
    return log.select(bus)


def cmd_replay(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    if args.speed < 0:
        print("fleetnode bus replay: --speed must be >= 0", file=sys.stderr)
        return 2
    port = Path(args.port)
    try:
        log = load_log(args.log)
        expected = profile_bus(args.profile) if args.profile else None
        whole = log.describe_buses()
        unnamed = set(log.buses()) == {""}
        log = pick_bus(log, args.log, args.bus, args.profile, expected)
        sink = ReplaySink(args.shim, args.direct)
    except BusError as e:
        print(f"fleetnode bus replay: {e}", file=sys.stderr)
        return 2
    if unnamed and (args.bus is not None or expected is not None):
        print(
            f"fleetnode bus replay: {args.log} names no bus (one bus): playing all of it",
            file=sys.stderr,
        )
    if log.bad_lines:
        print(
            f"fleetnode bus replay: skipped {log.bad_lines} unreadable line(s) "
            f"(first: {log.bad_line_numbers})",
            file=sys.stderr,
        )
    try:
        link_port(port, sink.slave_path)
        bus = log.frames[0].bus
        of = f", bus {bus_label(bus)}; the log holds {whole}" if bus else ""
        print(
            f"replaying {len(log.frames)} frames ({log.fmt}{of}) on {port} -> {sink.slave_path}",
            flush=True,
        )
        sent = play(log, sink, args.speed, args.loop)
        print(
            f"sent {sent} frames"
            + (f", {sink.dropped} dropped (port not open)" if sink.dropped else "")
        )
    except (BusError, BrokenPipeError) as e:
        print(f"fleetnode bus replay: {e}", file=sys.stderr)
        return 1
    finally:
        sink.close()
        if port.is_symlink():
            port.unlink()
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m agent.bus.cli …`: the same commands without the rest of the agent."""
    parser = argparse.ArgumentParser(prog="fleetnode")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    args = parser.parse_args(["bus", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
