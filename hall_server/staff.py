"""Staff on the dashboard: login with throttling (every attempt audited), and who may watch or review
which exam.

The narrow interface the dashboard uses for people (it never touches ``hall_server.store.users`` internals or
the agent API). Passwords are checked by ``hall_server.store.users.verify_password`` (argon2id).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from hall_server.store import audit, users

#: An invigilator's or organiser's assignment opens an exam's live hall view.
_ASSIGNED = (
    "JOIN assignment a ON (a.exam_id = e.id OR (a.exam_id IS NULL AND a.hall_id = e.hall_id)) "
    "AND a.role IN ('invigilator', 'organiser')"
)


#: A reviewer's or exam-board member's assignment opens an exam's reviewer pages (never the live hall).
_ASSIGNED_FOR_REVIEW = users.ASSIGNED_FOR_REVIEW


@dataclass(frozen=True)
class StaffUser:
    id: int
    username: str
    display_name: str
    roles: tuple[str, ...]


class LoginRefused(Exception):
    """Wrong name or password, or too many failures; ``wait_s`` > 0 says how long to wait."""

    def __init__(self, message: str, wait_s: float = 0.0) -> None:
        super().__init__(message)
        self.message = message
        self.wait_s = wait_s


@dataclass
class LoginThrottle:
    """Failed logins per (username, client address), in this process's memory.

    After ``max_failures`` failures the next attempt must wait ``lockout_s``, doubling with every further
    failure; a success clears the record. The table is bounded (oldest entries drop first). One process
    serves the dashboard (docs/dashboard.md), so memory is the whole picture.
    """

    max_failures: int = 5
    lockout_s: float = 30.0
    max_entries: int = 10_000
    clock: Any = time.monotonic
    _failures: OrderedDict[tuple[str, str], tuple[int, float]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_s(self, username: str, address: str) -> float:
        with self._lock:
            count, locked_until = self._failures.get((username.lower(), address), (0, 0.0))
        return max(0.0, locked_until - self.clock()) if count >= self.max_failures else 0.0

    def failed(self, username: str, address: str) -> None:
        key = (username.lower(), address)
        with self._lock:
            count, _ = self._failures.pop(key, (0, 0.0))
            count += 1
            locked_until = 0.0
            if count >= self.max_failures:
                locked_until = self.clock() + self.lockout_s * 2 ** min(count - self.max_failures, 10)
            self._failures[key] = (count, locked_until)
            while len(self._failures) > self.max_entries:
                self._failures.popitem(last=False)

    def succeeded(self, username: str, address: str) -> None:
        with self._lock:
            self._failures.pop((username.lower(), address), None)


def login(
    db: sqlite_utils.Database, throttle: LoginThrottle, username: str, password: str, address: str
) -> StaffUser:
    """Check a login form; raises ``LoginRefused``. Every attempt is written to the audit log."""
    wait = throttle.wait_s(username, address)
    if wait > 0:
        audit.record(db, None, "login_throttled", detail={"username": username[:64], "address": address})
        raise LoginRefused(f"too many failed logins: wait {int(wait) + 1} s and try again", wait)
    user_id = users.verify_password(db, username, password) if users.USERNAME_RE.match(username) else None
    user = load_user(db, user_id) if user_id is not None else None
    if user is None:
        throttle.failed(username, address)
        audit.record(db, None, "login_failed", detail={"username": username[:64], "address": address})
        raise LoginRefused("wrong username or password")
    throttle.succeeded(username, address)
    audit.record(db, user.id, "login", detail={"address": address})
    return user


def load_user(db: sqlite_utils.Database, user_id: int) -> StaffUser | None:
    """The enabled user with this id (a disabled account's cookie stops working at once)."""
    row = db.execute(
        "SELECT id, username, display_name FROM user WHERE id = ? AND disabled = 0", [user_id]
    ).fetchone()
    if row is None:
        return None
    roles = {r[0] for r in db.execute("SELECT role FROM user_role WHERE user_id = ?", [row[0]])}
    return StaffUser(row[0], row[1], row[2], tuple(role for role in users.ROLES if role in roles))


def watchable_exams(db: sqlite_utils.Database, user_id: int) -> list[dict[str, Any]]:
    """Exams this user may watch live: assigned (as invigilator or organiser) to the exam or its hall."""
    rows = db.execute(
        "SELECT DISTINCT e.id, e.title, h.name, e.starts_at, e.ends_at, e.started_at, e.ended_at "
        "FROM exam e JOIN hall h ON h.id = e.hall_id " + _ASSIGNED + " WHERE a.user_id = ? "
        "ORDER BY e.starts_at, e.id",
        [user_id],
    ).fetchall()
    keys = ("id", "title", "hall", "starts_at", "ends_at", "started_at", "ended_at")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def may_watch(db: sqlite_utils.Database, user_id: int, exam_id: int) -> bool:
    """Whether the user is assigned to the exam, or its hall, as invigilator or organiser: the check before
    every live-view page, JSON view, capture fetch and Socket.IO room join."""
    row = db.execute(
        "SELECT 1 FROM exam e JOIN assignment a "
        "ON (a.exam_id = e.id OR (a.exam_id IS NULL AND a.hall_id = e.hall_id)) "
        "AND a.role IN ('invigilator', 'organiser') WHERE e.id = ? AND a.user_id = ? LIMIT 1",
        [exam_id, user_id],
    ).fetchone()
    return row is not None


def reviewable_exams(db: sqlite_utils.Database, user_id: int) -> list[dict[str, Any]]:
    """Exams this user may review: assigned as reviewer or exam-board member to the exam or its hall."""
    rows = db.execute(
        "SELECT e.id, e.title, h.name, e.starts_at, e.ends_at, e.ended_at, group_concat(DISTINCT a.role) "
        "FROM exam e JOIN hall h ON h.id = e.hall_id " + _ASSIGNED_FOR_REVIEW + " WHERE a.user_id = ? "
        "GROUP BY e.id ORDER BY e.starts_at DESC, e.id",
        [user_id],
    ).fetchall()
    keys = ("id", "title", "hall", "starts_at", "ends_at", "ended_at")
    return [
        {**dict(zip(keys, row[:6], strict=True)), "roles": sorted(set(row[6].split(",")))} for row in rows
    ]


def review_roles(db: sqlite_utils.Database, user_id: int, exam_id: int) -> frozenset[str]:
    """The review roles (reviewer, exam_board) this user is assigned for this exam, directly or by its hall;
    empty when the user may not review it. Called before every reviewer page, JSON view and download."""
    return users.review_roles(db, user_id, exam_id)
