"""Staff login, logout, the current user and CSRF protection for the dashboard.

The login is a Flask session cookie (HttpOnly, SameSite=Lax, Secure under TLS; configured by
``hall_server.app``) holding the user id and the random id of its ``staff_login`` row
(``hall_server.store.logins``). Logging out ends that row, so a copied cookie stops working too, in every
process and after a restart; disabling the account or changing its password ends all of its rows. A
request checks the row at most ``ACCESS_TTL_S`` late. Every
state-changing request carries a CSRF token (Flask-WTF's signed, session-bound token) as the
``csrf_token`` form field or the ``X-CSRFToken`` header.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort, current_app, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from wtforms import ValidationError

from hall_server import staff
from hall_server.store import access, audit, logins
from hall_server.store.throttle import Limits, Throttle
from hall_server.web import get_db
from invigil.timeutil import utc_now

from .blueprint import bp, wants_json

F = TypeVar("F", bound=Callable[..., Any])


#: How stale a cached answer to "is this login open, may this user watch this exam" may be.
ACCESS_TTL_S = 5.0


class TtlCache:
    """A small bounded cache whose entries expire: who a cookie's user is, what they may watch.

    Thumbnails arrive by the dozen per second; each would otherwise cost the same few queries. A disabled
    account or a removed assignment takes effect within ``ttl_s``."""

    def __init__(self, ttl_s: float, max_entries: int = 4096) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = compute()
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key] = (now + self.ttl_s, value)
        return value

    def forget(self, key: Any) -> None:
        with self._lock:
            self._entries.pop(key, None)


def _dashboard_state() -> dict[str, Any]:
    return current_app.extensions["invigil_dashboard"]  # type: ignore[no-any-return]


def current_user() -> staff.StaffUser | None:
    """The logged-in staff user of this request (or Socket.IO handshake), or None."""
    if "staff_user" in g:
        return g.staff_user  # type: ignore[no-any-return]
    user = None
    user_id, login_id = session.get("uid"), session.get("login")
    if isinstance(user_id, int) and isinstance(login_id, str):
        user = _dashboard_state()["users"].get(
            (user_id, login_id), lambda: staff.load_login(get_db(), user_id, login_id)
        )
    g.staff_user = user
    return user


def logged_in_user() -> staff.StaffUser:
    """The logged-in staff user of this request; 401 when there is none. Views run behind
    ``login_required``, so the 401 only keeps a view that forgot it from running as nobody."""
    user = current_user()
    if user is None:
        abort(401)
    return user


def login_required(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user() is None:
            if wants_json():
                abort(401)
            return redirect(url_for("dashboard.login", next=request.full_path))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@bp.before_request
def check_csrf() -> None:
    """Every state-changing request to the dashboard carries the token."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    token = request.headers.get("X-CSRFToken") or request.form.get("csrf_token", "")
    try:
        validate_csrf(token)
    except ValidationError as exc:
        raise CSRFError(str(exc)) from None


def safe_next(target: str | None) -> str:
    # Only a path on this server: never an open redirect to another site.
    if target and target.startswith("/dashboard") and not target.startswith("//"):
        return target
    return url_for("dashboard.index")


@bp.app_context_processor
def _template_globals() -> dict[str, Any]:
    return {"csrf_token": generate_csrf, "current_user": current_user}


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    error, status = None, 200
    if request.method == "POST":
        username = request.form.get("username", "").strip()[:128]
        password = request.form.get("password", "")[:1024]
        throttle = _dashboard_state()["throttle"]
        try:
            user, login_id = staff.login(get_db(), throttle, username, password, request.remote_addr or "")
        except staff.LoginRefused as exc:
            error, status = exc.message, 429 if exc.wait_s else 401
        else:
            session.clear()  # a fresh session (and CSRF token) per login: no fixation
            session.permanent = True
            session["uid"] = user.id
            session["login"] = login_id
            return redirect(safe_next(request.args.get("next")))
    return render_template("login.html", error=error), status


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    user = current_user()
    login_id = session.get("login")
    if isinstance(login_id, str):
        logins.end(get_db(), login_id, "logout", utc_now())
        _dashboard_state()["users"].forget((session.get("uid"), login_id))
    if user is not None:
        audit.record(get_db(), user.id, "logout")
    session.clear()
    return redirect(url_for("dashboard.login"))


def init_state(app_extensions: dict[str, Any]) -> None:
    settings = app_extensions["invigil"].settings
    limits = Limits(
        settings["login_max_failures"],
        settings["login_max_failures_per_address"],
        settings["login_lockout_s"],
    )
    app_extensions["invigil_dashboard"] = {
        "throttle": Throttle(limits),
        "windows": access.Windows.from_settings(settings),
        "audit": audit.AuditBuffer(),
        "users": TtlCache(ACCESS_TTL_S),
        "access": TtlCache(ACCESS_TTL_S),
    }


def access_windows() -> access.Windows:
    return _dashboard_state()["windows"]  # type: ignore[no-any-return]


def may_watch(user_id: int, exam_id: int) -> bool:
    """``staff.may_watch``, remembered for a few seconds (see ``TtlCache``)."""
    cache = _dashboard_state()["access"]
    windows = _dashboard_state()["windows"]
    return bool(cache.get((user_id, exam_id), lambda: staff.may_watch(get_db(), user_id, exam_id, windows)))


def review_roles(user_id: int, exam_id: int) -> frozenset[str]:
    """``staff.review_roles`` (reviewer / exam_board for this exam), remembered like ``may_watch``."""
    cache = _dashboard_state()["access"]
    roles = cache.get(("review", user_id, exam_id), lambda: staff.review_roles(get_db(), user_id, exam_id))
    return roles  # type: ignore[no-any-return]


def may_see_captures(user_id: int, exam_id: int) -> bool:
    """Invigilators and organisers watch the live hall; reviewers and the exam board review it afterwards:
    both see the exam's captures (every fetch is audited)."""
    return may_watch(user_id, exam_id) or bool(review_roles(user_id, exam_id))
