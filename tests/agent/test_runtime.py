"""The running agent against the real hall server: help requests, instructions, leaving leaves nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from agent.capture import new_record_id
from agent.devices import DeviceChecker, load_categories
from agent.grab import MonitorFrame
from agent.runtime import AgentRuntime, RuntimeSettings, SessionInfo
from agent.spool import Spool
from agent.transport import HallClient
from agent.uploader import BackoffPolicy, Uploader
from hall_server.store import db
from invigil.payloads import Enrolment
from invigil.timeutil import utc_now

from agent_relay import Relay
from agent_screens import PARAGRAPHS, render_page


def query(exam, sql: str, *args) -> list[tuple]:
    """Read the hall's store as the server does (personal columns open with ``unseal``)."""
    store = db.connect(exam.data_dir)
    try:
        return store.execute(sql, args).fetchall()
    finally:
        store.close()


LEFT_DETAIL = "SELECT unseal(exam_id, detail) FROM device_event WHERE kind = 'left'"


def set_interval(exam, seconds: int) -> None:
    with sqlite3.connect(exam.data_dir / "invigil.db") as db:
        db.execute("UPDATE exam SET capture_interval_s = ?", (seconds,))


class Screen:
    def __init__(self) -> None:
        self.grabs = 0

    def __call__(self) -> list[MonitorFrame]:
        self.grabs += 1
        page = render_page((PARAGRAPHS[self.grabs // 3 % 2],), size=(640, 400), origin=(20, 40))
        return [MonitorFrame(0, 0, 0, 640, 400, page)]


def files_under(path: Path) -> list[str]:
    return [str(Path(root) / name) for root, dirs, names in os.walk(path) for name in dirs + names]


def make_runtime(url: str, exam, state_dir: Path, drain_timeout_s: float = 20.0, **settings) -> AgentRuntime:
    client = HallClient(url, timeout_s=3)
    client.enrol(Enrolment("s0001", exam.join_code, new_record_id(), utc_now()))
    spool = Spool(state_dir / "spool")
    uploader = Uploader(client, spool, new_id=new_record_id, policy=BackoffPolicy(0.05, 0.3, 0.0))
    uploader.state.capture_interval_s = 1
    devices = DeviceChecker(
        load_categories(),
        new_record_id,
        list_monitors=lambda: [{"left": 0, "top": 0, "width": 640, "height": 400}],
        list_interfaces=lambda: {"lo": True},
        list_processes=lambda: ["firefox"],
    )
    return AgentRuntime(
        state_dir=state_dir,
        spool=spool,
        uploader=uploader,
        session=SessionInfo("Hall A", "Linear Algebra", "s0001"),
        grab_factory=Screen,
        devices=devices,
        settings=RuntimeSettings(drain_timeout_s=drain_timeout_s, **settings),
        new_id=new_record_id,
    )


def wait_until(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_leave_sends_everything_then_nothing_is_left_on_disk(exam, live_server, tmp_path):
    set_interval(exam, 1)
    state_dir = tmp_path / "state"
    runtime = make_runtime(live_server.url, exam, state_dir)
    runtime.start({"os": "test"})
    wait_until(lambda: len(query(exam, "SELECT 1 FROM capture")) >= 3)
    runtime.toggle_hand()
    assert files_under(state_dir)  # the spool is there while the exam runs
    runtime.leave()
    assert runtime.finished.wait(30)
    assert runtime.left_cleanly
    assert not state_dir.exists() and files_under(tmp_path / "state") == []
    kinds = [row[0] for row in query(exam, "SELECT kind FROM device_event ORDER BY rowid")]
    assert kinds[0] == "agent_started" and kinds[-1] == "left"
    assert {"monitors", "help_request"} <= set(kinds)
    detail = json.loads(query(exam, LEFT_DETAIL)[0][0])
    assert detail == {"reason": "student"}
    snapshot = runtime.snapshot()
    assert snapshot.hand_raised and snapshot.leaving and snapshot.backlog == 0


def test_leave_without_the_server_still_deletes_everything(exam, live_server, tmp_path):
    relay = Relay(live_server.port)
    state_dir = tmp_path / "state"
    runtime = make_runtime(relay.url, exam, state_dir, drain_timeout_s=1.0)
    runtime.start()
    wait_until(lambda: runtime.last_capture_at is not None)
    relay.cut()
    runtime.leave()
    assert runtime.finished.wait(30)
    relay.close()
    assert not runtime.left_cleanly and not state_dir.exists()


def test_instructions_capture_now_and_end_exam(exam, live_server, tmp_path):
    set_interval(exam, 1)
    state_dir = tmp_path / "state"
    runtime = make_runtime(live_server.url, exam, state_dir)
    runtime.settings = RuntimeSettings(drain_timeout_s=20)
    runtime.start()
    wait_until(lambda: len(query(exam, "SELECT 1 FROM capture")) >= 1)
    (session_id,) = query(exam, "SELECT id FROM agent_session")[0]
    with sqlite3.connect(exam.data_dir / "invigil.db") as db:
        db.execute(
            "INSERT INTO instruction (session_id, kind, created_at) VALUES (?, 'capture_now', ?)",
            (session_id, "2026-01-01T00:00:00.000Z"),
        )
    wait_until(lambda: query(exam, "SELECT 1 FROM capture WHERE trigger = 'instruction'"))
    with sqlite3.connect(exam.data_dir / "invigil.db") as db:
        db.execute(
            "INSERT INTO instruction (session_id, kind, created_at) VALUES (?, 'end_exam', ?)",
            (session_id, "2026-01-01T00:00:00.000Z"),
        )
    assert runtime.finished.wait(30)  # the invigilator ended the exam: the agent left by itself
    assert not state_dir.exists()
    assert json.loads(query(exam, LEFT_DETAIL)[0][0]) == {"reason": "end_exam"}
    assert "ended the exam" in runtime.snapshot().message


@pytest.mark.parametrize("duration", [1.5])
def test_duration_leaves_by_itself(exam, live_server, tmp_path, duration):
    runtime = make_runtime(live_server.url, exam, tmp_path / "state", duration_s=duration)
    started = time.monotonic()
    runtime.start()
    assert runtime.finished.wait(30)
    assert time.monotonic() - started >= duration
    assert json.loads(query(exam, LEFT_DETAIL)[0][0]) == {"reason": "duration"}
