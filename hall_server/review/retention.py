"""Retention: delete what is due, keep what the exam board holds, log the deletion.

An exam is due ``retention_days`` after its end. For a due exam, every student without an open hold loses all
rows (captures, device and site events, observations, findings, instructions, sessions, roster entry, lifted
holds) and blob files. When no hold remains, the exam key is destroyed too (its file, ``examkeys``): from then
on no copy of its blobs or sealed rows, backups included, can be decrypted. A held student's rows and blobs
(and so the key) stay until the hold is lifted; the next daily run deletes them. Each run over an exam writes
a ``deletion_log`` row (counts, never names) and an audit row. Site events no session claimed (a laptop in no
running session: ``exam_id`` NULL) go once older than the longest retention of any exam of the hall
(:data:`DEFAULT_RETENTION_DAYS` when there is none). Deletion runs with ``PRAGMA secure_delete`` so freed
pages are zeroed, and ends with a WAL checkpoint, so the database file keeps no readable remnant of a deleted
row or key. Ids are never handed out again (``AUTOINCREMENT``), so an audit row about a deleted session never
comes to name another student.

Called daily by ``invigil-server retention`` (systemd/invigil-retention.timer); holds are placed and lifted
through ``invigil-server hold`` and the dashboard.
"""

# ruff: noqa: S608 -- only "?" placeholders and fixed table names are formatted into SQL here.
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlite_utils

from hall_server.store import audit, examkeys, private_files, sealed
from hall_server.store.blobs import BlobStore
from hall_server.store.db import write_transaction
from invigil.timeutil import from_wire, to_wire


class HoldRefused(ValueError):
    """A hold cannot be placed or lifted; the message says why."""


def place_hold(
    db: sqlite_utils.Database,
    exam_id: int,
    student_number: str,
    user_id: int | None,
    reason: str,
    now: datetime,
) -> int:
    """The exam board holds one student's case: retention keeps it until the hold is lifted."""
    if not reason.strip():
        raise HoldRefused("a hold needs a reason (the case number or why the board keeps the data)")
    with write_transaction(db):
        row = db.execute(
            "SELECT e.retention_done_at, r.id FROM exam e LEFT JOIN roster r ON r.exam_id = e.id "
            "AND r.student_number = ? WHERE e.id = ?",
            [student_number, exam_id],
        ).fetchone()
        if row is None:
            raise HoldRefused(f"no exam {exam_id}")
        if row[1] is None:
            raise HoldRefused(
                f"student {student_number} is not on exam {exam_id}'s roster (or their data was deleted)"
            )
        cursor = db.execute(
            "INSERT INTO case_hold (exam_id, student_number, placed_by, reason, placed_at) "
            "VALUES (?,?,?,?,?)",
            [exam_id, student_number, user_id, sealed.seal(db, exam_id, reason), to_wire(now)],
        )
        hold_id = int(cursor.lastrowid or 0)
        audit.insert(
            db,
            user_id,
            "hold_placed",
            exam_id,
            None,
            # The reason stays in the hold (sealed, gone with it); the audit log outlives both.
            {"hold": hold_id, "student_number": student_number, **audit.cli_actor()},
            now,
        )
    return hold_id


def lift_hold(db: sqlite_utils.Database, hold_id: int, user_id: int | None, now: datetime) -> None:
    with write_transaction(db):
        row = db.execute(
            "SELECT exam_id, student_number, lifted_at FROM case_hold WHERE id = ?", [hold_id]
        ).fetchone()
        if row is None:
            raise HoldRefused(f"no hold {hold_id}")
        if row[2] is not None:
            raise HoldRefused(f"hold {hold_id} was already lifted at {row[2]}")
        db.execute(
            "UPDATE case_hold SET lifted_at = ?, lifted_by = ? WHERE id = ?", [to_wire(now), user_id, hold_id]
        )
        audit.insert(
            db,
            user_id,
            "hold_lifted",
            row[0],
            None,
            {"hold": hold_id, "student_number": row[1], **audit.cli_actor()},
            now,
        )


def holds(
    db: sqlite_utils.Database, exam_id: int | None = None, open_only: bool = True
) -> list[dict[str, Any]]:
    query = (
        "SELECT h.id, h.exam_id, h.student_number, u.username, unseal(h.exam_id, h.reason), h.placed_at, "
        "h.lifted_at "
        "FROM case_hold h LEFT JOIN user u ON u.id = h.placed_by WHERE 1 = 1"
        + (" AND h.exam_id = ?" if exam_id is not None else "")
        + (" AND h.lifted_at IS NULL" if open_only else "")
        + " ORDER BY h.id"
    )
    keys = ("id", "exam_id", "student_number", "placed_by", "reason", "placed_at", "lifted_at")
    return [
        dict(zip(keys, row, strict=True))
        for row in db.execute(query, [exam_id] if exam_id is not None else [])
    ]


def due_at(ends_at: datetime, retention_days: int) -> datetime:
    return ends_at + timedelta(days=retention_days)


#: How long unclaimed site events are kept when the hall has no exam (an exam's own default, too).
DEFAULT_RETENTION_DAYS = 30


def unclaimed_retention_days(db: sqlite_utils.Database) -> int:
    """Days a site event no session claimed is kept: the longest retention of any exam, as it may belong to
    any of them (a laptop whose agent had not enrolled yet)."""
    row = db.execute("SELECT MAX(retention_days) FROM exam").fetchone()
    return int(row[0]) if row[0] is not None else DEFAULT_RETENTION_DAYS


@dataclass
class ExamDeletion:
    exam_id: int
    title: str
    due_at: datetime
    held_students: list[str]
    counts: dict[str, int] = field(default_factory=dict)
    key_destroyed: bool = False

    @property
    def complete(self) -> bool:
        return not self.held_students


@dataclass
class RetentionRun:
    """What one run deleted (or, dry, would delete): the due exams, and site events no session claimed
    older than ``unclaimed_days``."""

    exams: list[ExamDeletion]
    unclaimed_site_events: int
    unclaimed_days: int


def due_exams(db: sqlite_utils.Database, now: datetime) -> list[ExamDeletion]:
    """Exams past their retention whose data is not yet all gone, with the students still held."""
    result = []
    for exam_id, title, ends_at, days in db.execute(
        "SELECT id, title, ends_at, retention_days FROM exam WHERE retention_done_at IS NULL ORDER BY id"
    ).fetchall():
        due = due_at(from_wire(ends_at), days)
        if due <= now:
            held = sorted({hold["student_number"] for hold in holds(db, exam_id)})
            result.append(ExamDeletion(exam_id, title, due, held))
    return result


#: Tables emptied per session, children first (foreign keys).
_SESSION_TABLES = (
    *("annotation", "observation", "instruction", "capture", "device_event", "site_event", "queue_mark"),
    "screen_text",
)


def _in(values: list[Any]) -> str:
    """``(?,?,…)`` for a list of bound values: only placeholders are formatted into SQL."""
    return "(" + ",".join("?" * len(values)) + ")"


def _ids(db: sqlite_utils.Database, sql: str, params: list[Any]) -> list[Any]:
    return [row[0] for row in db.execute(sql, params)]


def _delete_exam_rows(db: sqlite_utils.Database, deletion: ExamDeletion, blobs: BlobStore) -> None:
    exam_id, held = deletion.exam_id, deletion.held_students
    roster_sql = "SELECT id FROM roster WHERE exam_id = ? AND student_number NOT IN " + _in(held)
    roster_ids = _ids(db, roster_sql, [exam_id, *held])
    sessions = _ids(db, "SELECT id FROM agent_session WHERE roster_id IN " + _in(roster_ids), roster_ids)
    counts: dict[str, int] = {}
    if sessions:
        in_sessions = _in(sessions)
        # Blob files: those of the deleted sessions that no kept session of the exam still uses.
        shas_sql = (
            "SELECT sha256 FROM capture WHERE session_id IN " + in_sessions + " AND sha256 IS NOT NULL "
            "UNION SELECT thumb_sha256 FROM capture WHERE session_id IN " + in_sessions
        )
        kept_sql = (
            "SELECT sha256 FROM capture WHERE exam_id = ? AND session_id NOT IN "
            + in_sessions
            + " UNION SELECT thumb_sha256 FROM capture WHERE exam_id = ? AND session_id NOT IN "
            + in_sessions
        )
        shas = set(_ids(db, shas_sql, [*sessions, *sessions])) - {None}
        kept = set(_ids(db, kept_sql, [exam_id, *sessions, exam_id, *sessions]))
        for table in _SESSION_TABLES:
            counts[table] = db.execute(
                "DELETE FROM " + table + " WHERE session_id IN " + in_sessions, sessions
            ).rowcount
        counts["agent_session"] = db.execute(
            "DELETE FROM agent_session WHERE id IN " + in_sessions, sessions
        ).rowcount
        counts["blob"] = 0
        for sha in sorted(shas - kept):
            path = blobs.path_for(exam_id, sha)
            if path.exists():
                path.unlink()
                counts["blob"] += 1
    if not held:
        # Exam-level rows no session holds: observations without a seat, site events of the exam
        # that were never attributed to a session, and anything left under the exam's blob folder.
        for table in ("observation", "site_event"):
            removed = db.execute("DELETE FROM " + table + " WHERE exam_id = ?", [exam_id]).rowcount
            counts[table] = counts.get(table, 0) + removed
        counts["blob"] = counts.get("blob", 0) + blobs.delete_exam(exam_id)
    if roster_ids:
        counts["queue_claim"] = db.execute(
            "DELETE FROM queue_claim WHERE roster_id IN " + _in(roster_ids), roster_ids
        ).rowcount
        counts["roster"] = db.execute(
            "DELETE FROM roster WHERE id IN " + _in(roster_ids), roster_ids
        ).rowcount
    # Lifted holds name a student and the board's reason: they go with that student's data.
    counts["case_hold"] = db.execute(
        "DELETE FROM case_hold WHERE exam_id = ? AND lifted_at IS NOT NULL AND student_number NOT IN "
        + _in(held),
        [exam_id, *held],
    ).rowcount
    deletion.counts = counts


def _unclaimed_before(now: datetime, days: int) -> str:
    return to_wire(now - timedelta(days=days))


def _count_unclaimed(db: sqlite_utils.Database, now: datetime, days: int) -> int:
    return int(
        db.execute(
            "SELECT COUNT(*) FROM site_event WHERE exam_id IS NULL AND received_at < ?",
            [_unclaimed_before(now, days)],
        ).fetchone()[0]
    )


def _delete_unclaimed(db: sqlite_utils.Database, now: datetime, days: int, by: str) -> int:
    with write_transaction(db):
        removed = int(
            db.execute(
                "DELETE FROM site_event WHERE exam_id IS NULL AND received_at < ?",
                [_unclaimed_before(now, days)],
            ).rowcount
        )
        if removed:
            audit.insert(
                db,
                None,
                "retention_delete",
                None,
                None,
                {"by": by, "counts": {"site_event": removed}, "unclaimed_older_than_days": days},
                now,
            )
    return removed


def _destroy_leftover_keys(db: sqlite_utils.Database, data_dir: Path) -> None:
    """Key files of exams whose key retention destroyed, left by a run that stopped before removing them."""
    for (exam_id,) in db.execute("SELECT exam_id FROM exam_key WHERE destroyed_at IS NOT NULL").fetchall():
        examkeys.destroy(data_dir, exam_id)


def run(
    db: sqlite_utils.Database,
    blobs: BlobStore,
    now: datetime,
    *,
    dry_run: bool = False,
    by: str = "retention",
) -> RetentionRun:
    """Delete everything due at ``now``: the due exams' data, and site events no session claimed received
    longer ago than :func:`unclaimed_retention_days`. With ``dry_run``, only report what would go (and who
    is held)."""
    deletions = due_exams(db, now)
    days = unclaimed_retention_days(db)
    if dry_run:
        return RetentionRun(deletions, _count_unclaimed(db, now, days), days)
    data_dir = examkeys.data_dir_of(db)
    db.execute("PRAGMA secure_delete = ON")
    try:
        _destroy_leftover_keys(db, data_dir)
        for deletion in deletions:
            with write_transaction(db):
                _delete_exam_rows(db, deletion, blobs)
                if not deletion.complete and not any(deletion.counts.values()):
                    continue  # everything deletable went on an earlier run; the held cases stay
                if deletion.complete:
                    db.execute(
                        "UPDATE exam_key SET wrapped = NULL, destroyed_at = ? WHERE exam_id = ?",
                        [to_wire(now), deletion.exam_id],
                    )
                    db.execute(
                        "UPDATE exam SET retention_done_at = ?, join_code = '' WHERE id = ?",
                        [to_wire(now), deletion.exam_id],
                    )
                    deletion.key_destroyed = True
                # The logs outlive the data: they count the held students, never name them.
                logged_counts = {**deletion.counts, "held_students": len(deletion.held_students)}
                db.execute(
                    "INSERT INTO deletion_log (exam_id, at, by, complete, held_students, counts) "
                    "VALUES (?,?,?,?,'[]',?)",
                    [deletion.exam_id, to_wire(now), by, int(deletion.complete), json.dumps(logged_counts)],
                )
                audit.insert(
                    db,
                    None,
                    "retention_delete",
                    deletion.exam_id,
                    None,
                    {"by": by, "counts": logged_counts, "key_destroyed": deletion.key_destroyed},
                    now,
                )
            if deletion.key_destroyed:
                # Once the row saying so committed; a crash before this line leaves a file that the
                # next run removes, and that no reader opens meanwhile (its key is marked destroyed).
                examkeys.destroy(data_dir, deletion.exam_id)
                sealed.keys_of(db).forget()
        unclaimed = _delete_unclaimed(db, now, days, by)
        if deletions or unclaimed:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.execute("PRAGMA secure_delete = OFF")
    return RetentionRun(deletions, unclaimed, days)


def deletion_log(db: sqlite_utils.Database, exam_id: int | None = None) -> list[dict[str, Any]]:
    keys = ("id", "exam_id", "at", "by", "complete", "held_students", "counts")
    rows = db.execute(
        "SELECT id, exam_id, at, by, complete, held_students, counts FROM deletion_log"
        + (" WHERE exam_id = ?" if exam_id is not None else "")
        + " ORDER BY id",
        [exam_id] if exam_id is not None else [],
    ).fetchall()
    return [
        {
            **dict(zip(keys, row, strict=True)),
            "held_students": json.loads(row[5]),
            "counts": json.loads(row[6]),
        }
        for row in rows
    ]


RUN_STATUS = "retention.json"


def record_run(data_dir: Path, ok: bool, exams: int) -> None:
    """Note when ``invigil-server retention`` ran and how it ended, for the metrics (``last_run``)."""
    status = {"at": time.time(), "ok": ok, "exams": exams}
    private_files.write_file(Path(data_dir) / RUN_STATUS, json.dumps(status).encode())


def last_run(data_dir: Path) -> dict[str, Any] | None:
    """``{"at": epoch seconds, "ok": bool, "exams": deleted}`` of the last run, or None."""
    try:
        status = json.loads((Path(data_dir) / RUN_STATUS).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return status if isinstance(status, dict) and {"at", "ok", "exams"} <= set(status) else None
