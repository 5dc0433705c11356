"""The review queue page: one list of moments across an exam's students (hall_server/review/queue.py),
keyboard-driven, with the screens of the selected moment, progress, "nothing here", and students taken by
reviewers. Same access as the other review pages (``dashboard.review.reviewable``: 404 for anyone not
assigned). Opening a moment is audited as a timeline view is (``capture_view``, ``view: queue_moment``);
its screens come through the audited capture routes."""

from __future__ import annotations

from typing import Any

from flask import abort, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext as _l

from hall_server.review import expected, queue
from hall_server.store import audit
from hall_server.web import get_db
from invigil.timeutil import utc_now

from .auth import logged_in_user, login_required
from .blueprint import bp
from .labels import in_language
from .review import _body, reviewable, session_in
from .script_texts import review_queue as script_texts

#: What the page calls each kind of moment.
KIND_LABELS = {
    "assistant_named": _l("assistant named"),
    "off_exam_focus": _l("off-exam focus"),
    "other_page": _l("other page in exam browser"),
    "bypass_site": _l("site around the proxy"),
    "blocked_site": _l("blocked site"),
    "new_site": _l("new site"),
    "second_network_path": _l("second network path"),
    "remote_tool": _l("remote/VM tool"),
    "vpn": _l("VPN"),
    "second_monitor": _l("second monitor"),
    "screen_text": _l("watch word on screen"),
    "capture_gap": _l("no data (gap)"),
    "left_early": _l("left early"),
}
#: How many students "Take next" assigns at once.
CLAIM_BATCH = 20


@bp.get("/review/exams/<int:exam_id>/queue")
@login_required
def review_queue_page(exam_id: int) -> ResponseReturnValue:
    exam, roles = reviewable(exam_id)
    state = expected.load(get_db(), exam_id)
    return render_template(
        "review_queue.html",
        exam=exam,
        roles=roles,
        expected=state,
        kind_labels=in_language(KIND_LABELS),
        i18n=script_texts(),
        batch=CLAIM_BATCH,
    )


@bp.get("/review/exams/<int:exam_id>/queue.json")
@login_required
def review_queue_json(exam_id: int) -> ResponseReturnValue:
    reviewable(exam_id)
    built = queue.build(get_db(), exam_id)
    me = logged_in_user().username
    audit.record(get_db(), logged_in_user().id, "queue_view", exam_id, None, {"moments": len(built.moments)})
    mine = request.args.get("mine") == "1"
    moments = built.for_reviewer(me) if mine else built.moments
    return jsonify(
        progress=built.progress(),
        students=built.students,
        cleared=built.cleared,
        open=len(built.open),
        mine=sum(1 for m in built.open if m.reviewer == me),
        reviewers=built.by_reviewer(),
        moments=[m.to_json() for m in moments],
    )


def _moment_ref() -> tuple[int, str]:
    body = _body()
    session_id, key = body.get("session_id"), body.get("key")
    if isinstance(session_id, bool) or not isinstance(session_id, int) or not isinstance(key, str) or not key:
        abort(400, "send the moment's session_id (a whole number) and key")
    return session_id, key[:100]


@bp.post("/review/exams/<int:exam_id>/queue/open")
@login_required
def review_queue_open(exam_id: int) -> ResponseReturnValue:
    reviewable(exam_id)
    session_id, key = _moment_ref()
    session_in(exam_id, session_id)
    detail: dict[str, Any] = {"view": "queue_moment", "moment": key}
    audit.record(get_db(), logged_in_user().id, "capture_view", exam_id, session_id, detail)
    return jsonify(ok=True)


@bp.post("/review/exams/<int:exam_id>/queue/nothing-here")
@login_required
def review_queue_nothing_here(exam_id: int) -> ResponseReturnValue:
    reviewable(exam_id)
    session_id, key = _moment_ref()
    session_in(exam_id, session_id)
    queue.mark_nothing_here(get_db(), exam_id, session_id, key, logged_in_user().id, utc_now())
    return jsonify(ok=True)


@bp.post("/review/exams/<int:exam_id>/queue/reopen")
@login_required
def review_queue_reopen(exam_id: int) -> ResponseReturnValue:
    reviewable(exam_id)
    session_id, key = _moment_ref()
    session_in(exam_id, session_id)
    queue.unmark(get_db(), exam_id, session_id, key, logged_in_user().id, utc_now())
    return jsonify(ok=True)


@bp.post("/review/exams/<int:exam_id>/queue/claim")
@login_required
def review_queue_claim(exam_id: int) -> ResponseReturnValue:
    reviewable(exam_id)
    taken = queue.claim_next(get_db(), exam_id, logged_in_user().id, CLAIM_BATCH, utc_now())
    return jsonify(ok=True, students=taken)


@bp.post("/review/exams/<int:exam_id>/queue/release")
@login_required
def review_queue_release(exam_id: int) -> ResponseReturnValue:
    """Give back the students this reviewer holds, so another can take them (their cleared moments stay)."""
    reviewable(exam_id)
    me = logged_in_user().id
    return jsonify(ok=True, released=queue.release(get_db(), exam_id, me, utc_now(), by=me))
