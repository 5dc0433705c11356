"""What staff browsers see: login, the invigilator's live hall view, the reviewer's pages, report downloads
and the exam board's audit log and holds.

Registered by ``hall_server.app.create_app`` (``init_app``) in processes that serve staff (process role
``all`` or ``live``). It stands beside ingest in the hall server's house and imports the wings below it:
``hall_server.live`` (seats, actions, the Socket.IO bus), ``hall_server.review`` (findings, holds,
reports), ``hall_server.staff`` (people and assignments), ``hall_server.store`` (exam headers, the audit
log, the exams' images) and the ``hall_server.web`` accessors.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, jsonify, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from . import auth, board, review, review_files, sockets, views

#: Scripts, styles, images and sockets from this server only; no inline script; never framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def init_app(app: Flask) -> None:
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # bound by the login's lifetime: exams run for hours
    auth.init_state(app.extensions)
    bp = Blueprint(
        "dashboard", __name__, url_prefix="/dashboard", template_folder="templates", static_folder="static"
    )
    auth.register(bp)
    views.register(bp)
    review.register(bp)
    review_files.register(bp)
    board.register(bp)

    @bp.errorhandler(HTTPException)
    def _error(exc: HTTPException) -> Any:
        status = exc.code or 500
        message = exc.description or exc.name
        if isinstance(exc, CSRFError):
            message = "the form expired or came from another site: reload the page and try again"
        if auth.wants_json():
            code = (exc.name or "error").lower().replace(" ", "_")
            return jsonify(error={"code": code, "message": message}), status
        return render_template("error.html", status=status, message=message), status

    @bp.after_request
    def _headers(response: Any) -> Any:
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    app.register_blueprint(bp)
    bus = app.extensions["invigil_live"]
    audit = app.extensions["invigil_dashboard"]["audit"]
    bus.tick_hooks.append(audit.flush)
    sockets.register(app.extensions["socketio"])

    @app.get("/")
    def _root() -> Any:
        from flask import redirect, url_for

        return redirect(url_for("dashboard.index"))
