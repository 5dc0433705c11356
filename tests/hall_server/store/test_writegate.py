"""Group commit: many concurrent writers through the write gate all commit, none fails on SQLite's busy lock,
and commits are made durable by the group WAL fsync (NORMAL inside, at most one fsync per commit)."""

from __future__ import annotations

import threading

from hall_server.store import db, writegate


def test_concurrent_writers_all_commit_and_share_wal_fsyncs(exam, monkeypatch):
    fsyncs = []
    real_fsync = writegate.WalSync._fsync

    def counting_fsync(self):
        fsyncs.append(1)
        real_fsync(self)

    monkeypatch.setattr(writegate.WalSync, "_fsync", counting_fsync)
    errors = []

    def writer(n: int) -> None:
        store = db.connect(exam.data_dir)
        try:
            for i in range(25):
                with db.write_transaction(store):
                    store.execute(
                        "INSERT INTO audit_log (at, action, detail) "
                        "VALUES ('2026-11-23T10:00:00.000Z', ?, '{}')",
                        [f"writer-{n}-{i}"],
                    )
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    store = db.connect(exam.data_dir)
    assert store.execute("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'writer-%'").fetchone()[0] == 200
    assert 0 < len(fsyncs) <= 200  # one per commit at worst; grouped under contention
    assert store.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL inside, FULL by group fsync


def test_normal_mode_skips_the_wal_fsync(exam):
    store = db.connect(exam.data_dir, "NORMAL")
    assert store.wal_sync is None
    full = db.connect(exam.data_dir, "FULL")
    assert full.wal_sync is not None
