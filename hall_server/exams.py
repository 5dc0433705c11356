"""Halls, exams, rosters and exam keys: the library that provisioning and the tests use to set up an exam.

Called by ``provisioning`` (through its CLI), ``hall_server.demo`` and tests; never by the agent API, which
only reads these rows.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlite_utils

from hall_server import crypto
from hall_server.db import write_transaction
from invigil.timeutil import to_wire, utc_now

#: Join codes avoid characters a student confuses when reading them off a projector (0/O, 1/I/L).
JOIN_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
JOIN_CODE_LENGTH = 8


def new_join_code() -> str:
    return "".join(secrets.choice(JOIN_CODE_ALPHABET) for _ in range(JOIN_CODE_LENGTH))


@dataclass(frozen=True)
class RosterEntry:
    student_number: str
    name: str
    extra_time_min: int = 0
    seat: str | None = None


def create_hall(
    db: sqlite_utils.Database, name: str, interface: str = "", seat_map: list[Any] | None = None
) -> int:
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
        wrapped = crypto.wrap_exam_key(master_key, crypto.new_exam_key())
        db.execute(
            "INSERT INTO exam_key (exam_id, wrapped, created_at) VALUES (?, ?, ?)", [exam_id, wrapped, now]
        )
    return exam_id


def add_roster(db: sqlite_utils.Database, exam_id: int, entries: list[RosterEntry]) -> int:
    """Add or update students on an exam's roster, all or nothing; returns how many rows were written."""
    with write_transaction(db):
        for entry in entries:
            db.execute(
                "INSERT INTO roster (exam_id, student_number, name, extra_time_min, seat) "
                "VALUES (?,?,?,?,?) ON CONFLICT (exam_id, student_number) DO UPDATE SET "
                "name = excluded.name, extra_time_min = excluded.extra_time_min, seat = excluded.seat",
                [exam_id, entry.student_number, entry.name, entry.extra_time_min, entry.seat],
            )
    return len(entries)


def exam_key(db: sqlite_utils.Database, master_key: bytes, exam_id: int) -> bytes:
    """The exam's blob key; raises ``KeyUnavailable`` once retention destroyed it."""
    row = db.execute("SELECT wrapped FROM exam_key WHERE exam_id = ?", [exam_id]).fetchone()
    if row is None or row[0] is None:
        raise crypto.KeyUnavailable(f"exam {exam_id} has no key (deleted by retention)")
    return crypto.unwrap_exam_key(master_key, row[0])
