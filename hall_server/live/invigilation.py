"""What an invigilator does from the live view: acknowledge, check ID, capture now, start and end the exam.

Each action is one write transaction, an audit row, and a live-bus hook so every watching browser sees
it. Instructions (``capture_now``, ``end_exam``) are rows the agent's next heartbeat picks up
(``hall_server.ingest.sessions.heartbeat``).
"""

from __future__ import annotations

from datetime import datetime

import sqlite_utils

from hall_server.live import bus
from hall_server.store import audit
from hall_server.store.db import write_transaction
from invigil.timeutil import to_wire


class ActionRefused(ValueError):
    """The action does not apply (unknown seat, no session, exam already ended); the message says why."""


def acknowledge(
    db: sqlite_utils.Database, exam_id: int, observation_id: int, user_id: int, now: datetime
) -> None:
    with write_transaction(db):
        row = db.execute(
            "SELECT session_id, acknowledged_at FROM observation WHERE id = ? AND exam_id = ?",
            [observation_id, exam_id],
        ).fetchone()
        if row is None:
            raise ActionRefused(f"no observation {observation_id} in this exam")
        if row[1] is not None:
            return
        db.execute(
            "UPDATE observation SET acknowledged_by = ?, acknowledged_at = ? WHERE id = ?",
            [user_id, to_wire(now), observation_id],
        )
        audit.insert(db, user_id, "acknowledge", exam_id, row[0], {"observation": observation_id}, now)
    bus.observation(exam_id, row[0], observation_id)


def set_attendance(
    db: sqlite_utils.Database, exam_id: int, roster_id: int, checked: bool, user_id: int, now: datetime
) -> None:
    """Record (or clear) that the student's ID was checked at the seat."""
    with write_transaction(db):
        cursor = db.execute(
            "UPDATE roster SET attendance_checked_at = ?, attendance_checked_by = ? "
            "WHERE id = ? AND exam_id = ?",
            [to_wire(now) if checked else None, user_id if checked else None, roster_id, exam_id],
        )
        if cursor.rowcount == 0:
            raise ActionRefused(f"no roster entry {roster_id} in this exam")
        audit.insert(db, user_id, "attendance", exam_id, None, {"roster": roster_id, "checked": checked}, now)
    bus.roster_changed(exam_id, roster_id)


def _live_session(db: sqlite_utils.Database, exam_id: int, roster_id: int) -> int:
    row = db.execute(
        "SELECT id, ended_at FROM agent_session WHERE roster_id = ? AND exam_id = ? "
        "ORDER BY enrolled_at DESC, id DESC LIMIT 1",
        [roster_id, exam_id],
    ).fetchone()
    if row is None or row[1] is not None:
        raise ActionRefused("this seat has no running agent session")
    return int(row[0])


def capture_now(db: sqlite_utils.Database, exam_id: int, roster_id: int, user_id: int, now: datetime) -> int:
    """Queue a ``capture_now`` instruction for the seat's agent; its next heartbeat delivers it."""
    with write_transaction(db):
        session_id = _live_session(db, exam_id, roster_id)
        cursor = db.execute(
            "INSERT INTO instruction (session_id, kind, created_at, created_by) "
            "VALUES (?, 'capture_now', ?, ?)",
            [session_id, to_wire(now), user_id],
        )
        audit.insert(db, user_id, "capture_now", exam_id, session_id, {"roster": roster_id}, now)
    return int(cursor.lastrowid or 0)


def start_exam(db: sqlite_utils.Database, exam_id: int, user_id: int, now: datetime) -> None:
    with write_transaction(db):
        row = db.execute("SELECT started_at, ended_at FROM exam WHERE id = ?", [exam_id]).fetchone()
        if row is None:
            raise ActionRefused(f"no exam {exam_id}")
        if row[1] is not None:
            raise ActionRefused("the exam has ended")
        if row[0] is not None:
            return
        db.execute("UPDATE exam SET started_at = ? WHERE id = ?", [to_wire(now), exam_id])
        audit.insert(db, user_id, "start_exam", exam_id, None, {}, now)
    bus.exam_changed(exam_id)


def end_exam(db: sqlite_utils.Database, exam_id: int, user_id: int, now: datetime) -> int:
    """End the exam: no more enrolment, and an ``end_exam`` instruction to every live session.

    Returns how many sessions were told. Students with extra time are told too: the dashboard's
    confirmation says how many still work, so the invigilator ends the exam when the last one is done.
    """
    with write_transaction(db):
        row = db.execute("SELECT ended_at FROM exam WHERE id = ?", [exam_id]).fetchone()
        if row is None:
            raise ActionRefused(f"no exam {exam_id}")
        if row[0] is not None:
            return 0
        db.execute(
            "UPDATE exam SET ended_at = ?, started_at = COALESCE(started_at, ?) WHERE id = ?",
            [to_wire(now), to_wire(now), exam_id],
        )
        sessions = [
            r[0]
            for r in db.execute(
                "SELECT id FROM agent_session WHERE exam_id = ? AND ended_at IS NULL AND expires_at >= ?",
                [exam_id, to_wire(now)],
            )
        ]
        db.conn.executemany(
            "INSERT INTO instruction (session_id, kind, created_at, created_by) VALUES (?, 'end_exam', ?, ?)",
            [(sid, to_wire(now), user_id) for sid in sessions],
        )
        audit.insert(db, user_id, "end_exam", exam_id, None, {"sessions": len(sessions)}, now)
    bus.exam_changed(exam_id)
    return len(sessions)
