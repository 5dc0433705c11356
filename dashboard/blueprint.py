"""The dashboard's one blueprint, and what every answer of it shares: error pages (HTML, or JSON for scripts)
and the security headers.

The blueprint lives at module level and the view modules add their routes to it when they are imported, so
it is complete before any app registers it; it may be registered on several apps (tests build many), each
keeping its own state in ``app.extensions["invigil_dashboard"]``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, render_template, request
from flask_babel import gettext
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

#: Scripts, styles, images and sockets from this server only; no inline script; never framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

bp = Blueprint(
    "dashboard", __name__, url_prefix="/dashboard", template_folder="templates", static_folder="static"
)


def wants_json() -> bool:
    """Whether this request came from a script (JSON views, actions, images) rather than a page."""
    return request.path.endswith(".json") or request.method != "GET" or "/captures/" in request.path


@bp.errorhandler(HTTPException)
def _error(exc: HTTPException) -> Any:
    status = exc.code or 500
    message = exc.description or exc.name
    if isinstance(exc, CSRFError):
        message = gettext("the form expired or came from another site: reload the page and try again")
    if wants_json():
        code = (exc.name or "error").lower().replace(" ", "_")
        return jsonify(error={"code": code, "message": message}), status
    return render_template("error.html", status=status, message=message), status


@bp.after_app_request
def _headers(response: Any) -> Any:
    # App-wide, not per route: an unknown address under /dashboard (a 404 no view answers) gets them too.
    if not request.path.startswith("/dashboard"):
        return response
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response
