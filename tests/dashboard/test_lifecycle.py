"""Access that ends: against the real server (gunicorn), with the organiser's real CLI. Logging out,
disabling, removing, changing the password and removing an assignment end cookies and close open
Socket.IO connections within seconds, and a logged-out cookie stays dead across a restart; assignments are
bounded in time."""

from __future__ import annotations

import subprocess
import threading
import time
from datetime import timedelta

import pytest
import requests
import socketio
from halls import PASSWORD, provision_hall
from staffclient import socket_for, staff_session

from hall_server.store import access, db, users
from invigil.timeutil import to_wire, utc_now

from support import BIN, LiveServer

#: The dashboard's access cache (5 s) plus the socket recheck (2 s) plus slack.
WITHIN_S = 10


def provision(data_dir, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "invigil-provision"), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def until(condition, timeout_s: float = WITHIN_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _hall_json(session: requests.Session, base: str, exam_id: int) -> int:
    return session.get(f"{base}/dashboard/exams/{exam_id}/hall.json", allow_redirects=False).status_code


def _closed_socket(session, base, exam_id) -> tuple[socketio.Client, threading.Event]:
    client = socket_for(session, base, exam_id)
    closed = threading.Event()
    client.on("disconnect", lambda *_: closed.set())
    return client, closed


def test_logout_disable_passwd_and_remove_end_cookies_and_sockets(server, halls):
    hall_a, _ = halls
    base, data_dir = server.url, hall_a.data_dir

    # Logout: the copied cookie is dead, and stays dead after a restart of the server.
    anna = staff_session(base, "anna")
    stolen = requests.Session()
    stolen.cookies.update(anna.cookies)
    client, closed = _closed_socket(anna, base, hall_a.exam_id)
    assert _hall_json(stolen, base, hall_a.exam_id) == 200
    assert anna.post(f"{base}/dashboard/logout", allow_redirects=False).status_code == 302
    assert _hall_json(stolen, base, hall_a.exam_id) == 401  # this process forgot it at once
    assert closed.wait(WITHIN_S), "the logged-out socket stays open"
    assert not client.connected
    server.stop()
    restarted = LiveServer(data_dir).start(timeout_s=30)
    try:
        base = restarted.url
        assert _hall_json(stolen, base, hall_a.exam_id) == 401

        # Changing the password ends every login of the user, its socket too.
        anna = staff_session(base, "anna")
        client, closed = _closed_socket(anna, base, hall_a.exam_id)
        secret = data_dir.parent / "new-password"
        secret.write_text("a much newer password\n")
        secret.chmod(0o600)
        changed = provision(data_dir, "user", "passwd", "anna", "--password-file", str(secret))
        assert changed.returncode == 0 and "1 open login(s) ended" in changed.stdout, changed.stderr
        assert until(lambda: _hall_json(anna, base, hall_a.exam_id) == 401)
        assert closed.wait(WITHIN_S)

        # Disabling ends the new login; enabling does not bring the old cookie back.
        anna = staff_session(base, "anna", "a much newer password")
        client, closed = _closed_socket(anna, base, hall_a.exam_id)
        done = provision(data_dir, "user", "disable", "anna")
        assert done.returncode == 0 and "anna disabled; 1 open login(s) ended" in done.stdout, done.stderr
        assert until(lambda: _hall_json(anna, base, hall_a.exam_id) == 401)
        assert closed.wait(WITHIN_S)
        with pytest.raises(requests.HTTPError):
            staff_session(base, "anna", "a much newer password")
        assert provision(data_dir, "user", "enable", "anna").returncode == 0
        assert _hall_json(anna, base, hall_a.exam_id) == 401
        assert _hall_json(staff_session(base, "anna", "a much newer password"), base, hall_a.exam_id) == 200

        # Removing: logins end, the account cannot come back, the name stays for the audit log.
        removed = provision(data_dir, "--json", "user", "remove", "anna")
        assert removed.returncode == 0, removed.stderr
        again = provision(data_dir, "user", "enable", "anna")
        assert again.returncode == 1 and "was removed" in again.stderr
        listed = provision(data_dir, "user", "list")
        assert "anna" in listed.stdout and "removed" in listed.stdout
        store = db.connect(data_dir)
        actions = {row[0] for row in store.execute("SELECT action FROM audit_log")}
        ended = dict(
            store.execute("SELECT ended_why, count(*) FROM staff_login GROUP BY ended_why").fetchall()
        )
        store.close()
        assert {"password_changed", "user_disabled", "user_enabled", "user_removed", "logout"} <= actions
        assert ended == {"logout": 1, "password changed": 1, "disabled": 1, "removed": 1}
    finally:
        restarted.stop()


def test_removing_an_assignment_ends_the_pages_and_the_socket(server, halls):
    hall_a, _ = halls
    base, data_dir = server.url, hall_a.data_dir
    assert provision(data_dir, "user", "create", "carl", "--role", "invigilator", "--password-file",
                     str(_password_file(data_dir))).returncode == 0  # fmt: skip
    assert provision(data_dir, "user", "assign", "carl", "--role", "invigilator",
                     "--exam", str(hall_a.exam_id)).returncode == 0  # fmt: skip
    naive = provision(data_dir, "user", "assign", "carl", "--role", "invigilator", "--exam",
                      str(hall_a.exam_id), "--until", "2099-01-01")  # fmt: skip
    assert naive.returncode == 1 and "with a UTC offset" in naive.stderr
    bounded = provision(data_dir, "user", "assign", "carl", "--role", "invigilator", "--exam",
                        str(hall_a.exam_id), "--until", "2099-01-01T01:00+01:00")  # fmt: skip
    assert bounded.returncode == 0 and "already" in bounded.stdout, bounded.stderr
    listed = provision(data_dir, "--json", "assignment", "list", "--exam", str(hall_a.exam_id))
    assert '"valid_until": "2099-01-01T00:00:00.000Z"' in listed.stdout, listed.stdout
    assert '"username": "carl"' in listed.stdout and '"username": "anna"' in listed.stdout  # anna: by hall
    carl = staff_session(base, "carl")
    client, closed = _closed_socket(carl, base, hall_a.exam_id)
    assert _hall_json(carl, base, hall_a.exam_id) == 200
    done = provision(data_dir, "assignment", "remove", "carl", "--role", "invigilator", "--exam",
                     str(hall_a.exam_id))  # fmt: skip
    assert done.returncode == 0 and "no longer invigilator" in done.stdout, done.stderr
    assert until(lambda: _hall_json(carl, base, hall_a.exam_id) == 404)
    assert closed.wait(WITHIN_S), "the socket of a removed assignment stays open"
    with pytest.raises(socketio.exceptions.ConnectionError, match="not assigned"):
        socket_for(carl, base, hall_a.exam_id)
    twice = provision(data_dir, "assignment", "remove", "carl", "--role", "invigilator", "--exam",
                      str(hall_a.exam_id))  # fmt: skip
    assert twice.returncode == 1 and "assignment list" in twice.stderr


def _password_file(data_dir):
    path = data_dir.parent / "carl-password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


def _exam_ended(data_dir, hours_ago: float, hall: str, retention_days: int = 30) -> int:
    """A past exam in its own hall, ended ``hours_ago``."""
    code = f"PAST{hall[-1]}X23"
    past = provision_hall(data_dir, hall=hall, title=f"Past {hall}", students=2, join_code=code,
                          prefix=hall[-1].lower())  # fmt: skip
    end = utc_now() - timedelta(hours=hours_ago)
    store = db.connect(data_dir)
    store.execute(
        "UPDATE exam SET starts_at = ?, ends_at = ?, retention_days = ? WHERE id = ?",
        [to_wire(end - timedelta(hours=2)), to_wire(end), retention_days, past.exam_id],
    )
    store.close()
    return past.exam_id


def test_assignments_are_bounded_in_time(tmp_path):
    """The access rule over real rows: an invigilator's exam closes some hours after its end, a reviewer's
    at the end of its review period (unless a case is on hold), a hall-level invigilator never opens the
    hall's past exams, and --until ends an assignment."""
    data_dir = tmp_path / "data"
    recent = _exam_ended(data_dir, 2, "Hall R")
    old = _exam_ended(data_dir, 20, "Hall O")
    archived = _exam_ended(data_dir, 24 * 40, "Hall X", retention_days=30)
    store = db.connect(data_dir)
    uid = users.create_user(store, "ivy", PASSWORD, ["invigilator"])
    rid = users.create_user(store, "rex", PASSWORD, ["reviewer"])
    for exam_id in (recent, old):
        users.assign(store, "ivy", "invigilator", exam_id=exam_id)
    for exam_id in (recent, archived):
        users.assign(store, "rex", "reviewer", exam_id=exam_id)
    now = utc_now()
    windows = access.Windows(enrol_early_s=1800, watch_after_s=12 * 3600)
    assert access.may_watch(store, uid, recent, now, windows)
    assert not access.may_watch(store, uid, old, now, windows)  # ended 20 h ago: closed after 12 h
    assert access.review_roles(store, rid, recent, now) == {"reviewer"}
    assert access.review_roles(store, rid, archived, now) == frozenset()  # its review period is over
    store.execute("INSERT INTO case_hold (exam_id, student_number, placed_by, reason, placed_at) VALUES "
                  "(?, 'x0001', ?, 'appeal', ?)", [archived, rid, to_wire(now)])  # fmt: skip
    assert access.review_roles(store, rid, archived, now) == {"reviewer"}  # a hold keeps it open

    # A hall-level invigilator assigned today: the hall's exam that ended two hours ago stays closed.
    hall_r = store.execute("SELECT hall_id FROM exam WHERE id = ?", [recent]).fetchone()[0]
    hid = users.create_user(store, "hal", PASSWORD, ["invigilator"])
    users.assign(store, "hal", "invigilator", hall_id=hall_r)
    assert not access.may_watch(store, hid, recent, now, windows)
    # ...unless the organiser says the assignment started before it.
    assert not users.assign(store, "hal", "invigilator", hall_id=hall_r, valid_from=now - timedelta(days=1))
    assert access.may_watch(store, hid, recent, now, windows)
    # An assignment past its --until opens nothing.
    users.assign(store, "ivy", "invigilator", exam_id=recent, valid_until=now - timedelta(minutes=1))
    assert not access.may_watch(store, uid, recent, now, windows)
    with pytest.raises(users.UserError, match="--until must be after --from"):
        users.assign(store, "ivy", "invigilator", exam_id=recent, valid_from=now, valid_until=now)
    store.close()
