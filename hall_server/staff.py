"""Staff on the dashboard: login with throttling (every attempt audited), and who may watch or review
which exam.

The narrow interface the dashboard uses for people (it never touches ``hall_server.store.users`` internals or
the agent API). Passwords are checked by ``hall_server.store.users.verify_password`` (argon2id); the
throttle (``hall_server.store.throttle``) and the logins (``hall_server.store.logins``) are in the store;
who may open which exam, and until when, is ``hall_server.store.access``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlite_utils

from hall_server.store import access, audit, logins, users
from hall_server.store.throttle import Throttle
from invigil.timeutil import utc_now


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


def login(
    db: sqlite_utils.Database, throttle: Throttle, username: str, password: str, address: str
) -> tuple[StaffUser, str]:
    """Check a login form and open a login; returns the user and the login id the cookie holds. Raises
    ``LoginRefused``. Every attempt is written to the audit log."""
    wait = throttle.attempt(db, username, address)
    if wait > 0:
        audit.record(db, None, "login_throttled", detail={"username": username[:64], "address": address})
        raise LoginRefused(f"too many failed logins: wait {int(wait) + 1} s and try again", wait)
    user_id = users.verify_password(db, username, password) if users.USERNAME_RE.match(username) else None
    user = load_user(db, user_id) if user_id is not None else None
    if user is None:
        audit.record(db, None, "login_failed", detail={"username": username[:64], "address": address})
        raise LoginRefused("wrong username or password")
    throttle.succeeded(db, username, address)
    login_id = logins.start(db, user.id, address, utc_now())
    audit.record(db, user.id, "login", detail={"address": address})
    return user, login_id


def load_login(db: sqlite_utils.Database, user_id: int, login_id: str) -> StaffUser | None:
    """The user of an open login (None once it was logged out, the account disabled or its password
    changed): what every request's cookie is checked against."""
    return load_user(db, user_id) if logins.is_open(db, user_id, login_id) else None


def load_user(db: sqlite_utils.Database, user_id: int) -> StaffUser | None:
    """The enabled user with this id (a disabled account's cookie stops working at once)."""
    row = db.execute(
        "SELECT id, username, display_name FROM user WHERE id = ? AND disabled = 0", [user_id]
    ).fetchone()
    if row is None:
        return None
    roles = {r[0] for r in db.execute("SELECT role FROM user_role WHERE user_id = ?", [row[0]])}
    return StaffUser(row[0], row[1], row[2], tuple(role for role in users.ROLES if role in roles))


def watchable_exams(
    db: sqlite_utils.Database, user_id: int, windows: access.Windows, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Exams this user may watch live now (``hall_server.store.access``)."""
    sql, params = access.join("watch", now or utc_now(), windows)
    rows = db.execute(
        "SELECT DISTINCT e.id, e.title, h.name, e.starts_at, e.ends_at, e.started_at, e.ended_at "  # noqa: S608
        f"FROM exam e JOIN hall h ON h.id = e.hall_id {sql} WHERE a.user_id = ? "
        "ORDER BY e.starts_at, e.id",
        [*params, user_id],
    ).fetchall()
    keys = ("id", "title", "hall", "starts_at", "ends_at", "started_at", "ended_at")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def may_watch(db: sqlite_utils.Database, user_id: int, exam_id: int, windows: access.Windows) -> bool:
    """Whether the user may watch the exam now: the check before every live-view page, JSON view, capture
    fetch and Socket.IO room join (and again while a socket stays open)."""
    return access.may_watch(db, user_id, exam_id, utc_now(), windows)


def reviewable_exams(db: sqlite_utils.Database, user_id: int) -> list[dict[str, Any]]:
    """Exams this user may review now: assigned as reviewer or exam-board member to the exam or its hall,
    within its review period (``hall_server.store.access``)."""
    sql, params = access.join("review", utc_now())
    rows = db.execute(
        "SELECT e.id, e.title, h.name, e.starts_at, e.ends_at, e.ended_at, group_concat(DISTINCT a.role) "  # noqa: S608
        f"FROM exam e JOIN hall h ON h.id = e.hall_id {sql} WHERE a.user_id = ? "
        "GROUP BY e.id ORDER BY e.starts_at DESC, e.id",
        [*params, user_id],
    ).fetchall()
    keys = ("id", "title", "hall", "starts_at", "ends_at", "ended_at")
    return [
        {**dict(zip(keys, row[:6], strict=True)), "roles": sorted(set(row[6].split(",")))} for row in rows
    ]


def review_roles(db: sqlite_utils.Database, user_id: int, exam_id: int) -> frozenset[str]:
    """The review roles (reviewer, exam_board) this user holds for this exam now; empty when the user may
    not review it. Called before every reviewer page, JSON view and download."""
    return access.review_roles(db, user_id, exam_id, utc_now())
