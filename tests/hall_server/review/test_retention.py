"""Retention: once an exam is past its retention, no file, no row and no decryptable copy of its data
remains, except the cases the exam board holds, which go once the hold is lifted."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from hall_server.app import create_app
from hall_server.review import findings, queue, retention
from hall_server.store import audit, crypto, db, examkeys, exams
from hall_server.store.blobs import BlobStore
from invigil import protocol as p
from invigil.payloads import Enrolment, SiteEvent
from invigil.timeutil import from_wire, to_wire, utc_now

from reviewseed import FlaskHall, add_staff, seed_exam
from support import BIN, sha256

PERSONAL_TABLES = (
    "capture",
    "device_event",
    "site_event",
    "observation",
    "annotation",
    "instruction",
    "agent_session",
    "roster",
    "queue_mark",
    "queue_claim",
    "screen_text",
)


def _retention(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "invigil-server"), "retention", "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        check=True,
    )


def _after_retention(store) -> str:
    ends_at = from_wire(store.execute("SELECT ends_at FROM exam").fetchone()[0])
    return to_wire(ends_at + timedelta(days=30, minutes=1))


def _files_on_disk(data_dir: Path) -> bytes:
    return b"".join(path.read_bytes() for path in data_dir.glob("invigil.db*") if path.is_file())


@pytest.fixture
def finished(exam, client):
    seeded = seed_exam(client, exam, students=2, changes=3)
    store = db.connect(exam.data_dir)
    reviewer = add_staff(store, "rita", "reviewer")
    for session_id in [row[0] for row in store.execute("SELECT id FROM agent_session")]:
        findings.record(
            store,
            session_id=session_id,
            author_id=reviewer,
            verdict="no_irregularity",
            span_start=utc_now(),
            now=utc_now(),
        )
        queue.mark_nothing_here(store, exam.exam_id, session_id, "a-moment", reviewer, utc_now())
    queue.assign(store, exam.exam_id, [s.student_number for s in seeded], reviewer, utc_now(), by=reviewer)
    return store, seeded


def test_nothing_is_deleted_before_it_is_due(exam, finished):
    store, _ = finished
    answer = _retention(exam.data_dir, "--dry-run", "--now", _after_retention(store))
    assert "due: exam 1 'Linear Algebra'" in answer.stdout
    assert "nothing is due" in _retention(exam.data_dir).stdout
    assert store.execute("SELECT COUNT(*) FROM capture").fetchone()[0] == 2 * 9


def test_due_exam_leaves_no_file_no_row_and_no_decryptable_copy(exam, finished, tmp_path):
    store, seeded = finished
    master = crypto.load_or_create_master_key(exam.data_dir)
    exam_key = exams.exam_key(store, master, exam.exam_id)
    key_file = examkeys.key_path(exam.data_dir, exam.exam_id)
    wrapped = key_file.read_bytes()
    backup = tmp_path / "blobs-backup"
    shutil.copytree(exam.data_dir / "blobs" / str(exam.exam_id), backup)
    store.close()

    answer = _retention(exam.data_dir, "--now", _after_retention(db.connect(exam.data_dir)))
    assert "key destroyed" in answer.stdout

    store = db.connect(exam.data_dir)
    for table in PERSONAL_TABLES:
        assert store.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0, table
    assert not (exam.data_dir / "blobs" / str(exam.exam_id)).exists()
    assert store.execute("SELECT wrapped, destroyed_at IS NOT NULL FROM exam_key").fetchone() == (None, 1)
    assert not key_file.exists()
    with pytest.raises(crypto.KeyUnavailable):
        exams.exam_key(store, master, exam.exam_id)

    # The backup copy is still there, but nothing in the store (or left in its free pages) opens it.
    on_disk = _files_on_disk(exam.data_dir)
    assert wrapped not in on_disk and exam_key not in on_disk
    assert b"Student s0001" not in on_disk and b"chat.example.com" not in on_disk
    some_blob = next(path for path in backup.rglob("*") if path.is_file())
    assert (
        sha256(crypto.decrypt_blob(exam_key, exam.exam_id, some_blob.name, some_blob.read_bytes()))
        == some_blob.name
    )  # (only with the key we saved before deletion, which the appliance no longer has)

    [logged] = retention.deletion_log(store, exam.exam_id)
    assert logged["complete"] and logged["by"] == "retention"
    assert logged["counts"]["capture"] == 18 and logged["counts"]["roster"] == 5
    assert (
        store.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'retention_delete'").fetchone()[0] == 1
    )


def test_a_database_backup_from_before_retention_opens_nothing_once_the_key_is_destroyed(
    exam, finished, tmp_path
):
    """A backup of invigil.db holds no key: restored beside master.key after retention, it shows no name,
    window title or site of the exam, and opens none of its screens."""
    store, _ = finished
    backup = tmp_path / "backup"
    backup.mkdir()
    store.execute("VACUUM INTO ?", [str(backup / "invigil.db")])  # as `sqlite3 .backup` of a live store
    shutil.copy(exam.data_dir / "master.key", backup / "master.key")
    store.close()

    _retention(exam.data_dir, "--now", _after_retention(db.connect(exam.data_dir)))
    # Restored beside the appliance's master.key and keys/, which no longer holds the exam's key.
    shutil.copytree(exam.data_dir / "keys", backup / "keys")
    restored = db.connect(backup)
    assert restored.execute("SELECT COUNT(*) FROM roster").fetchone()[0] == 5  # the rows are in the backup
    for column, table in (("name", "roster"), ("host", "site_event"), ("window_title", "capture")):
        with pytest.raises(sqlite3.OperationalError):  # the key of exam 1 is missing: nothing opens
            restored.execute(f"SELECT unseal(exam_id, {column}) FROM {table}").fetchall()
    with pytest.raises(crypto.KeyUnavailable, match="missing"):
        exams.exam_key(restored, crypto.load_master_key(backup), exam.exam_id)
    raw = (backup / "invigil.db").read_bytes()
    assert b"Student s0001" not in raw and b"chat.example.com" not in raw and b"Exam question" not in raw


def test_a_held_case_is_kept_until_the_hold_is_lifted(exam, finished):
    store, seeded = finished
    board = add_staff(store, "bea", "exam_board")
    hold_id = retention.place_hold(store, exam.exam_id, "s0002", board, "case 2026-17", utc_now())
    now = from_wire(_after_retention(store))
    BlobStore(exam.data_dir)

    [first] = retention.run(store, BlobStore(exam.data_dir), now).exams
    assert first.held_students == ["s0002"] and not first.key_destroyed
    kept = store.execute(
        "SELECT DISTINCT r.student_number FROM capture c JOIN agent_session s ON s.id = c.session_id "
        "JOIN roster r ON r.id = s.roster_id"
    ).fetchall()
    assert kept == [("s0002",)]
    assert store.execute("SELECT COUNT(*) FROM roster").fetchone()[0] == 1
    # The held student's screens still decrypt; s0001's files are gone.
    master = crypto.load_or_create_master_key(exam.data_dir)
    vault = BlobStore(exam.data_dir)
    key = exams.exam_key(store, master, exam.exam_id)
    for capture_id, body in seeded[1].captures.items():
        assert vault.get(exam.exam_id, key, sha256(body)) == body, capture_id
    for body in seeded[0].captures.values():
        assert not vault.exists(exam.exam_id, sha256(body))
    # A second daily run with the hold still open changes nothing and logs nothing new.
    retention.run(store, vault, now + timedelta(days=1))
    assert len(retention.deletion_log(store, exam.exam_id)) == 1

    retention.lift_hold(store, hold_id, board, now)
    [second] = retention.run(store, vault, now + timedelta(days=2)).exams
    assert second.complete and second.key_destroyed
    for table in PERSONAL_TABLES:
        assert store.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0, table
    assert not (exam.data_dir / "blobs" / str(exam.exam_id)).exists()
    actions = [row[0] for row in store.execute("SELECT action FROM audit_log ORDER BY id")]
    assert actions[-4:] == ["hold_placed", "retention_delete", "hold_lifted", "retention_delete"]


def test_a_hold_needs_a_student_on_the_roster_and_a_reason(exam, finished):
    store, _ = finished
    with pytest.raises(retention.HoldRefused, match="not on exam 1's roster"):
        retention.place_hold(store, exam.exam_id, "s9999", None, "case 1", utc_now())
    with pytest.raises(retention.HoldRefused, match="needs a reason"):
        retention.place_hold(store, exam.exam_id, "s0001", None, " ", utc_now())


def _stray_site_event(client, data_dir: Path, event_id: str, host: str) -> None:
    """A site event, as the proxy sends it, from an address no session uses (a laptop in no session)."""
    event = SiteEvent(event_id, utc_now(), "10.9.9.9", host, "blocked", "proxy", "not on the allowlist")
    response = client.post(
        p.API_PREFIX + "/site-events",
        data=json.dumps({"events": [event.as_wire()]}),
        headers={
            p.PROTOCOL_HEADER: str(p.PROTOCOL_VERSION),
            "Content-Type": "application/json",
            "Authorization": f"Bearer {(data_dir / 'service.token').read_text().strip()}",
        },
    )
    assert response.status_code in (200, 201), response.get_data(as_text=True)


def test_site_events_no_session_claimed_go_once_older_than_the_longest_retention(exam, client):
    store = db.connect(exam.data_dir)
    master = crypto.load_or_create_master_key(exam.data_dir)
    start = utc_now()
    exams.create_exam(
        store,
        master,
        hall_id=exam.hall_id,
        title="Statistics",
        starts_at=start + timedelta(days=1),
        ends_at=start + timedelta(days=1, hours=2),
        retention_days=60,
        join_code="HALLB234",
    )
    _stray_site_event(client, exam.data_dir, "px-stray-1", "stray.example.org")
    assert store.execute("SELECT exam_id, session_id FROM site_event").fetchall() == [(None, None)]
    vault = BlobStore(exam.data_dir)

    # Kept as long as the hall keeps any exam's data (the longest retention: 60 days) ...
    kept = retention.run(store, vault, start + timedelta(days=59))
    assert store.execute("SELECT COUNT(*) FROM site_event").fetchone()[0] == 1
    # ... and no longer.
    gone = retention.run(store, vault, start + timedelta(days=61))
    assert store.execute("SELECT COUNT(*) FROM site_event").fetchone()[0] == 0
    assert (kept.unclaimed_site_events, gone.unclaimed_site_events) == (0, 1)
    [logged] = [e for e in audit.read_log(store, action="retention_delete") if e.exam_id is None]
    assert logged.detail["counts"] == {"site_event": 1}
    assert b"stray.example.org" not in _files_on_disk(exam.data_dir)


def test_with_no_exam_stray_site_events_are_kept_the_default_30_days(tmp_path):
    data_dir = tmp_path / "data"
    client = create_app({"data_dir": str(data_dir)}).test_client()
    _stray_site_event(client, data_dir, "px-stray-1", "stray.example.org")
    after = utc_now()

    answer = _retention(data_dir, "--dry-run", "--now", to_wire(after + timedelta(days=31)))
    assert "due: 1 site event(s) of no session, older than 30 days" in answer.stdout
    assert "nothing is due" in _retention(data_dir, "--now", to_wire(after + timedelta(days=29))).stdout
    answer = _retention(data_dir, "--now", to_wire(after + timedelta(days=31)))
    assert "deleted: 1 site event(s) of no session, older than 30 days" in answer.stdout
    store = db.connect(data_dir)
    assert store.execute("SELECT COUNT(*) FROM site_event").fetchone()[0] == 0


def test_lifted_holds_go_with_the_data_and_the_deletion_log_names_no_one(exam, finished):
    store, _ = finished
    board = add_staff(store, "bea", "exam_board")
    early = retention.place_hold(store, exam.exam_id, "s0001", board, "case 2026-11", utc_now())
    retention.lift_hold(store, early, board, utc_now())
    held = retention.place_hold(store, exam.exam_id, "s0002", board, "case 2026-17", utc_now())
    now = from_wire(_after_retention(store))
    vault = BlobStore(exam.data_dir)

    # s0001's data goes, and with it the hold that was lifted; s0002's open hold stays.
    retention.run(store, vault, now)
    assert [h["id"] for h in retention.holds(store, exam.exam_id, open_only=False)] == [held]

    retention.lift_hold(store, held, board, now)
    retention.run(store, vault, now + timedelta(days=1))
    assert store.execute("SELECT COUNT(*) FROM case_hold").fetchone()[0] == 0
    log = retention.deletion_log(store, exam.exam_id)
    assert [entry["counts"]["case_hold"] for entry in log] == [1, 1]
    assert [entry["counts"]["held_students"] for entry in log] == [1, 0]
    assert [entry["held_students"] for entry in log] == [[], []]
    assert "s000" not in json.dumps(log) and "case 2026" not in json.dumps(log)


def test_ids_are_never_handed_out_again_so_old_audit_rows_point_at_no_one(exam, client, finished):
    store, _ = finished
    old_sessions = [row[0] for row in store.execute("SELECT id FROM agent_session")]
    old_roster = [row[0] for row in store.execute("SELECT id FROM roster")]
    for session_id in old_sessions:
        audit.record(store, None, "capture_view", exam.exam_id, session_id, {})
    retention.run(store, BlobStore(exam.data_dir), from_wire(_after_retention(store)))

    # The next exam of the hall: its students enrol after the first exam's data is gone.
    master = crypto.load_or_create_master_key(exam.data_dir)
    start = utc_now() - timedelta(minutes=5)
    next_exam = exams.create_exam(
        store,
        master,
        hall_id=exam.hall_id,
        title="Statistics",
        starts_at=start,
        ends_at=start + timedelta(hours=2),
        join_code="HALLB234",
    )
    exams.add_roster(store, next_exam, [exams.RosterEntry("s9001", "New Student")])
    FlaskHall(client, "10.0.0.50").enrol(
        Enrolment("s9001", "HALLB234", "agent-s9001", utc_now(), "0.1", "Linux")
    )

    assert min(row[0] for row in store.execute("SELECT id FROM roster")) > max(old_roster)
    assert min(row[0] for row in store.execute("SELECT id FROM agent_session")) > max(old_sessions)
    views = audit.read_log(store, action="capture_view")
    assert [(entry.session_id, entry.student_number) for entry in views] == [
        (session_id, None) for session_id in old_sessions
    ]
    assert audit.read_log(store, student_number="s9001", action="capture_view") == []
