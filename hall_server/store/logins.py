"""Dashboard logins: one ``staff_login`` row per sign-in, whose random id the session cookie holds.

A cookie works only while its row is open and its user enabled. Logging out ends that row; disabling or
removing an account, or changing its password, ends every row of the user (:func:`end_all`). The rows are
in the store, so an ended login stays ended across restarts and in every server process; the dashboard
checks at most ``ttl`` seconds late (dashboard/auth.py) and closes open Socket.IO connections of an ended
login (dashboard/sockets.py).
"""

from __future__ import annotations

import secrets
from datetime import datetime

import sqlite_utils

from hall_server.store.db import write_transaction
from invigil.timeutil import to_wire


def start(db: sqlite_utils.Database, user_id: int, address: str, now: datetime) -> str:
    login_id = secrets.token_urlsafe(24)
    with write_transaction(db):
        db.execute(
            "INSERT INTO staff_login (id, user_id, created_at, address) VALUES (?, ?, ?, ?)",
            [login_id, user_id, to_wire(now), address[:64]],
        )
    return login_id


def is_open(db: sqlite_utils.Database, user_id: int, login_id: str) -> bool:
    """The login is open and its user enabled."""
    row = db.execute(
        "SELECT 1 FROM staff_login l JOIN user u ON u.id = l.user_id "
        "WHERE l.id = ? AND l.user_id = ? AND l.ended_at IS NULL AND u.disabled = 0",
        [login_id, user_id],
    ).fetchone()
    return row is not None


def end(db: sqlite_utils.Database, login_id: str, why: str, now: datetime) -> None:
    with write_transaction(db):
        db.execute(
            "UPDATE staff_login SET ended_at = ?, ended_why = ? WHERE id = ? AND ended_at IS NULL",
            [to_wire(now), why, login_id],
        )


def end_all(db: sqlite_utils.Database, user_id: int, why: str, now: datetime) -> int:
    """End every open login of the user; returns how many. Runs inside the caller's transaction if any."""
    cursor = db.execute(
        "UPDATE staff_login SET ended_at = ?, ended_why = ? WHERE user_id = ? AND ended_at IS NULL",
        [to_wire(now), why, user_id],
    )
    return int(cursor.rowcount)
