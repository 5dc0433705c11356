"""Findings: what people (never rules) conclude about a moment or span of a student's session.

A reviewer records ``no_irregularity`` or ``suspected_irregularity``; a suspicion counts only once a second
person (another reviewer or an exam-board member) confirms it. Nothing is edited in place (a trigger refuses
UPDATE on the table): a correction is a new finding that ``supersedes`` the old one, a withdrawal is a
``withdrawn`` entry that supersedes it, and a confirmation is an entry that ``confirms`` it. Every entry
carries its author and time. Stored in the ``annotation`` table.

Undoing a suspicion that counts needs two people as well: a correction or withdrawal of a confirmed suspicion
is a *proposal* that takes effect only once someone other than its author confirms it. Until then the
suspicion stands, with the proposal pending beside it; its author may withdraw the proposal.

:func:`resolve` is pure: it turns the entries of a session into findings with their current status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlite_utils

from hall_server.store import audit, sealed
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
    """A verdict as it stands now: its latest version, its history, who confirmed it, and a proposal to
    correct or withdraw it that still waits for a second person (``pending``)."""

    current: Entry
    history: list[Entry] = field(default_factory=list)  # earlier versions it corrected, oldest first
    confirmations: list[Entry] = field(default_factory=list)
    pending: Entry | None = None

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

    @property
    def pending_status(self) -> str | None:
        """What the pending proposal would make of the finding, for people to read; None without one."""
        if self.pending is None:
            return None
        return f"{PROPOSAL_TEXT[self.pending.kind]} proposed by {self.pending.author}: {STATUS_PROPOSED}"


#: What a proposal would do to a confirmed suspicion, by the kind of its entry.
PROPOSAL_TEXT = {
    "no_irregularity": "clearing (no irregularity)",
    "suspected_irregularity": "a correction",
    NOTE: "turning it into a note",
    "withdrawn": "withdrawal",
}
STATUS_PROPOSED = "awaiting a second person's confirmation"


def _user_roles(db: sqlite_utils.Database, user_id: int) -> set[str]:
    return {row[0] for row in db.execute("SELECT role FROM user_role WHERE user_id = ?", [user_id])}


def _check_may_record(db: sqlite_utils.Database, user_id: int) -> None:
    if not _user_roles(db, user_id) & set(MAY_RECORD):
        raise FindingRefused("only a reviewer or an exam-board member may record findings")


_ENTRY_QUERY = (
    "SELECT a.id, a.exam_id, a.session_id, a.author_id, u.username, a.created_at, a.span_start, a.span_end, "
    "a.kind, unseal(a.exam_id, a.text), a.supersedes, a.confirms, a.observation_id FROM annotation "
    "a JOIN user u ON "
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


class _Changes:
    """Who corrected, withdrew and confirmed what, over one session's entries in the order they were
    stored (pure). A change to a suspicion that already counted is a proposal: it takes effect once
    someone other than its author confirms it, and is dropped once it is itself withdrawn."""

    def __init__(self, all_entries: list[Entry]) -> None:
        self.by_id = {entry.id: entry for entry in all_entries}
        self.changes: dict[int, list[Entry]] = {}
        self.confirmations: dict[int, list[Entry]] = {}
        for entry in all_entries:
            if entry.kind == "confirmation" and entry.confirms is not None:
                self.confirmations.setdefault(entry.confirms, []).append(entry)
            elif entry.supersedes is not None and entry.supersedes in self.by_id:
                self.changes.setdefault(entry.supersedes, []).append(entry)

    def seconded_at(self, entry: Entry) -> int | None:
        """The id of the first confirmation of ``entry`` by someone other than its author."""
        return next(
            (c.id for c in self.confirmations.get(entry.id, []) if c.author_id != entry.author_id), None
        )

    def is_proposal(self, change: Entry) -> bool:
        target = self.by_id[change.supersedes] if change.supersedes is not None else None
        if target is None or target.kind != "suspected_irregularity":
            return False
        seconded = self.seconded_at(target)
        return seconded is not None and seconded < change.id

    def fate(self, proposal: Entry) -> str:
        """What became of a proposal: "effective" (a second person confirmed it before anything changed it),
        "dropped" (withdrawn first) or "pending"."""
        seconded = self.seconded_at(proposal)
        dropped = min((change.id for change in self.changes.get(proposal.id, [])), default=None)
        if seconded is not None and (dropped is None or seconded < dropped):
            return "effective"
        return "dropped" if dropped is not None else "pending"

    def step(self, entry: Entry) -> tuple[Entry | None, Entry | None]:
        """(the change that replaced ``entry``, a proposal to change it still waiting), at most one each."""
        pending = None
        for change in self.changes.get(entry.id, []):
            fate = self.fate(change) if self.is_proposal(change) else "effective"
            if fate == "effective":
                return change, None
            if fate == "pending":
                pending = change
        return None, pending


def resolve(all_entries: list[Entry]) -> list[Finding]:
    """The current findings of a session, in the order their first version was recorded. Withdrawn findings
    and superseded versions do not appear on their own (a correction carries its history); a proposal that
    still waits for a second person is the ``pending`` of the finding it would change."""
    changes = _Changes(all_entries)
    findings: list[Finding] = []
    for entry in all_entries:
        if entry.kind not in (*VERDICTS, NOTE) or entry.supersedes in changes.by_id:
            continue  # not the first version of a finding
        history: list[Entry] = []
        current, (replaced_by, pending) = entry, changes.step(entry)
        while replaced_by is not None:
            history.append(current)
            current, (replaced_by, pending) = replaced_by, changes.step(replaced_by)
        if current.kind == "withdrawn":
            continue
        findings.append(Finding(current, history, changes.confirmations.get(current.id, []), pending))
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
    proposal: bool = False,
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
            sealed.seal(db, exam_id, text),
            supersedes,
            confirms,
            observation_id,
        ],
    )
    entry_id = int(cursor.lastrowid or 0)
    detail: dict[str, Any] = {
        "finding": entry_id,
        "kind": kind,
        "supersedes": supersedes,
        "confirms": confirms,
    }
    if proposal:
        detail["proposal"] = True
    audit.insert(db, author_id, "finding_recorded", exam_id, session_id, detail, now)
    return entry_id


def _check_text(text: str) -> None:
    if len(text) > TEXT_MAX_CHARS:
        raise FindingRefused(f"a finding's text is at most {TEXT_MAX_CHARS} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FindingRefused(
            "a finding's text is not valid Unicode text (it holds a lone surrogate)"
        ) from None


def _check_observation(db: sqlite_utils.Database, observation_id: int, session_id: int) -> None:
    row = db.execute("SELECT session_id FROM observation WHERE id = ?", [observation_id]).fetchone()
    if row is None:
        raise FindingRefused(f"there is no observation {observation_id}")
    if row[0] != session_id:
        raise FindingRefused(
            f"observation {observation_id} is not an observation of this session: a finding names only an "
            "observation of its own student's session in its own exam"
        )


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
    earlier finding (which stays stored). A correction of a confirmed suspicion is a proposal until a second
    person confirms it (:func:`is_pending`). ``verdict`` may also be ``NOTE``. Returns the new entry's id."""
    if verdict not in (*VERDICTS, NOTE):
        raise FindingRefused(f"a finding is one of {', '.join(VERDICTS)} or a {NOTE}, not {verdict!r}")
    if span_end is not None and span_end < span_start:
        raise FindingRefused("a span must end after it starts")
    _check_text(text)
    with write_transaction(db):
        _check_may_record(db, author_id)
        row = db.execute("SELECT exam_id FROM agent_session WHERE id = ?", [session_id]).fetchone()
        if row is None:
            raise FindingRefused(f"no session {session_id}")
        if observation_id is not None:
            _check_observation(db, observation_id, session_id)
        proposal = False
        if supersedes is not None:
            finding = _changeable(db, supersedes, session_id, "correct")
            proposal = finding.counts and finding.current.kind == "suspected_irregularity"
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
            proposal=proposal,
        )


def _locate(
    db: sqlite_utils.Database, entry_id: int, session_id: int | None, verb: str
) -> tuple[Entry, Finding]:
    """The entry and the finding it is the current version or the pending proposal of; refused for an
    entry that is neither (a superseded version, a withdrawn finding or proposal, a confirmation)."""
    target = _entry(db, entry_id)
    if target is None or target.kind not in (*VERDICTS, NOTE, "withdrawn"):
        raise FindingRefused(f"there is no finding {entry_id} to {verb}")
    if session_id is not None and target.session_id != session_id:
        raise FindingRefused(f"finding {entry_id} belongs to another session")
    for finding in for_session(db, target.session_id):
        if entry_id in (finding.current.id, finding.pending.id if finding.pending else None):
            return target, finding
        newer = next((e for e in finding.history if e.supersedes == entry_id), None)
        if any(e.id == entry_id for e in finding.history):
            newer = newer or finding.current
            raise FindingRefused(f"finding {entry_id} was superseded by {newer.id}: {verb} that one instead")
    if target.kind == "withdrawn":
        raise FindingRefused(f"entry {entry_id} withdrew a finding: there is no finding {entry_id} to {verb}")
    if target.supersedes is not None:
        raise FindingRefused(
            f"there is no finding {entry_id} to {verb}: it was a proposal, and was withdrawn"
        )
    raise FindingRefused(f"there is no finding {entry_id} to {verb}: it was withdrawn")


def _changeable(db: sqlite_utils.Database, entry_id: int, session_id: int | None, verb: str) -> Finding:
    """The finding whose current version ``entry_id`` is, when it may be corrected or withdrawn now."""
    target, finding = _locate(db, entry_id, session_id, verb)
    if finding.pending is not None:
        pending = finding.pending
        if pending.id == target.id:
            raise FindingRefused(
                f"proposal {pending.id} is waiting for a second person's confirmation: it cannot be "
                f"corrected; its author may withdraw it and propose again"
            )
        raise FindingRefused(
            f"finding {entry_id} already has proposal {pending.id} by {pending.author} waiting for a second "
            "person's confirmation: confirm it, or its author withdraws it first"
        )
    return finding


def is_pending(db: sqlite_utils.Database, entry_id: int) -> bool:
    """Whether the entry is a proposal that still waits for a second person's confirmation."""
    target = _entry(db, entry_id)
    if target is None:
        return False
    return any(f.pending is not None and f.pending.id == entry_id for f in for_session(db, target.session_id))


def confirm(db: sqlite_utils.Database, finding_id: int, user_id: int, now: datetime, text: str = "") -> int:
    """A second person confirms a suspected irregularity, or a proposal to correct or withdraw a confirmed
    one; the author of either cannot."""
    _check_text(text)
    with write_transaction(db):
        _check_may_record(db, user_id)
        target, finding = _locate(db, finding_id, None, "confirm")
        if finding.pending is not None and finding.pending.id == target.id:
            if target.author_id == user_id:
                raise FindingRefused(
                    f"proposal {target.id} needs a second person: another reviewer or an exam-board member "
                    "confirms it"
                )
        else:
            if target.kind != "suspected_irregularity":
                raise FindingRefused(
                    "only a suspected irregularity or a pending proposal needs a confirmation"
                )
            if target.author_id == user_id:
                raise FindingRefused(
                    "a suspected irregularity needs a second person: another reviewer or the exam board"
                )
            if any(entry.author_id == user_id for entry in finding.confirmations):
                raise FindingRefused(f"you already confirmed finding {finding_id}")
            if finding.pending is not None:
                raise FindingRefused(
                    f"finding {finding_id} already counts and has proposal {finding.pending.id} to change it "
                    "waiting: confirm the proposal, or leave it to wait"
                )
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
    """Withdraw a finding, or a pending proposal (its author only): a new entry; everything stays stored
    with its history. Withdrawing a confirmed suspicion is itself a proposal until a second person confirms
    it."""
    _check_text(text)
    with write_transaction(db):
        target, finding = _locate(db, finding_id, None, "withdraw")
        withdrawing_proposal = finding.pending is not None and finding.pending.id == target.id
        if not withdrawing_proposal:
            _changeable(db, finding_id, None, "withdraw")
        if target.author_id != user_id:
            what = "proposal" if withdrawing_proposal else "finding"
            raise FindingRefused(f"only its author may withdraw a {what}; record your own finding instead")
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
            proposal=not withdrawing_proposal
            and finding.counts
            and finding.current.kind == "suspected_irregularity",
        )


def for_session(db: sqlite_utils.Database, session_id: int) -> list[Finding]:
    return resolve(entries(db, session_id))


def as_json(finding: Finding) -> dict[str, Any]:
    """For exports: the finding with its whole history, every entry with author and time, and a proposal
    that still waits for a second person."""

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
        "pending": {**entry(finding.pending), "status": finding.pending_status} if finding.pending else None,
    }
