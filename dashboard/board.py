"""The exam board's page of an exam: its audit log (who viewed or exported which student's captures, holds,
deletions) and holds that keep a student's data past retention (place and lift).

Only exam-board members assigned to the exam (or its hall) open it; a reviewer of the exam gets 403, anyone
else 404. Holds are written by ``hall_server.review.retention`` (audited there).
"""

from __future__ import annotations

from flask import abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from hall_server.review import retention
from hall_server.store import audit
from hall_server.store.exams import ExamFacts
from hall_server.web import get_db
from invigil.timeutil import utc_now

from .auth import logged_in_user, login_required
from .blueprint import bp
from .review import reviewable

#: Audit rows per page, newest first; "older" pages back from the last row shown.
LOG_PAGE = 500


def board_exam(exam_id: int) -> ExamFacts:
    exam, roles = reviewable(exam_id)
    if "exam_board" not in roles:
        abort(403, "only exam-board members read the audit log and place holds")
    return exam


@bp.get("/review/exams/<int:exam_id>/audit")
@login_required
def board_audit(exam_id: int) -> ResponseReturnValue:
    exam = board_exam(exam_id)
    student = request.args.get("student", "").strip()[:64] or None
    action = request.args.get("action", "").strip()[:64] or None
    before = request.args.get("before", type=int)
    db = get_db()
    entries = audit.read_log(
        db,
        exam_id=exam_id,
        student_number=student,
        action=action,
        limit=LOG_PAGE + 1,
        newest_first=True,
        before_id=before if before and before > 0 else None,
    )
    older = entries[LOG_PAGE - 1].id if len(entries) > LOG_PAGE else None
    entries = entries[:LOG_PAGE]
    total = db.execute("SELECT count(*) FROM audit_log WHERE exam_id = ?", [exam_id]).fetchone()[0]
    actions = [
        row[0]
        for row in db.execute(
            "SELECT DISTINCT action FROM audit_log WHERE exam_id = ? ORDER BY action", [exam_id]
        )
    ]
    roster = [
        row[0]
        for row in db.execute(
            "SELECT student_number FROM roster WHERE exam_id = ? ORDER BY student_number", [exam_id]
        )
    ]
    return render_template(
        "audit.html",
        exam=exam,
        entries=entries,  # newest first
        older=older,
        paged=before is not None,
        total=total,
        student=student or "",
        action=action or "",
        actions=actions,
        roster=roster,
        holds=retention.holds(db, exam_id, open_only=False),
        error=request.args.get("error", ""),
    )


@bp.post("/review/exams/<int:exam_id>/holds")
@login_required
def board_place_hold(exam_id: int) -> ResponseReturnValue:
    board_exam(exam_id)
    student = request.form.get("student", "").strip()[:64]
    reason = request.form.get("reason", "").strip()[:500]
    try:
        retention.place_hold(get_db(), exam_id, student, logged_in_user().id, reason, utc_now())
    except retention.HoldRefused as exc:
        return redirect(url_for("dashboard.board_audit", exam_id=exam_id, error=str(exc)), 303)
    return redirect(url_for("dashboard.board_audit", exam_id=exam_id), 303)


@bp.post("/review/exams/<int:exam_id>/holds/<int:hold_id>/lift")
@login_required
def board_lift_hold(exam_id: int, hold_id: int) -> ResponseReturnValue:
    board_exam(exam_id)
    if hold_id not in {hold["id"] for hold in retention.holds(get_db(), exam_id, open_only=False)}:
        abort(404)
    try:
        retention.lift_hold(get_db(), hold_id, logged_in_user().id, utc_now())
    except retention.HoldRefused as exc:
        return redirect(url_for("dashboard.board_audit", exam_id=exam_id, error=str(exc)), 303)
    return redirect(url_for("dashboard.board_audit", exam_id=exam_id), 303)
