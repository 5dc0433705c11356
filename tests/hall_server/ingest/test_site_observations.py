"""Repeated attempts at one blocked site: every attempt is on the timeline, one observation in the feed."""

from __future__ import annotations

from datetime import timedelta

from invigil.timeutil import to_wire, utc_now

H = {"X-Invigil-Protocol": "1"}


def _enrol(client, exam):
    answer = client.post(
        "/api/v1/enrol",
        headers=H,
        environ_base={"REMOTE_ADDR": "10.9.0.7"},
        json={
            "student_number": exam.students[0],
            "join_code": exam.join_code,
            "agent_id": "agent-site-01",
            "agent_time": to_wire(utc_now()),
        },
    )
    assert answer.status_code == 201


def _attempt(client, exam, event_id, host, at):
    event = {
        "id": event_id,
        "time": to_wire(at),
        "client_ip": "10.9.0.7",
        "host": host,
        "decision": "blocked",
        "source": "proxy",
    }
    service_token = (exam.data_dir / "service.token").read_text().strip()
    answer = client.post(
        "/api/v1/site-events",
        headers={**H, "Authorization": f"Bearer {service_token}"},  # as the proxy sends them
        json={"events": [event]},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    assert answer.status_code == 200, answer.json


def test_repeated_blocked_attempts_raise_one_open_observation(client, exam):
    from hall_server.store import db

    _enrol(client, exam)
    now = utc_now()
    for n in range(3):
        _attempt(client, exam, f"site-rep-{n:04d}", "chat.example.com", now + timedelta(seconds=20 * n))
    _attempt(client, exam, "site-other-01", "mail.example.com", now)
    store = db.connect(exam.data_dir)
    assert store.execute("SELECT COUNT(*) FROM site_event").fetchone()[0] == 4
    feed = store.execute(
        "SELECT json_extract(unseal(exam_id, detail), '$.host') FROM observation WHERE kind = 'blocked_site' "
        "ORDER BY id"
    ).fetchall()
    assert [row[0] for row in feed] == ["chat.example.com", "mail.example.com"]

    # Once acknowledged, a new attempt is news again.
    store.execute("UPDATE observation SET acknowledged_at = ? WHERE kind = 'blocked_site'", [to_wire(now)])
    _attempt(client, exam, "site-rep-0009", "chat.example.com", now + timedelta(minutes=1))
    assert store.execute("SELECT COUNT(*) FROM observation WHERE kind = 'blocked_site'").fetchone()[0] == 3
