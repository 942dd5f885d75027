"""The state dir as a resource that fails: faults classified from the kernel's and SQLite's own
errors, the outbox and ledger committed together or not at all, one log line per change."""

from __future__ import annotations

import errno
import logging
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from agent.clock import FakeClock
from agent.fleet import protocol as p
from agent.fleet.outbox import ACCEPTED, Outbox
from agent.ledger import Ledger
from agent.runner.runner import JobOutcome, Outcome
from agent.storage import (
    BELOW_FLOOR,
    CORRUPT,
    FULL,
    IO_ERROR,
    READ_ONLY,
    StorageError,
    StorageMonitor,
    check_dir,
    classify,
)
from tests.fixtures.smallfs import Ext4Fs, SmallFs

T0 = 1_764_000_000.0


def result(job_id: str, size: int = 16) -> bytes:
    return p.JobResult(job_id, "car1", "ok", 1, [np.zeros(size, np.int8)]).encode()


def test_sqlite_and_os_errors_map_to_faults_and_bugs_do_not(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "x.sqlite", isolation_level=None)
    db.execute("CREATE TABLE t (b BLOB)")
    db.execute("PRAGMA max_page_count=3")  # SQLite's own SQLITE_FULL, without a full disk
    with pytest.raises(sqlite3.Error) as full:
        db.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
    ro = sqlite3.connect(f"file:{tmp_path / 'x.sqlite'}?mode=ro", uri=True)
    with pytest.raises(sqlite3.Error) as readonly:
        ro.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.Error) as bug:
        db.execute("SELEKT 1")
    f = classify(full.value, tmp_path)
    assert f is not None and f.kind == FULL and str(tmp_path) in f.text
    r = classify(readonly.value, tmp_path)
    assert r is not None and r.kind == READ_ONLY
    assert classify(bug.value, tmp_path) is None  # a bug stays a bug
    assert classify(OSError(errno.ENOSPC, "No space left on device", "/s/f"), tmp_path).kind == FULL  # type: ignore[union-attr]
    assert classify(OSError(errno.EROFS, "Read-only file system"), tmp_path).kind == READ_ONLY  # type: ignore[union-attr]
    assert classify(ValueError("x"), tmp_path) is None


def test_a_damaged_state_file_is_refused_at_open_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    box = Outbox(path)
    for i in range(50):
        box.accept(f"j{i}", "sub", T0)
        box.answer(f"j{i}", "t", lambda seq, i=i: result(f"j{i}", 500), T0)
    box.close()
    sqlite3.connect(path).execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    raw = bytearray(path.read_bytes())
    for page in range(1, len(raw) // 4096):  # scribble over every page but the header's
        raw[page * 4096 + 8: page * 4096 + 200] = b"\x5a" * 192
    path.write_bytes(bytes(raw))
    with pytest.raises(StorageError, match="state.sqlite") as e:
        Outbox(path)
    assert e.value.fault.kind == CORRUPT


def test_free_space_below_the_floor_is_a_fault_before_the_disk_is_full(small_fs: SmallFs) -> None:
    assert check_dir(small_fs.path, 1 << 20) is None
    fault = check_dir(small_fs.path, 64 << 20)  # more than the 8 MiB the filesystem has
    assert fault is not None and fault.kind == BELOW_FLOOR and str(small_fs.path) in fault.text


def test_on_a_full_disk_result_and_ledger_row_are_both_refused_then_both_stored(
        small_fs: SmallFs) -> None:
    path = small_fs.path / "state.sqlite"
    box, ledger = Outbox(path), Ledger(path)
    clock = FakeClock(start_wall=T0, start_mono=100.0)
    entry = ledger.entry(JobOutcome("j1", Outcome.DONE, b"", None, 90.0, 99.0, 2.0), clock)
    assert box.accept("j1", "sub", T0)
    small_fs.fill()
    assert check_dir(small_fs.path, 0).kind == FULL  # type: ignore[union-attr]
    with pytest.raises(StorageError) as e:
        for k in range(200):  # the WAL may hold a few free frames: a real result needs more
            box.answer("j1", "t", lambda seq: result("j1", 200_000), T0, entry.write)
            box.accept(f"filler{k}", "sub", T0)
    assert e.value.fault.kind == FULL
    small_fs.free()
    box2 = Outbox(path)  # what the disk holds, read by a fresh connection
    answered = box2.status("j1") != ACCEPTED
    rows = ledger.summary(T0 - 3600, T0 + 3600).outcomes
    assert answered == (rows == {"done": 1}), "result and ledger row go together"
    if not answered:
        assert box.answer("j1", "t", lambda seq: result("j1", 200_000), T0, entry.write) is not None
    assert box2.status("j1") != ACCEPTED and box2.depth() == 1
    assert ledger.summary(T0 - 3600, T0 + 3600).outcomes == {"done": 1}
    # Written again (a retry after the fault), the job still counts once.
    assert box.answer("j1", "t", lambda seq: result("j1"), T0, entry.write) is None
    with ledger._tx() as db:
        assert entry.write(db) is False
    assert ledger.summary(T0 - 3600, T0 + 3600).outcomes == {"done": 1}
    for part in (box, box2, ledger):
        part.close()


def test_a_failing_write_inside_the_transaction_leaves_neither_row(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    box, ledger = Outbox(path), Ledger(path)
    clock = FakeClock(start_wall=T0, start_mono=100.0)
    entry = ledger.entry(JobOutcome("j1", Outcome.DONE, b"", None, 90.0, 99.0, 2.0), clock)
    box.accept("j1", "sub", T0)

    def write_then_fail(db: sqlite3.Connection) -> None:
        entry.write(db)
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(StorageError):
        box.answer("j1", "t", lambda seq: result("j1"), T0, write_then_fail)
    assert box.status("j1") == ACCEPTED and box.depth() == 0
    assert ledger.summary(T0 - 3600, T0 + 3600).outcomes == {}
    box.close()
    ledger.close()


def test_a_full_disk_is_one_fault_then_writable_again(small_fs: SmallFs,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    box = Outbox(small_fs.path / "state.sqlite")
    now = [0.0]
    mon = StorageMonitor(small_fs.path, 0, probes=[box.probe], hold_s=1.0, monotonic=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="agent.storage")
    assert mon.check() is None
    small_fs.fill()
    for _ in range(3):
        fault = mon.check()
        assert fault is not None and fault.kind == FULL, fault
    with pytest.raises(StorageError) as e:
        for i in range(100):
            box.accept(f"j{i}", "sub" * 1000, T0)
    mon.report(e.value)  # a writer's report of the same fault says nothing new
    small_fs.free()
    assert mon.check() is not None  # a reported fault holds for hold_s
    now[0] += 1.5
    assert mon.check() is None and mon.fault_text is None
    assert box.accept("after", "sub", T0)
    lines = [r.getMessage() for r in caplog.records if r.name == "agent.storage"]
    assert len(lines) == 2 and "is full" in lines[0] and "written again" in lines[1], lines
    assert mon.changes == 2
    box.close()


def test_a_filesystem_the_kernel_turns_read_only_under_open_files_is_a_fault(
        ext4_fs: Ext4Fs) -> None:
    path = ext4_fs.path / "state.sqlite"
    box, ledger = Outbox(path), Ledger(path)
    mon = StorageMonitor(ext4_fs.path, 0, probes=[box.probe])
    assert box.accept("j1", "sub", T0) and mon.check() is None
    ext4_fs.fail()
    fault = mon.check()
    assert fault is not None and fault.kind in (READ_ONLY, IO_ERROR), fault
    with pytest.raises(StorageError):
        box.answer("j1", "t", lambda seq: result("j1"), T0)
    assert box.status("j1") == ACCEPTED and box.depth() == 0  # reads still work
    assert ledger.summary(T0 - 3600, T0 + 3600).outcomes == {}
    box.close()
    ledger.close()


def test_the_outbox_and_ledger_files_of_an_older_agent_are_taken_over_once(tmp_path: Path) -> None:
    old_box, old_ledger = Outbox(tmp_path / "outbox.sqlite"), Ledger(tmp_path / "ledger.sqlite")
    for j in ("sent", "pending"):
        old_box.accept(j, "sub", T0)
        old_box.answer(j, "t", lambda seq, j=j: result(j), T0)
    old_box.acknowledge(["sent"])
    old_box.accept("running", "sub", T0)
    old_ledger.record_job("sent", Outcome.DONE, T0, T0 + 60, 5.0)
    old_box.close()
    old_ledger.close()
    box, ledger = Outbox(tmp_path / "state.sqlite"), Ledger(tmp_path / "state.sqlite")
    assert box.adopt(tmp_path / "outbox.sqlite") > 0 and ledger.adopt(tmp_path / "ledger.sqlite") > 0
    assert [r.job_id for r in box.due(0.0, 10)] == ["pending"]  # still owed to the fleet
    assert box.accepted() == [("running", "sub")]  # answered "preempted" when the link starts
    assert box.status("sent") != ACCEPTED and box.accept("sent", "sub", T0) is False
    assert ledger.summary(T0 - 3600, T0 + 3600).outcomes == {"done": 1}
    seq = box.answer("running", "t", lambda seq: result("running"), T0)
    assert seq == 3  # numbering goes on from the old outbox
    assert not (tmp_path / "outbox.sqlite").exists() and (tmp_path / "outbox.sqlite.adopted").exists()
    assert not (tmp_path / "ledger.sqlite").exists()
    box.close()
    ledger.close()
