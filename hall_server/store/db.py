"""Opening the SQLite store: WAL, pragmas, migrations under a file lock, and write transactions."""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import sqlite_utils

from hall_server.store import private_files, sealed, writegate
from hall_server.store.migrations import MIGRATIONS
from hall_server.store.writegate import WalSync, WriteGate

DB_NAME = "invigil.db"


def db_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / DB_NAME


class Store(sqlite_utils.Database):
    """A connection to the store that knows its write gate and, in FULL mode, its group WAL sync."""

    write_gate: WriteGate | None = None
    wal_sync: WalSync | None = None
    #: Seals and opens the personal columns (hall_server/store/sealed.py).
    column_keys: sealed.ColumnKeys | None = None
    #: The data directory this store is in (its exam keys are files there: hall_server/store/examkeys.py).
    data_dir: Path | None = None


def connect(data_dir: str | Path, synchronous: str = "FULL") -> Store:
    """Open the store. Autocommit mode: writes go through :func:`write_transaction`.

    ``FULL`` is kept with group commit: SQLite commits with NORMAL and :func:`write_transaction` fsyncs the
    WAL for a group of commits before returning (hall_server/store/writegate.py)."""
    path = db_path(data_dir)
    # SQLite makes -wal and -shm with the database file's mode: create that file 0600 first. Without a data
    # directory there is nothing to create, and sqlite3 says it cannot open the database.
    with suppress(FileNotFoundError):
        private_files.create_file(path)
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    mode = synchronous.upper()  # value checked by load_settings
    conn.execute(f"PRAGMA synchronous={'NORMAL' if mode == 'FULL' else mode}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    store = Store(conn)
    store.data_dir = Path(data_dir)
    store.column_keys = sealed.install(store, data_dir)
    store.write_gate, wal_sync = writegate.for_store(path)
    if mode == "FULL":
        store.wal_sync = wal_sync
    return store


def migrate(data_dir: str | Path) -> list[str]:
    """Apply pending named migrations; returns their names. Safe when several processes start at once."""
    data_dir = private_files.make_dirs(Path(data_dir))
    lock = private_files.open_lock_file(data_dir / ".migrate.lock")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        db = connect(data_dir)
        try:
            pending = [migration.name for migration in MIGRATIONS.pending(db)]
            MIGRATIONS.apply(db)
            return pending
        finally:
            db.close()
    finally:
        os.close(lock)


@contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: take the write lock up front so a read-then-write never races.

    When this block exits normally the rows are committed (and, with synchronous=FULL, on stable storage).
    Writers queue at the store's write gate instead of in SQLite's busy handler.
    """
    gate = getattr(db, "write_gate", None)
    with gate.held() if gate is not None else _no_gate():
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.conn.execute("ROLLBACK")
            raise
        db.conn.execute("COMMIT")
    wal_sync = getattr(db, "wal_sync", None)
    if wal_sync is not None:
        wal_sync.sync()


@contextmanager
def _no_gate() -> Iterator[None]:
    yield
