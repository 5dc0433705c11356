"""The invigilator's pages, the JSON the live view loads, its actions, and capture images over HTTP.

Every view checks that the logged-in user is assigned to the exam (``staff.may_watch``); an exam the user
is not assigned to answers 404, exactly like one that does not exist. Every view of a student's captures
(thumbnail, full capture, seat detail) is written to the audit log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import (
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask.typing import ResponseReturnValue

from hall_server import staff
from hall_server.live import hallview, invigilation, seatstate
from hall_server.live.bus import hall_summary
from hall_server.store import audit
from hall_server.store.exams import ExamFacts, exam_facts
from hall_server.store.frames import ScreenUnavailable
from hall_server.store.screens import media_type
from hall_server.web import get_db, state
from invigil.protocol import ID_RE
from invigil.timeutil import utc_now

from .auth import access_windows, logged_in_user, login_required, may_see_captures, may_watch
from .blueprint import bp
from .labels import OBSERVATION_LABELS, in_language
from .script_texts import hall as script_texts

THUMBS_PER_REQUEST = 64
VENDOR_DIR = Path(__file__).resolve().parent / "node_modules" / "socket.io-client" / "dist"


def _exam(exam_id: int) -> ExamFacts:
    """The exam, if this user may watch it; 404 otherwise (never say whether it exists)."""
    if not may_watch(logged_in_user().id, exam_id):
        abort(404)
    exam = exam_facts(get_db(), exam_id)
    if exam is None:
        abort(404)
    return exam


def _discovery() -> tuple[dict[str, bool], dict[str, Any] | None]:
    bus = current_app.extensions["invigil_live"]
    return bus.discovered(), bus.discovery_health()


@bp.get("/")
@login_required
def index() -> ResponseReturnValue:
    exams = staff.watchable_exams(get_db(), logged_in_user().id, access_windows())
    reviewable = staff.reviewable_exams(get_db(), logged_in_user().id)
    if len(exams) == 1 and not reviewable:
        return redirect(url_for("dashboard.hall", exam_id=exams[0]["id"]))
    if reviewable and not exams:
        return redirect(url_for("dashboard.review_index"))
    return render_template("exams.html", exams=exams, reviewable=reviewable)


@bp.get("/exams/<int:exam_id>")
@login_required
def hall(exam_id: int) -> ResponseReturnValue:
    exam = _exam(exam_id)
    return render_template(
        "hall.html", exam=exam, observation_labels=in_language(OBSERVATION_LABELS), i18n=script_texts()
    )


@bp.get("/exams/<int:exam_id>/hall.json")
@login_required
def hall_json(exam_id: int) -> ResponseReturnValue:
    exam = _exam(exam_id)
    now = utc_now()
    discovered, health = _discovery()
    thresholds = seatstate.Thresholds.from_settings(state().settings)
    seats = hallview.seats(get_db(), exam, now, thresholds, discovered)
    max_extra = max((seat.get("extra") or 0 for seat in seats), default=0)
    # One row per view of the hall (the page loads it once, and again after an action).
    audit.record(get_db(), logged_in_user().id, "view_hall", exam_id, None, {"seats": len(seats)})
    return jsonify(
        exam=exam.to_json(now, max_extra),
        seats=seats,
        hall=hall_summary(seats, health),
        observations=hallview.observations(get_db(), exam_id, limit=200),
        seat_map=bool(exam.seat_map),
    )


@bp.get("/exams/<int:exam_id>/seats/<int:roster_id>.json")
@login_required
def seat_json(exam_id: int, roster_id: int) -> ResponseReturnValue:
    _exam(exam_id)
    detail = hallview.seat_detail(get_db(), exam_id, roster_id)
    if detail is None:
        abort(404)
    detail["observations"] = hallview.observations(get_db(), exam_id, roster_id=roster_id, limit=50)
    session_id = detail["session"]["id"] if detail["session"] else None
    audit.record(get_db(), logged_in_user().id, "view_seat", exam_id, session_id)
    return jsonify(detail)


def _act(exam_id: int, action: Any) -> ResponseReturnValue:
    _exam(exam_id)
    try:
        result = action(get_db(), logged_in_user().id, utc_now())
    except invigilation.ActionRefused as exc:
        return jsonify(error={"code": "refused", "message": str(exc)}), 409
    return jsonify(ok=True, result=result)


@bp.post("/exams/<int:exam_id>/observations/<int:observation_id>/ack")
@login_required
def acknowledge(exam_id: int, observation_id: int) -> ResponseReturnValue:
    return _act(exam_id, lambda db, uid, now: invigilation.acknowledge(db, exam_id, observation_id, uid, now))


@bp.post("/exams/<int:exam_id>/seats/<int:roster_id>/attendance")
@login_required
def attendance(exam_id: int, roster_id: int) -> ResponseReturnValue:
    body = request.get_json(silent=True)
    checked = bool(body.get("checked")) if isinstance(body, dict) else False
    return _act(
        exam_id,
        lambda db, uid, now: invigilation.set_attendance(db, exam_id, roster_id, checked, uid, now),
    )


@bp.post("/exams/<int:exam_id>/seats/<int:roster_id>/capture-now")
@login_required
def capture_now(exam_id: int, roster_id: int) -> ResponseReturnValue:
    return _act(exam_id, lambda db, uid, now: invigilation.capture_now(db, exam_id, roster_id, uid, now))


@bp.post("/exams/<int:exam_id>/start")
@login_required
def start(exam_id: int) -> ResponseReturnValue:
    return _act(exam_id, lambda db, uid, now: invigilation.start_exam(db, exam_id, uid, now))


@bp.post("/exams/<int:exam_id>/end")
@login_required
def end(exam_id: int) -> ResponseReturnValue:
    return _act(exam_id, lambda db, uid, now: invigilation.end_exam(db, exam_id, uid, now))


def _capture_image(session_id: int, capture_id: str, thumbnail: bool) -> Response:
    if not ID_RE.fullmatch(capture_id):
        abort(404)
    db = get_db()
    blob = hallview.capture_blob(db, session_id, capture_id, thumbnail)
    user = logged_in_user()
    if blob is None or not may_see_captures(user.id, blob[0]):
        abort(404)  # the same answer whether it does not exist or is not yours
    exam_id, sha, _fmt = blob
    action = "view_thumbnail" if thumbnail else "view_capture"
    detail = {"capture": capture_id}
    if thumbnail:
        batch = current_app.extensions["invigil_dashboard"]["audit"]
        if batch.add(user.id, action, exam_id, session_id, detail):
            batch.flush(db)
        current_app.extensions["invigil_live"].ensure_running()  # its tick writes the batch
    else:
        audit.record(db, user.id, action, exam_id, session_id, detail)
    etag = sha[:32]
    max_age = int(state().settings["thumbnail_cache_s"])
    if request.if_none_match.contains(etag):
        response = Response(status=304)
    else:
        exam_screens = state().screens.exam(db, exam_id)
        try:  # a tile update is shown as the whole screen it leaves
            body = exam_screens.image(sha) if thumbnail else exam_screens.screen(session_id, capture_id)
        except ScreenUnavailable:  # it, or an image it builds on, is not stored
            abort(404)
        response = Response(body, mimetype=media_type(body))
    response.set_etag(etag)
    response.headers["Cache-Control"] = f"private, max-age={max_age}"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/exams/<int:exam_id>/thumbs")
@login_required
def thumbnails(exam_id: int) -> ResponseReturnValue:
    """Several seats' thumbnails in one answer: ``?c=<session>.<capture>`` repeated (at most
    ``THUMBS_PER_REQUEST``). A browser opens only six connections to a server; one request per
    thumbnail cannot keep up with a big hall where dozens of screens change every second.

    Body: 8 ASCII digits giving the length of a JSON index ``[[ "<session>.<capture>", media type,
    length], ...]``, the index, then the images back to back in index order. Unknown ids are left out.
    Reviewers of the exam may fetch them too, for their timeline's filmstrip.
    """
    if not may_see_captures(logged_in_user().id, exam_id):
        abort(404)
    wanted: list[tuple[int, str]] = []
    for item in request.args.getlist("c")[:THUMBS_PER_REQUEST]:
        session_text, _, capture_id = item.partition(".")
        if session_text.isdigit() and ID_RE.fullmatch(capture_id):
            wanted.append((int(session_text), capture_id))
    db, hall_state, user = get_db(), state(), logged_in_user()
    batch = current_app.extensions["invigil_dashboard"]["audit"]
    found = hallview.thumbnail_blobs(db, exam_id, wanted)
    exam_screens = hall_state.screens.exam(db, exam_id) if found else None
    index, parts = [], []
    sessions: set[int] = set()
    for session_id, capture_id, sha in found:
        assert exam_screens is not None
        body = exam_screens.find(sha)
        if body is None:  # deleted since: left out like an unknown id
            continue
        index.append([f"{session_id}.{capture_id}", media_type(body), len(body)])
        parts.append(body)
        sessions.add(session_id)
    if index:  # one audit row for the screens this answer showed, not one per thumbnail
        detail = {"captures": [entry[0] for entry in index], "students": hallview.students_of(db, sessions)}
        if batch.add(user.id, "view_thumbnails", exam_id, None, detail):
            batch.flush(db)
    current_app.extensions["invigil_live"].ensure_running()  # its tick writes the audit batch
    head = json.dumps(index).encode()
    response = Response(b"".join([b"%08d" % len(head), head, *parts]), mimetype="application/octet-stream")
    response.headers["Cache-Control"] = f"private, max-age={int(hall_state.settings['thumbnail_cache_s'])}"
    return response


@bp.get("/captures/<int:session_id>/<capture_id>/thumb")
@login_required
def thumbnail(session_id: int, capture_id: str) -> ResponseReturnValue:
    return _capture_image(session_id, capture_id, thumbnail=True)


@bp.get("/captures/<int:session_id>/<capture_id>/full")
@login_required
def full_capture(session_id: int, capture_id: str) -> ResponseReturnValue:
    return _capture_image(session_id, capture_id, thumbnail=False)


@bp.get("/vendor/socket.io.min.js")
def socketio_client() -> ResponseReturnValue:
    if not (VENDOR_DIR / "socket.io.min.js").exists():
        abort(503, "the dashboard's front-end libraries are missing: run npm ci --prefix dashboard")
    return send_from_directory(VENDOR_DIR, "socket.io.min.js", max_age=3600)
