"""The car's state dir as a resource that can fail: full, read-only, I/O errors, low on space.

Owns the vocabulary of storage faults and the watch on the state dir. Every writer of the car's
state (the outbox and ledger database, the audit log) turns an SQLite or OS error that means
"the disk cannot take this write" into a `StorageError`, reports it to a `StorageMonitor`, and
keeps what it could not write in memory or declines the work. The monitor probes the dir about
once a second (free space against a floor, a small write with fsync, a write transaction on
each database it is given), holds the current `StorageFault` or None, and logs one line per
change. The governor sees only its text (Inputs.storage_fault) and answers STANDBY.

SQLite reports such faults as SQLITE_FULL, SQLITE_IOERR (and its extended codes), SQLITE_READONLY
and SQLITE_CANTOPEN; they are states of the disk, not bugs, so nothing here raises them further
as tracebacks.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FULL, READ_ONLY, IO_ERROR, BELOW_FLOOR, NO_ACCESS, CORRUPT = (
    "full", "read_only", "io_error", "below_floor", "no_access", "corrupt")

# Primary SQLite result codes (the low byte of an extended code), from sqlite3.h.
_SQLITE_KINDS = {8: READ_ONLY, 10: IO_ERROR, 13: FULL, 14: NO_ACCESS, 11: CORRUPT, 26: CORRUPT,
                 3: NO_ACCESS}  # SQLITE_READONLY, IOERR, FULL, CANTOPEN, CORRUPT, NOTADB, PERM
_ERRNO_KINDS = {errno.ENOSPC: FULL, errno.EDQUOT: FULL, errno.EROFS: READ_ONLY, errno.EIO: IO_ERROR,
                errno.EACCES: NO_ACCESS, errno.EPERM: NO_ACCESS, errno.ENOTDIR: NO_ACCESS,
                errno.EFBIG: FULL, errno.ENOENT: NO_ACCESS}
_WORDS = {FULL: "is full", READ_ONLY: "is read-only", IO_ERROR: "has I/O errors",
          BELOW_FLOOR: "is below its free-space floor", NO_ACCESS: "cannot be opened or written"}


@dataclass(frozen=True)
class StorageFault:
    kind: str  # one of FULL, READ_ONLY, IO_ERROR, BELOW_FLOOR, NO_ACCESS, CORRUPT
    path: str  # the file or directory that failed
    detail: str  # the OS's or SQLite's words

    @property
    def text(self) -> str:
        if self.kind == CORRUPT:  # the path names the file
            return f"the state file {self.path} is damaged ({self.detail})"
        return f"the state dir {self.path} {_WORDS.get(self.kind, 'fails')} ({self.detail})"


class StorageError(Exception):
    """A write (or open) of the car's state failed because of the disk, not because of a bug."""

    def __init__(self, fault: StorageFault) -> None:
        super().__init__(fault.text)
        self.fault = fault


def classify(exc: BaseException, path: str | Path) -> StorageFault | None:
    """The storage fault an exception means, or None when it means something else (a bug)."""
    if isinstance(exc, StorageError):
        return exc.fault
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        kind = _SQLITE_KINDS.get(code & 0xFF) if isinstance(code, int) else None
        if kind is None:
            text = str(exc).lower()  # sqlite3.connect() and executescript() may carry no code
            kind = FULL if "full" in text else READ_ONLY if "readonly" in text or "read-only" in text \
                else IO_ERROR if "i/o error" in text else NO_ACCESS if "unable to open" in text \
                else CORRUPT if "malformed" in text or "not a database" in text else None
        return None if kind is None else StorageFault(kind, str(path), str(exc))
    if isinstance(exc, OSError) and exc.errno in _ERRNO_KINDS:
        return StorageFault(_ERRNO_KINDS[exc.errno], str(exc.filename or path), exc.strerror or str(exc))
    return None


def storage_error(exc: BaseException, path: str | Path) -> StorageError | None:
    fault = classify(exc, path)
    return None if fault is None else StorageError(fault)


def free_bytes(path: str | Path) -> int:
    """Free space an unprivileged writer may use in the filesystem holding `path`. Raises OSError."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def check_dir(path: str | Path, floor_bytes: int, write: bool = True) -> StorageFault | None:
    """Can `path` take writes now? Creates it if missing; checks the free space and, with
    `write`, a small synced write."""
    d = Path(path)
    try:
        d.mkdir(parents=True, exist_ok=True)
        free = free_bytes(d)
        if free == 0:
            return StorageFault(FULL, str(d), "no free blocks")
        if free < floor_bytes:
            return StorageFault(BELOW_FLOOR, str(d), f"{free} bytes free, the floor is {floor_bytes}")
        if not write:
            return None
        probe = d / ".write-probe"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"fleetnode write probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return classify(e, d) or StorageFault(IO_ERROR, str(d), str(e))
    return None


def open_read_only(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to a state database, safe beside the agent writing it (WAL): for
    `fleetnode doctor`. In a read-only dir with no -shm to create and no -wal to replay (the
    agent stopped cleanly) it opens the file as immutable. Raises sqlite3.Error."""
    p = Path(path).resolve()
    if not p.is_file():
        raise sqlite3.OperationalError(f"unable to open database file: {p} does not exist")
    try:
        db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=2.0)
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError:
        if Path(f"{p}-wal").exists() or os.access(p.parent, os.W_OK):
            raise
    db = sqlite3.connect(f"file:{p}?mode=ro&immutable=1", uri=True, timeout=2.0)
    db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    return db


def check_state_file(path: str | Path) -> str | None:
    """What is wrong with a state database (None: nothing): SQLite's integrity check, read-only."""
    try:
        db = open_read_only(path)
        try:
            problems = [str(r[0]) for r in db.execute("PRAGMA integrity_check(5)")]
        finally:
            db.close()
    except sqlite3.Error as e:
        return f"cannot read: {e}"
    return None if problems == ["ok"] else "integrity check: " + "; ".join(problems[:3])


class StorageMonitor:
    """Watches the state dir; `fault` is the current fault or None. Thread-safe.

    Args:
        path: the state dir.
        floor_bytes: below this much free space the dir counts as unusable.
        probes: write checks on the databases kept there (each raises on failure).
        interval_s: how often the watch thread looks while healthy; faults are also reported
            by the writers through `report`, so they take effect at once.
        on_change: called with the new fault (or None) after each change.
        hold_s: a fault a writer reported holds at least this long, so a disk that takes the
            probe's small write but not a result's large one does not flap.
        write_probe_s: while healthy, the write probes run this often (each costs an fsync on
            the car's flash); free space is looked at every interval, and while faulty both.
    """

    def __init__(self, path: str | Path, floor_bytes: int, probes: Sequence[Callable[[], None]] = (),
                 interval_s: float = 1.0,
                 on_change: Callable[[StorageFault | None], None] | None = None,
                 hold_s: float = 2.0, monotonic: Callable[[], float] = time.monotonic,
                 write_probe_s: float = 30.0) -> None:
        self.path = Path(path)
        self.floor_bytes = floor_bytes
        self.probes = list(probes)
        self.interval_s = interval_s
        self.on_change = on_change
        self.hold_s = hold_s
        self.write_probe_s = write_probe_s
        self._last_write_probe: float | None = None
        self._monotonic = monotonic
        self._reported_at: float | None = None
        self.changes = 0
        self.reports = 0  # failed writes reported by the writers
        self._fault: StorageFault | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def fault(self) -> StorageFault | None:
        with self._lock:
            return self._fault

    @property
    def fault_text(self) -> str | None:
        f = self.fault
        return None if f is None else f.text

    def check(self, write: bool = True) -> StorageFault | None:
        """Look now: the dir's free space and, with `write`, a synced write and each database
        probe. Sets and returns the fault."""
        if write:
            self._last_write_probe = self._monotonic()
        fault = check_dir(self.path, self.floor_bytes, write)
        for probe in self.probes if write else ():
            if fault is not None:
                break
            try:
                probe()
            except Exception as e:  # noqa: BLE001 -- any failure of a probe write is a fault
                fault = classify(e, self.path) or StorageFault(IO_ERROR, str(self.path), repr(e))
        with self._lock:
            held = self._reported_at is not None and \
                self._monotonic() - self._reported_at < self.hold_s
            if fault is None and held:
                return self._fault
        self._set(fault)
        return fault

    def report(self, exc: StorageError) -> None:
        """A writer failed: the fault holds until a later check finds the dir writable."""
        with self._lock:
            self.reports += 1
            self._reported_at = self._monotonic()
            if self._fault is not None:
                return  # already said; the first cause stays the one shown
        self._set(exc.fault)

    def _set(self, fault: StorageFault | None) -> None:
        with self._lock:
            before, self._fault = self._fault, fault
            # One line per change between usable and not: a disk that is full and then also
            # read-only is one episode (the text shown follows the latest cause).
            changed = (before is None) != (fault is None)
            if changed:
                self.changes += 1
        if not changed:
            return
        if fault is not None:
            log.warning("storage: %s: taking no jobs until it can be written", fault.text)
        else:
            log.warning("storage: the state dir %s can be written again", self.path)
        if self.on_change is not None:
            try:
                self.on_change(fault)
            except Exception:
                log.exception("storage: on_change failed")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="storage", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            last = self._last_write_probe
            write = self.fault is not None or last is None \
                or self._monotonic() - last >= self.write_probe_s
            try:
                self.check(write)
            except Exception:  # the watch must outlive a surprise; the next look tries again
                log.exception("storage: check failed")
            # Faster while faulty, so the agent resumes within about a second of the disk.
            self._stop.wait(self.interval_s if self.fault is None else min(self.interval_s, 0.5))


def open_state_db(path: Path, schema: str) -> sqlite3.Connection:
    """Open (or create) a state database the way SQLite asks for durable data: WAL, and
    synchronous=FULL so a committed transaction survives a power cut, not only a killed process.
    Checks its integrity first. Raises StorageError naming the file and the cause."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10.0)
    except (OSError, sqlite3.Error) as e:
        raise _as_storage(e, path) from e
    try:
        problems = [str(r[0]) for r in db.execute("PRAGMA integrity_check(5)")]
        if problems != ["ok"]:
            raise StorageError(StorageFault(CORRUPT, str(path), "; ".join(problems)))
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(schema)
    except (OSError, sqlite3.Error) as e:
        db.close()
        raise _as_storage(e, path) from e
    except StorageError:
        db.close()
        raise
    return db


def _as_storage(e: BaseException, path: Path) -> StorageError:
    return storage_error(e, path) or StorageError(StorageFault(IO_ERROR, str(path), str(e)))


class Transaction:
    """One write transaction under the lock. A failure the disk caused rolls back and raises
    StorageError; anything else (a bug) rolls back and propagates as it is."""

    def __init__(self, lock: threading.Lock, db: sqlite3.Connection, path: Path,
                 write: bool = True) -> None:
        self._lock = lock
        self._db = db
        self._path = path
        # A read takes no write lock, so it works on a full or read-only disk.
        self._begin = "BEGIN IMMEDIATE" if write else "BEGIN DEFERRED"


    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute(self._begin)
        except sqlite3.Error as e:
            self._lock.release()
            raise _as_storage(e, self._path) from e
        return self._db

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            if exc is None:
                try:
                    self._db.execute("COMMIT")
                    return
                except sqlite3.Error as e:
                    self._rollback()
                    raise _as_storage(e, self._path) from e
            self._rollback()
            if isinstance(exc, sqlite3.Error):
                err = storage_error(exc, self._path)
                if err is not None:
                    raise err from exc
        finally:
            self._lock.release()

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite has already rolled back (e.g. after SQLITE_FULL)


def adopt_tables(db: sqlite3.Connection, lock: threading.Lock, path: Path, legacy: Path,
                 tables: Sequence[str], then: Sequence[str] = ()) -> int:
    """Copy `tables` from the database file `legacy` into `db` (same schemas), rows whose key
    is already there kept as they are, and run the statements `then` (which may read
    `legacy.*`), in one transaction; then rename `legacy` to `<name>.adopted`. Idempotent: a
    crash before the rename copies nothing twice. Returns the rows copied. Raises StorageError."""
    with lock:
        try:
            db.execute("ATTACH DATABASE ? AS legacy", (str(legacy),))
        except sqlite3.Error as e:
            raise _as_storage(e, legacy) from e
    try:
        with Transaction(lock, db, path) as tx:
            have = {str(r[0]) for r in tx.execute(
                "SELECT name FROM legacy.sqlite_master WHERE type='table'")}
            n = 0
            for t in tables:
                if t in have:
                    n += tx.execute(f"INSERT OR IGNORE INTO main.{t} SELECT * FROM legacy.{t}").rowcount
            for sql in then:
                tx.execute(sql)
    finally:
        with lock:
            db.execute("DETACH DATABASE legacy")
    for suffix in ("", "-wal", "-shm"):
        old = Path(f"{legacy}{suffix}")
        if old.exists():
            try:
                old.replace(Path(f"{legacy}{suffix}.adopted"))
            except OSError as e:
                raise _as_storage(e, old) from e
    return n
