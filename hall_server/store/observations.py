"""Observations that span time: the one open ``capture_gap`` of a session, and closing it.

An observation is inserted once (``hall_server.ingest.sessions.add_observation``); one that spans time is
closed once more: ``closed_at`` (server time) is set and its sealed detail rewritten with the end of the
span. A unique index (migration m012_capture_gaps) holds at most one open capture gap per session,
whatever process raises it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlite_utils

from hall_server.store import sealed
from invigil.timeutil import to_wire


@dataclass(frozen=True)
class OpenGap:
    id: int
    exam_id: int
    session_id: int
    detail: dict[str, Any]


def open_capture_gap(db: sqlite_utils.Database, session_id: int) -> OpenGap | None:
    """The session's capture gap that is not closed yet, or None (read through the unique index)."""
    row = db.execute(
        "SELECT id, exam_id, unseal(exam_id, detail) FROM observation "
        "WHERE session_id = ? AND kind = 'capture_gap' AND closed_at IS NULL",
        [session_id],
    ).fetchone()
    if row is None:
        return None
    try:
        detail = json.loads(row[2] or "{}")
    except ValueError:
        detail = {}
    return OpenGap(row[0], row[1], session_id, detail if isinstance(detail, dict) else {})


def close(
    db: sqlite_utils.Database, observation_id: int, exam_id: int, closed_at: datetime, detail: dict[str, Any]
) -> bool:
    """Close an open observation with its final ``detail`` (sealed again); False when it was closed
    already. Call inside a write transaction."""
    cursor = db.execute(
        "UPDATE observation SET closed_at = ?, detail = ? WHERE id = ? AND closed_at IS NULL",
        [to_wire(closed_at), sealed.seal(db, exam_id, json.dumps(detail)), observation_id],
    )
    return cursor.rowcount == 1
