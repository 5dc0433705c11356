"""Staff login on the Flask app: argon2 passwords, cookie flags, CSRF, throttling, logout that revokes."""

from __future__ import annotations

import re
import sqlite3

import pytest
from halls import PASSWORD

from hall_server.app import create_app
from hall_server.store.db import db_path


@pytest.fixture
def app(halls):
    return create_app({"data_dir": str(halls[0].data_dir), "login_max_failures": 3, "login_lockout_s": 60})


def _token(client, path: str = "/dashboard/login") -> str:
    page = client.get(path, follow_redirects=True).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _login(client, username: str, password: str):
    return client.post(
        "/dashboard/login",
        data={"csrf_token": _token(client), "username": username, "password": password},
    )


def test_login_sets_a_hardened_cookie_and_logout_revokes_it(app, halls):
    client = app.test_client()
    answer = _login(client, "anna", PASSWORD)
    assert answer.status_code == 302
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    stolen = client.get_cookie("invigil_session").value
    hall_json = f"/dashboard/exams/{halls[0].exam_id}/hall.json"
    assert client.get(hall_json).status_code == 200

    token = _token(client, "/dashboard/")
    assert client.post("/dashboard/logout", data={"csrf_token": token}).status_code == 302
    assert client.get(hall_json).status_code == 401
    replay = app.test_client()
    replay.set_cookie("invigil_session", stolen)  # a copy of the cookie taken before logout
    assert replay.get(hall_json).status_code == 401
    assert replay.get(f"/dashboard/exams/{halls[0].exam_id}").status_code == 302  # to the login page


def test_secure_cookie_under_tls(halls):
    app = create_app({"data_dir": str(halls[0].data_dir), "cookie_secure": True})
    client = app.test_client()
    answer = _login(client, "anna", PASSWORD)
    assert "Secure" in answer.headers["Set-Cookie"]


def test_every_state_changing_request_needs_the_csrf_token(app, halls):
    client = app.test_client()
    assert client.post("/dashboard/login", data={"username": "anna", "password": PASSWORD}).status_code == 400
    _login(client, "anna", PASSWORD)
    start = f"/dashboard/exams/{halls[0].exam_id}/start"
    refused = client.post(start)
    assert refused.status_code == 400
    assert "reload the page" in refused.get_json()["error"]["message"]
    token = _token(client, "/dashboard/")
    assert client.post(start, headers={"X-CSRFToken": token}).status_code == 200


def test_failed_logins_are_throttled_per_username_and_address(app, halls):
    client = app.test_client()
    for _ in range(3):
        assert _login(client, "anna", "not the password").status_code == 401
    throttled = _login(client, "anna", PASSWORD)  # even the right password waits now
    assert throttled.status_code == 429
    assert "wait" in throttled.get_data(as_text=True)
    assert _login(client, "ben", PASSWORD).status_code == 302  # another account is not affected
    with sqlite3.connect(db_path(halls[0].data_dir)) as store:
        actions = [row[0] for row in store.execute("SELECT action FROM audit_log ORDER BY id")]
    assert actions.count("login_failed") == 3 and "login_throttled" in actions


def test_a_user_without_assignment_sees_no_exam(app, halls):
    from halls import add_staff

    add_staff(halls[0].data_dir, "carl")
    client = app.test_client()
    _login(client, "carl", PASSWORD)
    page = client.get("/dashboard/").get_data(as_text=True)
    assert "No exam is assigned to you" in page
    assert client.get(f"/dashboard/exams/{halls[0].exam_id}").status_code == 404


def test_every_page_and_answer_carries_the_strict_security_headers(app, halls):
    """No inline or foreign script, no framing, no sniffing: on pages, JSON answers and errors alike."""
    client = app.test_client()
    _login(client, "anna", PASSWORD)
    for path in (
        "/dashboard/login",
        "/dashboard/",
        f"/dashboard/exams/{halls[0].exam_id}/hall.json",
        "/dashboard/x",
    ):
        answer = client.get(path, follow_redirects=True)
        policy = answer.headers.get("Content-Security-Policy", "")
        assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy, path
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, path
        assert answer.headers["X-Content-Type-Options"] == "nosniff", path
