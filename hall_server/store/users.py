"""Staff accounts: users, their roles, their hall/exam assignments and password hashes (argon2id).

Organisers create accounts through ``invigil-provision user ...``; the dashboard login checks passwords
here. Passwords are hashed with argon2-cffi's memory-hard
defaults (RFC 9106 low-memory profile); a hash made with older parameters is upgraded on the next
successful login.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass
from typing import Any

import sqlite_utils
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from hall_server.store.db import write_transaction
from hall_server.store.exams import BadText, check_text
from invigil.timeutil import to_wire, utc_now

#: The roles of docs/architecture.md ("exam-board" is spelled ``exam_board`` in the store).
ROLES = ("organiser", "invigilator", "reviewer", "exam_board")
#: Letters, digits and ``._@-``: what fits in a URL, a log line and a login form without escaping. ``\Z``,
#: not ``$``: a name with a trailing newline is not a name.
USERNAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")
PASSWORD_MIN_CHARS = 10

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    # Verified against when the username is unknown, so a wrong name costs as much time as a wrong password.
    return _hasher.hash("invigil: no such user")


class UserError(ValueError):
    """A request about users that cannot be carried out; the message says what to do instead."""


class UnknownUser(UserError, LookupError):
    pass


@dataclass(frozen=True)
class Assignment:
    role: str
    hall_id: int | None
    exam_id: int | None


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    return role


def check_username(username: str) -> str:
    if not USERNAME_RE.fullmatch(username):
        raise UserError(f"bad username {username!r}: use 1-64 letters, digits and . _ @ - (start alnum)")
    return username


def check_display_name(display_name: str) -> str:
    """The name the dashboard shows: any letters, but no control character (it reaches pages and logs)."""
    try:
        return check_text(display_name, "display name")
    except BadText as exc:
        raise UserError(str(exc)) from None


def check_password(password: str) -> str:
    if len(password) < PASSWORD_MIN_CHARS:
        raise UserError(f"a password needs at least {PASSWORD_MIN_CHARS} characters")
    return password


def hash_password(password: str) -> str:
    return _hasher.hash(check_password(password))


def user_id(db: sqlite_utils.Database, username: str) -> int:
    row = db.execute("SELECT id FROM user WHERE username = ?", [username]).fetchone()
    if row is None:
        raise UnknownUser(f"no user {username!r}; create it with `invigil-provision user create`")
    return int(row[0])


def create_user(
    db: sqlite_utils.Database, username: str, password: str, roles: list[str], display_name: str = ""
) -> int:
    """Create a user with its roles; raises ``UserError`` for a bad name, role or password or a taken name."""
    check_username(username)
    check_display_name(display_name)
    if not roles:
        raise UserError("a user needs at least one role")
    for role in roles:
        check_role(role)
    password_hash = hash_password(password)
    with write_transaction(db):
        if db.execute("SELECT 1 FROM user WHERE username = ?", [username]).fetchone():
            raise UserError(f"user {username!r} exists; change it with `user passwd` or `user assign`")
        cursor = db.execute(
            "INSERT INTO user (username, display_name, password_hash, created_at) VALUES (?, ?, ?, ?)",
            [username, display_name, password_hash, to_wire(utc_now())],
        )
        new_id = int(cursor.lastrowid or 0)
        for role in dict.fromkeys(roles):
            db.execute("INSERT INTO user_role (user_id, role) VALUES (?, ?)", [new_id, role])
    return new_id


def set_password(db: sqlite_utils.Database, username: str, password: str) -> None:
    password_hash = hash_password(password)
    with write_transaction(db):
        db.execute("UPDATE user SET password_hash = ? WHERE id = ?", [password_hash, user_id(db, username)])


def verify_password(db: sqlite_utils.Database, username: str, password: str) -> int | None:
    """The user's id if ``password`` is right and the account is enabled, else ``None``.

    Upgrades the stored hash when the hasher's parameters changed.
    """
    row = db.execute("SELECT id, password_hash, disabled FROM user WHERE username = ?", [username]).fetchone()
    stored = row[1] if row else _dummy_hash()
    try:
        _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None or row[2]:
        return None
    if _hasher.check_needs_rehash(stored):
        with write_transaction(db):
            db.execute("UPDATE user SET password_hash = ? WHERE id = ?", [_hasher.hash(password), row[0]])
    return int(row[0])


def user_roles(db: sqlite_utils.Database, username: str) -> list[str]:
    uid = user_id(db, username)
    held = {row[0] for row in db.execute("SELECT role FROM user_role WHERE user_id = ?", [uid])}
    return [role for role in ROLES if role in held]


def assign(
    db: sqlite_utils.Database,
    username: str,
    role: str,
    *,
    hall_id: int | None = None,
    exam_id: int | None = None,
) -> bool:
    """Give ``username`` the task ``role`` for one hall or one exam (granting the role if it lacks it).

    Returns ``False`` when that assignment already existed (nothing changed).
    """
    check_role(role)
    if (hall_id is None) == (exam_id is None):
        raise UserError("assign a user to exactly one of a hall or an exam")
    with write_transaction(db):
        uid = user_id(db, username)
        exists = db.execute(
            "SELECT 1 FROM assignment WHERE user_id = ? AND role = ? AND hall_id IS ? AND exam_id IS ?",
            [uid, role, hall_id, exam_id],
        ).fetchone()
        if exists:
            return False
        db.execute("INSERT OR IGNORE INTO user_role (user_id, role) VALUES (?, ?)", [uid, role])
        db.execute(
            "INSERT INTO assignment (user_id, role, hall_id, exam_id) VALUES (?, ?, ?, ?)",
            [uid, role, hall_id, exam_id],
        )
    return True


#: A reviewer's or exam-board member's assignment to an exam, or to its hall (a join on ``exam e``).
ASSIGNED_FOR_REVIEW = (
    "JOIN assignment a ON (a.exam_id = e.id OR (a.exam_id IS NULL AND a.hall_id = e.hall_id)) "
    "AND a.role IN ('reviewer', 'exam_board')"
)


def review_roles(db: sqlite_utils.Database, user_id: int, exam_id: int) -> frozenset[str]:
    """The review roles (reviewer, exam_board) ``user_id`` holds for this exam, directly or by its hall."""
    rows = db.execute(
        "SELECT DISTINCT a.role FROM exam e " + ASSIGNED_FOR_REVIEW + " WHERE e.id = ? AND a.user_id = ?",  # noqa: S608 (constant)
        [exam_id, user_id],
    ).fetchall()
    return frozenset(row[0] for row in rows)


def assignments_for(db: sqlite_utils.Database, username: str) -> list[Assignment]:
    """What ``username`` is assigned to; the dashboard shows a user only these halls and exams."""
    uid = user_id(db, username)
    rows = db.execute(
        "SELECT role, hall_id, exam_id FROM assignment WHERE user_id = ? ORDER BY id", [uid]
    ).fetchall()
    return [Assignment(role, hall_id, exam_id) for role, hall_id, exam_id in rows]


def list_users(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Every user with roles and assignments (no password hashes), for ``invigil-provision user list``."""
    users = []
    for uid, username, display_name, disabled in db.execute(
        "SELECT id, username, display_name, disabled FROM user ORDER BY username"
    ).fetchall():
        users.append(
            {
                "id": uid,
                "username": username,
                "display_name": display_name,
                "disabled": bool(disabled),
                "roles": user_roles(db, username),
                "assignments": [asdict(a) for a in assignments_for(db, username)],
            }
        )
    return users
