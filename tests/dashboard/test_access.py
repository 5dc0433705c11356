"""An invigilator sees only the halls assigned to them: by page, by JSON, by capture URL and by socket."""

from __future__ import annotations

import json
import threading

import pytest
import socketio
from pages import login
from simagents import SimAgent
from staffclient import socket_for, staff_session

expect = pytest.importorskip("playwright.sync_api").expect


def test_an_invigilator_of_hall_b_cannot_see_hall_a(browser, server, halls):
    hall_a, hall_b = halls
    agent = SimAgent(server.url, hall_a.students[0], hall_a.join_code).enrol()
    capture_id = agent.capture()

    anna = staff_session(server.url, "anna")
    ben = staff_session(server.url, "ben")
    a = f"{server.url}/dashboard/exams/{hall_a.exam_id}"
    thumb = f"{server.url}/dashboard/captures/{agent.session_id}/{capture_id}/thumb"
    assert anna.get(f"{a}/hall.json").status_code == 200
    answer = anna.get(thumb)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png"
    assert answer.headers["Cache-Control"].startswith("private, max-age=")
    assert anna.get(thumb, headers={"If-None-Match": answer.headers["ETag"]}).status_code == 304

    batch = f"{a}/thumbs?c={agent.session_id}.{capture_id}&c=999.nosuchcapture"
    answer = anna.get(batch)
    index_length = int(answer.content[:8])
    index = json.loads(answer.content[8 : 8 + index_length])
    assert [entry[0] for entry in index] == [f"{agent.session_id}.{capture_id}"]
    assert answer.content[8 + index_length :].startswith(b"\x89PNG")
    for url in (a, f"{a}/hall.json", f"{a}/seats/1.json", thumb, thumb.replace("/thumb", "/full"), batch):
        refused = ben.get(url, allow_redirects=False)
        assert refused.status_code == 404, url
        assert "Student s0001" not in refused.text
    assert ben.post(f"{a}/start").status_code == 404
    assert ben.post(f"{a}/seats/1/capture-now").status_code == 404

    with pytest.raises(socketio.exceptions.ConnectionError, match="not assigned"):
        socket_for(ben, server.url, hall_a.exam_id)
    with pytest.raises(socketio.exceptions.ConnectionError, match="log in"):
        socket_for(None, server.url, hall_a.exam_id)

    # Ben's own socket receives hall B's events and never hall A's.
    received: list[tuple[str, dict]] = []
    got_b = threading.Event()
    client = socket_for(ben, server.url, hall_b.exam_id)
    for event in ("seats", "observations", "hall"):
        client.on(event, lambda data, event=event: (received.append((event, data)), got_b.set()))
    agent.capture()
    agent.device_event("help_request")
    SimAgent(server.url, hall_b.students[0], hall_b.join_code).enrol().capture()
    assert got_b.wait(10)
    client.sleep(2)
    client.disconnect()
    assert {data["exam"] for _, data in received} == {hall_b.exam_id}

    page = login(browser, server.url, "ben")
    expect(page).to_have_url(f"{server.url}/dashboard/exams/{hall_b.exam_id}")
    expect(page.locator(".tile")).to_have_count(5)
    page.goto(a)
    expect(page.locator("h1")).to_have_text("404")
    page.context.close()
