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
from datetime import datetime
from typing import Any

import sqlite_utils
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from hall_server.store import audit, logins
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
    valid_from: str | None = None
    valid_until: str | None = None
    id: int | None = None


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


def set_password(db: sqlite_utils.Database, username: str, password: str) -> int:
    """Set the password and end every login of the user (an old cookie stops working); returns how many."""
    password_hash = hash_password(password)
    with write_transaction(db):
        uid = user_id(db, username)
        db.execute("UPDATE user SET password_hash = ? WHERE id = ?", [password_hash, uid])
        ended = logins.end_all(db, uid, "password changed", utc_now())
        audit.insert(db, None, "password_changed", detail={"username": username, **audit.cli_actor()})
    return ended


def set_disabled(db: sqlite_utils.Database, username: str, disabled: bool) -> int:
    """Disable (every login ends) or enable an account; returns the logins ended. A removed account stays
    removed."""
    with write_transaction(db):
        uid = user_id(db, username)
        if not disabled and db.execute("SELECT removed_at FROM user WHERE id = ?", [uid]).fetchone()[0]:
            raise UserError(f"user {username!r} was removed; create a new account instead")
        db.execute("UPDATE user SET disabled = ? WHERE id = ?", [int(disabled), uid])
        ended = logins.end_all(db, uid, "disabled", utc_now()) if disabled else 0
        action = "user_disabled" if disabled else "user_enabled"
        audit.insert(db, None, action, detail={"username": username, **audit.cli_actor()})
    return ended


def remove_user(db: sqlite_utils.Database, username: str) -> int:
    """Remove an account: every login ends, its roles and assignments go; the row stays (disabled, marked
    removed) so the audit log and the findings keep naming who did what. Returns the logins ended."""
    with write_transaction(db):
        uid = user_id(db, username)
        now = utc_now()
        db.execute("UPDATE user SET disabled = 1, removed_at = ? WHERE id = ?", [to_wire(now), uid])
        db.execute("DELETE FROM assignment WHERE user_id = ?", [uid])
        db.execute("DELETE FROM user_role WHERE user_id = ?", [uid])
        db.execute("DELETE FROM queue_claim WHERE user_id = ?", [uid])
        ended = logins.end_all(db, uid, "removed", now)
        audit.insert(db, None, "user_removed", detail={"username": username, **audit.cli_actor()})
    return ended


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
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
) -> bool:
    """Give ``username`` the task ``role`` for one hall or one exam (granting the role if it lacks it),
    optionally bounded in time (hall_server/store/access.py). A hall-level invigilator's or organiser's
    assignment without ``valid_from`` starts now: it never opens the hall's past exams.

    Returns ``False`` when that assignment already existed (only the bounds given are changed).
    """
    check_role(role)
    if (hall_id is None) == (exam_id is None):
        raise UserError("assign a user to exactly one of a hall or an exam")
    if valid_from is not None and valid_until is not None and valid_until <= valid_from:
        raise UserError("--until must be after --from")
    given = [to_wire(valid_from) if valid_from else None, to_wire(valid_until) if valid_until else None]
    if valid_from is None and hall_id is not None and role in ("invigilator", "organiser"):
        valid_from = utc_now()
    bounds = [to_wire(valid_from) if valid_from else None, given[1]]
    with write_transaction(db):
        uid = user_id(db, username)
        if db.execute("SELECT removed_at FROM user WHERE id = ?", [uid]).fetchone()[0]:
            raise UserError(f"user {username!r} was removed; create a new account instead")
        exists = db.execute(
            "SELECT id FROM assignment WHERE user_id = ? AND role = ? AND hall_id IS ? AND exam_id IS ?",
            [uid, role, hall_id, exam_id],
        ).fetchone()
        if exists:
            if given != [None, None]:  # new bounds for the same task
                db.execute(
                    "UPDATE assignment SET valid_from = coalesce(?, valid_from), "
                    "valid_until = coalesce(?, valid_until) WHERE id = ?",
                    [*given, exists[0]],
                )
            return False
        db.execute("INSERT OR IGNORE INTO user_role (user_id, role) VALUES (?, ?)", [uid, role])
        db.execute(
            "INSERT INTO assignment (user_id, role, hall_id, exam_id, valid_from, valid_until) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [uid, role, hall_id, exam_id, *bounds],
        )
    return True


def remove_assignment(
    db: sqlite_utils.Database,
    username: str,
    role: str,
    *,
    hall_id: int | None = None,
    exam_id: int | None = None,
) -> int:
    """Remove ``username``'s ``role`` on this hall or exam; returns how many assignments went (0 or 1).
    Pages and open live-view connections of that task close within seconds (dashboard/sockets.py)."""
    check_role(role)
    if (hall_id is None) == (exam_id is None):
        raise UserError("give exactly one of a hall or an exam")
    with write_transaction(db):
        uid = user_id(db, username)
        cursor = db.execute(
            "DELETE FROM assignment WHERE user_id = ? AND role = ? AND hall_id IS ? AND exam_id IS ?",
            [uid, role, hall_id, exam_id],
        )
        if cursor.rowcount:
            detail = {"username": username, "role": role, "hall_id": hall_id, "exam_id": exam_id}
            audit.insert(db, None, "assignment_removed", exam_id, None, {**detail, **audit.cli_actor()})
    return int(cursor.rowcount)


def assignments_for(db: sqlite_utils.Database, username: str) -> list[Assignment]:
    """What ``username`` is assigned to; the dashboard shows a user only these halls and exams."""
    uid = user_id(db, username)
    rows = db.execute(
        "SELECT role, hall_id, exam_id, valid_from, valid_until, id FROM assignment WHERE user_id = ? "
        "ORDER BY id",
        [uid],
    ).fetchall()
    return [Assignment(*row) for row in rows]


def list_users(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Every user with roles and assignments (no password hashes), for ``invigil-provision user list``."""
    users = []
    for uid, username, display_name, disabled, removed_at in db.execute(
        "SELECT id, username, display_name, disabled, removed_at FROM user ORDER BY username"
    ).fetchall():
        users.append(
            {
                "id": uid,
                "username": username,
                "display_name": display_name,
                "disabled": bool(disabled),
                "removed": removed_at,
                "roles": user_roles(db, username),
                "assignments": [asdict(a) for a in assignments_for(db, username)],
            }
        )
    return users
