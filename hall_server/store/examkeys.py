"""Exam keys: one file each under ``<data_dir>/keys/``, wrapped by ``master.key``, never in the database.

An exam's key opens its screens (hall_server/store/blobs.py) and its personal columns
(hall_server/store/sealed.py). Keeping the keys out of ``invigil.db`` is what makes retention's destruction
reach backups: a database backup holds no key material, so once retention destroyed an exam's key file no
copy of that exam's rows or screens opens, however old the backup and even beside ``master.key``. Only a
backup of ``keys/`` itself would bring it back, which is why ``keys/`` and ``master.key`` are backed up
apart from the data and kept no longer than the retention period (docs/architecture.md).

The ``exam_key`` table still says when a key was made and when retention destroyed it; a key whose
``destroyed_at`` is set is gone even if its file survived a crash between commit and unlink (the next
retention run removes such a file).
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlite_utils

from hall_server.store import crypto, private_files

KEYS_DIR = "keys"


def data_dir_of(db: sqlite_utils.Database) -> Path:
    """The data directory of a store opened by ``store.db.connect``, which holds its key files."""
    data_dir = getattr(db, "data_dir", None)
    if data_dir is None:
        raise RuntimeError("this connection was not opened by hall_server.store.db.connect")
    return Path(data_dir)


def key_path(data_dir: str | Path, exam_id: int) -> Path:
    return Path(data_dir) / KEYS_DIR / f"exam-{int(exam_id)}.key"


def create(data_dir: str | Path, master_key: bytes, exam_id: int) -> None:
    """A new key for a new exam, written (0600, fsynced) before the exam's row commits. A file left by an
    exam whose transaction rolled back has the same name and is replaced."""
    path = key_path(data_dir, exam_id)
    private_files.make_dirs(path.parent)
    private_files.write_file(path, crypto.wrap_exam_key(master_key, crypto.new_exam_key()))


def store_wrapped(data_dir: str | Path, exam_id: int, wrapped: bytes) -> None:
    """Keep a key wrapped before (the migration that moved keys out of the database)."""
    path = key_path(data_dir, exam_id)
    private_files.make_dirs(path.parent)
    private_files.write_file(path, wrapped)


def load(db: sqlite_utils.Database, data_dir: str | Path, master_key: bytes, exam_id: int) -> bytes:
    """The exam's key; :class:`crypto.KeyDestroyed` once retention destroyed it (or for no such exam),
    :class:`crypto.KeyUnavailable` when its file is missing or ``master_key`` is not this store's."""
    row = db.execute("SELECT destroyed_at FROM exam_key WHERE exam_id = ?", [exam_id]).fetchone()
    if row is None or row[0] is not None:
        raise crypto.KeyDestroyed(f"exam {exam_id} has no key (deleted by retention)")
    try:
        wrapped = key_path(data_dir, exam_id).read_bytes()
    except FileNotFoundError:
        raise crypto.KeyUnavailable(
            f"the key of exam {exam_id} is missing from {Path(data_dir) / KEYS_DIR}: restore keys/ from the "
            "appliance's key backup"
        ) from None
    return crypto.unwrap_exam_key(master_key, wrapped)


def destroy(data_dir: str | Path, exam_id: int) -> bool:
    """Overwrite and remove the exam's key file; returns whether there was one. Call once the row saying
    so (``exam_key.destroyed_at``) committed."""
    path = key_path(data_dir, exam_id)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    with path.open("r+b") as file:
        file.write(b"\0" * size)
        file.flush()
        os.fsync(file.fileno())
    path.unlink()
    private_files.fsync_dir(path.parent)
    return True
