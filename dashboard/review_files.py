"""Downloads for reviewers and the exam board: one student's report as HTML or PDF, and the exam export.

The report is rendered by ``hall_server.review.reports.render`` (the PDF through WeasyPrint) from the same
data as ``invigil-server report``; every download writes a ``report_export`` audit row naming the staff
member. The exam zip (``hall_server.review.reports.export.export_exam``, which writes the ``exam_export``
row) is for exam-board members only.
"""

from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path

from flask import Response, abort, request, send_file
from flask.typing import ResponseReturnValue

from hall_server.review.reports import data, export, pdf, render
from hall_server.store import audit
from hall_server.web import get_db, state

from .auth import logged_in_user, login_required
from .blueprint import bp
from .review import reviewable, student_of

#: The exam export renders in this process with a module-level store (``export._rendered`` with one job):
#: one export at a time.
_export_lock = threading.Lock()


def _download(body: bytes, mimetype: str, filename: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/review/exams/<int:exam_id>/students/<student_number>/report.<fmt>")
@login_required
def review_report(exam_id: int, student_number: str, fmt: str) -> ResponseReturnValue:
    reviewable(exam_id)
    student_of(exam_id, student_number)
    if fmt not in export.FORMATS:
        abort(404)
    db, hall, me = get_db(), state(), logged_in_user()
    try:
        exam_screens = data.open_screens(db, hall.screens, exam_id)
        report = data.student_report(db, exam_screens, exam_id, student_number, generated_by=me.username)
    except data.ReportUnavailable as exc:
        abort(410, str(exc))
    if fmt == "pdf":
        body = pdf.html_to_pdf(render.render_html(report, embed_chain=False))
        mimetype = "application/pdf"
    else:
        body, mimetype = render.render_html(report).encode(), "text/html"
    session_id = report.sessions[-1].chain.session_id if report.sessions else None
    detail = {"by": me.username, "student_number": student_number, "format": fmt, "via": "dashboard"}
    audit.record(db, me.id, "report_export", exam_id, session_id, detail)
    return _download(body, mimetype, f"{student_number}-exam{exam_id}.{fmt}")


@bp.get("/review/exams/<int:exam_id>/export.zip")
@login_required
def review_export(exam_id: int) -> ResponseReturnValue:
    _exam, roles = reviewable(exam_id)
    if "exam_board" not in roles:
        abort(403, "only exam-board members export a whole exam")
    with_pdf = request.args.get("pdf") == "1"
    me = logged_in_user()
    folder = Path(tempfile.mkdtemp(prefix="invigil-export-"))
    out = folder / f"exam-{exam_id}.zip"
    try:
        with _export_lock:
            export.export_exam(
                get_db(),
                state().data_dir,
                exam_id,
                out,
                user_id=me.id,
                actor=me.username,
                jobs=1,
                with_pdf=with_pdf,
            )
        handle = out.open("rb")  # the open file outlives its name: nothing is left on disk
    except data.ReportUnavailable as exc:
        abort(410, str(exc))
    finally:
        for leftover in folder.iterdir():
            leftover.unlink()
        os.rmdir(folder)
    response = send_file(handle, mimetype="application/zip", as_attachment=True, download_name=out.name)
    response.headers["Cache-Control"] = "private, no-store"
    return response
