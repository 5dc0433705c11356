"""The real server under gunicorn, one hostile agent and 32 invigilator full views at once: the worker's
memory stays bounded. The agent sends the worst the ingest accepts: it reports a 6000 x 6000 monitor, sends
a whole screen of it in 16-bit RGBA (280 kB on the wire, 288 MB if anyone inflated it), a gray one, and
three tile updates of the gray one that each carry every tile (6144 x 6144 strips). A screen is put
together on one byte a pixel, at most a few at a time per process; a view that would wait too long for its
turn answers 503 with Retry-After instead of piling up. A screen bigger than the agent's monitors, or than
the pixel cap, is refused at ingest."""

from __future__ import annotations

import io
import json
import re
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import numpy as np
import psutil
import pytest
import requests
from PIL import Image

from agent.encode import encode_levels
from hall_server.store import db, users
from invigil import protocol as p
from invigil import tiles
from invigil.timeutil import to_wire, utc_now

from support import LiveServer, sha256

API = p.API_PREFIX
PROTOCOL = {p.PROTOCOL_HEADER: str(p.PROTOCOL_VERSION)}
PASSWORD = "correct horse battery"
SIDE = 6000
TILE = 256
VIEWS = 32
#: The bound this test holds the worker to: its peak resident memory (VmHWM) over the whole run, uploads
#: and 32 concurrent full views included. A view of an update holds about two bytes a screen pixel (the
#: canvas, and one strip or the 4-bit copy it is sent as): ~75 MB here; a process puts at most
#: ``Screens.reassemblies_at_once`` (2) screens together at once; the worker itself is ~75 MB. Measured:
#: ~230 MB; without those bounds the same views took the worker to 2.3 GB.
WORKER_PEAK_MAX_MB = 320


def rgba16_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    squeeze = zlib.compressobj(9)
    data = b"".join(squeeze.compress(b"\x00" * (1 + width * 8)) for _ in range(height)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def peak_mb(process: psutil.Process) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    with open(f"/proc/{process.pid}/status") as lines:
        for line in lines:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


class HostileAgent:
    def __init__(self, url: str, exam) -> None:
        self.url, self.http = url, requests.Session()
        answer = self.http.post(
            f"{url}{API}/enrol",
            json={
                "student_number": exam.students[0],
                "join_code": exam.join_code,
                "agent_id": "agent-hostile",
                "agent_time": to_wire(utc_now()),
            },
            headers=PROTOCOL,
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        self.session_id = answer.json()["session_id"]
        self.http.headers.update({**PROTOCOL, "Authorization": f"Bearer {answer.json()['session_token']}"})

    def monitors(self, *sizes: tuple[int, int]) -> None:
        geometry = [[0, 0, width, height] for width, height in sizes]
        event = {
            "id": f"mon-{len(geometry)}-{sizes[0][0]}",
            "kind": "monitors",
            "agent_time": to_wire(utc_now()),
            "detail": {"count": len(sizes), "geometry": geometry},
        }
        answer = self.http.post(f"{self.url}{API}/device-events", json={"events": [event]}, timeout=30)
        assert answer.status_code == 200, answer.text

    def put(self, capture_id: str, body: bytes, width: int, height: int, **update) -> requests.Response:
        meta = {
            "monitor": 0,
            "agent_time": to_wire(utc_now() - timedelta(seconds=1)),
            "sha256": sha256(body),
            "width": width,
            "height": height,
            **update,
        }
        return self.http.put(
            f"{self.url}{API}/captures/{capture_id}",
            data=body,
            headers={"Content-Type": "image/png", p.META_HEADER: json.dumps(meta)},
            timeout=120,
        )


def every_tile_update(base: str, seed: int) -> tuple[bytes, dict[str, object]]:
    rows, cols = tiles.grid(SIDE, SIDE, TILE)
    strip = np.zeros((rows * TILE, cols * TILE), dtype=np.uint8)
    strip[seed, seed] = 15  # each update differs by one pixel
    update = {"base": base, "tile": TILE, "tiles": tiles.encode_map(list(range(rows * cols)), rows, cols)}
    return encode_levels(strip).data, update


def logged_in(url: str, username: str) -> requests.Session:
    staff = requests.Session()
    form = staff.get(f"{url}/dashboard/login", timeout=30).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    answer = staff.post(
        f"{url}/dashboard/login",
        data={"csrf_token": token, "username": username, "password": PASSWORD},
        timeout=30,
    )
    answer.raise_for_status()
    return staff


@pytest.fixture
def server(exam):
    store = db.connect(exam.data_dir)
    try:
        users.create_user(store, "ivy", PASSWORD, ["invigilator"])
        users.assign(store, "ivy", "invigilator", hall_id=exam.hall_id)
    finally:
        store.close()
    live = LiveServer(exam.data_dir).start(timeout_s=30)
    yield live
    live.stop()


def test_32_full_views_of_a_hostile_session_keep_the_worker_within_its_bound(server, exam):
    [worker] = psutil.Process(server.process.pid).children()
    agent = HostileAgent(server.url, exam)
    agent.monitors((SIDE, SIDE))
    assert agent.put("key-rgba16-0001", rgba16_png(SIDE, SIDE), SIDE, SIDE).status_code == 201
    gray = encode_levels(np.zeros((SIDE, SIDE), dtype=np.uint8)).data
    assert agent.put("key-gray-00001", gray, SIDE, SIDE).status_code == 201
    base = "key-gray-00001"
    for n in (1, 2, 3):
        body, update = every_tile_update(base, n)
        answer = agent.put(f"upd-every-{n:04d}", body, SIDE, SIDE, **update)
        assert answer.status_code == 201, answer.text
        base = f"upd-every-{n:04d}"
    staff = logged_in(server.url, "ivy")
    wanted = ["upd-every-0003", "upd-every-0002", "upd-every-0001", "key-rgba16-0001"]
    urls = [f"{server.url}/dashboard/captures/{agent.session_id}/{wanted[n % 4]}/full" for n in range(VIEWS)]

    with ThreadPoolExecutor(VIEWS) as pool:
        answers = list(pool.map(lambda url: staff.get(url, timeout=120), urls))

    peak = peak_mb(worker)
    assert peak < WORKER_PEAK_MAX_MB, f"worker peaked at {peak:.0f} MB"
    shown = 0
    for url, answer in zip(urls, answers, strict=True):
        if answer.status_code == 503:  # it waited its turn too long: the browser may ask again
            assert int(answer.headers["Retry-After"]) >= 1 and answer.json()["error"]["code"] == "busy"
            continue
        assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png", answer.text[:200]
        if url.endswith("upd-every-0003/full") and not shown:
            screen = np.asarray(Image.open(io.BytesIO(answer.content)).convert("L"))
            assert screen.shape == (SIDE, SIDE) and screen[3, 3] == 255 and screen[2, 2] == 0
            assert screen[0, 0] == 0
        shown += url.endswith(("0001/full", "0002/full", "0003/full"))
    assert shown >= 2, [answer.status_code for answer in answers]

    # What would cost more is refused at ingest, storing nothing.
    bigger = agent.put(
        "cap-bigger-0001", encode_levels(np.zeros((SIDE + 1, SIDE), np.uint8)).data, SIDE, SIDE + 1
    )
    assert bigger.status_code == 422 and bigger.json()["error"]["code"] == "unknown_screen_size"
    agent.monitors((SIDE, SIDE), (7000, 6000))
    over_cap = agent.put("cap-over-cap-01", encode_levels(np.zeros((6000, 7000), np.uint8)).data, 7000, 6000)
    assert over_cap.status_code == 422 and over_cap.json()["error"]["code"] == "bad_image"
    body, update = every_tile_update("key-rgba16-0001", 1)
    on_colour = agent.put("upd-on-rgba16-1", body, SIDE, SIDE, **update)
    assert on_colour.status_code == 422 and on_colour.json()["error"]["code"] == "base_not_gray"
