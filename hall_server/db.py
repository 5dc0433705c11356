"""Opening the SQLite store: WAL, pragmas, migrations under a file lock, and write transactions.

Called by ``hall_server.app`` (one connection per request, closed at teardown), by the CLI and by
provisioning, which uses the store but never the Flask app.
"""

from __future__ import annotations

import fcntl
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from hall_server.migrations import MIGRATIONS

DB_NAME = "invigil.db"


def db_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / DB_NAME


def connect(data_dir: str | Path, synchronous: str = "FULL") -> sqlite_utils.Database:
    """Open the store. Autocommit mode: writes go through :func:`write_transaction`."""
    conn = sqlite3.connect(db_path(data_dir), timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")  # value checked by load_settings
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return sqlite_utils.Database(conn)


def migrate(data_dir: str | Path) -> list[str]:
    """Apply pending named migrations; returns their names. Safe when several processes start at once."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / ".migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        db = connect(data_dir)
        try:
            pending = [migration.name for migration in MIGRATIONS.pending(db)]
            MIGRATIONS.apply(db)
            return pending
        finally:
            db.close()


@contextmanager
def write_transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``: take the write lock up front so a read-then-write never races.

    When this block exits normally the rows are committed (and, with synchronous=FULL, on disk).
    """
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.conn.execute("ROLLBACK")
        raise
    else:
        db.conn.execute("COMMIT")
