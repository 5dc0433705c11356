"""The Redis layout: ingest in its own gunicorn (two workers) emits through a real redis-server; one live
process serves the dashboard and its Socket.IO and relays those events to the browsers of the room. Redis
runs as docs/dashboard.md says: on loopback with a password, which the --message-queue URL carries."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import requests
from pages import login
from simagents import SimAgent
from staffclient import socket_for, staff_session

from support import LiveServer, free_port

expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture
def redis_url(tmp_path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("needs Debian's redis-server (apt-get install redis-server)")
    redis = pytest.importorskip("redis")
    port = free_port()
    password = secrets.token_urlsafe(24)
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--requirepass",
            password,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        for _ in range(100):
            assert process.poll() is None, "redis-server exited"
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                time.sleep(0.05)
        # Whoever reaches the port (a tunnel through the proxy, another local user) gets nothing without it.
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port, password="guess").ping()
        yield url
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def split_servers(halls, redis_url) -> Iterator[tuple[LiveServer, LiveServer]]:
    data_dir = halls[0].data_dir
    queue = ("--message-queue", redis_url)
    ingest = LiveServer(data_dir, ("--role", "ingest", "--workers", "2", *queue)).start(timeout_s=30)
    live = LiveServer(data_dir, ("--role", "live", *queue))
    try:
        live.start(timeout_s=30)
        yield ingest, live
    finally:
        live.stop()
        ingest.stop()


def test_ingest_workers_emit_through_redis_to_the_live_process(browser, split_servers, halls):
    ingest, live = split_servers
    hall_a, _ = halls
    assert requests.get(f"{ingest.url}/dashboard/login", timeout=5).status_code == 404
    assert requests.post(f"{live.url}/api/v1/enrol", json={}, timeout=5).status_code == 404

    anna = staff_session(live.url, "anna")
    seats: list[dict] = []
    observations: list[dict] = []
    arrived = threading.Condition()

    def record(target: list[dict]):
        def handler(data: dict) -> None:
            with arrived:
                target.extend(data.get("seats") or data.get("items") or [])
                arrived.notify_all()

        return handler

    client = socket_for(anna, live.url, hall_a.exam_id)
    client.on("seats", record(seats))
    client.on("observations", record(observations))

    def wait_for(target: list[dict], predicate) -> dict:
        deadline = time.monotonic() + 15
        with arrived:
            while time.monotonic() < deadline:
                found = next((item for item in target if predicate(item)), None)
                if found:
                    return found
                arrived.wait(0.5)
        raise AssertionError(f"no matching event; got {target[-5:]}")

    page = login(browser, live.url, "anna")
    page.wait_for_selector("#hall[data-loaded]")
    agent = SimAgent(ingest.url, hall_a.students[0], hall_a.join_code).enrol()
    agent.heartbeat()
    first = agent.capture()
    wait_for(seats, lambda seat: seat.get("thumb") == first)
    # The seat is live already: only the ingest worker's emit (not the live process's state sweep) can
    # carry the next thumbnail.
    second = agent.capture()
    seat = wait_for(seats, lambda seat: seat.get("thumb") == second)
    assert seat["no"] == hall_a.students[0] and seat["state"] == "live"
    agent.device_event("help_request")
    help_request = wait_for(observations, lambda item: item["kind"] == "help_request")
    assert help_request["no"] == hall_a.students[0]
    client.disconnect()

    tile_img = page.locator(f'.tile[data-no="{hall_a.students[0]}"] img')
    expect(tile_img).to_have_attribute("data-capture", second)
    expect(page.locator(".toast")).to_contain_text("asks for help")
    page.context.close()
