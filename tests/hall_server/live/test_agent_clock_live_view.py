"""The live view follows the server's clock, not the agent's: a capture or device event an agent dates in
2099 cannot pin a seat's tile or its detail panel, and the newest record to arrive is the one shown."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from hall_server.live import hallview
from hall_server.live.seatstate import Thresholds
from hall_server.store import db
from hall_server.store.exams import exam_facts
from invigil import protocol as p
from invigil.timeutil import to_wire, utc_now

from support import png_bytes, sha256

API = p.API_PREFIX
PROTOCOL = {p.PROTOCOL_HEADER: str(p.PROTOCOL_VERSION)}
FAR_FUTURE = datetime(2099, 1, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def agent(client, exam):
    answer = client.post(
        f"{API}/enrol",
        json={
            "student_number": exam.students[0],
            "join_code": exam.join_code,
            "agent_id": "agent-clock-1",
            "agent_time": to_wire(utc_now()),
        },
        headers=PROTOCOL,
    )
    assert answer.status_code == 201, answer.get_json()
    return {**PROTOCOL, "Authorization": f"Bearer {answer.get_json()['session_token']}"}


def send_capture(client, auth, capture_id: str, agent_time: datetime, seed: int) -> None:
    body = png_bytes(320, 200, seed=seed)
    meta = {
        "monitor": 0,
        "agent_time": to_wire(agent_time),
        "sha256": sha256(body),
        "width": 320,
        "height": 200,
    }
    answer = client.put(
        f"{API}/captures/{capture_id}",
        data=body,
        headers={**auth, "Content-Type": "image/png", p.META_HEADER: json.dumps(meta)},
    )
    assert answer.status_code == 201, answer.get_json()
    thumb = png_bytes(96, 60, seed=seed)
    answer = client.put(
        f"{API}/captures/{capture_id}/thumbnail", data=thumb, headers={**auth, "Content-Type": "image/png"}
    )
    assert answer.status_code == 201, answer.get_json()


def test_a_capture_dated_in_2099_does_not_pin_the_tile_or_the_seat_detail(client, exam, agent):
    send_capture(client, agent, "cap-future-0001", FAR_FUTURE, seed=1)
    # An honest capture a moment old (a spool drains a few seconds late): within the skew bound.
    send_capture(client, agent, "cap-honest-0002", utc_now() - timedelta(seconds=2), seed=2)
    store = db.connect(exam.data_dir)
    try:
        facts = exam_facts(store, exam.exam_id)
        assert facts is not None
        [seat] = [
            s for s in hallview.seats(store, facts, utc_now(), Thresholds()) if s["no"] == exam.students[0]
        ]
        assert seat["thumb"] == "cap-honest-0002"
        detail = hallview.seat_detail(store, exam.exam_id, seat["r"])
    finally:
        store.close()
    assert detail is not None and detail["capture"]["id"] == "cap-honest-0002"
    # Both times stay visible: the agent's claim and the server's receipt.
    assert detail["capture"]["agent_time"] != detail["capture"]["received_at"]


def test_device_events_dated_in_2099_do_not_push_newer_ones_out_of_the_seat_detail(client, exam, agent):
    future = [
        {
            "id": f"ev-future-{n:04d}",
            "kind": "help_request",
            "agent_time": to_wire(FAR_FUTURE + timedelta(seconds=n)),
        }
        for n in range(25)
    ]
    assert client.post(f"{API}/device-events", json={"events": future}, headers=agent).status_code == 200
    honest = {"id": "ev-honest-0001", "kind": "agent_started", "agent_time": to_wire(utc_now()), "detail": {}}
    assert client.post(f"{API}/device-events", json={"events": [honest]}, headers=agent).status_code == 200
    store = db.connect(exam.data_dir)
    try:
        roster_id = store.execute(
            "SELECT id FROM roster WHERE exam_id = ? AND student_number = ?", [exam.exam_id, exam.students[0]]
        ).fetchone()[0]
        detail = hallview.seat_detail(store, exam.exam_id, roster_id)
    finally:
        store.close()
    assert detail is not None
    assert detail["devices"][0]["kind"] == "agent_started"  # the newest to arrive comes first
