"""The review queue of an exam: one list of moments across all its students (hall_server/review/signals.py),
ordered by kind and time, with the screens that show each, who a student is assigned to, and what is
cleared. A moment is *open* until a reviewer marks it "nothing here" or a current verdict of its session
covers it; a suspicion still counts only once a second person confirms it (findings.py), the queue never
records one.

:func:`build` reads the whole exam in a few queries (one per table) so a 421-student exam builds in
seconds; bench/review_queue.py measures it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlite_utils

from hall_server.review import expected, findings, signals
from hall_server.review.reports.timeline import collapse, session_facts
from hall_server.store import audit
from hall_server.store.db import write_transaction
from invigil.timeutil import from_wire, to_wire, utc_now


class QueueRefused(ValueError):
    """A queue action that cannot be taken (unknown moment, student of another exam); says why."""


@dataclass
class QueueMoment:
    student_number: str
    session_id: int
    moment: signals.Moment
    state: str = "open"  # open | nothing_here | finding
    reviewer: str | None = None  # who the student is assigned to

    def to_json(self) -> dict[str, Any]:
        m = self.moment
        return {
            "student_number": self.student_number,
            "session_id": self.session_id,
            "key": m.key,
            "start": to_wire(m.start),
            "end": to_wire(m.end),
            "seconds": round(m.seconds),
            "kinds": list(m.kinds),
            "capture_ids": list(m.capture_ids),
            "detail": m.detail,
            "state": self.state,
            "reviewer": self.reviewer,
        }


@dataclass
class Queue:
    exam_id: int
    students: int
    enrolled: int
    moments: list[QueueMoment] = field(default_factory=list)
    screens: int = 0  # changed captures of the exam (what a reviewer could open)

    @property
    def open(self) -> list[QueueMoment]:
        return [m for m in self.moments if m.state == "open"]

    @property
    def cleared(self) -> int:
        """Students with no open moment (students who never enrolled have nothing to clear)."""
        return self.students - len({m.student_number for m in self.open})

    def progress(self) -> str:
        return f"{self.cleared} of {self.students} students cleared, {len(self.open)} moments open"

    def for_reviewer(self, username: str) -> list[QueueMoment]:
        return [m for m in self.moments if m.reviewer == username]

    def by_reviewer(self) -> dict[str, dict[str, int]]:
        """Reviewer -> students assigned and moments still open (students nobody took under ``""``); the
        students counted are those with moments, a student without any has nothing to review."""
        found: dict[str, dict[str, set[str] | int]] = {}
        for item in self.moments:
            row = found.setdefault(item.reviewer or "", {"students": set(), "open": 0})
            row["students"].add(item.student_number)  # type: ignore[union-attr]
            if item.state == "open":
                row["open"] += 1  # type: ignore[operator]
        return {
            name: {"students": len(row["students"]), "open": int(row["open"])}  # type: ignore[arg-type]
            for name, row in sorted(found.items())
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "exam_id": self.exam_id,
            "students": self.students,
            "enrolled": self.enrolled,
            "cleared": self.cleared,
            "open": len(self.open),
            "screens": self.screens,
            "reviewers": self.by_reviewer(),
            "moments": [m.to_json() for m in self.moments],
        }


_CAPTURES = (
    "SELECT session_id, capture_id, monitor, agent_time, received_at, changed, sha256, thumb_sha256, width, "
    "height, trigger, CASE WHEN changed THEN unseal(exam_id, focused_app) END, "
    "CASE WHEN changed THEN unseal(exam_id, window_title) END, since_capture_id "
    "FROM capture WHERE exam_id = ? ORDER BY session_id, agent_time, capture_id"
)


def load(db: sqlite_utils.Database, exam_id: int) -> tuple[dict[int, signals.SessionData], dict[int, str]]:
    """Every session of the exam as the signal rules read it, and each session's student number."""
    interval = db.execute("SELECT capture_interval_s FROM exam WHERE id = ?", [exam_id]).fetchone()
    if interval is None:
        raise LookupError(f"no exam {exam_id}; see `invigil-provision exam list`")
    sessions: dict[int, signals.SessionData] = {}
    numbers: dict[int, str] = {}
    for sid, number, enrolled_at in db.execute(
        "SELECT s.id, r.student_number, s.enrolled_at FROM agent_session s "
        "JOIN roster r ON r.id = s.roster_id WHERE s.exam_id = ? ORDER BY r.student_number, s.id",
        [exam_id],
    ):
        sessions[sid] = signals.SessionData([], [], interval[0], from_wire(enrolled_at))
        numbers[sid] = number
    rows_of: dict[int, list[tuple[Any, ...]]] = {}
    for row in db.execute(_CAPTURES, [exam_id]):
        rows_of.setdefault(row[0], []).append(row[1:])
    for sid, rows in rows_of.items():
        if sid in sessions:
            sessions[sid].entries = collapse(rows, sid)
            sessions[sid].record_times = [from_wire(row[2]) for row in rows]
    for sid, at, source, host, url, decision in db.execute(
        "SELECT session_id, time, source, unseal(exam_id, host), unseal(exam_id, url), decision "
        "FROM site_event WHERE exam_id = ? AND session_id IS NOT NULL ORDER BY time",
        [exam_id],
    ):
        if sid in sessions:
            sessions[sid].sites.append(
                {"time": from_wire(at), "source": source, "host": host, "url": url, "decision": decision}
            )
    for sid, at, kind, detail in db.execute(
        "SELECT session_id, agent_time, kind, unseal(exam_id, detail) FROM device_event WHERE exam_id = ? "
        "ORDER BY agent_time",
        [exam_id],
    ):
        sessions[sid].device_events.append({"at": from_wire(at), "kind": kind, "detail": _json(detail)})
    for sid, at, kind, detail in db.execute(
        "SELECT session_id, at, kind, unseal(exam_id, detail) FROM observation WHERE exam_id = ? "
        "AND session_id IS NOT NULL AND kind = 'left_early' ORDER BY at",
        [exam_id],
    ):
        sessions[sid].observations.append({"at": from_wire(at), "kind": kind, "detail": _json(detail)})
    now = utc_now()
    for sid, data in sessions.items():
        data.watched_until = session_facts(db, sid).watched_until(now)
    words = [w.casefold() for w in expected.load(db, exam_id).watch_words]
    if words:
        for sid, at, text in db.execute(
            "SELECT session_id, agent_time, unseal(exam_id, text) FROM screen_text WHERE exam_id = ?",
            [exam_id],
        ):
            folded = (text or "").casefold()
            for word in words:
                if word in folded and sid in sessions:
                    sessions[sid].screen_text_hits.append((from_wire(at), word))
    return sessions, numbers


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def host_shares(sessions: dict[int, signals.SessionData]) -> dict[str, float]:
    """host -> share of the exam's sessions that opened it (allowed by the proxy)."""
    counts: dict[str, int] = {}
    for data in sessions.values():
        for host in {s["host"] for s in data.sites if s["decision"] == "allowed" and s["source"] == "proxy"}:
            counts[host] = counts.get(host, 0) + 1
    total = max(len(sessions), 1)
    return {host: count / total for host, count in counts.items()}


def _covered(moment: signals.Moment, verdicts: list[findings.Finding], slack: timedelta) -> bool:
    for finding in verdicts:
        current = finding.current
        if current.kind not in findings.VERDICTS:
            continue
        start = from_wire(current.span_start)
        end = from_wire(current.span_end) if current.span_end else start
        if current.span_end is None:
            start, end = start - slack, end + slack
        if start <= moment.start and moment.end <= end or start <= moment.start <= end:
            return True
    return False


def build(db: sqlite_utils.Database, exam_id: int) -> Queue:
    """The exam's queue: every session's moments, ordered by kind (signals.KINDS) and then time."""
    sessions, numbers = load(db, exam_id)
    state = expected.load(db, exam_id)
    shares = host_shares(sessions)
    marks = {
        (sid, key): state_
        for sid, key, state_ in db.execute(
            "SELECT session_id, moment_key, 'nothing_here' FROM queue_mark WHERE exam_id = ?", [exam_id]
        )
    }
    claims = dict(
        db.execute(
            "SELECT r.student_number, u.username FROM queue_claim c JOIN roster r ON r.id = c.roster_id "
            "JOIN user u ON u.id = c.user_id WHERE c.exam_id = ?",
            [exam_id],
        ).fetchall()
    )
    entries = findings.exam_entries(db, exam_id)
    roster = db.execute("SELECT count(*) FROM roster WHERE exam_id = ?", [exam_id]).fetchone()[0]
    queue = Queue(exam_id, roster, len(set(numbers.values())))
    for sid, data in sessions.items():
        verdicts = findings.resolve(entries.get(sid, []))
        slack = timedelta(seconds=data.interval_s)
        queue.screens += sum(1 for entry in data.entries if entry.kind == "frame")
        for moment in signals.moments(data, state, shares):
            number = numbers[sid]
            item = QueueMoment(number, sid, moment, reviewer=claims.get(number))
            if (sid, moment.key) in marks:
                item.state = "nothing_here"
            elif _covered(moment, verdicts, slack):
                item.state = "finding"
            queue.moments.append(item)
    queue.moments.sort(key=lambda m: (m.moment.rank, m.moment.start, m.student_number))
    return queue


def _session_of(db: sqlite_utils.Database, exam_id: int, session_id: int) -> None:
    row = db.execute(
        "SELECT 1 FROM agent_session WHERE id = ? AND exam_id = ?", [session_id, exam_id]
    ).fetchone()
    if row is None:
        raise QueueRefused(f"session {session_id} is not a session of exam {exam_id}")


def mark_nothing_here(
    db: sqlite_utils.Database, exam_id: int, session_id: int, key: str, user_id: int, now: datetime
) -> None:
    """Clear one moment as "nothing here" (not a finding: it says the moment needs no finding). Audited."""
    _session_of(db, exam_id, session_id)
    with write_transaction(db):
        db.execute(
            "INSERT OR REPLACE INTO queue_mark (session_id, exam_id, moment_key, user_id, at) "
            "VALUES (?,?,?,?,?)",
            [session_id, exam_id, key, user_id, to_wire(now)],
        )
        audit.insert(db, user_id, "queue_nothing_here", exam_id, session_id, {"moment": key}, now)


def unmark(
    db: sqlite_utils.Database, exam_id: int, session_id: int, key: str, user_id: int, now: datetime
) -> None:
    _session_of(db, exam_id, session_id)
    with write_transaction(db):
        db.execute("DELETE FROM queue_mark WHERE session_id = ? AND moment_key = ?", [session_id, key])
        audit.insert(db, user_id, "queue_reopened", exam_id, session_id, {"moment": key}, now)


def _actor(by: int | None) -> dict[str, str]:
    return {} if by is not None else audit.cli_actor()


def _roster_ids(db: sqlite_utils.Database, exam_id: int, student_numbers: list[str]) -> list[int]:
    ids = []
    for number in student_numbers:
        row = db.execute(
            "SELECT id FROM roster WHERE exam_id = ? AND student_number = ?", [exam_id, number]
        ).fetchone()
        if row is None:
            raise QueueRefused(f"no student {number!r} in exam {exam_id}")
        ids.append(row[0])
    return ids


def assign(
    db: sqlite_utils.Database,
    exam_id: int,
    student_numbers: list[str],
    user_id: int,
    now: datetime,
    *,
    by: int | None,
    only_unassigned: bool = False,
) -> list[str]:
    """Assign these students of the exam to reviewer ``user_id``, in one transaction; returns the students
    assigned. ``only_unassigned`` leaves a student someone else holds alone (two reviewers taking "the
    next" at once never both get one), otherwise an earlier assignment is replaced. Audited as ``by``: the
    reviewer taking students, the organiser sharing them out, None for a command on the appliance."""
    taken: list[str] = []
    with write_transaction(db):
        ids = _roster_ids(db, exam_id, student_numbers)
        verb = "INSERT OR IGNORE" if only_unassigned else "INSERT OR REPLACE"
        for number, roster_id in zip(student_numbers, ids, strict=True):
            done = db.execute(
                f"{verb} INTO queue_claim (roster_id, exam_id, user_id, at) VALUES (?,?,?,?)",  # noqa: S608
                [roster_id, exam_id, user_id, to_wire(now)],
            )
            if done.rowcount:
                taken.append(number)
        if taken:
            detail = {"students": taken, "reviewer": user_id, **_actor(by)}
            audit.insert(db, by, "queue_assigned", exam_id, None, detail, now)
    return taken


def release(
    db: sqlite_utils.Database,
    exam_id: int,
    user_id: int,
    now: datetime,
    *,
    by: int | None,
    student_numbers: list[str] | None = None,
) -> int:
    """Give back a reviewer's students (all, or these), so others can take them; returns how many. Their
    "nothing here" marks stay: what was cleared stays cleared. Audited."""
    if student_numbers == []:
        return 0
    with write_transaction(db):
        query = "DELETE FROM queue_claim WHERE exam_id = ? AND user_id = ?"
        params: list[Any] = [exam_id, user_id]
        if student_numbers is not None:
            ids = _roster_ids(db, exam_id, student_numbers)
            query += f" AND roster_id IN ({','.join('?' * len(ids))})"
            params += ids
        gone = db.execute(query, params).rowcount
        if gone:
            detail = {"reviewer": user_id, "students": gone, **_actor(by)}
            audit.insert(db, by, "queue_released", exam_id, None, detail, now)
    return int(gone)


def plan_split(
    open_moments: dict[str, int], reviewers: list[str], load: dict[str, int] | None = None
) -> dict[str, list[str]]:
    """Share students among reviewers so the open moments each one holds come out as even as they can
    (pure): the student with the most open moments first, each to the reviewer holding the fewest (``load``:
    what each already holds), ties by the reviewer's place in the list and the student number."""
    if not reviewers:
        raise QueueRefused("name at least one reviewer to split the exam among")
    held = {name: (load or {}).get(name, 0) for name in reviewers}
    shares: dict[str, list[str]] = {name: [] for name in reviewers}
    for number in sorted(open_moments, key=lambda n: (-open_moments[n], n)):
        name = min(reviewers, key=lambda r: (held[r], len(shares[r]), reviewers.index(r)))
        shares[name].append(number)
        held[name] += open_moments[number]
    return shares


def split(
    db: sqlite_utils.Database,
    exam_id: int,
    reviewer_ids: dict[str, int],
    by: int | None,
    now: datetime,
    *,
    reassign: bool = False,
) -> dict[str, list[str]]:
    """Split the students with open moments among these reviewers (username -> user id): those nobody holds,
    or every one when ``reassign``. What a reviewer already holds counts towards their share."""
    built = build(db, exam_id)
    open_moments: dict[str, int] = {}
    load: dict[str, int] = {}
    for item in built.open:
        if item.reviewer is None or reassign:
            open_moments[item.student_number] = open_moments.get(item.student_number, 0) + 1
        elif item.reviewer in reviewer_ids:
            load[item.reviewer] = load.get(item.reviewer, 0) + 1
    shares = plan_split(open_moments, list(reviewer_ids), None if reassign else load)
    for name, numbers in shares.items():
        if numbers:
            assign(db, exam_id, numbers, reviewer_ids[name], now, by=by)
    return shares


def claim_next(db: sqlite_utils.Database, exam_id: int, user_id: int, count: int, now: datetime) -> list[str]:
    """Take the next ``count`` unassigned students that have open moments (in queue order); a student
    another reviewer took meanwhile is left out (the assignment is atomic)."""
    queue = build(db, exam_id)
    wanted: list[str] = []
    for item in queue.open:
        if item.reviewer is None and item.student_number not in wanted:
            wanted.append(item.student_number)
        if len(wanted) == count:
            break
    return assign(db, exam_id, wanted, user_id, now, by=user_id, only_unassigned=True) if wanted else []
