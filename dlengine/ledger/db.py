"""Opening the ledger: WAL mode, pragmas, numbered migrations."""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from dlengine.config import make_home
from dlengine.errors import ConfigError, ErrorCode, LedgerError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

BUSY_TIMEOUT_MS = 60_000


@functools.cache
def _migration_files() -> tuple[tuple[int, Path | Traversable], ...]:
    """(version, file) of every ``migrations/NNNN_*.sql``, in order; listed
    once per process (every connect checks the version). Read beside this
    module when it is a file (importlib.resources, ~3 ms of every command,
    only for an installation in a zip)."""
    folder: Path | Traversable = Path(__file__).with_name("migrations")
    if not folder.is_dir():
        from importlib import resources

        folder = resources.files("dlengine.ledger.migrations")
    found = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry))
    return tuple(sorted(found, key=lambda item: item[0]))


def _migrations(newer_than: int = -1) -> list[tuple[int, str]]:
    """(version, sql) of the migrations past ``newer_than``, in order."""
    return [(version, entry.read_text()) for version, entry in _migration_files() if version > newer_than]


def latest_version() -> int:
    return _migration_files()[-1][0]


def connect(path: Path) -> sqlite3.Connection:
    """Open (and migrate if needed) the ledger at ``path``.

    Autocommit mode: every write goes through :func:`write` which opens
    ``BEGIN IMMEDIATE`` so writers queue on SQLite's lock instead of failing
    half-way with SQLITE_BUSY on upgrade.
    """
    make_home(path.parent)
    try:
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False, factory=_Connection
        )
    except sqlite3.Error as exc:
        _cannot_create(path)
        raise LedgerError(f"ledger {path}: {exc}") from None
    conn.path = str(path)
    try:
        _make_private(path)
        with translated(path):
            _configure_waiting(conn)
            _migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def connect_empty() -> sqlite3.Connection:
    """An empty ledger of the latest schema, in memory: what a command that
    only reads sees of a home that has no ledger yet (``Client(reading=True)``):
    no job, no bucket, and nothing created on disk."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False, factory=_Connection)
    conn.path = ":memory:"
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    _migrate(conn, Path(":memory:"))
    return conn


def _cannot_create(path: Path) -> None:
    """Why SQLite's "unable to open database file" when the ledger does not
    exist yet: a home that is read-only, or not this user's, is bad input
    (ConfigError) naming the reason, as a home that cannot be created."""
    if path.exists():
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        return
    except OSError as exc:
        raise ConfigError(f"DLENGINE_HOME: cannot create the ledger {path}: {exc.strerror or exc}") from None
    path.unlink()  # it could be created: not the reason


def _make_private(path: Path) -> None:
    """Ledger, -wal and -shm readable by the owner only. chmod, never an
    open(): closing any descriptor of the database file would drop the POSIX
    locks of every other SQLite connection of this process to it. Done before
    WAL mode is set, since SQLite creates -wal and -shm with the mode of the
    database file."""
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise LedgerError(f"ledger {name}: cannot make it private: {exc.strerror or exc}") from None


def _configure_waiting(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """_configure, waiting while another process creates the ledger: the
    switch to WAL mode needs the database briefly to itself and SQLite answers
    "database is locked" at once instead of calling the busy handler."""
    for _ in range(attempts - 1):
        try:
            _configure(conn)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            time.sleep(0.05)
    _configure(conn)


def _configure(conn: sqlite3.Connection) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    # NORMAL in WAL mode: a committed transaction survives a process crash;
    # only an OS crash may lose the last few, never corrupting the database.
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")


@contextmanager
def translated(path: Path | str) -> Iterator[None]:
    """SQLite's errors as one LedgerError naming the file: "file is not a
    database", "database disk image is malformed", "database or disk is full"
    (the busy and locked cases never reach here: they wait)."""
    try:
        yield
    except sqlite3.IntegrityError:
        raise  # a constraint: the caller's to handle (duplicate names, a removed job)
    except sqlite3.DatabaseError as exc:
        reason = str(exc)
        if "I/O error" in reason and _nearly_full(path):
            # ENOSPC while growing the -wal or -shm file reads as an I/O error
            reason += ": the disk is full"
        code = ErrorCode.DISK_FULL if "full" in reason else ErrorCode.INTERNAL
        raise LedgerError(f"ledger {path}: {reason}", code=code) from None


def _nearly_full(path: Path | str) -> bool:
    """Less than 64 KiB free where the ledger lives."""
    try:
        stats = os.statvfs(Path(path).parent)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < 64 << 10


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction; rolls back on any exception. SQLite errors
    leave as a LedgerError naming the file (with the real reason: SQLite
    has already rolled back after "disk is full", so a failing ROLLBACK
    must not hide it)."""
    with translated(_file_of(conn)):
        _begin_immediate(conn)
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error:
            if conn.in_transaction:
                with suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise


class _Connection(sqlite3.Connection):
    """A connection that knows its file, for error messages."""

    path = "?"


def data_version(conn: sqlite3.Connection) -> int:
    """A number that changes whenever another connection (this process's
    or another's) commits to the ledger (``PRAGMA data_version``): cheap to
    ask, so an idle worker can look often whether there is new work."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _file_of(conn: sqlite3.Connection) -> str:
    return conn.path if isinstance(conn, _Connection) else "?"


def _begin_immediate(conn: sqlite3.Connection) -> None:
    # busy_timeout covers most contention; this loop covers the rare
    # SQLITE_BUSY that SQLite returns without waiting (e.g. WAL recovery).
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > latest_version():
        raise LedgerError(
            f"ledger {path}: schema version {current} is newer than this dlengine knows"
            f" ({latest_version()}): upgrade dlengine, or use another DLENGINE_HOME",
            code=ErrorCode.INVALID,
        )
    pending = _migrations(newer_than=current)
    if not pending:
        return
    with write(conn):
        # re-read under the lock: another process may have migrated meanwhile
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        for version, sql in pending:
            if version > current:
                _run_script(conn, sql)
                conn.execute(f"PRAGMA user_version = {version}")


def _run_script(conn: sqlite3.Connection, sql: str) -> None:
    """executescript() would COMMIT our transaction; run statement by statement."""
    buf = ""
    for line in sql.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            conn.execute(buf)
            buf = ""
    if buf.strip():
        conn.execute(buf)
