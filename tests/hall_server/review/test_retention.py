"""Retention: once an exam is past its retention, no file, no row and no decryptable copy of its data
remains, except the cases the exam board holds, which go once the hold is lifted."""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from hall_server.review import findings, retention
from hall_server.store import crypto, db, exams
from hall_server.store.blobs import BlobStore
from invigil.timeutil import from_wire, to_wire, utc_now

from reviewseed import add_staff, seed_exam
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
    wrapped = store.execute("SELECT wrapped FROM exam_key").fetchone()[0]
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


def test_a_held_case_is_kept_until_the_hold_is_lifted(exam, finished):
    store, seeded = finished
    board = add_staff(store, "bea", "exam_board")
    hold_id = retention.place_hold(store, exam.exam_id, "s0002", board, "case 2026-17", utc_now())
    now = from_wire(_after_retention(store))
    BlobStore(exam.data_dir)

    [first] = retention.run(store, BlobStore(exam.data_dir), now)
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
    [second] = retention.run(store, vault, now + timedelta(days=2))
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
