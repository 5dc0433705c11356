"""The invigilator's view of a hall, read from the store: seat records, observations, seat detail and which
stored image a capture's thumbnail or screen is. The states themselves come from the pure merge in
``hall_server.live.seatstate``; the images are read through ``hall_server.store.screens``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlite_utils

from hall_server.live.seatstate import SessionFacts, Thresholds, merge_seats, seat_sort_key
from hall_server.store.exams import ExamFacts
from invigil.timeutil import from_wire

# ------------------------------------------------------------------------------------------------ queries

# "Latest" is by the server's receive time, never the agent's claimed time: an agent whose clock says 2099
# must not pin its tile or its detail panel (both times are shown; docs/dashboard.md).
_SEAT_QUERY = """
    SELECT r.id, r.student_number, unseal(r.exam_id, r.name), r.seat, r.extra_time_min,
           r.attendance_checked_at,
           s.id, s.agent_id, s.last_seen_at, s.state, s.ended_at,
           (SELECT c.capture_id || ' ' || c.thumb_sha256 FROM capture c
             WHERE c.session_id = s.id AND c.thumb_sha256 IS NOT NULL
             ORDER BY c.received_at DESC, c.rowid DESC LIMIT 1)
    FROM roster r LEFT JOIN agent_session s ON s.id = (
        SELECT s2.id FROM agent_session s2 WHERE s2.roster_id = r.id ORDER BY s2.enrolled_at DESC, s2.id DESC
        LIMIT 1)
    WHERE r.exam_id = ?
"""


def _open_observations(
    db: sqlite_utils.Database, exam_id: int, roster_ids: list[int] | None
) -> dict[int, dict[str, int]]:
    query = (
        "SELECT s.roster_id, o.kind, COUNT(*) FROM observation o JOIN agent_session s ON s.id = o.session_id "
        "WHERE o.exam_id = ? AND o.acknowledged_at IS NULL"
    )
    params: list[Any] = [exam_id]
    if roster_ids is not None:
        query += f" AND s.roster_id IN ({','.join('?' * len(roster_ids))})"
        params += roster_ids
    counts: dict[int, dict[str, int]] = {}
    for roster_id, kind, count in db.execute(query + " GROUP BY s.roster_id, o.kind", params):
        counts.setdefault(roster_id, {})[kind] = count
    return counts


def seats(
    db: sqlite_utils.Database,
    exam: ExamFacts,
    now: datetime,
    thresholds: Thresholds,
    discovered: Mapping[str, bool] | None = None,
    roster_ids: list[int] | None = None,
) -> list[dict[str, Any]]:
    """The seat records the dashboard draws (all of the exam, or only ``roster_ids``), sorted by seat.

    Each record is small JSON: ``r`` roster id, ``seat``, ``no`` student number, ``name``, ``extra`` minutes,
    ``id_ok`` attendance checked, ``sid`` session, ``state``, ``thumb`` capture id + ``tv`` version of its
    thumbnail, ``obs`` open observation count, ``kinds`` their kinds, ``help`` an open help request,
    ``row``/``col`` from the hall's seat map.
    """
    query, params = _SEAT_QUERY, [exam.id]
    if roster_ids is not None:
        if not roster_ids:
            return []
        query += f" AND r.id IN ({','.join('?' * len(roster_ids))})"
        params += roster_ids
    places = {str(entry.get("seat")): entry for entry in exam.seat_map if isinstance(entry, dict)}
    observations = _open_observations(db, exam.id, roster_ids)
    rows, sessions = [], {}
    for row in db.execute(query, params).fetchall():
        roster_id, seat_label = row[0], row[3]
        place = places.get(str(seat_label)) if seat_label is not None else None
        thumb, thumb_version = (row[11].split(" ", 1) + [""])[:2] if row[11] else (None, None)
        kinds = observations.get(roster_id, {})
        rows.append(
            {
                "r": roster_id,
                "seat": seat_label,
                "no": row[1],
                "name": row[2],
                "extra": row[4],
                "id_ok": row[5] is not None,
                "thumb": thumb,
                "tv": thumb_version[:12] if thumb_version else None,
                "obs": sum(kinds.values()),
                "kinds": sorted(kinds),
                "help": "help_request" in kinds,
                "row": place.get("row") if place else None,
                "col": place.get("col") if place else None,
            }
        )
        if row[6] is not None:
            sessions[roster_id] = SessionFacts(
                session_id=row[6],
                agent_id=row[7],
                last_seen_at=from_wire(row[8]),
                state=row[9],
                ended_at=from_wire(row[10]) if row[10] else None,
            )
    merged = merge_seats(rows, sessions, discovered or {}, now, exam.capture_interval_s, thresholds)
    if roster_ids is not None:  # a partial update never carries the unenrolled laptops
        merged = [seat for seat in merged if seat["r"] is not None]
    return sorted(merged, key=seat_sort_key)


def roster_ids_for_sessions(db: sqlite_utils.Database, session_ids: Iterable[int]) -> dict[int, list[int]]:
    """{exam id: [roster ids]} of agent sessions: which seats a session's change touches."""
    ids = sorted(set(session_ids))
    if not ids:
        return {}
    result: dict[int, list[int]] = {}
    for exam_id, roster_id in db.execute(
        f"SELECT exam_id, roster_id FROM agent_session WHERE id IN ({','.join('?' * len(ids))})",  # noqa: S608
        ids,
    ):
        result.setdefault(exam_id, []).append(roster_id)
    return result


def observations(
    db: sqlite_utils.Database,
    exam_id: int,
    *,
    ids: list[int] | None = None,
    limit: int = 200,
    open_only: bool = False,
    roster_id: int | None = None,
) -> list[dict[str, Any]]:
    """Observations of an exam, newest first, with the seat and student they belong to."""
    query = (
        "SELECT o.id, o.session_id, s.roster_id, r.seat, r.student_number, unseal(r.exam_id, r.name), "
        "o.kind, o.at, unseal(o.exam_id, o.detail), "
        "o.acknowledged_at, u.username FROM observation o LEFT JOIN agent_session s ON s.id = o.session_id "
        "LEFT JOIN roster r ON r.id = s.roster_id LEFT JOIN user u ON u.id = o.acknowledged_by "
        "WHERE o.exam_id = ?"
    )
    params: list[Any] = [exam_id]
    if ids is not None:
        if not ids:
            return []
        query += f" AND o.id IN ({','.join('?' * len(ids))})"
        params += ids
    if open_only:
        query += " AND o.acknowledged_at IS NULL"
    if roster_id is not None:
        query += " AND s.roster_id = ?"
        params.append(roster_id)
    query += " ORDER BY o.id DESC LIMIT ?"
    params.append(limit)
    items = []
    for row in db.execute(query, params):
        try:
            detail = json.loads(row[8] or "{}")  # NULL once retention destroyed the exam's key
        except ValueError:
            detail = {}
        items.append(
            {
                "id": row[0],
                "sid": row[1],
                "r": row[2],
                "seat": row[3],
                "no": row[4],
                "name": row[5],
                "kind": row[6],
                "at": row[7],
                "detail": detail,
                "acked_at": row[9],
                "acked_by": row[10],
            }
        )
    return items


def seat_detail(db: sqlite_utils.Database, exam_id: int, roster_id: int) -> dict[str, Any] | None:
    """The seat detail panel: latest full capture, recent sites, device events (latest as received, with
    the agent's claimed time beside the server's), all sessions."""
    roster = db.execute(
        "SELECT id, student_number, unseal(exam_id, name), seat, extra_time_min, attendance_checked_at, "
        "(SELECT username FROM user WHERE id = attendance_checked_by) "
        "FROM roster WHERE id = ? AND exam_id = ?",
        [roster_id, exam_id],
    ).fetchone()
    if roster is None:
        return None
    session = db.execute(
        "SELECT id, agent_id, unseal(exam_id, client_ip), agent_version, os, enrolled_at, "
        "last_seen_at, state, backlog, "
        "ended_at FROM agent_session WHERE roster_id = ? ORDER BY enrolled_at DESC, id DESC LIMIT 1",
        [roster_id],
    ).fetchone()
    detail: dict[str, Any] = {
        "r": roster[0],
        "no": roster[1],
        "name": roster[2],
        "seat": roster[3],
        "extra": roster[4],
        "id_checked_at": roster[5],
        "id_checked_by": roster[6],
        "session": None,
        "capture": None,
        "sites": [],
        "devices": [],
    }
    if session is None:
        return detail
    sid = session[0]
    keys = ("id", "agent_id", "client_ip", "agent_version", "os", "enrolled_at", "last_seen_at", "state")
    detail["session"] = dict(zip(keys + ("backlog", "ended_at"), session, strict=True))
    capture = db.execute(
        "SELECT capture_id, agent_time, received_at, monitor, width, height, "
        "unseal(exam_id, focused_app), unseal(exam_id, window_title) "
        "FROM capture WHERE session_id = ? AND changed = 1 ORDER BY received_at DESC, rowid DESC LIMIT 1",
        [sid],
    ).fetchone()
    if capture:
        names = (
            "id",
            "agent_time",
            "received_at",
            "monitor",
            "width",
            "height",
            "focused_app",
            "window_title",
        )
        detail["capture"] = dict(zip(names, capture, strict=True))
    detail["sites"] = [
        {"time": row[0], "host": row[1], "decision": row[2], "source": row[3]}
        for row in db.execute(
            "SELECT time, unseal(exam_id, host), decision, source FROM site_event WHERE session_id = ? "
            "ORDER BY time DESC "
            "LIMIT 25",
            [sid],
        )
    ]
    detail["devices"] = [
        {"kind": row[0], "agent_time": row[1], "received_at": row[2], "detail": json.loads(row[3] or "{}")}
        for row in db.execute(
            "SELECT kind, agent_time, received_at, unseal(exam_id, detail) FROM device_event WHERE "
            "session_id = ? "
            "ORDER BY received_at DESC, rowid DESC LIMIT 25",
            [sid],
        )
    ]
    return detail


def capture_blob(
    db: sqlite_utils.Database, session_id: int, capture_id: str, thumbnail: bool
) -> tuple[int, str, str] | None:
    """(exam id, sha256, format) of a capture's image or thumbnail blob, or None."""
    row = db.execute(
        "SELECT exam_id, thumb_sha256, sha256, format FROM capture WHERE session_id = ? AND capture_id = ? "
        "AND changed = 1",
        [session_id, capture_id],
    ).fetchone()
    if row is None:
        return None
    sha = row[1] if thumbnail else row[2]
    return (row[0], sha, row[3]) if sha else None


def thumbnail_blobs(
    db: sqlite_utils.Database, exam_id: int, wanted: list[tuple[int, str]]
) -> list[tuple[int, str, str]]:
    """(session id, capture id, thumbnail sha256) of the wanted captures that belong to ``exam_id``."""
    found = []
    for session_id, capture_id in wanted:
        row = db.execute(
            "SELECT thumb_sha256 FROM capture WHERE session_id = ? AND capture_id = ? AND exam_id = ? "
            "AND thumb_sha256 IS NOT NULL",
            [session_id, capture_id, exam_id],
        ).fetchone()
        if row is not None:
            found.append((session_id, capture_id, row[0]))
    return found


def students_of(db: sqlite_utils.Database, session_ids: set[int]) -> list[str]:
    """The student numbers of these sessions, sorted (what an audit row of a view names)."""
    if not session_ids:
        return []
    marks = ",".join("?" * len(session_ids))
    query = (
        "SELECT DISTINCT r.student_number FROM agent_session s JOIN roster r ON r.id = s.roster_id "  # noqa: S608
        f"WHERE s.id IN ({marks}) ORDER BY r.student_number"
    )
    rows = db.execute(
        query,
        sorted(session_ids),
    ).fetchall()
    return [row[0] for row in rows]
