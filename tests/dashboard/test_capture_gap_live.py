"""Capture gaps on the real server under gunicorn: an agent that keeps heartbeating but sends no capture
record raises ``capture_gap`` on the invigilator's live view (Socket.IO and the browser's feed), and its next
capture closes it with its span; several workers, or the split layout, raise each gap once."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from pages import login
from simagents import SimAgent
from staffclient import socket_for, staff_session
from test_redis_layout import redis_url  # noqa: F401 -- the fixture: a real redis-server on loopback

from hall_server.live.seatstate import needs_attention
from hall_server.store.db import db_path

from support import LiveServer

expect = pytest.importorskip("playwright.sync_api").expect

#: Hall A's capture interval is 1 s, so 3 s without a record is a gap; the sweep looks every 0.2 s.
SWEEP = "0.2"


@pytest.fixture
def quick_sweep(monkeypatch) -> None:
    monkeypatch.setenv("INVIGIL_CAPTURE_GAP_SWEEP_S", SWEEP)  # the servers started below inherit it


def serve(halls, *args: str) -> LiveServer:
    return LiveServer(halls[0].data_dir, args).start(timeout_s=30)


@pytest.fixture
def gap_server(quick_sweep, halls) -> Iterator[LiveServer]:
    server = serve(halls)
    yield server
    server.stop()


class Events:
    """What a Socket.IO client of the exam's room received, and waiting for one while the agent beats."""

    def __init__(self, client) -> None:
        self.items: dict[str, list[dict]] = {"seats": [], "observations": []}
        self.arrived = threading.Condition()
        for event in self.items:
            client.on(event, self._recorder(event))

    def _recorder(self, event: str):
        def handler(data: dict) -> None:
            with self.arrived:
                self.items[event].extend(data.get("seats") or data.get("items") or [])
                self.arrived.notify_all()

        return handler

    def wait_for(self, event: str, predicate, agent: SimAgent, timeout_s: float = 15) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            agent.heartbeat()  # alive all along: only the data stopped
            with self.arrived:
                found = next((item for item in self.items[event] if predicate(item)), None)
                if found:
                    return found
                self.arrived.wait(0.25)
        raise AssertionError(f"no matching {event} event; got {self.items[event][-5:]}")


def gap_rows(data_dir, session_id: int) -> list[tuple]:
    with sqlite3.connect(db_path(data_dir)) as store:
        return store.execute(
            "SELECT id, closed_at FROM observation WHERE session_id = ? AND kind = 'capture_gap' ORDER BY id",
            [session_id],
        ).fetchall()


def received_at(data_dir, capture_id: str) -> str:
    with sqlite3.connect(db_path(data_dir)) as store:
        return store.execute("SELECT received_at FROM capture WHERE capture_id = ?", [capture_id]).fetchone()[
            0
        ]


def beat_until(agent: SimAgent, done: Callable[[], bool], timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "timed out"
        agent.heartbeat()
        time.sleep(0.2)


def beat_for(agent: SimAgent, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        agent.heartbeat()
        time.sleep(0.2)


def test_a_heartbeating_agent_without_data_shows_a_gap_live_until_its_next_capture(
    browser, gap_server, halls
):
    hall_a, _ = halls
    anna = staff_session(gap_server.url, "anna")
    client = socket_for(anna, gap_server.url, hall_a.exam_id)
    events = Events(client)
    page = login(browser, gap_server.url, "anna")
    page.wait_for_selector("#hall[data-loaded]")

    agent = SimAgent(gap_server.url, hall_a.students[0], hall_a.join_code).enrol()
    first = agent.capture()
    gap = events.wait_for("observations", lambda item: item["kind"] == "capture_gap", agent)
    assert gap["no"] == hall_a.students[0] and gap["sid"] == agent.session_id
    assert gap["detail"] == {"since": received_at(hall_a.data_dir, first)}
    seat = events.wait_for(
        "seats", lambda s: s["no"] == hall_a.students[0] and "capture_gap" in s["kinds"], agent
    )
    assert needs_attention(seat)
    expect(page.locator("#feed")).to_contain_text(re.compile(r"gap in captures \(no data since", re.I))

    beat_for(agent, 1.0)  # five more sweeps of the same silence raise nothing more
    assert len(gap_rows(hall_a.data_dir, agent.session_id)) == 1

    resumed = agent.capture()
    closed = events.wait_for(
        "observations", lambda item: item["id"] == gap["id"] and "until" in item["detail"], agent
    )
    assert closed["detail"]["until"] == received_at(hall_a.data_dir, resumed)
    assert closed["detail"]["seconds"] >= 3 and closed["detail"]["resumed"] is True
    span = re.compile(rf"gap in captures \({closed['detail']['seconds']} s, ", re.I)
    expect(page.locator("#feed")).to_contain_text(span)
    assert gap_rows(hall_a.data_dir, agent.session_id)[0][1] == closed["detail"]["until"]
    client.disconnect()
    agent.close()
    page.context.close()


def test_three_workers_sweeping_raise_each_gap_once(quick_sweep, halls):
    hall_a, _ = halls
    server = serve(halls, "--workers", "3")
    try:
        agent = SimAgent(server.url, hall_a.students[1], hall_a.join_code).enrol()
        agent.capture()
        beat_until(agent, lambda: gap_rows(hall_a.data_dir, agent.session_id))
        beat_for(agent, 1.5)  # every worker sweeps several times over the same silence
        [(gap_id, closed_at)] = gap_rows(hall_a.data_dir, agent.session_id)
        assert closed_at is None
        resumed = agent.capture()
        assert gap_rows(hall_a.data_dir, agent.session_id) == [
            (gap_id, received_at(hall_a.data_dir, resumed))
        ]
        agent.close()
    finally:
        server.stop()


def test_in_the_split_layout_the_live_process_raises_and_ingest_closes_through_redis(
    quick_sweep,
    halls,
    redis_url,  # noqa: F811
):
    hall_a, _ = halls
    queue = ("--message-queue", redis_url)
    ingest = serve(halls, "--role", "ingest", "--workers", "2", *queue)
    live = serve(halls, "--role", "live", *queue)
    try:
        client = socket_for(staff_session(live.url, "anna"), live.url, hall_a.exam_id)
        events = Events(client)
        agent = SimAgent(ingest.url, hall_a.students[2], hall_a.join_code).enrol()
        first = agent.capture()
        gap = events.wait_for("observations", lambda item: item["kind"] == "capture_gap", agent)
        assert gap["detail"] == {"since": received_at(hall_a.data_dir, first)}
        beat_for(agent, 1.0)
        assert len(gap_rows(hall_a.data_dir, agent.session_id)) == 1
        resumed = (
            agent.capture()
        )  # stored by an ingest worker, which closes the gap and tells the live process
        closed = events.wait_for(
            "observations", lambda item: item["id"] == gap["id"] and "until" in item["detail"], agent
        )
        assert closed["detail"]["until"] == received_at(hall_a.data_dir, resumed)
        assert closed["detail"]["seconds"] >= 3 and closed["detail"]["resumed"] is True
        client.disconnect()
        agent.close()
    finally:
        live.stop()
        ingest.stop()
