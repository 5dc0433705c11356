"""The reviewer's pages: the exam overview (students by unreviewed observations, counts per kind, never a
score), search ("who opened X, when"), one student's timeline, and findings (record, confirm, withdraw).

Access: a user assigned to the exam (or its hall) as ``reviewer`` or ``exam_board``
(``staff.review_roles``); anyone else gets 404, exactly as for an exam that does not exist. Opening a
student's timeline is written to the audit log (``capture_view``); its images come through the capture
routes of ``dashboard.views``, which audit every thumbnail and full capture. Downloads are in
``dashboard.review_files``, the exam board's page in ``dashboard.board``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import abort, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from hall_server import staff
from hall_server.review import expected, findings, screentext
from hall_server.review.reports import nearsame, overview
from hall_server.review.reports.timeline import Frame, Timeline, timeline
from hall_server.store import audit
from hall_server.store.exams import ExamFacts, exam_facts
from hall_server.web import get_db
from invigil.timeutil import from_wire, to_wire, utc_now

from .auth import logged_in_user, login_required, review_roles
from .blueprint import bp
from .labels import OBSERVATION_LABELS, in_language, observation_label
from .script_texts import review_timeline as script_texts

#: The overview's short words for a finding's status (the timeline names who confirmed).
STATUS_TEXT = {
    findings.STATUS_NO_IRREGULARITY: _l("no irregularity"),
    findings.STATUS_AWAITING: _l("suspected (unconfirmed)"),
    findings.STATUS_CONFIRMED: _l("suspected (confirmed)"),
    findings.STATUS_NOTE: _l("note"),
}


def reviewable(exam_id: int) -> tuple[ExamFacts, frozenset[str]]:
    """The exam and this user's review roles for it; 404 when they have none (never say it exists)."""
    roles = review_roles(logged_in_user().id, exam_id)
    exam = exam_facts(get_db(), exam_id) if roles else None
    if exam is None:
        abort(404)
    return exam, roles


def student_of(exam_id: int, student_number: str) -> dict[str, Any]:
    found = overview.student(get_db(), exam_id, student_number)
    if found is None:
        abort(404)
    return found


def session_in(exam_id: int, session_id: int) -> None:
    row = get_db().execute("SELECT exam_id FROM agent_session WHERE id = ?", [session_id]).fetchone()
    if row is None or row[0] != exam_id:
        abort(404)


def _wire(value: datetime | None) -> str | None:
    return to_wire(value) if value is not None else None


def finding_json(finding: findings.Finding, me: int) -> dict[str, Any]:
    """A finding as the timeline page shows it: who, when, status, a proposal to change it that waits for
    a second person, and what this user may do with either."""
    current, pending = finding.current, finding.pending
    confirmers = {entry.author_id for entry in finding.confirmations}
    shown = findings.as_json(finding)
    if pending is not None:
        shown["pending"] = {
            **shown["pending"],
            "label": findings.PROPOSAL_TEXT[pending.kind],
            "mine": pending.author_id == me,
            "may_confirm": pending.author_id != me,
        }
    return {
        **shown,
        "mine": current.author_id == me and pending is None,
        "may_confirm": current.kind == "suspected_irregularity"
        and current.author_id != me
        and me not in confirmers
        and pending is None,
        "may_propose_clearing": finding.counts
        and current.kind == "suspected_irregularity"
        and pending is None,
        "label": _status_label(finding),
    }


def _status_label(finding: findings.Finding) -> str:
    kind = finding.current.kind
    others = [e.author for e in finding.confirmations if e.author_id != finding.current.author_id]
    names = ", ".join(others)
    if kind == "no_irregularity":
        return _("no irregularity (confirmed by %(names)s)", names=names) if others else _("no irregularity")
    if kind == findings.NOTE:
        return _("note")
    return _("suspected (confirmed by %(names)s)", names=names) if others else _("suspected (unconfirmed)")


def timeline_json(data: Timeline, me: int) -> dict[str, Any]:
    """The compact JSON the timeline page draws: frames and unchanged spans per monitor, sites, device
    events, observations (with whether a verdict covers them), gaps and findings."""
    facts = data.session
    frames, spans = [], []
    same = nearsame.repeats(data.frames, nearsame.tile_shares(get_db(), facts.id))
    for entry in data.entries:
        if isinstance(entry, Frame):
            frames.append(
                [
                    entry.capture_id,
                    entry.monitor,
                    to_wire(entry.at),
                    bool(entry.thumb_sha256),
                    entry.width,
                    entry.height,
                    entry.focused_app or "",
                    entry.window_title or "",
                    entry.capture_id in same,
                ]
            )
        else:
            spans.append([entry.monitor, to_wire(entry.start), to_wire(entry.end), entry.count])
    observations = [(o["id"], o["at"]) for o in data.observations]
    slack = timedelta(seconds=facts.capture_interval_s)
    open_ids = overview.unreviewed(observations, data.findings, slack)
    return {
        "session": {
            "id": facts.id,
            "agent_id": facts.agent_id,
            "os": facts.os,
            "enrolled_at": to_wire(facts.enrolled_at),
            "ended_at": _wire(facts.ended_at),
            "state": facts.state,
            "interval": facts.capture_interval_s,
            "records": data.capture_records,
            "chain_head": facts.chain_head,
            "chain_length": facts.chain_length,
        },
        "start": to_wire(data.start),
        "end": to_wire(data.end),
        "monitors": sorted({frame[1] for frame in frames} | {span[0] for span in spans}) or [0],
        "frames": frames,
        "spans": spans,
        "sites": [
            {
                "at": to_wire(s["time"]),
                "host": s["host"],
                "decision": s["decision"],
                "source": s["source"],
                "url": s["url"] or "",
                "reason": s["reason"] or "",
            }
            for s in data.sites
        ],
        "devices": [
            {"at": to_wire(d["at"]), "kind": d["kind"], "detail": d["detail"]} for d in data.device_events
        ],
        "observations": [
            {
                "id": o["id"],
                "kind": o["kind"],
                "label": observation_label(o["kind"]),
                "at": to_wire(o["at"]),
                "detail": o["detail"],
                "reviewed": o["id"] not in open_ids,
            }
            for o in data.observations
        ],
        "gaps": [[to_wire(g.start), to_wire(g.end)] for g in data.gaps],
        "findings": [finding_json(f, me) for f in data.findings],
    }


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "send a JSON object")
    return body


def _moment(value: Any, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        return from_wire(str(value))
    except ValueError:
        abort(400, f"{name} is not a time")


def _entry_id(body: dict[str, Any], name: str) -> int | None:
    """An optional entry or observation id of the request: a whole number or absent, never guessed."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        abort(400, f"{name} is the id of an entry (a whole number), not {value!r}")
    return value


def _refused(exc: findings.FindingRefused) -> ResponseReturnValue:
    return jsonify(error={"code": "refused", "message": str(exc)}), 409


@bp.get("/review/")
@login_required
def review_index() -> ResponseReturnValue:
    return render_template("review_index.html", exams=staff.reviewable_exams(get_db(), logged_in_user().id))


@bp.get("/review/exams/<int:exam_id>")
@login_required
def review_exam(exam_id: int) -> ResponseReturnValue:
    exam, roles = reviewable(exam_id)
    query = request.args.get("q", "").strip()[:200]
    hits = overview.search(get_db(), exam_id, query) if query else []
    text_hits = screentext.search(get_db(), exam_id, query) if query else []
    students = overview.exam_overview(get_db(), exam_id)
    detail: dict[str, Any] = {"students": len(students)}
    if query:
        detail |= _search_detail(hits, text_hits)
    audit.record(get_db(), logged_in_user().id, "review_overview", exam_id, None, detail)
    return render_template(
        "review_exam.html",
        exam=exam,
        roles=roles,
        students=students,
        observation_labels=in_language(OBSERVATION_LABELS),
        status_text=in_language(STATUS_TEXT),
        query=query,
        hits=hits,
        text_hits=text_hits,
        expected=expected.load(get_db(), exam_id),
    )


@bp.get("/review/exams/<int:exam_id>/search.json")
@login_required
def review_search(exam_id: int) -> ResponseReturnValue:
    reviewable(exam_id)
    query = request.args.get("q", "").strip()[:200]
    hits = overview.search(get_db(), exam_id, query)
    text_hits = screentext.search(get_db(), exam_id, query)
    audit.record(
        get_db(), logged_in_user().id, "review_search", exam_id, None, _search_detail(hits, text_hits)
    )
    return jsonify(hits=[hit.__dict__ for hit in hits], screen_text=[hit.__dict__ for hit in text_hits])


def _search_detail(hits: list[Any], text_hits: list[Any]) -> dict[str, Any]:
    """What a search's audit row says: how many hits and which students they named. Never the words
    searched for: they may be a name, and the audit log is not sealed."""
    named = {str(getattr(hit, "student_number", "")) for hit in [*hits, *text_hits]} - {""}
    return {"search": True, "hits": len(hits) + len(text_hits), "students": sorted(named)}


@bp.get("/review/exams/<int:exam_id>/students/<student_number>")
@login_required
def review_student(exam_id: int, student_number: str) -> ResponseReturnValue:
    exam, roles = reviewable(exam_id)
    found = student_of(exam_id, student_number)
    return render_template("review_student.html", exam=exam, roles=roles, student=found, i18n=script_texts())


@bp.get("/review/exams/<int:exam_id>/students/<student_number>/timeline.json")
@login_required
def review_timeline(exam_id: int, student_number: str) -> ResponseReturnValue:
    reviewable(exam_id)
    found = student_of(exam_id, student_number)
    sessions = [s["id"] for s in found["sessions"]]
    wanted = request.args.get("session", type=int) or (sessions[-1] if sessions else None)
    if wanted is None or wanted not in sessions:
        abort(404, "no session of this student")
    me = logged_in_user().id
    detail = {"student_number": student_number, "view": "timeline"}
    audit.record(get_db(), me, "capture_view", exam_id, wanted, detail)
    return jsonify(timeline_json(timeline(get_db(), wanted), me))


@bp.post("/review/exams/<int:exam_id>/sessions/<int:session_id>/findings")
@login_required
def review_record(exam_id: int, session_id: int) -> ResponseReturnValue:
    reviewable(exam_id)
    session_in(exam_id, session_id)
    body = _body()
    start = _moment(body.get("start"), "start")
    if start is None:
        abort(400, "a finding needs the moment it is about (start)")
    try:
        finding_id = findings.record(
            get_db(),
            session_id=session_id,
            author_id=logged_in_user().id,
            verdict=str(body.get("kind", "")),
            span_start=start,
            span_end=_moment(body.get("end"), "end"),
            text=str(body.get("text", "")),
            observation_id=_entry_id(body, "observation_id"),
            supersedes=_entry_id(body, "supersedes"),
            now=utc_now(),
        )
    except findings.FindingRefused as exc:
        return _refused(exc)
    return jsonify(ok=True, id=finding_id, pending=findings.is_pending(get_db(), finding_id)), 201


def _finding_action(exam_id: int, session_id: int, finding_id: int, action: Any) -> ResponseReturnValue:
    reviewable(exam_id)
    session_in(exam_id, session_id)
    if finding_id not in {entry.id for entry in findings.entries(get_db(), session_id)}:
        abort(404)
    text = str(_body().get("text", ""))[: findings.TEXT_MAX_CHARS]
    try:
        entry_id = action(get_db(), finding_id, logged_in_user().id, utc_now(), text)
    except findings.FindingRefused as exc:
        return _refused(exc)
    return jsonify(ok=True, id=entry_id, pending=findings.is_pending(get_db(), entry_id)), 201


@bp.post("/review/exams/<int:exam_id>/sessions/<int:session_id>/findings/<int:finding_id>/confirm")
@login_required
def review_confirm(exam_id: int, session_id: int, finding_id: int) -> ResponseReturnValue:
    return _finding_action(exam_id, session_id, finding_id, findings.confirm)


@bp.post("/review/exams/<int:exam_id>/sessions/<int:session_id>/findings/<int:finding_id>/withdraw")
@login_required
def review_withdraw(exam_id: int, session_id: int, finding_id: int) -> ResponseReturnValue:
    return _finding_action(exam_id, session_id, finding_id, findings.withdraw)
