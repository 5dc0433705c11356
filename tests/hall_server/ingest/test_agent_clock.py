"""Every record an agent dates is checked against the server's clock: a capture, an unchanged record or a
device event dated further ahead than ``clock_skew_max_s``, or before the student first enrolled, raises a
``clock_skew`` observation; one open observation per session until an invigilator acknowledges it, so a
skewed agent does not flood the feed. Records that come late from a spool are not skew."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from hall_server.live import invigilation
from hall_server.store import db, users
from invigil import protocol as p
from invigil.timeutil import to_wire, utc_now

from support import png_bytes, sha256

API = p.API_PREFIX
PROTOCOL = {p.PROTOCOL_HEADER: str(p.PROTOCOL_VERSION)}


def enrol(client, exam, agent_time: datetime | None = None) -> tuple[dict[str, str], int]:
    answer = client.post(
        f"{API}/enrol",
        json={
            "student_number": exam.students[0],
            "join_code": exam.join_code,
            "agent_id": "agent-skew-01",
            "agent_time": to_wire(agent_time or utc_now()),
        },
        headers=PROTOCOL,
    )
    assert answer.status_code == 201, answer.get_json()
    body = answer.get_json()
    return {**PROTOCOL, "Authorization": f"Bearer {body['session_token']}"}, body["session_id"]


def capture(client, auth, record_id: str, at: datetime) -> int:
    body = png_bytes(320, 200, seed=sum(map(ord, record_id)))
    meta = {"monitor": 0, "agent_time": to_wire(at), "sha256": sha256(body), "width": 320, "height": 200}
    return client.put(
        f"{API}/captures/{record_id}",
        data=body,
        headers={**auth, "Content-Type": "image/png", p.META_HEADER: json.dumps(meta)},
    ).status_code


def unchanged(client, auth, record_id: str, at: datetime) -> int:
    record = {"monitor": 0, "agent_time": to_wire(at), "since_capture_id": "cap-0000base"}
    return client.put(f"{API}/unchanged/{record_id}", json=record, headers=auth).status_code


def device_event(client, auth, record_id: str, at: datetime) -> int:
    event = {"id": record_id, "kind": "agent_started", "agent_time": to_wire(at), "detail": {}}
    return client.post(f"{API}/device-events", json={"events": [event]}, headers=auth).status_code


SENDERS: dict[str, Callable[..., int]] = {
    "capture": capture,
    "unchanged": unchanged,
    "device_event": device_event,
}


def skew_observations(exam, session_id: int) -> list[tuple[int, str, bool]]:
    store = db.connect(exam.data_dir)
    try:
        return [
            (row[0], row[1], row[2] is None)
            for row in store.execute(
                "SELECT id, unseal(exam_id, detail), acknowledged_at FROM observation "
                "WHERE session_id = ? AND kind = 'clock_skew' ORDER BY id",
                [session_id],
            )
        ]
    finally:
        store.close()


def acknowledge(exam, observation_id: int) -> None:
    store = db.connect(exam.data_dir)
    try:
        user_id = users.create_user(store, "ivy", "correct horse battery", ["invigilator"])
        invigilation.acknowledge(store, exam.exam_id, observation_id, user_id, utc_now())
    finally:
        store.close()


@pytest.mark.parametrize("kind", sorted(SENDERS))
def test_a_record_dated_ahead_of_the_server_raises_clock_skew(client, exam, kind):
    auth, session_id = enrol(client, exam)
    assert SENDERS[kind](client, auth, "rec-ahead-0001", utc_now() + timedelta(hours=2)) in (200, 201)
    [(_id, detail, is_open)] = skew_observations(exam, session_id)
    assert is_open and json.loads(detail)["skew_s"] > 7000


@pytest.mark.parametrize("kind", sorted(SENDERS))
def test_a_record_within_the_bound_raises_nothing(client, exam, kind):
    auth, session_id = enrol(client, exam)
    assert SENDERS[kind](client, auth, "rec-close-0001", utc_now() + timedelta(seconds=20)) in (200, 201)
    assert skew_observations(exam, session_id) == []


def test_one_open_clock_skew_per_session_until_it_is_acknowledged(client, exam):
    auth, session_id = enrol(client, exam)
    future = utc_now() + timedelta(days=365 * 70)
    assert capture(client, auth, "cap-future-0001", future) == 201
    assert capture(client, auth, "cap-future-0002", future) == 201
    assert unchanged(client, auth, "unc-future-0001", future) == 201
    assert device_event(client, auth, "dev-future-0001", future) == 200
    heartbeat = {"agent_time": to_wire(future)}
    assert client.post(f"{API}/heartbeat", json=heartbeat, headers=auth).status_code == 200
    [(first, _detail, is_open)] = skew_observations(exam, session_id)
    assert is_open
    acknowledge(exam, first)
    assert capture(client, auth, "cap-future-0003", future) == 201
    assert capture(client, auth, "cap-future-0004", future) == 201
    assert [(is_open) for _id, _detail, is_open in skew_observations(exam, session_id)] == [False, True]


def test_records_sent_late_from_a_spool_are_not_skew_but_records_from_before_enrolment_are(client, exam):
    auth, session_id = enrol(client, exam)
    store = db.connect(exam.data_dir)
    try:  # the student enrolled 20 minutes ago; the network was down since
        store.execute(
            "UPDATE agent_session SET enrolled_at = ? WHERE id = ?",
            [to_wire(utc_now() - timedelta(minutes=20)), session_id],
        )
        store.conn.commit()
    finally:
        store.close()
    assert capture(client, auth, "cap-spooled-001", utc_now() - timedelta(minutes=15)) == 201
    assert unchanged(client, auth, "unc-spooled-001", utc_now() - timedelta(minutes=14)) == 201
    assert device_event(client, auth, "dev-spooled-001", utc_now() - timedelta(minutes=13)) == 200
    assert skew_observations(exam, session_id) == []
    assert capture(client, auth, "cap-too-early-1", utc_now() - timedelta(minutes=40)) == 201
    [(_id, detail, _open)] = skew_observations(exam, session_id)
    assert json.loads(detail)["skew_s"] < -60
