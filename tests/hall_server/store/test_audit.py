"""The audit log: views, exports, holds and deletions with who and when; readable by the exam board;
append-only."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest

from hall_server.review import retention
from hall_server.store import audit, db
from invigil.timeutil import utc_now

from reviewseed import add_staff, seed_exam
from support import BIN


def test_exam_board_reads_who_did_what_about_a_student(exam, client, tmp_path):
    seed_exam(client, exam, students=2, changes=1)
    store = db.connect(exam.data_dir)
    board = add_staff(store, "bea", "exam_board")
    rita = add_staff(store, "rita", "reviewer")
    session_id = store.execute("SELECT MIN(id) FROM agent_session").fetchone()[0]
    audit.record(store, rita, "capture_view", exam.exam_id, session_id, {"capture_id": "cap-s0001-0000"})
    retention.place_hold(store, exam.exam_id, "s0001", board, "case 17", utc_now())
    subprocess.run(
        [
            str(BIN / "invigil-server"),
            "gdpr-export",
            "--data-dir",
            str(exam.data_dir),
            "--exam",
            str(exam.exam_id),
            "--student",
            "s0001",
            "--out",
            str(tmp_path / "d.zip"),
            "--by",
            "bea",
        ],
        check=True,
        capture_output=True,
    )
    answer = subprocess.run(
        [
            str(BIN / "invigil-server"),
            "audit",
            "--data-dir",
            str(exam.data_dir),
            "--exam",
            str(exam.exam_id),
            "--student",
            "s0001",
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    rows = [json.loads(line) for line in answer.stdout.splitlines()]
    assert [(row["who"], row["action"]) for row in rows] == [
        ("rita", "capture_view"),
        ("bea", "hold_placed"),
        ("bea", "gdpr_export"),
    ]
    assert all(row["student_number"] == "s0001" and row["at"].endswith("Z") for row in rows)
    assert audit.read_log(store, exam_id=exam.exam_id, student_number="s0002") == []


def test_audit_log_is_append_only(exam):
    store = db.connect(exam.data_dir)
    entry = audit.record(store, None, "exam_export", exam.exam_id, None, audit.cli_actor())
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.execute("UPDATE audit_log SET action = 'nothing' WHERE id = ?", [entry])
    [row] = audit.read_log(store, action="exam_export")
    assert row.who.startswith("(appliance: ")
