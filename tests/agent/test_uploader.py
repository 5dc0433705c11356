"""The uploader against the real hall server on loopback: in order, through network loss, never twice."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time

import numpy as np
import pytest

from agent.capture import CaptureLoop, CaptureSettings, new_record_id
from agent.encode import quantise_gray4
from agent.grab import MonitorFrame
from agent.spool import Spool
from agent.transport import HallClient
from agent.uploader import EVENT_KIND, BackoffPolicy, Uploader, UploadStopped
from hall_server.store import db
from invigil.payloads import DeviceEvent, Enrolment
from invigil.timeutil import utc_now

from agent_relay import Relay
from agent_screens import PARAGRAPHS, render_page
from support import LiveServer, stored_screen

FAST = BackoffPolicy(base_s=0.05, max_s=0.4, pace_max_s=0.0)
WORDS = PARAGRAPHS[1].split()


def enrolled(url: str, exam, student: str = "s0001") -> HallClient:
    client = HallClient(url, timeout_s=5)
    client.enrol(Enrolment(student, exam.join_code, new_record_id(), utc_now()))
    return client


def query(exam, sql: str, *args) -> list[tuple]:
    """Read the hall's store as the server does (personal columns open with ``unseal``)."""
    store = db.connect(exam.data_dir)
    try:
        return store.execute(sql, args).fetchall()
    finally:
        store.close()


class ChangingScreen:
    """A 640x400 page; ``step()`` rewrites the answer, so the next grab is a changed screen."""

    def __init__(self) -> None:
        self.steps = 0

    def step(self) -> None:
        self.steps += 1

    def __call__(self) -> list[MonitorFrame]:
        shift = self.steps % len(WORDS)
        text = f"Draft {self.steps}: " + " ".join(WORDS[shift:] + WORDS[:shift])
        page = render_page((PARAGRAPHS[0], text), size=(640, 400), origin=(20, 40))
        return [MonitorFrame(0, 0, 0, 640, 400, page)]


def shown_levels(screen: ChangingScreen) -> np.ndarray:
    """The 16 gray levels the agent keeps of what ``screen`` shows now."""
    return quantise_gray4(screen()[0].rgb)


def wait_until(condition, timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.parametrize(
    "failures, health, low, high",
    [
        (1, 10, 0.025, 0.05),  # base, with jitter between half and all of it
        (3, 10, 0.1, 0.2),
        (30, 10, 0.2, 0.4),  # capped
        (1, 0, 0.2, 0.4),  # health 0: the cap at once
        (1, 5, 0.1125, 0.225),  # half way between plain and the cap
    ],
)
def test_backoff_grows_is_capped_and_stretches_as_health_falls(failures, health, low, high):
    rng = random.Random(7)
    delays = [FAST.retry_delay(failures, health, rng) for _ in range(200)]
    assert low - 1e-9 <= min(delays) and max(delays) <= high + 1e-9
    assert max(delays) - min(delays) > (high - low) / 2  # jittered, not in step


def test_uploads_are_paced_only_while_the_server_is_busy():
    policy = BackoffPolicy(pace_max_s=2.0)
    assert [policy.pace(h) for h in (10, 5, 0)] == [0.0, 1.0, 2.0]


def run_uploader(uploader: Uploader) -> tuple[threading.Event, threading.Event, threading.Thread]:
    """The upload thread as the runtime runs it: ``wake`` is set after every capture."""
    stop, wake = threading.Event(), threading.Event()
    thread = threading.Thread(target=uploader.run, args=(stop, wake), daemon=True)
    thread.start()
    return stop, wake, thread


@pytest.mark.parametrize("outage", ["server_stopped", "link_cut", "replies_lost"])
def test_after_network_loss_every_capture_arrives_in_order_and_none_twice(
    exam, live_server, tmp_path, outage
):
    relay = Relay(live_server.port)
    client = enrolled(relay.url, exam)
    spool = Spool(tmp_path / "spool")
    screen = ChangingScreen()
    loop = CaptureLoop(screen, spool, CaptureSettings(send_thumbnails=True))
    uploader = Uploader(client, spool, new_id=new_record_id, policy=FAST)
    uploader.state.capture_interval_s = 0.5
    stop, wake, thread = run_uploader(uploader)
    expected: list[str] = []
    server = live_server
    during, stored_yet = (0, True), -1
    try:
        for tick in range(16):
            if tick % 3 != 2:
                screen.step()  # two changed screens, then one unchanged, and so on
            if tick == 4:
                if outage == "server_stopped":
                    wait_until(lambda: len(spool) == 0, what="the first captures to drain")
                    relay.cut()  # closes the kept-alive connection, so the server stops at once
                    server.stop()
                    relay.restore()  # the link is back; the server is not
                else:
                    relay.cut("refuse" if outage == "link_cut" else "lose_replies")
            if tick == 12:
                if outage == "server_stopped":
                    server = LiveServer(exam.data_dir).start()  # same data, a new port
                    relay.restore(server.port)
                else:
                    relay.restore()
            if tick == 11:
                during = (len(spool), uploader.state.connected)
                oldest = spool.peek()
                assert oldest is not None
                held = oldest.meta.get("capture_id") or oldest.meta.get("record_id")
                stored_yet = query(exam, "SELECT count(*) FROM capture WHERE capture_id = ?", held)[0][0]
            expected += [outcome.record_id for outcome in loop.tick()]
            wake.set()
            time.sleep(0.1)
        assert during[0] > 0 and not during[1], (during, uploader.state)  # the outage was real
        wait_until(lambda: len(spool) == 0, what="the spool to drain after recovery")
    finally:
        stop.set()
        thread.join(10)
        relay.close()
        if server is not live_server:
            server.stop()
    rows = query(exam, "SELECT capture_id, changed, agent_time, thumb_sha256 FROM capture ORDER BY rowid")
    arrived = [row[0] for row in rows]
    assert arrived == expected  # every capture, in the order it was taken, none twice
    assert [row[2] for row in rows] == sorted(row[2] for row in rows)
    assert sum(row[1] for row in rows) >= 10 and sum(1 - row[1] for row in rows) >= 5
    assert all(row[3] for row in rows if row[1])  # every image got its thumbnail too
    # With lost replies the server already had the record the agent still held: it was sent again.
    # (a cut link may also have delivered the request in flight before it broke).
    assert stored_yet in {"replies_lost": (1,), "link_cut": (0, 1), "server_stopped": (0,)}[outage]


def test_a_refused_record_is_reported_and_never_jams_the_queue(exam, live_server, tmp_path):
    client = enrolled(live_server.url, exam)
    spool = Spool(tmp_path / "spool")
    loop = CaptureLoop(ChangingScreen(), spool, CaptureSettings(send_thumbnails=False))
    first = loop.tick()[0].record_id
    bad = spool.peek()
    assert bad is not None
    # A body that does not match its metadata's hash: the server answers 422 sha256_mismatch.
    spool.append({**bad.meta, "capture_id": new_record_id()}, bad.body[:-12] + b"\0" * 12)
    event = DeviceEvent(new_record_id(), "help_request", utc_now(), {})
    spool.append({"kind": EVENT_KIND, "event": event.as_wire()})
    uploader = Uploader(client, spool, new_id=new_record_id, policy=FAST)
    while uploader.send_one():
        pass
    assert query(exam, "SELECT capture_id FROM capture") == [(first,)]
    kinds = query(exam, "SELECT kind, unseal(exam_id, detail) FROM device_event ORDER BY rowid")
    assert [k for k, _ in kinds] == ["help_request", "capture_error"]
    assert json.loads(kinds[1][1]) == {
        "reason": "refused",
        "status": 422,
        "code": "sha256_mismatch",
        "record": "image",
    }


def test_an_unknown_session_stops_uploads_and_keeps_the_record(exam, live_server, tmp_path):
    client = HallClient(live_server.url)
    client.token = "not-a-token-the-server-knows"
    spool = Spool(tmp_path / "spool")
    CaptureLoop(ChangingScreen(), spool).tick()
    uploader = Uploader(client, spool, new_id=new_record_id, policy=FAST)
    with pytest.raises(UploadStopped, match="Enrol again"):
        uploader.send_one()
    assert len(spool) == 2 and "Enrol again" in uploader.state.stopped


def test_heartbeat_carries_the_backlog_and_hands_over_instructions(exam, live_server, tmp_path):
    client = enrolled(live_server.url, exam)
    spool = Spool(tmp_path / "spool")
    CaptureLoop(ChangingScreen(), spool).tick()
    got: list[str] = []
    uploader = Uploader(client, spool, new_id=new_record_id, on_instruction=got.append)
    with sqlite3.connect(exam.data_dir / "invigil.db") as db:
        (session_id,) = db.execute("SELECT id FROM agent_session").fetchone()
        for kind in ("capture_now", "end_exam"):
            db.execute(
                "INSERT INTO instruction (session_id, kind, created_at) VALUES (?, ?, ?)",
                (session_id, kind, "2026-01-01T00:00:00.000Z"),
            )
    answer = uploader.heartbeat()
    assert got == ["capture_now", "end_exam"] and answer["health"] == uploader.state.health
    assert query(exam, "SELECT backlog, state FROM agent_session") == [(2, "capturing")]
    assert not uploader.exam_over() and uploader.state.ends_at is not None
    uploader.heartbeat()
    assert got == ["capture_now", "end_exam"]  # each instruction is delivered once


def test_the_spool_cap_holds_through_an_outage_and_the_drop_is_reported(exam, live_server, tmp_path):
    relay = Relay(live_server.port)
    client = enrolled(relay.url, exam)
    cap = 60_000  # room for a few images: the oldest images go, with the updates built on them
    spool = Spool(tmp_path / "spool", max_bytes=cap)
    screen = ChangingScreen()
    loop = CaptureLoop(screen, spool)
    relay.cut()
    taken, kinds = [], []
    for _ in range(20):
        screen.step()
        outcome = loop.tick()[0]
        taken.append(outcome.record_id)
        kinds.append("update" if outcome.tiles else "whole")
        assert spool.bytes_used <= cap
    assert spool.images_dropped > 0 and kinds.count("whole") > 1  # a whole screen after each image drop
    dropped = spool.take_dropped()
    assert dropped.records > 0
    event = DeviceEvent(new_record_id(), "spool_dropped", utc_now(), {"records": dropped.records})
    spool.append({"kind": EVENT_KIND, "event": event.as_wire()})
    relay.restore()
    uploader = Uploader(client, spool, new_id=new_record_id, policy=FAST)
    assert uploader.drain(20)
    relay.close()
    arrived = [row[0] for row in query(exam, "SELECT capture_id FROM capture ORDER BY rowid")]
    assert arrived and arrived[-1] == taken[-1]  # the newest screen survives
    assert [i for i in taken if i in arrived] == arrived  # in order, none twice
    (session_id,) = query(exam, "SELECT id FROM agent_session")[0]
    for capture_id in arrived:  # every stored capture is a whole screen or builds on stored ones
        assert stored_screen(exam, session_id, capture_id).size == (640, 400)
    assert np.array_equal(np.asarray(stored_screen(exam, session_id, taken[-1])), shown_levels(screen) * 17)
    assert query(exam, "SELECT kind FROM device_event") == [("spool_dropped",)]


def test_drain_gives_up_after_its_time_when_the_server_stays_away(tmp_path):
    spool = Spool(tmp_path / "spool")
    CaptureLoop(ChangingScreen(), spool).tick()
    relay = Relay(9)  # nothing listens on port 9 of loopback
    relay.cut()
    uploader = Uploader(HallClient(relay.url, timeout_s=1), spool, new_id=new_record_id, policy=FAST)
    started = time.monotonic()
    assert uploader.drain(0.8) is False
    assert time.monotonic() - started < 5 and len(spool) == 2 and not uploader.state.connected
    relay.close()
