"""What staff browsers see: login, the invigilator's live hall view, the reviewer's pages, report downloads
and the exam board's audit log and holds.

Served only by processes that serve staff (process role ``all`` or ``live``). It stands beside ingest in the
hall server's house and imports the wings below it: ``hall_server.live`` (seats, actions, the Socket.IO
bus), ``hall_server.review`` (findings, holds, reports), ``hall_server.staff`` (people and assignments),
``hall_server.store`` (exam headers, the audit log, the exams' images) and the ``hall_server.web``
accessors.

Every page and JSON view is a module-level function on the one blueprint of ``dashboard.blueprint``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, redirect, url_for

# Importing a view module adds its routes to ``bp``: all of them are in place before any app registers it.
from . import auth, board, i18n, review, review_files, review_queue, sockets, views  # noqa: F401
from .blueprint import bp


def init_app(app: Flask) -> None:
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # bound by the login's lifetime: exams run for hours
    auth.init_state(app.extensions)
    i18n.init_app(app)
    app.register_blueprint(bp)
    bus = app.extensions["invigil_live"]
    audit = app.extensions["invigil_dashboard"]["audit"]
    bus.tick_hooks.append(audit.flush)
    sockets.register(app.extensions["socketio"])

    @app.get("/")
    def _root() -> Any:
        return redirect(url_for("dashboard.index"))
