"""Enrolment, token authentication and heartbeats of agent sessions.

A session token is 32 random bytes shown to the agent once; the store keeps only its SHA-256, so a copy
of the database cannot impersonate an agent.

The spool key the enrolment answer carries is derived from the exam key and the roster entry, never stored:
every session of one student in one exam gets the same key, so an agent that crashed and joined again opens
its old spool, and destroying the exam key (retention) destroys every spool key of the exam with it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlite_utils
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hall_server import errors
from hall_server.ingest import rules
from hall_server.live import bus
from hall_server.store import exams, sealed
from hall_server.store.db import write_transaction
from invigil.payloads import Enrolment, Heartbeat
from invigil.protocol import OBSERVATION_KINDS
from invigil.timeutil import from_wire, to_wire


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Session:
    """An authenticated agent session, with the facts of its exam every request needs."""

    id: int
    exam_id: int
    roster_id: int
    student_number: str
    exam_title: str
    capture_interval_s: int
    starts_at: datetime
    ends_at: datetime
    extra_time_min: int
    expires_at: datetime
    #: When this student first enrolled in this exam (server time): no record of theirs is older.
    first_enrolled_at: datetime

    @property
    def student_ends_at(self) -> datetime:
        return self.ends_at + timedelta(minutes=self.extra_time_min)


_SESSION_QUERY = """
    SELECT s.id, s.exam_id, s.roster_id, r.student_number, e.title, e.capture_interval_s, e.starts_at,
           e.ends_at, r.extra_time_min, s.expires_at,
           (SELECT MIN(f.enrolled_at) FROM agent_session f
             WHERE f.exam_id = s.exam_id AND f.roster_id = s.roster_id)
    FROM agent_session s JOIN exam e ON e.id = s.exam_id JOIN roster r ON r.id = s.roster_id
"""


def _session_from_row(row: tuple[Any, ...]) -> Session:
    return Session(
        id=row[0],
        exam_id=row[1],
        roster_id=row[2],
        student_number=row[3],
        exam_title=row[4],
        capture_interval_s=row[5],
        starts_at=from_wire(row[6]),
        ends_at=from_wire(row[7]),
        extra_time_min=row[8],
        expires_at=from_wire(row[9]),
        first_enrolled_at=from_wire(row[10]),
    )


def add_observation(
    db: sqlite_utils.Database,
    exam_id: int,
    session_id: int | None,
    kind: str,
    at: datetime,
    detail: dict[str, Any],
) -> int:
    """Insert one observation; call inside the write transaction that stores its cause. Returns its id:
    pass it to ``bus.observation`` once the transaction committed. ``kind`` is one of the wire contract's
    ``OBSERVATION_KINDS`` (the dashboard labels exactly those)."""
    if kind not in OBSERVATION_KINDS:
        raise ValueError(f"{kind!r} is not an observation kind of invigil.protocol")
    cursor = db.execute(
        "INSERT INTO observation (exam_id, session_id, kind, at, detail) VALUES (?,?,?,?,?)",
        [exam_id, session_id, kind, to_wire(at), sealed.seal(db, exam_id, json.dumps(detail))],
    )
    return int(cursor.lastrowid or 0)


def raise_clock_skew(
    db: sqlite_utils.Database, session: Session, skew: rules.Observation | None, now: datetime
) -> int | None:
    """Raise a ``clock_skew`` observation unless the session already has an open one: a skewed agent
    dates every record wrongly, and one signal until an invigilator acknowledges it is enough (the
    records keep both times). Call inside the write transaction; returns the new observation's id."""
    if skew is None:
        return None
    already_open = db.execute(
        "SELECT 1 FROM observation WHERE session_id = ? AND kind = 'clock_skew' AND acknowledged_at IS NULL "
        "LIMIT 1",
        [session.id],
    ).fetchone()
    if already_open:
        return None
    return add_observation(db, session.exam_id, session.id, skew[0], now, skew[1])


def enrol(
    db: sqlite_utils.Database, enrolment: Enrolment, client_ip: str, now: datetime, settings: dict[str, Any]
) -> tuple[str, Session]:
    """Check join code, roster and exam window; create a session. Returns the token (shown once)."""
    exams = db.execute(
        "SELECT id, title, starts_at, ends_at, join_code FROM exam WHERE join_code = ? AND ended_at IS NULL",
        [enrolment.join_code],
    ).fetchall()
    exam = next((row for row in exams if hmac.compare_digest(row[4], enrolment.join_code)), None)
    if exam is None:
        raise errors.Forbidden(
            "join code not recognised: check the code shown in the hall and type it again", "bad_join_code"
        )
    exam_id, title, starts_at, ends_at = exam[0], exam[1], from_wire(exam[2]), from_wire(exam[3])
    student = db.execute(
        "SELECT id, extra_time_min FROM roster WHERE exam_id = ? AND student_number = ?",
        [exam_id, enrolment.student_number],
    ).fetchone()
    if student is None:
        raise errors.NotFound(
            f"student number {enrolment.student_number} is not on the roster of "
            f"{title!r}: check the number, or ask the invigilator",
            "not_on_roster",
        )
    student_end = ends_at + timedelta(minutes=student[1])
    if now < starts_at - timedelta(seconds=settings["enrol_early_s"]):
        raise errors.Forbidden(
            f"{title!r} opens for enrolment at "
            f"{to_wire(starts_at - timedelta(seconds=settings['enrol_early_s']))}",
            "outside_exam_window",
        )
    if now > student_end:
        raise errors.Forbidden(f"{title!r} ended at {to_wire(student_end)}", "outside_exam_window")
    token = secrets.token_urlsafe(32)
    expires_at = student_end + timedelta(seconds=settings["session_grace_s"])
    with write_transaction(db):
        cursor = db.execute(
            "INSERT INTO agent_session (exam_id, roster_id, agent_id, token_hash, client_ip, "
            "client_ip_index, agent_version, os, enrolled_at, enrol_agent_time, last_seen_at, "
            "last_agent_time, expires_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                exam_id,
                student[0],
                enrolment.agent_id,
                token_hash(token),
                sealed.seal(db, exam_id, client_ip),
                sealed.keys_of(db).address_index(exam_id, client_ip),
                enrolment.agent_version,
                enrolment.os,
                to_wire(now),
                to_wire(enrolment.agent_time),
                to_wire(now),
                to_wire(enrolment.agent_time),
                to_wire(expires_at),
            ],
        )
        session_id = int(cursor.lastrowid or 0)
        skew = rules.clock_skew(enrolment.agent_time, now, settings["clock_skew_max_s"])
        raised = add_observation(db, exam_id, session_id, skew[0], now, skew[1]) if skew else None
    bus.seat_changed(exam_id, session_id)
    if raised:
        bus.observation(exam_id, session_id, raised)
    row = db.execute(_SESSION_QUERY + " WHERE s.id = ?", [session_id]).fetchone()
    return token, _session_from_row(row)


def spool_key(db: sqlite_utils.Database, master_key: bytes, session: Session) -> bytes:
    """The 32-byte AES key that encrypts the student's spool on the laptop (the same for each session of
    this student in this exam)."""
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=f"invigil-spool:{session.exam_id}:{session.roster_id}".encode(),
    )
    return hkdf.derive(exams.exam_key(db, master_key, session.exam_id))


def authenticate(db: sqlite_utils.Database, authorization: str | None, now: datetime) -> Session:
    """The session a bearer token belongs to. Tokens are looked up by hash, never compared in plain."""
    if not authorization or not authorization.startswith("Bearer "):
        raise errors.Unauthorized(
            "missing 'Authorization: Bearer <session token>': enrol first", "missing_token"
        )
    token = authorization[len("Bearer ") :].strip()
    if not token or len(token) > 128:
        raise errors.Unauthorized("session token not recognised: enrol again", "bad_token")
    row = db.execute(_SESSION_QUERY + " WHERE s.token_hash = ?", [token_hash(token)]).fetchone()
    if row is None:
        raise errors.Unauthorized("session token not recognised: enrol again", "bad_token")
    session = _session_from_row(row)
    if now > session.expires_at:
        raise errors.Unauthorized("this session has expired: the exam is over", "token_expired")
    return session


def _moved_to(db: sqlite_utils.Database, session: Session, client_ip: str) -> None:
    """Keep the address the session was last seen from (its site events are found by it): the row is
    written only when the address changed."""
    keys = sealed.keys_of(db)
    index = keys.address_index(session.exam_id, client_ip)
    db.execute(
        "UPDATE agent_session SET client_ip = ?, client_ip_index = ? WHERE id = ? AND "
        "client_ip_index IS NOT ?",
        [keys.seal(session.exam_id, client_ip), index, session.id, index],
    )


def heartbeat(
    db: sqlite_utils.Database,
    session: Session,
    beat: Heartbeat,
    client_ip: str,
    now: datetime,
    settings: dict[str, Any],
) -> list[dict[str, Any]]:
    """Record that the agent is alive; hand over pending instructions (each delivered once)."""
    with write_transaction(db):
        previous = db.execute(
            "SELECT last_agent_time, last_seen_at FROM agent_session WHERE id = ?", [session.id]
        ).fetchone()
        db.execute(
            "UPDATE agent_session SET last_seen_at = ?, last_agent_time = ?, state = ?, backlog = ? "
            "WHERE id = ?",
            [to_wire(now), to_wire(beat.agent_time), beat.state, beat.backlog, session.id],
        )
        _moved_to(db, session, client_ip)
        skew = rules.clock_skew(beat.agent_time, now, settings["clock_skew_max_s"])
        was_skewed = (
            previous is not None
            and previous[0] is not None
            and rules.clock_skew(from_wire(previous[0]), from_wire(previous[1]), settings["clock_skew_max_s"])
            is not None
        )
        # One observation when the skew starts, not one per heartbeat, and none while one is open.
        raised = raise_clock_skew(db, session, skew, now) if not was_skewed else None
        pending = db.execute(
            "SELECT id, kind, created_at FROM instruction WHERE session_id = ? AND "
            "delivered_at IS NULL ORDER BY id",
            [session.id],
        ).fetchall()
        if pending:
            db.execute(
                # Only "?" placeholders are formatted in; the values are bound.
                f"UPDATE instruction SET delivered_at = ? WHERE id IN ({','.join('?' * len(pending))})",  # noqa: S608
                [to_wire(now), *[row[0] for row in pending]],
            )
    if raised:
        bus.observation(session.exam_id, session.id, raised)
    return [{"id": row[0], "kind": row[1], "created_at": row[2]} for row in pending]
