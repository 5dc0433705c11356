"""The audit log: who viewed or exported which student's captures, who placed or lifted a hold, what
retention deleted. Append-only (a trigger refuses UPDATE); the exam board reads it with
``invigil-server audit``.

:func:`insert` is the one function that writes a row: inside the caller's transaction, by :func:`record` in
a transaction of its own, or in batches by :class:`AuditBuffer`.
"""

from __future__ import annotations

import getpass
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Concatenate, ParamSpec

import sqlite_utils

from hall_server.store.db import write_transaction
from invigil.timeutil import to_wire, utc_now

P = ParamSpec("P")

#: Actions this package writes; the dashboard writes its own (login, seat views, …) into the same table.
ACTIONS = (
    "report_view",
    "report_export",
    "exam_export",
    "gdpr_export",
    "capture_view",
    "finding_recorded",
    "hold_placed",
    "hold_lifted",
    "retention_delete",
    "queue_view",
    "queue_nothing_here",
    "queue_reopened",
    "queue_assigned",
    "queue_released",
    "password_changed",
    "user_disabled",
    "user_enabled",
    "user_removed",
    "assignment_removed",
    "review_overview",
    "review_search",
)


def cli_actor() -> dict[str, str]:
    """What the audit detail says about a command run on the appliance without a staff account."""
    try:
        return {"os_user": getpass.getuser()}
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return {"os_user": "unknown"}


def insert(
    db: sqlite_utils.Database,
    user_id: int | None,
    action: str,
    exam_id: int | None = None,
    session_id: int | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> int:
    """One audit row inside the caller's write transaction (so the row commits with what it records)."""
    cursor = db.execute(
        "INSERT INTO audit_log (at, user_id, action, exam_id, session_id, detail) VALUES (?,?,?,?,?,?)",
        [to_wire(at or utc_now()), user_id, action, exam_id, session_id, json.dumps(detail or {})],
    )
    return int(cursor.lastrowid or 0)


def _in_own_transaction(
    write: Callable[Concatenate[sqlite_utils.Database, P], int],
) -> Callable[Concatenate[sqlite_utils.Database, P], int]:
    def written(db: sqlite_utils.Database, *args: P.args, **kwargs: P.kwargs) -> int:
        """One audit row (the arguments of :func:`insert`) in a write transaction of its own, for a row
        that records no other write; returns its id."""
        with write_transaction(db):
            return write(db, *args, **kwargs)

    return written


record = _in_own_transaction(insert)


@dataclass
class AuditBuffer:
    """Thumbnail views (one audit row per answer of the thumbnail batch, one per single thumbnail), written in
    batches (one transaction per tick of the live bus).

    A dashboard fetches a thumbnail for every screen change of every seat: a commit (and fsync) per fetch
    would compete with the agents' uploads. Rows reach the log within about a second.
    """

    max_rows: int = 5000
    _rows: list[tuple[datetime, int, str, int, int | None, dict[str, Any]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self, user_id: int, action: str, exam_id: int, session_id: int | None, detail: dict[str, Any]
    ) -> bool:
        """Collect one row; True when the buffer is full and the caller should flush now."""
        with self._lock:
            self._rows.append((utc_now(), user_id, action, exam_id, session_id, detail))
            return len(self._rows) >= self.max_rows

    def flush(self, db: sqlite_utils.Database) -> int:
        """Write what was collected, in one transaction; returns how many rows."""
        with self._lock:
            rows, self._rows = self._rows, []
        if rows:
            with write_transaction(db):
                for at, user_id, action, exam_id, session_id, detail in rows:
                    insert(db, user_id, action, exam_id, session_id, detail, at)
        return len(rows)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    user_id: int | None
    username: str | None
    action: str
    exam_id: int | None
    session_id: int | None
    student_number: str | None
    detail: dict[str, Any]

    @property
    def who(self) -> str:
        if self.username:
            return self.username
        os_user = self.detail.get("os_user")
        return f"(appliance: {os_user})" if os_user else "(system)"


def read_log(
    db: sqlite_utils.Database,
    *,
    exam_id: int | None = None,
    session_id: int | None = None,
    student_number: str | None = None,
    user_id: int | None = None,
    action: str | None = None,
    since: str | None = None,
    limit: int = 10_000,
    newest_first: bool = False,
    before_id: int | None = None,
) -> list[AuditEntry]:
    """Audit rows, oldest first (or ``newest_first``), filtered by any of the arguments. ``student_number``
    matches rows about any session of that student, and rows whose detail names the student (exports,
    holds). ``before_id`` pages back: only rows written before that row (ids grow with every row)."""
    where: list[str] = []
    params: list[Any] = []
    if exam_id is not None:
        where.append("a.exam_id = ?")
        params.append(exam_id)
    if session_id is not None:
        where.append("a.session_id = ?")
        params.append(session_id)
    if student_number is not None:
        where.append(
            "(r.student_number = ? OR json_extract(a.detail, '$.student_number') = ? OR EXISTS "
            "(SELECT 1 FROM json_each(a.detail, '$.students') j WHERE j.value = ?))"
        )
        params += [student_number, student_number, student_number]
    if user_id is not None:
        where.append("a.user_id = ?")
        params.append(user_id)
    if action is not None:
        where.append("a.action = ?")
        params.append(action)
    if since is not None:
        where.append("a.at >= ?")
        params.append(since)
    if before_id is not None:
        where.append("a.id < ?")
        params.append(before_id)
    sql = (
        "SELECT a.id, a.at, a.user_id, u.username, a.action, a.exam_id, a.session_id, "
        "COALESCE(r.student_number, json_extract(a.detail, '$.student_number')), a.detail "
        "FROM audit_log a LEFT JOIN user u ON u.id = a.user_id "
        "LEFT JOIN agent_session s ON s.id = a.session_id LEFT JOIN roster r ON r.id = s.roster_id"
        + (" WHERE " + " AND ".join(where) if where else "")
        + (" ORDER BY a.id DESC LIMIT ?" if newest_first else " ORDER BY a.at, a.id LIMIT ?")
    )
    rows = db.execute(sql, [*params, limit]).fetchall()
    return [
        AuditEntry(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], _detail(row[8]))
        for row in rows
    ]


def _detail(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"raw": text}
    return value if isinstance(value, dict) else {"value": value}
