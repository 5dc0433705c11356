"""Findings: what people (never rules) conclude about a moment or span of a student's session.

A reviewer records ``no_irregularity`` or ``suspected_irregularity``; a suspicion counts only once a second
person (another reviewer or an exam-board member) confirms it. Nothing is edited in place (a trigger refuses
UPDATE on the table): a correction is a new finding that ``supersedes`` the old one, a withdrawal is a
``withdrawn`` entry that supersedes it, and a confirmation is an entry that ``confirms`` it. Every entry
carries its author and time. Stored in the ``annotation`` table.

:func:`resolve` is pure: it turns the entries of a session into findings with their current status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlite_utils

from hall_server.store import audit
from hall_server.store.db import write_transaction
from invigil.timeutil import from_wire, to_wire

VERDICTS = ("no_irregularity", "suspected_irregularity")
#: A reviewer's remark on a moment or span that is not a verdict; shown beside the findings.
NOTE = "note"
KINDS = (*VERDICTS, NOTE, "confirmation", "withdrawn")
MAY_RECORD = ("reviewer", "exam_board")
TEXT_MAX_CHARS = 10_000

STATUS_NO_IRREGULARITY = "no irregularity"
STATUS_AWAITING = "suspected irregularity: awaiting a second person's confirmation"
STATUS_CONFIRMED = "suspected irregularity: confirmed"
STATUS_NOTE = "note (not a verdict)"


class FindingRefused(ValueError):
    """The entry cannot be recorded; the message says why and what to do instead."""


@dataclass(frozen=True)
class Entry:
    """One stored row of the annotation table."""

    id: int
    exam_id: int
    session_id: int
    author_id: int
    author: str
    created_at: str
    span_start: str
    span_end: str | None
    kind: str
    text: str
    supersedes: int | None
    confirms: int | None
    observation_id: int | None


@dataclass
class Finding:
    """A verdict as it stands now: its latest version, its history and who confirmed it."""

    current: Entry
    history: list[Entry] = field(default_factory=list)  # earlier versions it corrected, oldest first
    confirmations: list[Entry] = field(default_factory=list)

    @property
    def counts(self) -> bool:
        """A suspicion counts once someone other than its author confirmed it; "no irregularity" always."""
        if self.current.kind == "no_irregularity":
            return True
        if self.current.kind == NOTE:
            return False
        return any(entry.author_id != self.current.author_id for entry in self.confirmations)

    @property
    def status(self) -> str:
        if self.current.kind == "no_irregularity":
            return STATUS_NO_IRREGULARITY
        if self.current.kind == NOTE:
            return STATUS_NOTE
        return STATUS_CONFIRMED if self.counts else STATUS_AWAITING


def _user_roles(db: sqlite_utils.Database, user_id: int) -> set[str]:
    return {row[0] for row in db.execute("SELECT role FROM user_role WHERE user_id = ?", [user_id])}


def _check_may_record(db: sqlite_utils.Database, user_id: int) -> None:
    if not _user_roles(db, user_id) & set(MAY_RECORD):
        raise FindingRefused("only a reviewer or an exam-board member may record findings")


_ENTRY_QUERY = (
    "SELECT a.id, a.exam_id, a.session_id, a.author_id, u.username, a.created_at, a.span_start, a.span_end, "
    "a.kind, a.text, a.supersedes, a.confirms, a.observation_id FROM annotation a JOIN user u ON "
    "u.id = a.author_id"
)


def entries(db: sqlite_utils.Database, session_id: int) -> list[Entry]:
    rows = db.execute(_ENTRY_QUERY + " WHERE a.session_id = ? ORDER BY a.id", [session_id]).fetchall()
    return [Entry(*row) for row in rows]


def exam_entries(db: sqlite_utils.Database, exam_id: int) -> dict[int, list[Entry]]:
    """{session id: its entries} for a whole exam in one query (the reviewer's exam overview)."""
    by_session: dict[int, list[Entry]] = {}
    for row in db.execute(_ENTRY_QUERY + " WHERE a.exam_id = ? ORDER BY a.id", [exam_id]):
        entry = Entry(*row)
        by_session.setdefault(entry.session_id, []).append(entry)
    return by_session


def _entry(db: sqlite_utils.Database, entry_id: int) -> Entry | None:
    row = db.execute(_ENTRY_QUERY + " WHERE a.id = ?", [entry_id]).fetchone()
    return Entry(*row) if row else None


def resolve(all_entries: list[Entry]) -> list[Finding]:
    """The current findings of a session, in the order their first version was recorded. Withdrawn findings
    and superseded versions do not appear on their own (a correction carries its history)."""
    by_id = {entry.id: entry for entry in all_entries}
    superseded_by = {entry.supersedes: entry for entry in all_entries if entry.supersedes is not None}
    findings: list[Finding] = []
    for entry in all_entries:
        if entry.kind not in (*VERDICTS, NOTE) or entry.id in superseded_by:
            continue
        history: list[Entry] = []
        previous = entry.supersedes
        while previous is not None and previous in by_id:
            history.insert(0, by_id[previous])
            previous = by_id[previous].supersedes
        confirmations = [e for e in all_entries if e.kind == "confirmation" and e.confirms == entry.id]
        findings.append(Finding(entry, history, confirmations))
    findings.sort(key=lambda finding: (finding.history or [finding.current])[0].id)
    return findings


def _insert(
    db: sqlite_utils.Database,
    *,
    exam_id: int,
    session_id: int,
    author_id: int,
    kind: str,
    span_start: datetime,
    span_end: datetime | None,
    text: str,
    now: datetime,
    supersedes: int | None = None,
    confirms: int | None = None,
    observation_id: int | None = None,
) -> int:
    cursor = db.execute(
        "INSERT INTO annotation (exam_id, session_id, author_id, created_at, span_start, span_end, kind, "
        "text, supersedes, confirms, observation_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [
            exam_id,
            session_id,
            author_id,
            to_wire(now),
            to_wire(span_start),
            to_wire(span_end) if span_end else None,
            kind,
            text,
            supersedes,
            confirms,
            observation_id,
        ],
    )
    entry_id = int(cursor.lastrowid or 0)
    audit.insert(
        db,
        author_id,
        "finding_recorded",
        exam_id,
        session_id,
        {"finding": entry_id, "kind": kind, "supersedes": supersedes, "confirms": confirms},
        now,
    )
    return entry_id


def record(
    db: sqlite_utils.Database,
    *,
    session_id: int,
    author_id: int,
    verdict: str,
    span_start: datetime,
    span_end: datetime | None = None,
    text: str = "",
    observation_id: int | None = None,
    supersedes: int | None = None,
    now: datetime,
) -> int:
    """Record a finding on a moment (``span_end`` None) or span; with ``supersedes``, a correction of an
    earlier finding (which stays stored). ``verdict`` may also be ``NOTE``. Returns the new entry's id."""
    if verdict not in (*VERDICTS, NOTE):
        raise FindingRefused(f"a finding is one of {', '.join(VERDICTS)} or a {NOTE}, not {verdict!r}")
    if span_end is not None and span_end < span_start:
        raise FindingRefused("a span must end after it starts")
    if len(text) > TEXT_MAX_CHARS:
        raise FindingRefused(f"a finding's text is at most {TEXT_MAX_CHARS} characters")
    with write_transaction(db):
        _check_may_record(db, author_id)
        row = db.execute("SELECT exam_id FROM agent_session WHERE id = ?", [session_id]).fetchone()
        if row is None:
            raise FindingRefused(f"no session {session_id}")
        if supersedes is not None:
            _check_current(db, supersedes, session_id, "correct")
        return _insert(
            db,
            exam_id=row[0],
            session_id=session_id,
            author_id=author_id,
            kind=verdict,
            span_start=span_start,
            span_end=span_end,
            text=text,
            now=now,
            supersedes=supersedes,
            observation_id=observation_id,
        )


def _check_current(db: sqlite_utils.Database, finding_id: int, session_id: int | None, verb: str) -> Entry:
    target = _entry(db, finding_id)
    if target is None or target.kind not in (*VERDICTS, NOTE):
        raise FindingRefused(f"there is no finding {finding_id} to {verb}")
    if session_id is not None and target.session_id != session_id:
        raise FindingRefused(f"finding {finding_id} belongs to another session")
    newer = db.execute("SELECT id FROM annotation WHERE supersedes = ?", [finding_id]).fetchone()
    if newer is not None:
        raise FindingRefused(f"finding {finding_id} was superseded by {newer[0]}: {verb} that one instead")
    return target


def confirm(db: sqlite_utils.Database, finding_id: int, user_id: int, now: datetime, text: str = "") -> int:
    """A second person confirms a suspected irregularity; its author cannot."""
    with write_transaction(db):
        _check_may_record(db, user_id)
        target = _check_current(db, finding_id, None, "confirm")
        if target.kind != "suspected_irregularity":
            raise FindingRefused("only a suspected irregularity needs a confirmation")
        if target.author_id == user_id:
            raise FindingRefused(
                "a suspected irregularity needs a second person: another reviewer or the exam board"
            )
        already = db.execute(
            "SELECT id FROM annotation WHERE confirms = ? AND author_id = ?", [finding_id, user_id]
        ).fetchone()
        if already is not None:
            raise FindingRefused(f"you already confirmed finding {finding_id}")
        return _insert(
            db,
            exam_id=target.exam_id,
            session_id=target.session_id,
            author_id=user_id,
            kind="confirmation",
            span_start=from_wire(target.span_start),
            span_end=None,
            text=text,
            now=now,
            confirms=finding_id,
        )


def withdraw(db: sqlite_utils.Database, finding_id: int, user_id: int, now: datetime, text: str) -> int:
    """Withdraw a finding (its author only): a new entry; the finding stays stored with its history."""
    with write_transaction(db):
        target = _check_current(db, finding_id, None, "withdraw")
        if target.author_id != user_id:
            raise FindingRefused("only its author may withdraw a finding; record your own finding instead")
        return _insert(
            db,
            exam_id=target.exam_id,
            session_id=target.session_id,
            author_id=user_id,
            kind="withdrawn",
            span_start=from_wire(target.span_start),
            span_end=None,
            text=text,
            now=now,
            supersedes=finding_id,
        )


def for_session(db: sqlite_utils.Database, session_id: int) -> list[Finding]:
    return resolve(entries(db, session_id))


def as_json(finding: Finding) -> dict[str, Any]:
    """For exports: the finding with its whole history, every entry with author and time."""

    def entry(e: Entry) -> dict[str, Any]:
        return {
            "id": e.id,
            "kind": e.kind,
            "author": e.author,
            "created_at": e.created_at,
            "span_start": e.span_start,
            "span_end": e.span_end,
            "text": e.text,
            "observation_id": e.observation_id,
        }

    return {
        **entry(finding.current),
        "status": finding.status,
        "counts": finding.counts,
        "history": [entry(e) for e in finding.history],
        "confirmations": [entry(e) for e in finding.confirmations],
    }
