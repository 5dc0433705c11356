"""The reviewer's exam overview and search: which students still have unreviewed observations (counts per
kind, never a score), and "who opened X, when" across an exam's students.

An observation is reviewed once a current verdict (not a note) of its session names it or covers its
moment: a span that contains it, or a moment finding within one capture interval of it.
:func:`unreviewed` is pure.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlite_utils

from hall_server.review import findings
from invigil.timeutil import from_wire

SEARCH_LIMIT = 300
#: Matches of one student further apart than this are separate hits.
RUN_GAP = timedelta(minutes=5)


@dataclass
class StudentRow:
    roster_id: int
    student_number: str
    name: str
    seat: str | None
    session_ids: list[int] = field(default_factory=list)
    observations: Counter[str] = field(default_factory=Counter)
    unreviewed: Counter[str] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)  # by status
    on_hold: bool = False

    @property
    def unreviewed_total(self) -> int:
        return sum(self.unreviewed.values())


def unreviewed(
    observations: Sequence[tuple[int, datetime]],
    verdicts: Sequence[findings.Finding],
    slack: timedelta,
) -> set[int]:
    """Ids of ``observations`` ((id, at)) that no verdict covers (pure; one session's data)."""
    named: set[int] = set()
    spans: list[tuple[datetime, datetime]] = []
    for finding in verdicts:
        current = finding.current
        if current.kind not in findings.VERDICTS:
            continue
        if current.observation_id is not None:
            named.add(current.observation_id)
        start = from_wire(current.span_start)
        end = from_wire(current.span_end) if current.span_end else start
        spans.append((start - slack, end + slack) if current.span_end is None else (start, end))
    return {
        obs_id
        for obs_id, at in observations
        if obs_id not in named and not any(start <= at <= end for start, end in spans)
    }


def exam_overview(db: sqlite_utils.Database, exam_id: int) -> list[StudentRow]:
    """Every roster entry of the exam, most unreviewed observations first, then by seat and number."""
    interval = db.execute("SELECT capture_interval_s FROM exam WHERE id = ?", [exam_id]).fetchone()
    slack = timedelta(seconds=interval[0] if interval else 5)
    rows: dict[int, StudentRow] = {}
    for roster_id, number, name, seat in db.execute(
        "SELECT id, student_number, unseal(exam_id, name), seat FROM roster WHERE exam_id = ?", [exam_id]
    ):
        rows[roster_id] = StudentRow(roster_id, number, name, seat)
    session_roster: dict[int, int] = {}
    for session_id, roster_id in db.execute(
        "SELECT id, roster_id FROM agent_session WHERE exam_id = ? ORDER BY enrolled_at, id", [exam_id]
    ):
        if roster_id in rows:
            rows[roster_id].session_ids.append(session_id)
            session_roster[session_id] = roster_id
    by_session: dict[int, list[tuple[int, datetime]]] = {}
    kinds: dict[int, str] = {}
    for obs_id, session_id, kind, at in db.execute(
        "SELECT id, session_id, kind, at FROM observation WHERE exam_id = ? AND session_id IS NOT NULL",
        [exam_id],
    ):
        if session_id in session_roster:
            by_session.setdefault(session_id, []).append((obs_id, from_wire(at)))
            kinds[obs_id] = kind
            rows[session_roster[session_id]].observations[kind] += 1
    entries = findings.exam_entries(db, exam_id)
    for session_id, roster_id in session_roster.items():
        resolved = findings.resolve(entries.get(session_id, []))
        for finding in resolved:
            rows[roster_id].findings[finding.status] += 1
        for obs_id in unreviewed(by_session.get(session_id, []), resolved, slack):
            rows[roster_id].unreviewed[kinds[obs_id]] += 1
    for (number,) in db.execute(
        "SELECT DISTINCT student_number FROM case_hold WHERE exam_id = ? AND lifted_at IS NULL", [exam_id]
    ):
        for row in rows.values():
            if row.student_number == number:
                row.on_hold = True
    return sorted(
        rows.values(),
        key=lambda r: (-r.unreviewed_total, -sum(r.observations.values()), r.seat or "~", r.student_number),
    )


@dataclass(frozen=True)
class Hit:
    """One run of a matching site or application in a student's session: first seen ``at``."""

    student_number: str
    name: str
    session_id: int
    at: str
    until: str
    what: str  # "site" or "application"
    label: str
    detail: str
    count: int


def search(db: sqlite_utils.Database, exam_id: int, text: str, limit: int = SEARCH_LIMIT) -> list[Hit]:
    """Site events whose host, and changed captures whose application or window title, contain ``text``
    (case-insensitive), grouped into runs per student; ordered by student then time."""
    needle = text.strip().lower()
    if not needle:
        return []
    hits: list[Hit] = []
    site_rows = db.execute(
        "SELECT r.student_number, unseal(r.exam_id, r.name), s.id, e.time, "
        "unseal(e.exam_id, e.host) AS open_host, e.decision, e.source FROM site_event e "
        "JOIN agent_session s ON s.id = e.session_id JOIN roster r ON r.id = s.roster_id "
        "WHERE s.exam_id = ? AND instr(lower(open_host), ?) > 0 ORDER BY r.student_number, e.time LIMIT ?",
        [exam_id, needle, limit * 20],
    ).fetchall()
    hits += _runs(site_rows, "site", lambda row: (row[4], f"{row[5]} ({row[6]})"))
    app_rows = db.execute(
        "SELECT r.student_number, unseal(r.exam_id, r.name), s.id, c.agent_time, "
        "unseal(c.exam_id, c.focused_app) AS open_app, unseal(c.exam_id, c.window_title) AS "
        "open_title FROM capture c "
        "JOIN agent_session s ON s.id = c.session_id JOIN roster r ON r.id = s.roster_id "
        "WHERE c.exam_id = ? AND c.changed = 1 AND (instr(lower(coalesce(open_app, '')), ?) > 0 "
        "OR instr(lower(coalesce(open_title, '')), ?) > 0) "
        "ORDER BY r.student_number, c.agent_time LIMIT ?",
        [exam_id, needle, needle, limit * 20],
    ).fetchall()
    hits += _runs(app_rows, "application", lambda row: (row[4] or "", row[5] or ""))
    hits.sort(key=lambda hit: (hit.student_number, hit.at))
    return hits[:limit]


def _runs(rows: list[Any], what: str, describe: Any, gap: timedelta = RUN_GAP) -> list[Hit]:
    """Rows of one session with the same description, each within ``gap`` of the previous, become one
    hit (pure): a site visited twice an hour apart is two hits."""
    hits: list[Hit] = []
    previous: tuple[int, tuple[str, str]] | None = None
    for row in rows:
        label = describe(row)
        if previous == (row[2], label) and from_wire(row[3]) - from_wire(hits[-1].until) <= gap:
            last = hits[-1]
            hits[-1] = dataclasses.replace(last, until=row[3], count=last.count + 1)
            continue
        hits.append(Hit(row[0], row[1], row[2], row[3], row[3], what, label[0], label[1], 1))
        previous = (row[2], label)
    return hits


def student(db: sqlite_utils.Database, exam_id: int, student_number: str) -> dict[str, Any] | None:
    """A roster entry of the exam with its agent sessions (oldest first), or None."""
    row = db.execute(
        "SELECT id, student_number, unseal(exam_id, name), seat, extra_time_min FROM roster WHERE "
        "exam_id = ? "
        "AND student_number = ?",
        [exam_id, student_number],
    ).fetchone()
    if row is None:
        return None
    sessions = [
        {"id": sid, "enrolled_at": enrolled, "ended_at": ended, "agent_id": agent}
        for sid, enrolled, ended, agent in db.execute(
            "SELECT id, enrolled_at, ended_at, agent_id FROM agent_session WHERE roster_id = ? "
            "ORDER BY enrolled_at, id",
            [row[0]],
        )
    ]
    keys = ("roster_id", "student_number", "name", "seat", "extra_time_min")
    return {**dict(zip(keys, row, strict=True)), "sessions": sessions}
