"""Named migrations applied to a store that already holds an exam's data: nothing is lost, every index,
trigger and foreign key stays, and ids of deleted rows are never handed out again."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from hall_server.store import crypto, db, examkeys, sealed
from hall_server.store.migrations import MIGRATIONS

#: The tables retention deletes from, whose ids the audit log (or its detail) names.
DELETED_BY_RETENTION = ("roster", "agent_session", "observation", "instruction", "annotation", "case_hold")
T = "2026-06-12T09:00:00.000Z"


def _store_before(data_dir: Path, migration: str) -> db.Store:
    """A store made by the migrations before ``migration``, as an appliance of the previous release has."""
    data_dir.mkdir()
    store = db.connect(data_dir)
    MIGRATIONS.apply(store, stop_before=migration)
    return store


def _wrapped_key(store: db.Store) -> bytes:
    """An exam key as the previous release kept it: wrapped by the data directory's master key."""
    assert store.data_dir is not None
    return crypto.wrap_exam_key(crypto.load_or_create_master_key(store.data_dir), crypto.new_exam_key())


def _fill(store: db.Store) -> None:
    """One exam's worth of rows in every table, the last ids of some tables deleted (as retention does)."""
    rows: list[tuple[str, dict[str, Any]]] = [
        ("hall", {"id": 1, "name": "Hall A", "created_at": T}),
        ("user", {"id": 1, "username": "rita", "password_hash": "!", "created_at": T}),
        ("user_role", {"user_id": 1, "role": "reviewer"}),
        (
            "exam",
            {
                "id": 1,
                "hall_id": 1,
                "title": "Linear Algebra",
                "starts_at": T,
                "ends_at": T,
                "join_code": "HALLA234",
                "created_at": T,
            },
        ),
        ("assignment", {"id": 1, "user_id": 1, "role": "reviewer", "exam_id": 1}),
        ("exam_key", {"exam_id": 1, "wrapped": _wrapped_key(store), "created_at": T}),
        *[
            (
                "roster",
                {
                    "id": n,
                    "exam_id": 1,
                    "student_number": f"s000{n}",
                    "name": f"Student {n}",
                    "attendance_checked_by": 1,
                },
            )
            for n in (1, 2, 3)
        ],
        *[
            (
                "agent_session",
                {
                    "id": n,
                    "exam_id": 1,
                    "roster_id": n,
                    "agent_id": f"a{n}",
                    "token_hash": f"h{n}",
                    "client_ip": f"10.0.0.{n}",
                    "enrolled_at": T,
                    "enrol_agent_time": T,
                    "last_seen_at": T,
                    "expires_at": T,
                    "chain_length": 1,
                },
            )
            for n in (1, 2, 3)
        ],
        (
            "capture",
            {
                "session_id": 1,
                "capture_id": "c1",
                "exam_id": 1,
                "monitor": 0,
                "agent_time": T,
                "received_at": T,
                "changed": 1,
                "sha256": "ab" * 32,
                "chain_seq": 1,
                "tile": 64,
            },
        ),
        (
            "device_event",
            {
                "session_id": 1,
                "event_id": "d1",
                "exam_id": 1,
                "kind": "monitors",
                "agent_time": T,
                "received_at": T,
            },
        ),
        (
            "site_event",
            {
                "source": "proxy",
                "event_id": "p1",
                "exam_id": 1,
                "session_id": 1,
                "time": T,
                "received_at": T,
                "client_ip": "10.0.0.1",
                "host": "chat.example.com",
                "decision": "blocked",
            },
        ),
        (
            "site_event",
            {
                "source": "proxy",
                "event_id": "p2",
                "time": T,
                "received_at": T,
                "client_ip": "10.9.9.9",
                "host": "stray.example.org",
                "decision": "blocked",
            },
        ),
        *[
            ("observation", {"id": n, "exam_id": 1, "session_id": 1, "kind": "monitors", "at": T})
            for n in (1, 2)
        ],
        ("instruction", {"id": 1, "session_id": 1, "kind": "capture_now", "created_at": T, "created_by": 1}),
        (
            "annotation",
            {
                "id": 1,
                "exam_id": 1,
                "session_id": 1,
                "author_id": 1,
                "created_at": T,
                "span_start": T,
                "kind": "no_irregularity",
                "observation_id": 1,
            },
        ),
        (
            "annotation",
            {
                "id": 2,
                "exam_id": 1,
                "session_id": 1,
                "author_id": 1,
                "created_at": T,
                "span_start": T,
                "kind": "no_irregularity",
                "confirms": 1,
            },
        ),
        (
            "case_hold",
            {
                "id": 1,
                "exam_id": 1,
                "student_number": "s0001",
                "placed_by": 1,
                "reason": "case 17",
                "placed_at": T,
            },
        ),
        (
            "deletion_log",
            {
                "id": 1,
                "exam_id": 1,
                "at": T,
                "by": "retention",
                "complete": 0,
                "held_students": '["s0001"]',
                "counts": '{"capture": 3}',
            },
        ),
        # What the audit log names: session 7, roster entry 9, hold 4, observation 5, finding 6, all deleted.
        ("audit_log", {"id": 1, "at": T, "action": "capture_view", "exam_id": 1, "session_id": 7}),
        ("audit_log", {"id": 2, "at": T, "action": "attendance", "exam_id": 1, "detail": '{"roster": 9}'}),
        ("audit_log", {"id": 3, "at": T, "action": "hold_lifted", "exam_id": 1, "detail": '{"hold": 4}'}),
        ("audit_log", {"id": 4, "at": T, "action": "acknowledge", "detail": '{"observation": 5}'}),
        (
            "audit_log",
            {
                "id": 5,
                "at": T,
                "action": "finding_recorded",
                "detail": '{"finding": 6, "supersedes": null, "confirms": 2}',
            },
        ),
        ("audit_log", {"id": 6, "at": T, "action": "login", "detail": "not json"}),
    ]
    with db.write_transaction(store):
        for table, row in rows:
            store.execute(
                f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
        # Retention deleted the newest session and roster entry: without AUTOINCREMENT their ids come back.
        store.execute("DELETE FROM agent_session WHERE id = 3")
        store.execute("DELETE FROM roster WHERE id = 3")


def _schema(store: db.Store) -> dict[str, Any]:
    """Everything a rebuild could lose, per table: columns, foreign keys, indexes, triggers."""
    tables = [
        row[0]
        for row in store.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    return {
        table: {
            "columns": store.execute(f"PRAGMA table_xinfo({table})").fetchall(),
            "foreign_keys": store.execute(f"PRAGMA foreign_key_list({table})").fetchall(),
            "indexes": sorted(
                (name, unique, store.execute(f"PRAGMA index_info({name})").fetchall())
                for _, name, unique, _, _ in store.execute(f"PRAGMA index_list({table})")
            ),
            "triggers": store.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? ORDER BY name",
                [table],
            ).fetchall(),
            "sql": re.sub(r'^CREATE TABLE "?(\w+)"?', r"CREATE TABLE \1", _sql(store, table)).replace(
                " AUTOINCREMENT", ""
            ),
        }
        for table in tables
    }


def _sql(store: db.Store, table: str) -> str:
    return str(store.execute("SELECT sql FROM sqlite_master WHERE name = ?", [table]).fetchone()[0])


def _rows(store: db.Store) -> dict[str, list[Any]]:
    return {
        table: store.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
        for table in (
            "hall",
            "user",
            "exam",
            "roster",
            "agent_session",
            "capture",
            "device_event",
            "site_event",
            "observation",
            "instruction",
            "annotation",
            "case_hold",
            "audit_log",
        )
    }


def test_ids_never_reused_applies_to_a_filled_store_and_keeps_everything(tmp_path):
    store = _store_before(tmp_path / "data", "m005_ids_never_reused")
    _fill(store)
    schema, rows = _schema(store), _rows(store)
    store.close()

    # Up to the migration that seals personal columns, which test_sealing_* covers.
    store = db.connect(tmp_path / "data")
    applied = [migration.name for migration in MIGRATIONS.pending(store)][:3]
    MIGRATIONS.apply(store, stop_before="m008_exam_keys_in_files")
    assert applied == ["m005_ids_never_reused", "m006_retention_keeps_counts", "m007_receive_order"]
    for table in DELETED_BY_RETENTION:
        assert "AUTOINCREMENT" in _sql(store, table), table
    after = _schema(store)
    # The indexes m006 and m007 add; apart from them nothing changed but AUTOINCREMENT.
    for table, name in (
        ("site_event", "site_event_unclaimed"),
        ("capture", "capture_received"),
        ("device_event", "device_event_received"),
    ):
        [new_index] = [index for index in after[table]["indexes"] if index[0] == name]
        after[table]["indexes"].remove(new_index)
    assert after == schema
    assert _rows(store) == rows
    assert store.execute("PRAGMA foreign_key_check").fetchall() == []
    assert store.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert store.execute("PRAGMA foreign_keys").fetchone() == (1,)
    # The triggers still guard findings; the foreign keys still hold.
    with pytest.raises(sqlite3.IntegrityError, match="never edited in place"):
        store.execute("UPDATE annotation SET text = 'changed' WHERE id = 1")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        store.execute("INSERT INTO observation (exam_id, session_id, kind, at) VALUES (1, 99, 'x', ?)", [T])

    # New rows get ids above every id ever used, or named by the audit log.
    with db.write_transaction(store):
        roster = store.execute(
            "INSERT INTO roster (exam_id, student_number, name) VALUES (1, 's0009', 'New')"
        ).lastrowid
        session = store.execute(
            "INSERT INTO agent_session (exam_id, roster_id, agent_id, token_hash, client_ip, enrolled_at, "
            "enrol_agent_time, last_seen_at, expires_at) VALUES (1, ?, 'a9', 'h9', '10.0.0.9', ?, ?, ?, ?)",
            [roster, T, T, T, T],
        ).lastrowid
        hold = store.execute(
            "INSERT INTO case_hold (exam_id, student_number, reason, placed_at) VALUES (1, 's0009', 'r', ?)",
            [T],
        ).lastrowid
        observation = store.execute(
            "INSERT INTO observation (exam_id, kind, at) VALUES (1, 'x', ?)", [T]
        ).lastrowid
        finding = store.execute(
            "INSERT INTO annotation (exam_id, session_id, author_id, created_at, span_start, kind) "
            "VALUES (1, 1, 1, ?, ?, 'no_irregularity')",
            [T, T],
        ).lastrowid
        instruction = store.execute(
            "INSERT INTO instruction (session_id, kind, created_at) VALUES (1, 'capture_now', ?)", [T]
        ).lastrowid
    assert (roster, session, hold, observation, finding, instruction) == (10, 8, 5, 6, 7, 2)


def test_a_new_store_and_an_upgraded_one_have_the_same_schema(tmp_path):
    store = _store_before(tmp_path / "old", "m005_ids_never_reused")
    _fill(store)
    store.close()
    db.migrate(tmp_path / "old")
    db.migrate(tmp_path / "new")
    old, new = db.connect(tmp_path / "old"), db.connect(tmp_path / "new")
    assert _schema(old) == _schema(new)
    assert [m.name for m in MIGRATIONS.pending(old)] == [] == [m.name for m in MIGRATIONS.pending(new)]


def test_the_deletion_log_keeps_counts_not_names(tmp_path):
    store = _store_before(tmp_path / "data", "m006_retention_keeps_counts")
    _fill(store)
    store.close()
    db.migrate(tmp_path / "data")
    store = db.connect(tmp_path / "data")
    assert store.execute("SELECT held_students, counts FROM deletion_log").fetchall() == [
        ("[]", '{"capture":3,"held_students":1}')
    ]


def test_ids_never_reused_runs_again_after_a_crash_before_it_was_recorded(tmp_path):
    store = _store_before(tmp_path / "data", "m005_ids_never_reused")
    _fill(store)
    store.close()
    db.migrate(tmp_path / "data")
    store = db.connect(tmp_path / "data")
    schema, rows = _schema(store), _rows(store)
    store.execute("DELETE FROM _sqlite_migrations WHERE name = 'm005_ids_never_reused'")
    store.close()

    assert db.migrate(tmp_path / "data") == ["m005_ids_never_reused"]
    store = db.connect(tmp_path / "data")
    assert (_schema(store), _rows(store)) == (schema, rows)


def test_sealing_applies_to_a_filled_store_and_keeps_every_value(tmp_path):
    """A store of the previous release, with a real master key and exam key: m008 moves the key into a
    file and m009 seals the personal columns in place; every value opens to what it was, and sessions are
    still found by address."""
    data_dir = tmp_path / "data"
    store = _store_before(data_dir, "m008_exam_keys_in_files")
    _fill(store)
    [(wrapped,)] = store.execute("SELECT wrapped FROM exam_key").fetchall()
    plain = {
        table: store.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid").fetchall()
        for table, columns in sealed.SEALED_COLUMNS.items()
    }
    store.close()

    assert db.migrate(data_dir) == [
        "m008_exam_keys_in_files",
        "m009_sealed_columns",
        "m010_review_queue",
        "m011_staff_lifecycle",
        "m012_capture_gaps",
    ]
    store = db.connect(data_dir)
    # The key moved out of the database into its own file.
    assert store.execute("SELECT wrapped FROM exam_key").fetchall() == [(None,)]
    assert examkeys.key_path(data_dir, 1).read_bytes() == wrapped
    for table, columns in sealed.SEALED_COLUMNS.items():
        opened = ", ".join(f"unseal(exam_id, {column})" for column in columns)
        assert store.execute(f"SELECT {opened} FROM {table} ORDER BY rowid").fetchall() == plain[table], table
    store.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    on_disk = (data_dir / "invigil.db").read_bytes()
    for value in (b"Student 1", b"chat.example.com", b"stray.example.org", b"10.0.0.1", b"case 17"):
        assert value not in on_disk, value
    # The address index replaced the plain address index, and names the session of an address.
    keys = sealed.keys_of(store)
    assert store.execute(
        "SELECT id FROM agent_session WHERE client_ip_index = ?", [keys.address_index(1, "10.0.0.2")]
    ).fetchall() == [(2,)]
    assert "agent_session_ip" not in {row[1] for row in store.execute("PRAGMA index_list(agent_session)")}
    with pytest.raises(sqlite3.IntegrityError, match="never edited in place"):
        store.execute("UPDATE annotation SET text = 'changed' WHERE id = 1")
