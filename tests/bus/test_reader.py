"""BusReader on real ptys: frames become roles, an unplugged pty drops the link at once, a pty
plugged back (the port path now pointing at a new pty, as udev's by-id links do) brings it back."""

from __future__ import annotations

import os
import select
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from agent.bus.profile import VehicleProfile
from agent.bus.reader import BusReader
from agent.bus.slcan import CanFrame, encode_frame
from agent.bus.state import StateStore, Value
from agent.clock import FakeClock
from tests.bus.helpers import PARKED_CHARGING, wait_for_state, wait_until
from tests.fixtures.pty import PtyPair, open_pty

OPEN_SEQ = b"\r\rC\rS6\rZ0\rL\r"  # flush, close, 500 kbit/s, no timestamps, listen-only


@pytest.fixture(scope="module")
def profile() -> VehicleProfile:
    return VehicleProfile.load("reference")


def car_bytes(profile: VehicleProfile, **changes: object) -> bytes:
    state = dict(PARKED_CHARGING, **changes)
    return b"".join(encode_frame(f) for f in profile.encode(state))  # type: ignore[arg-type]


def read_master(pair: PtyPair, want: int, timeout: float = 2.0) -> bytes:
    got = b""
    while len(got) < want:
        ready, _, _ = select.select([pair.master_fd], [], [], timeout)
        if not ready:
            break
        got += os.read(pair.master_fd, 1024)
    return got


class Rig:
    """A reader on a symlinked port, so tests can unplug and plug a different pty back."""

    def __init__(self, tmp: Path, profile: VehicleProfile, silence_limit_s: float = 1.0) -> None:
        self.link = tmp / "ttyFLEET"
        self.clock = FakeClock()
        self.store = StateStore()
        self.pairs: list[PtyPair] = []
        self.reader = BusReader(
            str(self.link),
            profile,
            self.store,
            self.clock,
            silence_limit_s=silence_limit_s,
            backoff_initial_s=0.01,
            backoff_max_s=0.05,
        )

    def plug(self) -> PtyPair:
        pair = open_pty()
        self.pairs.append(pair)
        tmp_link = self.link.with_suffix(".new")
        os.symlink(pair.slave_path, tmp_link)
        os.replace(tmp_link, self.link)
        return pair

    def start_with_car(self, profile: VehicleProfile) -> PtyPair:
        """Plug a pty, start the reader, send a parked car and wait until it is decoded."""
        pair = self.plug()
        self.reader.start()
        wait_for_state(self.store, lambda s: s.link.up)  # pyserial flushes input on open
        pair.write(car_bytes(profile))
        wait_for_state(self.store, lambda s: s.value("gear", self.clock.monotonic()) == "P")
        return pair

    def unplug(self) -> None:
        self.pairs[-1].close_master()
        self.link.unlink()

    def close(self) -> None:
        self.reader.stop()
        for p in self.pairs:
            p.close()


@pytest.fixture
def rig(tmp_path: Path, profile: VehicleProfile) -> Iterator[Rig]:
    r = Rig(tmp_path, profile)
    yield r
    r.close()


def test_frames_become_roles(rig: Rig, profile: VehicleProfile) -> None:
    rig.start_with_car(profile)
    now = rig.clock.monotonic
    snap = wait_for_state(rig.store, lambda s: None not in s.as_dict(now()).values())
    assert snap.as_dict(now()) == PARKED_CHARGING
    assert rig.reader.counters["decoded_frames"] == len(profile.frame_ids)


def test_sends_listen_only_open_sequence(rig: Rig) -> None:
    pair = rig.plug()
    rig.reader.start()
    assert read_master(pair, len(OPEN_SEQ)) == OPEN_SEQ


def test_sna_reads_unknown_and_garbage_is_counted(rig: Rig, profile: VehicleProfile) -> None:
    pair = rig.start_with_car(profile)
    now = rig.clock.monotonic
    pair.write(b"t10\rxyz\rt1028" + b"Q" * 16 + b"\r" + b"t10\x07" + car_bytes(profile, gear=None))
    wait_for_state(rig.store, lambda s: s.value("gear", now()) is None and s.link.up)
    c = rig.reader.counters
    assert (c["bad_length"], c["unknown_type"], c["bad_hex"], c["bel_with_data"]) == (1, 1, 1, 1)
    assert rig.store.snapshot().value("soc_percent", now()) == PARKED_CHARGING["soc_percent"]


def test_short_payload_is_a_decode_error_not_a_crash(rig: Rig) -> None:
    pair = rig.plug()
    rig.reader.start()
    wait_for_state(rig.store, lambda s: s.link.up)  # pyserial flushes input on open
    pair.write(b"t1022AABB\r")
    wait_until(lambda: rig.reader.counters["decode_errors"] == 1)
    assert rig.reader.running


def test_unplug_drops_link_at_once_and_plug_back_restores_it(
    rig: Rig, profile: VehicleProfile
) -> None:
    rig.start_with_car(profile)
    now = rig.clock.monotonic

    rig.unplug()
    # The fake clock does not move: the link can only drop because the reader saw EIO, not
    # because a silence timer ran out.
    snap = wait_for_state(rig.store, lambda s: not s.link.up)
    assert snap.readings == {}  # no reading survives a lost link
    assert rig.reader.counters["link_lost"] == 1
    # By now the reader may already be retrying the vanished path.
    assert "lost" in snap.link.reason or "cannot open" in snap.link.reason

    pair2 = rig.plug()
    wait_for_state(rig.store, lambda s: s.link.up, timeout=5.0)
    assert read_master(pair2, len(OPEN_SEQ)) == OPEN_SEQ
    pair2.write(car_bytes(profile, soc_percent=40.0))
    wait_for_state(rig.store, lambda s: s.value("soc_percent", now()) == 40.0)
    assert rig.reader.counters["connects"] == 2


def test_missing_port_then_plugged(rig: Rig, profile: VehicleProfile) -> None:
    rig.reader.start()
    snap = wait_for_state(rig.store, lambda s: "cannot open" in s.link.reason)
    assert not snap.link.up
    wait_until(lambda: rig.reader.counters["open_failures"] >= 2)  # it keeps retrying
    pair = rig.plug()
    wait_for_state(rig.store, lambda s: s.link.up)
    pair.write(car_bytes(profile))
    wait_for_state(rig.store, lambda s: s.value("gear", rig.clock.monotonic()) == "P")


def test_silent_shim_sets_link_down_and_data_brings_it_back(
    rig: Rig, profile: VehicleProfile
) -> None:
    pair = rig.plug()
    rig.reader.start()
    wait_for_state(rig.store, lambda s: s.link.up)
    rig.clock.advance(1.5)
    snap = wait_for_state(rig.store, lambda s: not s.link.up)
    assert "silent" in snap.link.reason
    pair.write(car_bytes(profile))
    wait_for_state(rig.store, lambda s: s.link.up and s.value("gear", rig.clock.monotonic()) == "P")
    assert rig.reader.counters["silences"] == 1


def test_stale_values_read_unknown(rig: Rig, profile: VehicleProfile) -> None:
    rig.start_with_car(profile)
    now = rig.clock.monotonic
    rig.clock.advance(profile.max_age("gear") + 0.1)
    snap = rig.store.snapshot()
    assert snap.value("gear", now(), profile.max_age("gear")) is None
    assert snap.value("pack_temp_max_c", now(), profile.max_age("pack_temp_max_c")) == 24.0


def test_stop_is_prompt_and_reports_link_down(rig: Rig) -> None:
    rig.plug()
    rig.reader.start()
    wait_for_state(rig.store, lambda s: s.link.up)
    rig.reader.stop(timeout=2.0)
    assert not rig.reader.running
    assert not rig.store.snapshot().link.up


class _BrokenProfile(VehicleProfile):
    """The reference profile with a decoder bug on one id, to exercise the reader's supervision."""

    def decode(self, frame: CanFrame) -> dict[str, Value | None]:
        if frame.arb_id == 0x666:
            raise RuntimeError("decoder bug")
        return super().decode(frame)


def test_a_fault_inside_the_reader_drops_the_link_and_recovers(tmp_path: Path) -> None:
    ref = VehicleProfile.load("reference")
    broken = _BrokenProfile(ref.name, ref.path, ref.dbc_path, ref.db, ref.bitrate, ref.bindings)
    rig = Rig(tmp_path, broken)
    try:
        pair = rig.start_with_car(broken)
        pair.write(b"t6660\r")
        snap = wait_for_state(rig.store, lambda s: not s.link.up)
        assert "decoder bug" in snap.link.reason
        # The reader reconnects on its own and keeps decoding.
        wait_for_state(rig.store, lambda s: s.link.up)
        pair.write(car_bytes(broken))
        wait_for_state(rig.store, lambda s: s.value("gear", rig.clock.monotonic()) == "P")
        assert rig.reader.counters["reader_faults"] == 1
        assert rig.reader.running
    finally:
        rig.close()


def test_last_progress_moves_without_data(rig: Rig) -> None:
    """What a systemd watchdog checks: the reader loop turns even on a quiet bus."""
    rig.plug()
    rig.reader.start()
    wait_for_state(rig.store, lambda s: s.link.up)
    rig.clock.advance(0.3)  # below the silence limit: the link stays up
    wait_until(lambda: rig.reader.last_progress == rig.clock.monotonic())
    assert rig.store.snapshot().link.up


class _SharedPort:
    """A real pty's Serial whose reads first fail as pyserial's do when another reader of the
    same port took the bytes select() announced (`fleetnode doctor` beside a running agent)."""

    def __init__(self, ser: object, stolen_reads: int) -> None:
        self._ser = ser
        self.stolen_reads = stolen_reads

    def read(self, size: int = 1) -> bytes:
        if self.stolen_reads > 0:
            self.stolen_reads -= 1
            raise serial.SerialException("device reports readiness to read but returned no data "
                                         "(device disconnected or multiple access on port?)")
        return self._ser.read(size)  # type: ignore[attr-defined, no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self._ser, name)


def _shared_rig(tmp_path: Path, profile: VehicleProfile, stolen_reads: int) -> tuple[Rig, list[_SharedPort]]:
    rig = Rig(tmp_path, profile)
    ports: list[_SharedPort] = []

    def factory(*args: object, **kw: object) -> _SharedPort:
        ports.append(_SharedPort(serial.Serial(*args, **kw), stolen_reads))
        return ports[-1]

    rig.reader._serial_factory = factory
    return rig, ports


def test_a_second_reader_of_the_port_is_contention_not_a_lost_link(tmp_path: Path, profile: VehicleProfile) -> None:
    rig, _ = _shared_rig(tmp_path, profile, stolen_reads=3)
    try:
        pair = rig.plug()
        rig.reader.start()
        wait_until(lambda: rig.reader.counters["read_contention"] == 3)
        pair.write(car_bytes(profile, soc_percent=55.0))
        wait_for_state(rig.store, lambda s: s.link.up and s.value("soc_percent", rig.clock.monotonic()) == 55.0)
        counters = rig.reader.counters
        assert counters["link_lost"] == 0 and counters["connects"] == 1, counters
    finally:
        rig.close()


def test_empty_reads_that_never_end_drop_the_link(tmp_path: Path, profile: VehicleProfile) -> None:
    # A device node that stays but only ever reads empty (a hung-up port) is lost after the limit.
    rig, _ = _shared_rig(tmp_path, profile, stolen_reads=10**9)
    try:
        rig.plug()
        rig.reader.start()
        # then it reconnects (and the link goes up again until the next limit): count, not look
        wait_until(lambda: rig.reader.counters["connects"] >= 2, timeout=5.0)
        assert rig.reader.counters["link_lost"] >= 1 and rig.reader.counters["read_contention"] >= 2
    finally:
        rig.close()


def test_empty_reads_of_a_vanished_device_drop_the_link_at_once(tmp_path: Path, profile: VehicleProfile) -> None:
    rig, ports = _shared_rig(tmp_path, profile, stolen_reads=0)
    try:
        rig.start_with_car(profile)
        rig.link.unlink()  # the node is gone: an empty read now means the device is
        ports[-1].stolen_reads = 10**9
        wait_for_state(rig.store, lambda s: not s.link.up)
        assert rig.reader.counters["link_lost"] == 1 and rig.reader.counters["read_contention"] == 0
    finally:
        rig.close()
