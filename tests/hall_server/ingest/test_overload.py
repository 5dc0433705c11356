"""Overload that degrades gracefully: the health value follows the write queue and the acknowledgement
latency, and past a limit the agent API answers 503 with Retry-After before reading a body; the real agent
waits that long with jitter, and nothing acknowledged is lost.

The store's write lock is an ``flock`` (hall_server/store/writegate.py): holding it from the test makes the
real server's writers queue exactly as they do behind a slow disk."""

from __future__ import annotations

import fcntl
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from agent.spool import Spool
from agent.transport import HallClient, Unreachable, retry_after
from agent.uploader import BackoffPolicy, Uploader
from hall_server.ingest import health
from hall_server.store import db
from invigil.payloads import DeviceEvent, Enrolment
from invigil.timeutil import utc_now

from support import LiveServer

LIMITS = health.Limits(busy_queue=4, busy_latency_ms=400, overload_queue=8, overload_latency_ms=2000)


@pytest.mark.parametrize(
    ("queue", "latency", "free", "expected"),
    [
        (0, 0, 10**12, 10),
        (2, 0, 10**12, 5),
        (4, 0, 10**12, 0),
        (0, 200, 10**12, 5),
        (0, 900, 10**12, 0),
        (1, 300, 10**12, 2),
        (0, 0, 10**6, 0),
    ],  # fmt: skip
)
def test_health_follows_the_write_queue_the_latency_and_the_disk(queue, latency, free, expected):
    assert health.health(queue, latency, free, LIMITS) == expected


@pytest.mark.parametrize(
    ("queue", "latency", "limits", "refused"),
    [
        (7, 0, LIMITS, False),
        (8, 0, LIMITS, True),
        (0, 1999, LIMITS, False),
        (0, 2000, LIMITS, True),
        (500, 10**6, health.Limits(overload_queue=0, overload_latency_ms=0), False),
    ],  # fmt: skip
)
def test_overload_is_a_limit_on_the_queue_or_the_latency(queue, latency, limits, refused):
    assert health.overloaded(queue, latency, limits) is refused


def test_the_latency_window_forgets_so_a_refusing_server_accepts_again():
    now = [100.0]
    window = health.AckLatency(window_s=2.0, clock=lambda: now[0])
    assert window.recent_ms() == 0
    window.observe(3000)
    window.observe(1000)
    assert window.recent_ms() == 2000
    now[0] += 2.5  # nothing served since (everything refused): the window is empty again
    assert window.recent_ms() == 0


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), (" 2 ", 2.0), ("99999", 120.0), ("soon", None),
                                                 ("-1", None), (None, None)])  # fmt: skip
def test_retry_after_is_read_in_seconds_and_capped(header, seconds):
    assert retry_after(header) == seconds


def test_the_agent_waits_at_least_the_retry_after_with_jitter(tmp_path):
    uploader = Uploader(
        HallClient("http://127.0.0.1:9"),
        Spool(tmp_path / "spool"),
        new_id=lambda: "x",
        policy=BackoffPolicy(base_s=0.05, max_s=0.4),
        rng=random.Random(7),
    )
    waits = [uploader.delay_after(Unreachable("busy", retry_after_s=5.0)) for _ in range(50)]
    assert all(5.0 <= w <= 7.5 for w in waits) and max(waits) - min(waits) > 1.0  # spread, never early
    assert uploader.state.health == 0
    assert uploader.delay_after(Unreachable("network")) <= 0.4


def _enrolled(server: LiveServer, exam, number: str) -> HallClient:
    client = HallClient(server.url)
    client.enrol(Enrolment(number, exam.join_code, f"agent-{number}-overload", utc_now()))
    return client


def test_a_busy_server_refuses_before_reading_and_loses_nothing_it_acknowledged(exam, monkeypatch, tmp_path):
    monkeypatch.setenv("INVIGIL_OVERLOAD_QUEUE", "3")
    monkeypatch.setenv("INVIGIL_HEALTH_BUSY_QUEUE", "3")
    monkeypatch.setenv("INVIGIL_OVERLOAD_RETRY_AFTER_S", "2")
    server = LiveServer(exam.data_dir).start()
    try:
        clients = [_enrolled(server, exam, number) for number in exam.students]
        lock = os.open(str(db.db_path(exam.data_dir)) + ".write-lock", os.O_RDWR)
        fcntl.flock(lock, fcntl.LOCK_EX)  # the store's writers queue behind it, as behind a stalled disk
        outcomes: dict[str, str] = {}

        def send(index: int) -> None:
            # One connection per request (a HallClient keeps one, and is used by one thread at a time).
            client = HallClient(server.url, timeout_s=60)
            client.token = clients[index % len(clients)].token
            event = DeviceEvent(f"ovl-{index:04d}-event", "help_request", utc_now(), {})
            try:
                client.post_device_events([event])
                outcomes[event.id] = "stored"
            except Unreachable as exc:
                outcomes[event.id] = f"busy {exc.retry_after_s}"
            except Exception as exc:  # noqa: BLE001 - recorded and asserted below
                outcomes[event.id] = f"other {exc}"
            finally:
                client.close()

        try:
            with ThreadPoolExecutor(12) as pool:
                futures = [pool.submit(send, i) for i in range(12)]  # more writers than the server allows
                deadline = time.monotonic() + 20
                while (
                    sum(v.startswith("busy") for v in outcomes.values()) < 3 and time.monotonic() < deadline
                ):
                    time.sleep(0.05)
                # While it refuses, the server still answers its health: 0, busy.
                answer = requests.get(f"{server.url}/api/v1/health", timeout=5).json()
                assert answer["health"] == 0, (answer, outcomes, time.monotonic() - deadline)
                fcntl.flock(lock, fcntl.LOCK_UN)
                for future in futures:
                    future.result(timeout=60)
        finally:
            os.close(lock)
        busy = [k for k, v in outcomes.items() if v.startswith("busy")]
        stored = [k for k, v in outcomes.items() if v == "stored"]
        assert busy and all(outcomes[k] == "busy 2.0" for k in busy), outcomes
        assert not [v for v in outcomes.values() if v.startswith("other")], outcomes
        store = db.connect(exam.data_dir)
        kept = {
            row[0] for row in store.execute("SELECT event_id FROM device_event WHERE kind = 'help_request'")
        }
        store.close()
        assert set(stored) <= kept  # everything acknowledged is stored
        assert not {k for k in busy if k in kept}  # nothing refused was stored
    finally:
        server.stop()
