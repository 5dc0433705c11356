"""Putting a screen back together is bounded: each piece is checked from its header (a gray PNG of at most
8 bits a pixel, exactly the size the chain says) before a pixel is inflated, and a process puts only a few
screens together at once; a full view that waits too long for its turn answers 503 with Retry-After."""

from __future__ import annotations

import io
import json
import re
import struct
import threading
import time
import zlib
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image

from agent.encode import encode_levels
from agent.updates import pack_tiles
from hall_server.app import create_app
from hall_server.store import db, frames, users
from hall_server.store.screens import Screens, ScreensBusy
from invigil import protocol as p
from invigil import tiles
from invigil.timeutil import to_wire, utc_now

from support import sha256

API = p.API_PREFIX
PROTOCOL = {p.PROTOCOL_HEADER: str(p.PROTOCOL_VERSION)}
PASSWORD = "correct horse battery"


def rgba16_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    squeeze = zlib.compressobj(9)
    data = b"".join(squeeze.compress(b"\x00" * (1 + width * 8)) for _ in range(height)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def screen_levels(seed: int) -> np.ndarray:
    levels = np.tile(np.arange(16, dtype=np.uint8).repeat(40), (400, 1))
    levels[100:140, 60 * seed : 60 * seed + 90] = 0
    return levels


KEY = frames.Piece(1, "key-00000001", "k" * 64, None, None, None, 640, 400)
UPDATE = frames.Piece(1, "upd-00000001", "u" * 64, "key-00000001", 64, tiles.encode_map([0], 7, 10), 640, 400)
STRIP = encode_levels(pack_tiles(screen_levels(1), [0], 64)).data


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (rgba16_png(640, 400), "not a gray"),  # stored before updates had to build on gray screens
        (encode_levels(np.zeros((200, 320), dtype=np.uint8)).data, "320x200"),  # not the screen's size
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "cannot be read"),
    ],
    ids=["rgba16-key", "key-of-another-size", "not-an-image"],
)
def test_a_piece_that_is_not_a_gray_png_of_its_size_is_never_inflated(key, problem):
    blobs = {KEY.sha256: key, UPDATE.sha256: STRIP}
    with pytest.raises(frames.ScreenUnavailable, match=problem):
        frames.compose([KEY, UPDATE], blobs.__getitem__)


def test_an_update_strip_of_another_size_is_refused():
    blobs = {
        KEY.sha256: encode_levels(screen_levels(0)).data,
        UPDATE.sha256: encode_levels(screen_levels(0)).data,
    }
    with pytest.raises(frames.ScreenUnavailable, match="64x64"):
        frames.compose([KEY, UPDATE], blobs.__getitem__)


def test_a_chain_is_put_together_on_an_8_bit_gray_canvas():
    blobs = {KEY.sha256: encode_levels(screen_levels(0)).data, UPDATE.sha256: STRIP}
    canvas = frames.compose([KEY, UPDATE], blobs.__getitem__)
    assert canvas.mode == "L" and canvas.size == (640, 400)
    expected = screen_levels(0)
    expected[:64, :64] = screen_levels(1)[:64, :64]
    assert np.array_equal(np.asarray(canvas), expected * 17)


# --- A few at once per process ------------------------------------------------------------------------


@pytest.fixture
def app(exam):
    return create_app({"data_dir": str(exam.data_dir)})


@pytest.fixture
def chain(app, exam):
    """A student's key image and one tile update, uploaded through the agent API: (session id, ids)."""
    client = app.test_client()
    enrolled = client.post(
        f"{API}/enrol",
        json={
            "student_number": exam.students[0],
            "join_code": exam.join_code,
            "agent_id": "agent-bounds-1",
            "agent_time": to_wire(utc_now()),
        },
        headers=PROTOCOL,
    ).get_json()
    auth = {**PROTOCOL, "Authorization": f"Bearer {enrolled['session_token']}"}
    key, strip = encode_levels(screen_levels(0)).data, STRIP
    for capture_id, body, update in (
        ("key-00000001", key, {}),
        ("upd-00000001", strip, {"base": "key-00000001", "tile": 64, "tiles": UPDATE.tile_map}),
    ):
        meta = {
            "monitor": 0,
            "agent_time": to_wire(utc_now() - timedelta(seconds=1)),
            "sha256": sha256(body),
            "width": 640,
            "height": 400,
            **update,
        }
        answer = client.put(
            f"{API}/captures/{capture_id}",
            data=body,
            headers={**auth, "Content-Type": "image/png", p.META_HEADER: json.dumps(meta)},
        )
        assert answer.status_code == 201, answer.get_json()
    return enrolled["session_id"], key


def test_a_screen_waits_its_turn_and_gives_up_after_the_wait(exam, chain):
    session_id, key = chain
    screens = Screens.of_data_dir(exam.data_dir)
    screens.reassembly_wait_s = 0.3
    store = db.connect(exam.data_dir)
    try:
        exam_screens = screens.exam(store, exam.exam_id)
        for _ in range(screens.reassemblies_at_once):
            assert screens.reassemblies.acquire(timeout=1)
        started = time.monotonic()
        with pytest.raises(ScreensBusy) as busy:
            exam_screens.screen(session_id, "upd-00000001")
        assert 0.25 <= time.monotonic() - started < 5
        assert busy.value.retry_after_s >= 1
        assert exam_screens.screen(session_id, "key-00000001") == key  # a whole screen needs no turn
        threading.Timer(0.1, screens.reassemblies.release).start()  # one turn comes free while it waits
        shown = Image.open(io.BytesIO(exam_screens.screen(session_id, "upd-00000001")))
        assert shown.size == (640, 400)
    finally:
        store.close()


def test_a_full_view_that_waits_too_long_answers_503_with_retry_after(app, exam, chain):
    session_id, _key = chain
    store = db.connect(exam.data_dir)
    try:
        users.create_user(store, "ivy", PASSWORD, ["invigilator"])
        users.assign(store, "ivy", "invigilator", hall_id=exam.hall_id)
    finally:
        store.close()
    staff = app.test_client()
    form = staff.get("/dashboard/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    login = staff.post(
        "/dashboard/login", data={"csrf_token": token, "username": "ivy", "password": PASSWORD}
    )
    assert login.status_code == 302
    screens = app.extensions["invigil"].screens
    screens.reassembly_wait_s = 0.2
    for _ in range(screens.reassemblies_at_once):
        assert screens.reassemblies.acquire(timeout=1)
    url = f"/dashboard/captures/{session_id}/upd-00000001/full"
    try:
        answer = staff.get(url)
        assert answer.status_code == 503
        assert int(answer.headers["Retry-After"]) >= 1
        assert answer.get_json()["error"]["code"] == "busy"
    finally:
        for _ in range(screens.reassemblies_at_once):
            screens.reassemblies.release()
    assert staff.get(url).status_code == 200
