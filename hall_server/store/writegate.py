"""Serialised writers and group commit for the SQLite store.

Two measured problems with plain ``BEGIN IMMEDIATE`` from many threads (bench/ingest.py, py-spy):

- A writer that finds the lock taken naps in SQLite's busy handler (1, 2, 5 … 100 ms) and retries: ~36 ms
  of sleep per capture at 8 concurrent uploads. :class:`WriteGate` queues writers on a thread lock and an
  ``flock`` instead, so a waiter wakes the moment the lock is free.
- With ``synchronous=FULL`` every commit fsyncs the WAL while holding the write lock, so commits of
  concurrent uploads queue behind each other's fsync. :class:`WalSync` commits with ``synchronous=NORMAL``
  inside the lock, then, outside it, waits for one fsync of the WAL that started after its commit: one
  fsync makes a whole group of commits durable. A commit whose WAL frames are fsynced is exactly what
  ``FULL`` guarantees (docs/durability.md).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class WriteGate:
    """One writer at a time: a thread lock inside the process, ``flock`` across processes."""

    def __init__(self, lock_path: Path) -> None:
        self._thread_lock = threading.Lock()
        self._fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        self.waiting = 0  # writers of this process queued for the lock (the metrics' write-queue depth)

    @contextmanager
    def held(self) -> Iterator[None]:
        self.waiting += 1  # a racy read is fine for a gauge; the += itself runs under the GIL
        with self._thread_lock:
            self.waiting -= 1
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


class WalSync:
    """Group fsync of the WAL file: every caller returns only after an fsync that began after it called."""

    def __init__(self, wal_path: Path) -> None:
        self._wal_path = wal_path
        self._cond = threading.Condition()
        self._requested = 0
        self._synced = 0
        self._syncing = False

    def sync(self) -> None:
        """Called after COMMIT, outside the write gate; returns once that commit is on stable storage."""
        with self._cond:
            self._requested += 1
            mine = self._requested
            while self._synced < mine:
                if self._syncing:
                    self._cond.wait()
                    continue
                self._syncing = True
                covered = self._requested  # every commit that asked so far wrote its frames before this
                self._cond.release()
                synced = False
                try:
                    self._fsync()
                    synced = True
                finally:
                    self._cond.acquire()
                    self._syncing = False
                    if synced:
                        self._synced = max(self._synced, covered)
                    self._cond.notify_all()

    def _fsync(self) -> None:
        try:
            fd = os.open(self._wal_path, os.O_RDONLY)
        except FileNotFoundError:
            # The last connection closed, checkpointed (syncing the database file) and removed the WAL:
            # what was committed is already durable in the database file.
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_GATES: dict[tuple[int, Path], tuple[WriteGate, WalSync]] = {}
_GATES_LOCK = threading.Lock()


def for_store(db_file: Path) -> tuple[WriteGate, WalSync]:
    """The gate and WAL syncer of one database file in this process. Keyed by pid too: a lock descriptor
    inherited through ``fork`` is shared with the parent, so each gunicorn worker opens its own."""
    key = (os.getpid(), db_file.resolve())
    with _GATES_LOCK:
        if key not in _GATES:
            _GATES[key] = (
                WriteGate(key[1].with_name(key[1].name + ".write-lock")),
                WalSync(key[1].with_name(key[1].name + "-wal")),
            )
        return _GATES[key]
