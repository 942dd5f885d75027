"""The serial reader: the shim's SLCAN line -> frames -> roles -> StateStore, on its own thread.

It never blocks the agent (everything runs on one daemon thread; the rest of the agent only takes
StateStore snapshots), reports a lost link at once (EOF/EIO/ENOENT set the link down before the
next read), reconnects with exponential backoff, sends the SLCAN open sequence (listen-only) on
every connect, and marks the link down when the shim stays silent longer than a limit.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import serial

from agent.bus.errors import DecodeError, LengthMismatchError
from agent.bus.profile import VehicleProfile
from agent.bus.slcan import SlcanParser, open_sequence
from agent.bus.state import StateStore
from agent.clock import Clock

READER_COUNTERS = (
    "bytes",
    "decoded_frames",  # frames that carried at least one role
    "ignored_frames",  # well-formed frames with an id the profile does not use
    "decode_errors",  # frames with a known id whose payload the DBC cannot decode (every reason)
    "length_mismatches",  # of those, a DBC id with another length: a second bus, or the wrong DBC
    "connects",
    "open_failures",
    "link_lost",  # the open port failed (EOF, EIO, device gone)
    "read_contention",  # a readable port gave no bytes while its device stayed: another reader took them
    "silences",  # the port stayed open but the shim sent nothing for silence_limit_s
    "reader_faults",  # unexpected exceptions inside the reader (then it reconnects)
)

SerialFactory = Callable[..., Any]

# pyserial's words when select() said readable and read() returned nothing: the device is gone,
# or a second reader of the same port (`fleetnode doctor`, a person with `cat`) took the bytes.
_NO_DATA = "returned no data"
# How long a port whose device node is still there may keep giving nothing before the link
# counts as lost (a hung-up device that stays in /dev looks like that forever).
CONTENTION_LIMIT_S = 1.0


class BusReader:
    """Reads one serial port into a StateStore until ``stop``.

    Args:
        port: the serial device (a UART, or the slave side of a pty); may be a symlink that
            disappears and comes back, as udev's /dev/serial/by-id links do.
        profile: maps frames to roles.
        store: receives role values and the link status.
        clock: stamps readings and measures silence (monotonic seconds).
        silence_limit_s: no byte for this long on an open port sets the link down.
        backoff_initial_s, backoff_max_s: reconnect delays (real seconds), doubling per failure.
        timestamps: ask the adapter for its ``Z1`` millisecond timestamps.
    """

    def __init__(
        self,
        port: str,
        profile: VehicleProfile,
        store: StateStore,
        clock: Clock,
        *,
        silence_limit_s: float = 1.0,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        read_timeout_s: float = 0.02,
        baudrate: int = 115_200,
        timestamps: bool = False,
        serial_factory: SerialFactory = serial.Serial,
    ) -> None:
        self.port = port
        self.profile = profile
        self.store = store
        self.clock = clock
        self.silence_limit_s = silence_limit_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.read_timeout_s = read_timeout_s
        self.baudrate = baudrate
        self.timestamps = timestamps
        self._serial_factory = serial_factory
        self.parser = SlcanParser()
        self._counters: dict[str, int] = dict.fromkeys(READER_COUNTERS, 0)
        # The latest decode error's text, for people: which message, which length.
        self.last_decode_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ser: Any = None
        self._ser_lock = threading.Lock()
        # Monotonic time of the reader thread's latest loop, with or without data (it loops at
        # least every read_timeout_s, or every backoff delay). A watchdog compares it with now:
        # a thread that is alive but stuck stops moving it.
        self.last_progress: float | None = None

    @property
    def counters(self) -> dict[str, int]:
        """A copy of every counter: the reader's and the SLCAN parser's rejection counters."""
        out = dict(self._counters)
        out.update(self.parser.counters)
        return out

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("BusReader already started")
        self._thread = threading.Thread(
            target=self._run, name=f"bus-reader {self.port}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        with self._ser_lock:
            ser = self._ser
        if ser is not None:
            try:
                ser.cancel_read()
            except (serial.SerialException, OSError, AttributeError, TypeError):
                pass  # the port may be half-closed already; stopping must not fail
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- the thread -----------------------------------------------------------------------------

    def _link_down(self, reason: str) -> None:
        self.store.set_link(False, reason, self.clock.monotonic())

    def _run(self) -> None:
        backoff = self.backoff_initial_s
        while not self._stop.is_set():
            self.last_progress = self.clock.monotonic()
            ser = self._open()
            if ser is None:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            backoff = self.backoff_initial_s
            try:
                self._serve(ser)
            except Exception as e:  # noqa: BLE001 -- a bug must not leave the link "up" with no reader
                self._counters["reader_faults"] += 1
                self._link_down(f"bus reader fault: {type(e).__name__}: {e}")
                self._stop.wait(backoff)
            finally:
                with self._ser_lock:
                    self._ser = None
                try:
                    ser.close()
                except (serial.SerialException, OSError):
                    pass  # closing a vanished device can fail; nothing is left to release
                self.parser.reset()
        self._link_down("bus reader stopped")

    def _open(self) -> Any:
        try:
            ser = self._serial_factory(
                self.port, baudrate=self.baudrate, timeout=self.read_timeout_s
            )
            ser.write(open_sequence(self.profile.bitrate, self.timestamps))
        except (serial.SerialException, OSError, ValueError) as e:
            self._counters["open_failures"] += 1
            self._link_down(f"cannot open {self.port}: {e}")
            return None
        with self._ser_lock:
            self._ser = ser
        self._counters["connects"] += 1
        self.store.set_link(True, "", self.clock.monotonic())
        return ser

    def _shared_read(self, e: BaseException) -> bool:
        """A readable port gave no bytes and its device is still there: another reader of the
        same port took them (a vanished device also reads empty, but its node is gone)."""
        return isinstance(e, serial.SerialException) and _NO_DATA in str(e) and os.path.exists(self.port)

    def _serve(self, ser: Any) -> None:
        parser, profile, store, counters = self.parser, self.profile, self.store, self._counters
        last_rx = self.clock.monotonic()
        silent = False
        contended = 0.0  # real monotonic time of the first of consecutive shared reads, or 0
        while not self._stop.is_set():
            try:
                waiting = ser.in_waiting
                data = ser.read(waiting if waiting else 1)
            except (serial.SerialException, OSError, TypeError, AttributeError) as e:
                # TypeError/AttributeError: pyserial's read on a port closed under it by stop().
                if self._stop.is_set():
                    return
                if self._shared_read(e):
                    counters["read_contention"] += 1
                    contended = contended or time.monotonic()
                    if time.monotonic() - contended < CONTENTION_LIMIT_S:
                        self.last_progress = self.clock.monotonic()
                        self._stop.wait(self.read_timeout_s)  # the other reader drains its bytes
                        continue
                counters["link_lost"] += 1
                self._link_down(f"serial link lost on {self.port}: {e}")
                return
            contended = 0.0
            now = self.clock.monotonic()
            self.last_progress = now
            if not data:
                if not silent and now - last_rx > self.silence_limit_s:
                    silent = True
                    counters["silences"] += 1
                    self._link_down(f"shim silent for more than {self.silence_limit_s:g} s")
                continue
            last_rx = now
            if silent:
                silent = False
                store.set_link(True, "", now)
            counters["bytes"] += len(data)
            for frame in parser.feed(data):
                try:
                    values = profile.decode(frame)
                except DecodeError as e:
                    counters["decode_errors"] += 1
                    if isinstance(e, LengthMismatchError):
                        counters["length_mismatches"] += 1
                    self.last_decode_error = str(e)
                    continue
                if values:
                    counters["decoded_frames"] += 1
                    store.update_many(values, now)
                else:
                    counters["ignored_frames"] += 1
