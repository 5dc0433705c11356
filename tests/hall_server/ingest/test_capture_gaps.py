"""Live capture gaps on the real app: the agent's own client talks to the real API (over the Flask test
client), and the sweep runs on the real store at chosen moments, so no test waits for the clock."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta

import pytest

from hall_server.ingest import gaps
from hall_server.ingest.sessions import add_observation
from hall_server.live import hallview, invigilation
from hall_server.live.seatstate import Thresholds, needs_attention
from hall_server.store import db, exams, users
from hall_server.store.db import write_transaction
from hall_server.store.exams import exam_facts
from invigil.payloads import CaptureMeta, DeviceEvent, Enrolment, Heartbeat, Unchanged
from invigil.timeutil import from_wire, to_wire, utc_now

from reviewseed import FlaskHall
from support import png_bytes, sha256


@pytest.fixture
def store(exam, app):  # the app migrated the store
    connection = db.connect(exam.data_dir)
    yield connection
    connection.close()


def enrolled(client, exam, number: str = "s0001", address: str = "10.0.0.11") -> tuple[FlaskHall, int]:
    hall = FlaskHall(client, address)
    answer = hall.enrol(Enrolment(number, exam.join_code, f"agent-{number}", utc_now(), "0.1", "Linux"))
    return hall, answer["session_id"]


def capture(hall: FlaskHall, capture_id: str, seed: int = 1) -> None:
    body = png_bytes(320, 200, seed=seed)
    assert hall.put_capture(capture_id, CaptureMeta(0, utc_now(), sha256(body), 320, 200), body, "image/png")


def received(store, session_id: int, record_id: str) -> str:
    return store.execute(
        "SELECT received_at FROM capture WHERE session_id = ? AND capture_id = ?", [session_id, record_id]
    ).fetchone()[0]


def gap_rows(store, session_id: int) -> list[tuple]:
    return store.execute(
        "SELECT id, at, json(unseal(exam_id, detail)), closed_at FROM observation "
        "WHERE session_id = ? AND kind = 'capture_gap' ORDER BY id",
        [session_id],
    ).fetchall()


def details(store, session_id: int) -> list[dict]:
    return [json.loads(row[2]) for row in gap_rows(store, session_id)]


def test_a_seat_that_only_heartbeats_raises_one_gap_which_its_next_record_closes(client, exam, store):
    hall, sid = enrolled(client, exam)
    capture(hall, "cap-0000001")
    last = from_wire(received(store, sid, "cap-0000001"))
    hall.heartbeat(Heartbeat(utc_now()))  # alive, but no data: heartbeats do not count

    # The exam's capture interval is 5 s: 3 intervals of silence is the default gap.
    assert gaps.sweep(store, last + timedelta(seconds=15), 0) == []
    [(exam_id, session_id, gap_id)] = gaps.sweep(store, last + timedelta(seconds=16), 0)
    assert (exam_id, session_id) == (exam.exam_id, sid)
    hall.heartbeat(Heartbeat(utc_now()))
    assert gaps.sweep(store, last + timedelta(seconds=40), 0) == []  # once per gap, not every tick
    [(row_id, at, _detail, closed_at)] = gap_rows(store, sid)
    assert (row_id, at, closed_at) == (gap_id, to_wire(last), None)
    assert details(store, sid) == [{"since": to_wire(last)}]

    # It is an open observation of the seat, so the seat needs attention, and the feed lists it.
    facts = exam_facts(store, exam.exam_id)
    [seat] = [s for s in hallview.seats(store, facts, utc_now(), Thresholds()) if s["sid"] == sid]
    assert seat["kinds"] == ["capture_gap"] and needs_attention(seat)
    feed = hallview.observations(store, exam.exam_id, open_only=True)
    assert [(item["kind"], item["detail"]) for item in feed] == [("capture_gap", {"since": to_wire(last)})]

    # Data resumes (an "unchanged" record counts): the gap closes with its span, in the same commit.
    assert hall.put_unchanged("unc-0000002", Unchanged(0, utc_now(), "cap-0000001"))
    until = received(store, sid, "unc-0000002")
    seconds = round((from_wire(until) - last).total_seconds())
    assert details(store, sid) == [
        {"since": to_wire(last), "until": until, "seconds": seconds, "resumed": True}
    ]
    assert gap_rows(store, sid)[0][3] == until

    # A later silence is a new gap, counted from the record that closed the first.
    [(_, _, second_id)] = gaps.sweep(store, from_wire(until) + timedelta(seconds=16), 0)
    assert second_id != gap_id
    assert details(store, sid)[1] == {"since": until}
    capture(hall, "cap-0000003", seed=3)  # a whole screen closes it too
    assert details(store, sid)[1]["resumed"] is True and len(gap_rows(store, sid)) == 2


def test_a_seat_that_never_sent_a_record_counts_from_its_enrolment(client, exam, store):
    _, sid = enrolled(client, exam)
    enrolled_at = store.execute("SELECT enrolled_at FROM agent_session WHERE id = ?", [sid]).fetchone()[0]
    assert gaps.sweep(store, from_wire(enrolled_at) + timedelta(seconds=16), 0) != []
    assert details(store, sid) == [{"since": enrolled_at}]


def test_the_capture_gap_setting_replaces_three_intervals(client, exam, store):
    hall, sid = enrolled(client, exam)
    capture(hall, "cap-0000001")
    last = from_wire(received(store, sid, "cap-0000001"))
    assert gaps.sweep(store, last + timedelta(seconds=59), 60) == []
    assert len(gaps.sweep(store, last + timedelta(seconds=61), 60)) == 1


def test_a_session_that_left_raises_none(client, exam, store):
    hall, sid = enrolled(client, exam)
    capture(hall, "cap-0000001")
    hall.post_device_events([DeviceEvent("dev-left-01", "left", utc_now(), {})])
    assert gaps.sweep(store, utc_now() + timedelta(minutes=5), 0) == []
    assert gap_rows(store, sid) == []


def test_none_once_the_exam_is_over_for_the_student_but_during_their_extra_time(client, exam, store):
    exams.add_roster(store, exam.exam_id, [exams.RosterEntry("s0002", "Student s0002", extra_time_min=30)])
    _, plain = enrolled(client, exam, "s0001", "10.0.0.11")
    _, extra = enrolled(client, exam, "s0002", "10.0.0.12")
    ends_at = exam_facts(store, exam.exam_id).ends_at
    assert gaps.sweep(store, ends_at + timedelta(minutes=10), 0) == [
        (exam.exam_id, extra, gap_rows(store, extra)[0][0])
    ]
    assert gap_rows(store, plain) == []


def test_none_once_the_invigilator_ended_the_exam(client, exam, store):
    _, sid = enrolled(client, exam)
    user = users.create_user(store, "ivy", "correct horse battery", ["invigilator"])
    invigilation.end_exam(store, exam.exam_id, user, utc_now())
    assert gaps.sweep(store, utc_now() + timedelta(minutes=5), 0) == []
    assert gap_rows(store, sid) == []


def test_an_open_gap_ends_when_the_session_leaves(client, exam, store):
    hall, sid = enrolled(client, exam)
    capture(hall, "cap-0000001")
    last = from_wire(received(store, sid, "cap-0000001"))
    [(_, _, gap_id)] = gaps.sweep(store, last + timedelta(seconds=20), 0)
    hall.post_device_events([DeviceEvent("dev-left-01", "left", utc_now(), {})])
    left_at = store.execute("SELECT ended_at FROM agent_session WHERE id = ?", [sid]).fetchone()[0]
    assert gaps.sweep(store, utc_now() + timedelta(minutes=5), 0) == [(exam.exam_id, sid, gap_id)]
    seconds = round((from_wire(left_at) - last).total_seconds())
    assert details(store, sid) == [
        {"since": to_wire(last), "until": left_at, "seconds": seconds, "resumed": False}
    ]
    assert gaps.sweep(store, utc_now() + timedelta(minutes=6), 0) == []


def test_a_student_who_joined_again_is_watched_in_the_new_session_only(client, exam, store):
    _, old = enrolled(client, exam)
    hall, new = enrolled(client, exam)  # the agent crashed and the student joined again
    capture(hall, "cap-0000001")
    last = from_wire(received(store, new, "cap-0000001"))
    assert gaps.sweep(store, last + timedelta(seconds=16), 0) == [
        (exam.exam_id, new, gap_rows(store, new)[0][0])
    ]
    assert gap_rows(store, old) == []


def test_sqlite_holds_one_open_gap_per_session_whoever_inserts_it(client, exam, store):
    _, sid = enrolled(client, exam)
    assert len(gaps.sweep(store, utc_now() + timedelta(seconds=20), 0)) == 1
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"), write_transaction(store):
        add_observation(store, exam.exam_id, sid, "capture_gap", utc_now(), {"since": to_wire(utc_now())})
    assert len(gap_rows(store, sid)) == 1


def test_the_sweep_reads_by_index_only(store):
    plan = " | ".join(row[3] for row in store.execute("EXPLAIN QUERY PLAN " + gaps._SWEEP_QUERY, ["x"]))
    assert "agent_session_running" in plan and "capture_received" in plan
    assert "SCAN agent_session" not in plan and "SCAN capture" not in plan and "SCAN s " not in plan
