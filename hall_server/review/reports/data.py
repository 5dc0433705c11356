"""The facts of one student's report, gathered from the store and the encrypted blobs.

One student may have several agent sessions (a re-enrolment after a crash); each gets its timeline, its
filmstrip, the screenshots around each observation and finding, and its hash chain. Images are decrypted
here and handed on as ``data:`` URIs so the rendered page is self-contained.
"""

from __future__ import annotations

import base64
import bisect
import io
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlite_utils
from PIL import Image

from hall_server.review.reports.timeline import Frame, Timeline, timeline
from hall_server.store import chain, crypto, exams
from hall_server.store.exams import ExamFacts
from hall_server.store.screens import ExamScreens, Screens, media_type
from invigil.timeutil import from_wire, to_wire, utc_now

FILMSTRIP_MAX = 36
MOMENTS_MAX = 40
THUMB_WIDTH = 320
#: A screenshot taken this long after a moment still shows "what came next".
NEXT_WITHIN = timedelta(minutes=5)


class ReportUnavailable(LookupError):
    """No such exam or student, or the exam's data was deleted by retention."""


def open_screens(db: sqlite_utils.Database, screens: Screens, exam_id: int) -> ExamScreens:
    """The exam's images for a report; :class:`ReportUnavailable` once retention destroyed its key."""
    try:
        return screens.exam(db, exam_id)
    except crypto.KeyUnavailable as exc:
        raise ReportUnavailable(str(exc)) from None


def data_uri(body: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(body).decode()}"


def frame_screen(exam_screens: ExamScreens, frame: Frame) -> bytes | None:
    """The whole screen of ``frame`` (a tile update put back together), or None when a piece is gone."""
    if frame.session_id is None:
        return exam_screens.find(frame.sha256)
    return exam_screens.find_screen(frame.session_id, frame.capture_id)


def screen_uri(exam_screens: ExamScreens, frame: Frame) -> str | None:
    """The full capture of ``frame`` as a data: URI, or None when its blob is gone."""
    body = frame_screen(exam_screens, frame)
    return data_uri(body, media_type(body)) if body is not None else None


def thumbnail_uri(exam_screens: ExamScreens, frame: Frame) -> str | None:
    if frame.thumb_sha256:
        thumb = exam_screens.find(frame.thumb_sha256)
        if thumb is not None:
            return data_uri(thumb, media_type(thumb))
    full = frame_screen(exam_screens, frame)
    if full is None:
        return None
    with Image.open(io.BytesIO(full)) as image:
        image.thumbnail((THUMB_WIDTH, THUMB_WIDTH))
        out = io.BytesIO()
        image.convert("RGB").save(out, "JPEG", quality=80)
    return data_uri(out.getvalue(), "image/jpeg")


@dataclass(frozen=True)
class Shot:
    label: str
    frame: Frame
    uri: str | None


@dataclass
class Moment:
    """Observations and findings that show the same screens, with those screenshots. ``items`` holds
    (at, end, title, text) of each: moments seconds apart share one set of screenshots."""

    items: list[tuple[datetime, datetime | None, str, str]]
    shots: list[Shot]

    @property
    def at(self) -> datetime:
        return self.items[0][0]


@dataclass
class SessionReport:
    timeline: Timeline
    filmstrip: list[tuple[Frame, str | None]]
    moments: list[Moment]
    moments_left_out: int
    chain: chain.SessionChain
    svg: str = ""  # the timeline plot, drawn by hall_server.review.reports.render


@dataclass
class ReportData:
    exam: ExamFacts
    student: dict[str, Any]
    sessions: list[SessionReport]
    generated_at: datetime
    generated_by: str

    @property
    def chain_heads(self) -> list[dict[str, Any]]:
        return [
            {"session_id": s.chain.session_id, "head": s.chain.head, "length": s.chain.length}
            for s in self.sessions
        ]


def sample(frames: list[Frame], limit: int) -> list[Frame]:
    """At most ``limit`` frames spread evenly over the list, first and last included (pure)."""
    if len(frames) <= limit:
        return frames
    if limit <= 1:
        return frames[:limit]
    step = (len(frames) - 1) / (limit - 1)
    return [frames[round(i * step)] for i in range(limit)]


def shots_around(
    frames_by_monitor: dict[int, list[Frame]], at: datetime, exam_screens: ExamScreens
) -> list[Shot]:
    """Per monitor: the screen shown at ``at`` and the next change within NEXT_WITHIN."""
    shots: list[Shot] = []
    for monitor, monitor_frames in sorted(frames_by_monitor.items()):
        times = [frame.at for frame in monitor_frames]
        index = bisect.bisect_right(times, at)
        suffix = f" (monitor {monitor + 1})" if len(frames_by_monitor) > 1 else ""
        if index > 0:
            frame = monitor_frames[index - 1]
            shots.append(Shot(f"on screen at {at:%H:%M:%S}{suffix}", frame, screen_uri(exam_screens, frame)))
        if index < len(monitor_frames) and monitor_frames[index].at - at <= NEXT_WITHIN:
            frame = monitor_frames[index]
            shots.append(Shot(f"next change{suffix}", frame, screen_uri(exam_screens, frame)))
    return shots


def _observation_title(observation: dict[str, Any]) -> str:
    detail = observation["detail"]
    label = observation["kind"].replace("_", " ")
    extra = detail.get("host") or detail.get("category") or detail.get("count") or detail.get("skew_s")
    return f"Observation: {label}" + (f" ({extra})" if extra not in (None, "") else "")


def _moments(report_timeline: Timeline, exam_screens: ExamScreens, limit: int) -> tuple[list[Moment], int]:
    frames_by_monitor: dict[int, list[Frame]] = {}
    for frame in report_timeline.frames:
        frames_by_monitor.setdefault(frame.monitor, []).append(frame)
    wanted: list[tuple[str, str, datetime, datetime | None, str]] = []
    for finding in report_timeline.findings:
        current = finding.current
        title = f"Finding by {current.author}: {finding.status}"
        end = from_wire(current.span_end) if current.span_end else None
        wanted.append(("finding", title, from_wire(current.span_start), end, current.text))
    for observation in report_timeline.observations:
        wanted.append(("observation", _observation_title(observation), observation["at"], None, ""))
    left_out = max(len(wanted) - limit, 0)
    wanted = wanted[:limit]  # findings first: they matter most to the exam board
    wanted.sort(key=lambda item: item[2])
    moments: list[Moment] = []
    for _kind, title, at, end, text in wanted:
        shots = shots_around(frames_by_monitor, at, exam_screens)
        if moments and [shot.frame.capture_id for shot in moments[-1].shots] == [
            shot.frame.capture_id for shot in shots
        ]:
            moments[-1].items.append((at, end, title, text))
        else:
            moments.append(Moment([(at, end, title, text)], shots))
    return moments, left_out


def report_exam(db: sqlite_utils.Database, exam_id: int) -> ExamFacts:
    """The exam's header for a report or export; :class:`ReportUnavailable` when there is no such exam or
    retention deleted its data."""
    exam = exams.exam_facts(db, exam_id)
    if exam is None:
        raise ReportUnavailable(f"no exam {exam_id}")
    if exam.retention_done_at is not None:
        raise ReportUnavailable(f"exam {exam_id}'s data was deleted by retention on {exam.retention_done_at}")
    return exam


def report_student(db: sqlite_utils.Database, exam_id: int, student_number: str) -> dict[str, Any]:
    """The student's roster entry; :class:`ReportUnavailable` when they are not on the exam's roster."""
    student = exams.roster_entry(db, exam_id, student_number)
    if student is None:
        raise ReportUnavailable(f"student {student_number} is not on the roster of exam {exam_id}")
    return student


def student_sessions(db: sqlite_utils.Database, exam_id: int, student_number: str) -> list[int]:
    return [
        row[0]
        for row in db.execute(
            "SELECT s.id FROM agent_session s JOIN roster r ON r.id = s.roster_id "
            "WHERE s.exam_id = ? AND r.student_number = ? ORDER BY s.enrolled_at, s.id",
            [exam_id, student_number],
        )
    ]


def student_report(
    db: sqlite_utils.Database,
    exam_screens: ExamScreens,
    exam_id: int,
    student_number: str,
    *,
    generated_by: str,
    filmstrip_max: int = FILMSTRIP_MAX,
    moments_max: int = MOMENTS_MAX,
) -> ReportData:
    """Everything one student's report shows."""
    exam = report_exam(db, exam_id)
    student = report_student(db, exam_id, student_number)
    sessions: list[SessionReport] = []
    for session_id in student_sessions(db, exam_id, student_number):
        session_timeline = timeline(db, session_id)
        strip = [
            (frame, thumbnail_uri(exam_screens, frame))
            for frame in sample(session_timeline.frames, filmstrip_max)
        ]
        moments, left_out = _moments(session_timeline, exam_screens, moments_max)
        sessions.append(
            SessionReport(session_timeline, strip, moments, left_out, chain.session_chain(db, session_id))
        )
    return ReportData(exam, student, sessions, utc_now(), generated_by)


def generated_stamp(report: ReportData) -> str:
    return to_wire(report.generated_at)
