"""Who may open which exam, and when: the one access rule of the dashboard, the review pages and the CLI.

An assignment (``assignment`` row) gives a user a task (role) for one exam, or for every exam of a hall.
Access follows the task and ends by itself:

- **watching** (invigilator, organiser: the live hall view) runs from the exam's enrolment window
  (``enrol_early_s`` before its start) to ``watch_after_s`` after its end;
- **reviewing** (reviewer, exam board) runs until the end of the exam's review period: its retention
  period after the end (``exam.retention_days``), or for as long as a case of it is on hold;
- an assignment bounded in time (``valid_from``/``valid_until``, set with ``invigil-provision user assign
  --from/--until``) opens only exams whose window overlaps it, and nothing once ``valid_until`` passed. A
  hall-level invigilator's or organiser's assignment starts when it is made (``valid_from`` = then), so it
  never opens the hall's past exams.

The rule is SQL joined on ``exam e`` (see :func:`join`), so a list of exams and a check of one run the same
condition. Wire times are ISO 8601 UTC strings of one length, so they compare as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from invigil.timeutil import to_wire

WATCH_ROLES = ("invigilator", "organiser")
REVIEW_ROLES = ("reviewer", "exam_board")


@dataclass(frozen=True)
class Windows:
    """How long around an exam watching it is open (from the settings)."""

    enrol_early_s: int = 1800
    watch_after_s: int = 12 * 3600

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Windows:
        return cls(int(settings["enrol_early_s"]), int(float(settings["invigilator_access_after_h"]) * 3600))


def join(task: str, now: datetime, windows: Windows = Windows()) -> tuple[str, list[Any]]:
    """``JOIN assignment a ON ...`` for ``task`` "watch" or "review" at ``now``, and its parameters (they
    come before any of the query's own)."""
    roles = WATCH_ROLES if task == "watch" else REVIEW_ROLES
    wire_now = to_wire(now)
    sql = (
        "JOIN assignment a ON (a.exam_id = e.id OR (a.exam_id IS NULL AND a.hall_id = e.hall_id)) "
        f"AND a.role IN ({', '.join('?' * len(roles))}) "
        "AND (a.valid_from IS NULL OR a.valid_from <= e.ends_at) "
        "AND (a.valid_until IS NULL OR (a.valid_until >= e.starts_at AND a.valid_until >= ?)) "
        "AND (a.valid_from IS NULL OR a.valid_from <= ?) "
        "JOIN user u_access ON u_access.id = a.user_id AND u_access.disabled = 0 "
    )
    params: list[Any] = [*roles, wire_now, wire_now]
    if task == "watch":
        sql += "AND e.starts_at <= ? AND e.ends_at >= ? "
        params += [to_wire(now + timedelta(seconds=windows.enrol_early_s)),
                   to_wire(now - timedelta(seconds=windows.watch_after_s))]  # fmt: skip
    else:
        sql += (
            "AND (julianday(e.ends_at) + e.retention_days >= julianday(?) OR EXISTS "
            "(SELECT 1 FROM case_hold h WHERE h.exam_id = e.id AND h.lifted_at IS NULL)) "
        )
        params.append(wire_now)
    return sql, params


def review_roles(db: Any, user_id: int, exam_id: int, now: datetime) -> frozenset[str]:
    """The review roles (reviewer, exam_board) ``user_id`` holds for this exam now; empty: no access."""
    sql, params = join("review", now)
    rows = db.execute(
        f"SELECT DISTINCT a.role FROM exam e {sql} WHERE e.id = ? AND a.user_id = ?",  # noqa: S608 (constant)
        [*params, exam_id, user_id],
    ).fetchall()
    return frozenset(row[0] for row in rows)


def may_watch(db: Any, user_id: int, exam_id: int, now: datetime, windows: Windows = Windows()) -> bool:
    """Whether ``user_id`` may watch this exam's live hall now."""
    sql, params = join("watch", now, windows)
    row = db.execute(
        f"SELECT 1 FROM exam e {sql} WHERE e.id = ? AND a.user_id = ? LIMIT 1",  # noqa: S608 (constant)
        [*params, exam_id, user_id],
    ).fetchone()
    return row is not None
