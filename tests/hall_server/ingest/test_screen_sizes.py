"""A screen is no bigger than what the agent can send: once the student's agent reported its monitor layout,
a whole screen must have one of those monitors' sizes; and a tile update, and the screen it builds on, are
gray PNGs of at most 8 bits a pixel (what the agent sends), so the server can put any screen back
together at one byte a pixel. Refused uploads get 422 naming the problem and store nothing."""

from __future__ import annotations

import io
import json
import struct
import zlib
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image

from agent.encode import encode_levels
from hall_server.store import db
from invigil import protocol as p
from invigil import tiles
from invigil.timeutil import to_wire, utc_now

from support import png_bytes, sha256

API = p.API_PREFIX
PROTOCOL = {p.PROTOCOL_HEADER: str(p.PROTOCOL_VERSION)}


def rgba16_png(width: int, height: int) -> bytes:
    """A PNG of 16-bit RGBA (8 bytes a pixel once inflated), all black: tiny on the wire."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    squeeze = zlib.compressobj(9)
    row = b"\x00" * (1 + width * 8)
    data = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def rgb_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (20, 200, 40)).save(out, "PNG")
    return out.getvalue()


class Agent:
    def __init__(self, client, exam, student: int = 0) -> None:
        answer = client.post(
            f"{API}/enrol",
            json={
                "student_number": exam.students[student],
                "join_code": exam.join_code,
                "agent_id": f"agent-size-{student:02d}",
                "agent_time": to_wire(utc_now()),
            },
            headers=PROTOCOL,
        )
        assert answer.status_code == 201, answer.get_json()
        self.client, self.exam = client, exam
        self.auth = {**PROTOCOL, "Authorization": f"Bearer {answer.get_json()['session_token']}"}
        self.events = 0

    def monitors(self, *sizes: tuple[int, int], geometry: bool = True) -> None:
        self.events += 1
        detail: dict[str, object] = {"count": len(sizes)}
        if geometry:
            detail["geometry"] = [[1920 * n, 0, w, h] for n, (w, h) in enumerate(sizes)]
        event = {
            "id": f"mon-{self.events:07d}",
            "kind": "monitors",
            "agent_time": to_wire(utc_now()),
            "detail": detail,
        }
        answer = self.client.post(f"{API}/device-events", json={"events": [event]}, headers=self.auth)
        assert answer.status_code == 200, answer.get_json()

    def put(self, capture_id: str, body: bytes, width: int, height: int, **update) -> tuple[int, dict]:
        meta = {
            "monitor": 0,
            "agent_time": to_wire(utc_now() - timedelta(seconds=1)),
            "sha256": sha256(body),
            "width": width,
            "height": height,
            **update,
        }
        answer = self.client.put(
            f"{API}/captures/{capture_id}",
            data=body,
            headers={**self.auth, "Content-Type": "image/png", p.META_HEADER: json.dumps(meta)},
        )
        return answer.status_code, answer.get_json()


def stored(exam) -> tuple[list[str], list[str]]:
    store = db.connect(exam.data_dir)
    try:
        ids = [row[0] for row in store.execute("SELECT capture_id FROM capture ORDER BY rowid")]
    finally:
        store.close()
    files = sorted(str(path) for path in (exam.data_dir / "blobs").rglob("*") if path.is_file())
    return ids, files


def assert_refused(answer: tuple[int, dict], code: str) -> None:
    status, body = answer
    assert status == 422, body
    assert body["error"]["code"] == code and len(body["error"]["message"]) > 20, body


def test_a_screen_of_a_size_no_reported_monitor_has_is_refused(client, exam):
    agent = Agent(client, exam)
    agent.monitors((640, 400), (1280, 800))
    before = stored(exam)
    answer = agent.put("cap-0000wrong", png_bytes(320, 200, seed=1), 320, 200)
    assert_refused(answer, "unknown_screen_size")
    assert "640x400" in answer[1]["error"]["message"] and "320x200" in answer[1]["error"]["message"]
    assert stored(exam) == before
    assert agent.put("cap-000second", png_bytes(1280, 800, seed=2), 1280, 800)[0] == 201
    assert agent.put("cap-0000first", png_bytes(640, 400, seed=3), 640, 400)[0] == 201


def test_before_the_layout_is_reported_any_screen_within_the_cap_is_taken(client, exam):
    agent = Agent(client, exam)
    assert agent.put("cap-00000early", png_bytes(320, 200, seed=1), 320, 200)[0] == 201
    agent.monitors((320, 200), (640, 400), geometry=False)  # a layout without sizes bounds nothing
    assert agent.put("cap-0000later", png_bytes(400, 240, seed=2), 400, 240)[0] == 201


def test_a_layout_reported_in_an_earlier_session_of_the_student_counts(client, exam):
    Agent(client, exam).monitors((640, 400))
    again = Agent(client, exam)  # the agent crashed and the student joined again
    assert_refused(again.put("cap-00000wrong", png_bytes(320, 200, seed=1), 320, 200), "unknown_screen_size")
    assert again.put("cap-00000right", png_bytes(640, 400, seed=2), 640, 400)[0] == 201


def _update(levels: np.ndarray, base: str, tile: int, indices: list[int]) -> dict:
    rows, cols = tiles.grid(levels.shape[1], levels.shape[0], tile)
    return {"base": base, "tile": tile, "tiles": tiles.encode_map(indices, rows, cols)}


def test_a_tile_update_that_is_not_a_gray_png_is_refused(client, exam):
    agent = Agent(client, exam)
    levels = np.zeros((400, 640), dtype=np.uint8)
    assert agent.put("key-00000001", encode_levels(levels).data, 640, 400)[0] == 201
    before = stored(exam)
    answer = agent.put("upd-00000001", rgb_png(64, 64), 640, 400, **_update(levels, "key-00000001", 64, [0]))
    assert_refused(answer, "update_not_gray")
    assert stored(exam) == before


@pytest.mark.parametrize("key", [rgba16_png(640, 400), rgb_png(640, 400)], ids=["rgba16", "rgb"])
def test_a_tile_update_on_a_screen_that_is_not_a_gray_png_is_refused(client, exam, key):
    agent = Agent(client, exam)
    assert agent.put("key-0000colour", key, 640, 400)[0] == 201  # a whole screen in colour is still taken
    levels = np.zeros((400, 640), dtype=np.uint8)
    gray = encode_levels(levels[:64, :64]).data
    before = stored(exam)
    answer = agent.put("upd-00000001", gray, 640, 400, **_update(levels, "key-0000colour", 64, [0]))
    assert_refused(answer, "base_not_gray")
    assert stored(exam) == before


def test_a_retina_monitor_grabbed_at_two_pixels_a_point_is_taken(client, exam):
    """mss on macOS reports a Retina monitor in points and grabs it in pixels, twice each side."""
    agent = Agent(client, exam)
    agent.monitors((640, 400))
    assert agent.put("cap-00retina", png_bytes(1280, 800, seed=1), 1280, 800)[0] == 201
    assert_refused(
        agent.put("cap-000triple", png_bytes(1920, 1200, seed=2), 1920, 1200), "unknown_screen_size"
    )
