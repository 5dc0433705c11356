"""Halls, exams, rosters and exam keys: setting up an exam (provisioning) and the one reader of an exam's
header and a student's roster entry (the live view, the reviewer's pages, reports and exports).
"""

from __future__ import annotations

import json
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlite_utils

from hall_server.store import examkeys, sealed
from hall_server.store.db import write_transaction
from invigil.timeutil import from_wire, to_wire, utc_now

#: Join codes avoid characters a student confuses when reading them off a projector (0/O, 1/I/L).
JOIN_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
JOIN_CODE_LENGTH = 8


class BadText(ValueError):
    """Organiser-entered text with a control character: it would break a file or header it reaches."""


#: Besides C0/C1 controls, line and paragraph separators and lone surrogates: the bidirectional overrides
#: and isolates, which make a name read differently from what it is.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def control_character(text: str) -> int | None:
    """The index of the first control character in ``text`` (pure), or None. Letters of every script,
    spaces and joiners (U+200C, U+200D: part of many names) are fine."""
    for index, char in enumerate(text):
        if unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") or char in _BIDI_CONTROLS:
            return index
    return None


def check_text(text: str, what: str) -> str:
    """``text`` unless it holds a control character; else :class:`BadText` naming the field ``what``, the
    character and its position. Organiser-entered text goes into files and headers; a line break there
    starts a new line of whatever it lands in (the proxy's policy, a CSV row, a report header)."""
    index = control_character(text)
    if index is not None:
        raise BadText(
            f"{what} {text!r} contains a control character (U+{ord(text[index]):04X} at position "
            f"{index + 1}); write it on one line, without tabs or other control characters"
        )
    return text


def new_join_code() -> str:
    return "".join(secrets.choice(JOIN_CODE_ALPHABET) for _ in range(JOIN_CODE_LENGTH))


@dataclass(frozen=True)
class RosterEntry:
    student_number: str
    name: str
    extra_time_min: int = 0
    seat: str | None = None


@dataclass(frozen=True)
class ExamFacts:
    """An exam's header: what every page, report and export says about the exam itself."""

    id: int
    hall_id: int
    hall: str
    title: str
    starts_at: datetime
    ends_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    capture_interval_s: int
    retention_days: int
    #: When retention deleted the exam's data (its key, blobs and records), or None.
    retention_done_at: str | None
    seat_map: list[dict[str, Any]]

    def to_json(self, now: datetime, max_extra_min: int = 0) -> dict[str, Any]:
        """The exam clock the dashboard header shows."""
        return {
            "id": self.id,
            "title": self.title,
            "starts_at": to_wire(self.starts_at),
            "ends_at": to_wire(self.ends_at),
            "last_end_at": to_wire(self.ends_at + timedelta(minutes=max_extra_min)),
            "started_at": to_wire(self.started_at) if self.started_at else None,
            "ended_at": to_wire(self.ended_at) if self.ended_at else None,
            "server_time": to_wire(now),
            "capture_interval_s": self.capture_interval_s,
        }


def exam_facts(db: sqlite_utils.Database, exam_id: int) -> ExamFacts | None:
    """The exam's header, or None when there is no such exam."""
    row = db.execute(
        "SELECT e.id, e.hall_id, h.name, e.title, e.starts_at, e.ends_at, e.started_at, e.ended_at, "
        "e.capture_interval_s, e.retention_days, e.retention_done_at, h.seat_map "
        "FROM exam e JOIN hall h ON h.id = e.hall_id WHERE e.id = ?",
        [exam_id],
    ).fetchone()
    if row is None:
        return None
    try:
        seat_map = json.loads(row[11] or "[]")
    except ValueError:
        seat_map = []
    return ExamFacts(
        id=row[0],
        hall_id=row[1],
        hall=row[2],
        title=row[3],
        starts_at=from_wire(row[4]),
        ends_at=from_wire(row[5]),
        started_at=from_wire(row[6]) if row[6] else None,
        ended_at=from_wire(row[7]) if row[7] else None,
        capture_interval_s=row[8],
        retention_days=row[9],
        retention_done_at=row[10],
        seat_map=seat_map if isinstance(seat_map, list) else [],
    )


def roster_entry(db: sqlite_utils.Database, exam_id: int, student_number: str) -> dict[str, Any] | None:
    """A student's roster entry (``student_number``, ``name``, ``seat``, ``extra_time_min``), or None."""
    row = db.execute(
        "SELECT student_number, unseal(exam_id, name), seat, extra_time_min FROM roster WHERE "
        "exam_id = ? AND "
        "student_number = ?",
        [exam_id, student_number],
    ).fetchone()
    return dict(zip(("student_number", "name", "seat", "extra_time_min"), row, strict=True)) if row else None


def create_hall(
    db: sqlite_utils.Database, name: str, interface: str = "", seat_map: list[Any] | None = None
) -> int:
    check_text(name, "hall name")
    check_text(interface, "interface")
    for entry in seat_map or []:
        check_text(str(entry.get("seat", "")) if isinstance(entry, dict) else str(entry), "seat")
    with write_transaction(db):
        cursor = db.execute(
            "INSERT INTO hall (name, interface, seat_map, created_at) VALUES (?, ?, ?, ?)",
            [name, interface, json.dumps(seat_map or []), to_wire(utc_now())],
        )
    return int(cursor.lastrowid or 0)


def create_exam(
    db: sqlite_utils.Database,
    master_key: bytes,
    *,
    hall_id: int,
    title: str,
    starts_at: datetime,
    ends_at: datetime,
    capture_interval_s: int = 5,
    policy_text: str = "",
    retention_days: int = 30,
    interception: bool = False,
    join_code: str | None = None,
) -> int:
    """Create an exam and its encryption key (wrapped by the hall master key)."""
    check_text(title, "exam title")
    if ends_at <= starts_at:
        raise ValueError("an exam must end after it starts")
    if not 1 <= capture_interval_s <= 600:
        raise ValueError("capture interval must be between 1 and 600 seconds")
    now = to_wire(utc_now())
    with write_transaction(db):
        cursor = db.execute(
            "INSERT INTO exam (hall_id, title, starts_at, ends_at, capture_interval_s, policy_text, "
            "interception, retention_days, join_code, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [
                hall_id,
                title,
                to_wire(starts_at),
                to_wire(ends_at),
                capture_interval_s,
                policy_text,
                int(interception),
                retention_days,
                join_code or new_join_code(),
                now,
            ],
        )
        exam_id = int(cursor.lastrowid or 0)
        examkeys.create(examkeys.data_dir_of(db), master_key, exam_id)
        db.execute("INSERT INTO exam_key (exam_id, created_at) VALUES (?, ?)", [exam_id, now])
    return exam_id


def add_roster(db: sqlite_utils.Database, exam_id: int, entries: list[RosterEntry]) -> int:
    """Add or update students on an exam's roster, all or nothing; returns how many rows were written."""
    for entry in entries:
        check_text(entry.student_number, "student number")
        check_text(entry.name, "student name")
        check_text(entry.seat or "", "seat")
    with write_transaction(db):
        for entry in entries:
            db.execute(
                "INSERT INTO roster (exam_id, student_number, name, extra_time_min, seat) "
                "VALUES (?,?,?,?,?) ON CONFLICT (exam_id, student_number) DO UPDATE SET "
                "name = excluded.name, extra_time_min = excluded.extra_time_min, seat = excluded.seat",
                [
                    exam_id,
                    entry.student_number,
                    sealed.seal(db, exam_id, entry.name),
                    entry.extra_time_min,
                    entry.seat,
                ],
            )
    return len(entries)


def exam_key(db: sqlite_utils.Database, master_key: bytes, exam_id: int) -> bytes:
    """The exam's key (a file of the data directory: hall_server/store/examkeys.py); raises
    ``KeyUnavailable`` once retention destroyed it."""
    return examkeys.load(db, examkeys.data_dir_of(db), master_key, exam_id)
