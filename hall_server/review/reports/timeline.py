"""What a reviewer's timeline page needs for one agent session, in one call: :func:`timeline`.

Filmstrip entries (each changed capture; runs of "unchanged" records collapsed into spans), site events,
device events, observations, gaps in the captures, findings, and the session's hash-chain head. A 3-hour exam
at a 5 s interval is ~2,200 capture records per monitor; bench/review.py times this query.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlite_utils

from hall_server.review import findings
from hall_server.settings import GAP_INTERVALS
from invigil.timeutil import from_wire, utc_now


@dataclass(frozen=True)
class Frame:
    """A changed capture: the screen of ``monitor`` showed this image from ``at``."""

    capture_id: str
    monitor: int
    at: datetime
    received_at: str
    sha256: str
    thumb_sha256: str | None
    width: int
    height: int
    trigger: str | None
    focused_app: str | None
    window_title: str | None
    kind: str = "frame"
    #: The session it belongs to: a tile update is put back together from that session's chain.
    session_id: int | None = None


@dataclass
class UnchangedSpan:
    """Consecutive "unchanged since" records of one monitor: the screen still showed ``since_capture_id``."""

    monitor: int
    since_capture_id: str
    start: datetime
    end: datetime
    count: int
    kind: str = "unchanged"


@dataclass(frozen=True)
class Gap:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class SessionFacts:
    id: int
    exam_id: int
    exam_title: str
    exam_starts_at: datetime
    exam_ends_at: datetime
    capture_interval_s: int
    student_number: str
    student_name: str
    seat: str | None
    extra_time_min: int
    agent_id: str
    agent_version: str
    os: str
    client_ip: str
    enrolled_at: datetime
    ended_at: datetime | None
    state: str
    chain_head: str | None
    chain_length: int
    #: When the invigilator ended the exam, if they did.
    exam_ended_at: datetime | None = None
    #: When the student's next session of this exam began (the agent joined again), if it did.
    superseded_at: datetime | None = None

    def watched_until(self, now: datetime) -> datetime | None:
        """Until when a session that never left should have sent records: the end of the exam for the
        student (exam end plus extra time, or when the invigilator ended it), the student's next session,
        or ``now`` while it runs. None for a session that left."""
        if self.ended_at is not None or self.state == "left":
            return None
        ends = [now, self.exam_ends_at + timedelta(minutes=self.extra_time_min)]
        ends += [moment for moment in (self.exam_ended_at, self.superseded_at) if moment is not None]
        return min(ends)


@dataclass
class Timeline:
    session: SessionFacts
    entries: list[Frame | UnchangedSpan] = field(default_factory=list)
    sites: list[dict[str, Any]] = field(default_factory=list)
    device_events: list[dict[str, Any]] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    findings: list[findings.Finding] = field(default_factory=list)
    capture_records: int = 0

    @property
    def frames(self) -> list[Frame]:
        return [entry for entry in self.entries if isinstance(entry, Frame)]

    @property
    def start(self) -> datetime:
        return min(self.session.exam_starts_at, self.session.enrolled_at)

    @property
    def end(self) -> datetime:
        end = self.session.exam_ends_at + timedelta(minutes=self.session.extra_time_min)
        if not self.entries:
            return end
        last = self.entries[-1]
        return max(end, last.end if isinstance(last, UnchangedSpan) else last.at)


_SESSION_QUERY = """
    SELECT s.id, s.exam_id, e.title, e.starts_at, e.ends_at, e.capture_interval_s, r.student_number,
           unseal(r.exam_id, r.name), r.seat, r.extra_time_min, s.agent_id, s.agent_version, s.os,
           unseal(s.exam_id, s.client_ip), s.enrolled_at, s.ended_at, s.state, s.chain_head, s.chain_length,
           e.ended_at,
           (SELECT MIN(n.enrolled_at) FROM agent_session n
             WHERE n.roster_id = s.roster_id AND (n.enrolled_at, n.id) > (s.enrolled_at, s.id))
    FROM agent_session s JOIN exam e ON e.id = s.exam_id JOIN roster r ON r.id = s.roster_id WHERE s.id = ?
"""


def session_facts(db: sqlite_utils.Database, session_id: int) -> SessionFacts:
    row = db.execute(_SESSION_QUERY, [session_id]).fetchone()
    if row is None:
        raise LookupError(f"no session {session_id}")
    values = list(row)
    for index in (3, 4, 14):
        values[index] = from_wire(values[index])
    for index in (15, 19, 20):
        values[index] = from_wire(values[index]) if values[index] else None
    return SessionFacts(*values)


def collapse(rows: list[tuple[Any, ...]], session_id: int | None = None) -> list[Frame | UnchangedSpan]:
    """Capture rows in time order -> frames and unchanged spans (pure). Row columns: capture_id, monitor,
    agent_time, received_at, changed, sha256, thumb_sha256, width, height, trigger, focused_app,
    window_title, since_capture_id."""
    entries: list[Frame | UnchangedSpan] = []
    open_spans: dict[int, UnchangedSpan] = {}
    for row in rows:
        capture_id, monitor, agent_time, received_at, changed = row[:5]
        at = from_wire(agent_time)
        if changed:
            open_spans.pop(monitor, None)
            sha, thumb, width, height, trigger, app, title = row[5:12]
            entries.append(
                Frame(
                    capture_id,
                    monitor,
                    at,
                    received_at,
                    sha,
                    thumb,
                    width,
                    height,
                    trigger,
                    app,
                    title,
                    session_id=session_id,
                )
            )
            continue
        since = row[12]
        span = open_spans.get(monitor)
        if span is not None and span.since_capture_id == since:
            span.end = at
            span.count += 1
        else:
            span = open_spans[monitor] = UnchangedSpan(monitor, since, at, at, 1)
            entries.append(span)
    return entries


def find_gaps(
    times: list[datetime], interval_s: int, start: datetime | None = None, end: datetime | None = None
) -> list[Gap]:
    """Pauses longer than GAP_INTERVALS intervals (pure): from ``start`` (enrolment) to the first capture
    record, between consecutive records, and from the last record (or ``start``) to ``end``, until when
    records should have come (the end of the exam for a session that never left, or now)."""
    limit = timedelta(seconds=GAP_INTERVALS * interval_s)
    gaps: list[Gap] = []
    previous = start
    for moment in times:
        if previous is not None and moment - previous > limit:
            gaps.append(Gap(previous, moment))
        previous = moment
    if end is not None and previous is not None and end - previous > limit:
        gaps.append(Gap(previous, end))
    return gaps


def _decode(detail: str | None) -> dict[str, Any]:
    try:
        value = json.loads(detail)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # NULL once retention destroyed the exam's key
        return {}
    return value if isinstance(value, dict) else {}


def timeline(db: sqlite_utils.Database, session_id: int, now: datetime | None = None) -> Timeline:
    """Everything the timeline page of one session shows, as of ``now`` (the trailing gap of a session
    that never left runs to it while the exam runs); raises LookupError for an unknown session."""
    facts = session_facts(db, session_id)
    rows = db.execute(
        "SELECT capture_id, monitor, agent_time, received_at, changed, sha256, thumb_sha256, width, height, "
        "trigger, unseal(exam_id, focused_app), unseal(exam_id, window_title), since_capture_id "
        "FROM capture WHERE session_id = ? "
        "ORDER BY agent_time, capture_id",
        [session_id],
    ).fetchall()
    result = Timeline(facts, capture_records=len(rows))
    result.entries = collapse(rows, session_id)
    result.gaps = find_gaps(
        [from_wire(row[2]) for row in rows],
        facts.capture_interval_s,
        facts.enrolled_at,
        facts.watched_until(now or utc_now()),
    )
    result.sites = [
        {
            "time": from_wire(row[0]),
            "source": row[1],
            "host": row[2],
            "url": row[3],
            "decision": row[4],
            "reason": row[5],
            "received_at": row[6],
        }
        for row in db.execute(
            "SELECT time, source, unseal(exam_id, host), unseal(exam_id, url), decision, reason, received_at "
            "FROM site_event "
            "WHERE session_id = ? ORDER BY time",
            [session_id],
        )
    ]
    result.device_events = [
        {"at": from_wire(row[0]), "kind": row[1], "detail": _decode(row[2]), "received_at": row[3]}
        for row in db.execute(
            "SELECT agent_time, kind, unseal(exam_id, detail), received_at FROM device_event WHERE "
            "session_id = ? "
            "ORDER BY agent_time",
            [session_id],
        )
    ]
    result.observations = [
        {
            "id": row[0],
            "kind": row[1],
            "at": from_wire(row[2]),
            "detail": _decode(row[3]),
            "acknowledged_at": row[4],
        }
        for row in db.execute(
            "SELECT id, kind, at, unseal(exam_id, detail), acknowledged_at FROM observation WHERE "
            "session_id = ? "
            "ORDER BY at",
            [session_id],
        )
    ]
    result.findings = findings.for_session(db, session_id)
    return result
