"""The screen at every site visit: a seat reaching a host it never reached in its session gets a capture
asked of its agent (delivered with its next heartbeat), at most one per ``site_capture_min_s``; a host it
already reached asks nothing; a flood of new hosts asks once."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from hall_server.app import create_app
from hall_server.store.db import db_path
from invigil.payloads import Enrolment, Heartbeat, SiteEvent
from invigil.timeutil import to_wire, utc_now

from reviewseed import FlaskHall, post_site_events


@pytest.fixture
def app(exam):
    return create_app({"data_dir": str(exam.data_dir), "site_capture_min_s": 10.0})


def _asked(exam) -> int:
    with sqlite3.connect(db_path(exam.data_dir)) as store:
        return store.execute(
            "SELECT count(*) FROM instruction WHERE kind = 'capture_now' AND created_by IS NULL"
        ).fetchone()[0]


def _visit(client, ip: str, n: int, host: str, decision: str = "allowed") -> None:
    event = SiteEvent(f"site-{n:05d}-evt", utc_now(), ip, host, decision, "proxy", "test")
    assert post_site_events(client, [event])["stored"] == 1


def test_a_new_host_asks_the_seat_for_its_screen_once_per_interval(app, exam):
    client = app.test_client()
    hall = FlaskHall(client, "10.0.5.11")
    hall.enrol(Enrolment("s0001", exam.join_code, "agent-s0001-site", utc_now()))
    _visit(client, "10.0.5.11", 1, "ans.app")
    assert _asked(exam) == 1
    beat = hall.heartbeat(Heartbeat(utc_now()))
    assert [i["kind"] for i in beat["instructions"]] == ["capture_now"]  # its next heartbeat delivers it
    _visit(client, "10.0.5.11", 2, "ans.app")  # a host it reached before: nothing
    _visit(client, "10.0.5.11", 3, "chatgpt.com", "blocked")  # new, but it was asked a moment ago
    assert _asked(exam) == 1
    with sqlite3.connect(db_path(exam.data_dir)) as store:  # ten seconds later
        store.execute("UPDATE instruction SET created_at = ?", [to_wire(utc_now() - timedelta(seconds=11))])
    _visit(client, "10.0.5.11", 4, "ans.app")
    assert _asked(exam) == 1
    _visit(client, "10.0.5.11", 5, "claude.ai", "blocked")
    assert _asked(exam) == 2


def test_a_flood_of_new_hosts_asks_once_and_an_unknown_address_asks_nothing(app, exam):
    client = app.test_client()
    FlaskHall(client, "10.0.5.12").enrol(Enrolment("s0002", exam.join_code, "agent-s0002-site", utc_now()))
    now = utc_now()
    flood = [
        SiteEvent(f"flood-{n:05d}", now, "10.0.5.12", f"h{n}.example", "blocked", "proxy", "x")
        for n in range(200)
    ]
    assert post_site_events(client, flood)["stored"] == 200
    assert _asked(exam) == 1
    _visit(client, "10.9.9.9", 9, "ans.app")  # no session uses this address
    assert _asked(exam) == 1


def test_off_by_setting(exam):
    client = create_app({"data_dir": str(exam.data_dir), "site_capture_min_s": 0}).test_client()
    FlaskHall(client, "10.0.5.13").enrol(Enrolment("s0003", exam.join_code, "agent-s0003-site", utc_now()))
    _visit(client, "10.0.5.13", 1, "ans.app")
    assert _asked(exam) == 0
