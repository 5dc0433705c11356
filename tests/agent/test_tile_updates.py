"""Tile updates end to end: the real agent capture loop and uploader against the real server under gunicorn,
the server putting every screen back together pixel for pixel, and bad updates refused storing nothing."""

from __future__ import annotations

import hashlib
import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from agent.capture import CaptureLoop, CaptureSettings, new_record_id
from agent.encode import encode_levels, quantise_gray4
from agent.grab import MonitorFrame
from agent.spool import Spool, key_from_wire
from agent.transport import HallClient, Refused
from agent.updates import pack_tiles
from agent.uploader import Uploader
from hall_server.store import chain, db, frames
from invigil import tiles
from invigil.payloads import CaptureMeta, Enrolment
from invigil.timeutil import utc_now

from agent_screens import PARAGRAPHS, render_page
from support import stored_screen

WORDS = PARAGRAPHS[1].split()


class TypingScreen:
    """A 1280x800 exam page on which ``step()`` types eight more words."""

    def __init__(self) -> None:
        self.words = 4

    def step(self) -> None:
        self.words = min(len(WORDS), self.words + 8)

    def __call__(self) -> list[MonitorFrame]:
        page = render_page((PARAGRAPHS[0], " ".join(WORDS[: self.words])), clock=f"10:{self.words:02d}")
        return [MonitorFrame(0, 0, 0, 1280, 800, page)]


def type_and_capture(loop: CaptureLoop, screen: TypingScreen, ticks: int) -> dict[str, np.ndarray]:
    """Tick the loop ``ticks`` times, typing between ticks; the gray levels the agent saw, per image sent."""
    seen: dict[str, np.ndarray] = {}
    for _ in range(ticks):
        outcome = loop.tick()[0]
        if outcome.kind == "image":
            seen[outcome.record_id] = quantise_gray4(screen()[0].rgb)
        screen.step()
    return seen


def enrolled(url: str, exam, student: str = "s0001") -> tuple[HallClient, int]:
    client, answer = enrolment(url, exam, student)
    return client, answer["session_id"]


def enrolment(url: str, exam, student: str = "s0001") -> tuple[HallClient, dict]:
    client = HallClient(url, timeout_s=5)
    answer = client.enrol(Enrolment(student, exam.join_code, new_record_id(), utc_now()))
    assert answer["tile_updates"] == {"tiles": list(tiles.TILE_SIDES), "max_chain": tiles.MAX_CHAIN}
    return client, answer


def rows(exam, sql: str, *args) -> list[tuple]:
    store = db.connect(exam.data_dir)
    try:
        return store.execute(sql, args).fetchall()
    finally:
        store.close()


def test_every_screen_the_server_puts_back_together_is_the_one_the_agent_saw(exam, live_server, tmp_path):
    client, session_id = enrolled(live_server.url, exam)
    spool = Spool(tmp_path / "spool")
    screen = TypingScreen()
    loop = CaptureLoop(screen, spool, CaptureSettings(max_chain=3))
    seen = type_and_capture(loop, screen, 6)
    assert Uploader(client, spool, new_id=new_record_id).drain(30)
    stored = rows(exam, "SELECT capture_id, base_capture_id, chain_depth FROM capture WHERE changed = 1")
    assert [r[0] for r in stored] == list(seen)
    assert [r[2] for r in stored] == [0, 1, 2, 3, 0, 1]  # a whole screen after three updates
    assert all((r[1] is None) == (r[2] == 0) for r in stored)
    for capture_id, levels in seen.items():
        assert np.array_equal(np.asarray(stored_screen(exam, session_id, capture_id)), levels * 17)
    store = db.connect(exam.data_dir)
    try:
        assert chain.verify_store(store).ok  # updates are in the hash chain with their tile fields
        store.execute(
            "UPDATE capture SET tile_map = ? WHERE chain_depth = 2", [tiles.encode_map([0], 13, 20)]
        )
        result = chain.verify_store(store)
        assert len(result.breaks) == 1 and result.breaks[0].seq == 3
    finally:
        store.close()


def whole(levels: np.ndarray) -> tuple[CaptureMeta, bytes]:
    image = encode_levels(levels)
    return CaptureMeta(0, utc_now(), image.sha256, levels.shape[1], levels.shape[0]), image.data


def update(levels: np.ndarray, base: str, indices: list[int], tile: int = 64, **changes) -> tuple:
    image = encode_levels(pack_tiles(levels, indices, tile))
    rows_, cols = tiles.grid(levels.shape[1], levels.shape[0], tile)
    fields = {
        "monitor": 0,
        "agent_time": utc_now(),
        "sha256": image.sha256,
        "width": levels.shape[1],
        "height": levels.shape[0],
        "base": base,
        "tile": tile,
        "tiles": tiles.encode_map(indices, rows_, cols),
    }
    fields.update(changes)
    return CaptureMeta(**fields), image.data


@pytest.fixture
def levels() -> np.ndarray:
    return quantise_gray4(render_page(PARAGRAPHS, size=(640, 400), origin=(20, 40)))


def refused(call) -> Refused:
    with pytest.raises(Refused) as caught:
        call()
    return caught.value


def test_bad_updates_are_refused_by_name_and_store_nothing(exam, live_server, levels):
    client, _session = enrolled(live_server.url, exam)
    other, _ = enrolled(live_server.url, exam, "s0002")
    assert client.put_capture("key-0000001", *whole(levels), "image/png")
    assert other.put_capture("key-0000002", *whole(levels), "image/png")
    blobs_before = sorted(p.name for p in (exam.data_dir / "blobs").rglob("*") if p.is_file())
    cases = {
        "unknown_base": update(levels, "never-stored-1", [0]),
        "another session's base": update(levels, "key-0000002", [0]),
        "another monitor": update(levels, "key-0000001", [0], monitor=1),
        "another screen size": update(levels, "key-0000001", [0], width=630),  # same tile grid
    }
    for name, (meta, body) in cases.items():
        error = refused(lambda m=meta, b=body: client.put_capture("upd-0000001", m, b, "image/png"))
        assert (error.status, error.code) == (409, "unknown_base"), name
        assert "send the whole screen" in error.message
    meta, body = update(levels, "key-0000001", [0, 1])
    short = update(levels, "key-0000001", [0])[1]  # one tile's image for a map of two
    wrong = replace(meta, sha256=hashlib.sha256(short).hexdigest())
    error = refused(lambda: client.put_capture("upd-0000002", wrong, short, "image/png"))
    assert (error.status, error.code) == (422, "dimension_mismatch")
    assert rows(exam, "SELECT count(*) FROM capture") == [(2,)]
    assert sorted(p.name for p in (exam.data_dir / "blobs").rglob("*") if p.is_file()) == blobs_before
    assert client.put_capture("upd-0000003", meta, body, "image/png")  # the good one still goes in


def test_a_chain_longer_than_the_server_allows_is_refused(exam, client, levels):
    protocol = {"X-Invigil-Protocol": "1"}
    answer = client.post(
        "/api/v1/enrol",
        json=Enrolment("s0001", exam.join_code, new_record_id(), utc_now()).as_wire(),
        headers=protocol,
    ).get_json()
    headers = {**protocol, "Authorization": f"Bearer {answer['session_token']}"}

    def put(capture_id: str, meta: CaptureMeta, body: bytes):
        return client.put(
            f"/api/v1/captures/{capture_id}",
            data=body,
            headers={**headers, "X-Invigil-Meta": meta.as_header(), "Content-Type": "image/png"},
        )

    assert put("link-000000", *whole(levels)).status_code == 201
    current = levels.copy()
    for n in range(1, tiles.MAX_CHAIN + 2):
        current[0, n % 64] = (current[0, n % 64] + 1) % 16
        response = put(f"link-{n:06d}", *update(current, f"link-{n - 1:06d}", [0]))
        if n <= tiles.MAX_CHAIN:
            assert response.status_code == 201, response.get_json()
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "chain_too_long"
    assert rows(exam, "SELECT max(chain_depth), count(*) FROM capture") == [
        (tiles.MAX_CHAIN, tiles.MAX_CHAIN + 1)
    ]


def test_a_screen_whose_key_image_is_gone_is_unavailable_not_wrong(exam, live_server, levels):
    client, session_id = enrolled(live_server.url, exam)
    assert client.put_capture("key-0000001", *whole(levels), "image/png")
    assert client.put_capture("upd-0000001", *update(levels, "key-0000001", [3]), "image/png")
    store = db.connect(exam.data_dir)
    try:
        store.execute("DELETE FROM capture WHERE capture_id = 'key-0000001'")
        with pytest.raises(frames.ScreenUnavailable, match="key-0000001"):
            frames.screen_png(store, session_id, "upd-0000001", lambda sha: b"")
    finally:
        store.close()


def test_a_put_together_screen_is_a_4_bit_png_of_the_same_pixels(levels):
    image = Image.fromarray(levels * 17, "L")
    body = frames.png_gray16(image)
    decoded = Image.open(io.BytesIO(body))
    assert decoded.mode == "P" and np.array_equal(np.asarray(decoded.convert("L")), levels * 17)
    assert len(body) < len(encode_levels(levels).data) * 1.5


def test_after_a_crash_the_new_session_drains_updates_built_on_the_old_one(exam, live_server, tmp_path):
    first, answer = enrolment(live_server.url, exam)
    old_session = answer["session_id"]
    spool = Spool(tmp_path / "spool", key=key_from_wire(answer["spool_key"]))
    screen = TypingScreen()
    loop = CaptureLoop(screen, spool)
    seen = type_and_capture(loop, screen, 4)
    uploader = Uploader(first, spool, new_id=new_record_id)
    assert uploader.send_one() and uploader.send_one()  # the whole screen and its thumbnail, then a crash
    del spool, loop, uploader  # the key was in memory only
    second, answer = enrolment(live_server.url, exam)  # the student joins again and gets the key back
    new_session = answer["session_id"]
    reopened = Spool(tmp_path / "spool", key=key_from_wire(answer["spool_key"]))
    assert reopened.leftovers_deleted == 0 and len(reopened) > 0
    assert Uploader(second, reopened, new_id=new_record_id).drain(30)
    stored = rows(exam, "SELECT session_id, capture_id, base_session_id FROM capture WHERE changed = 1")
    assert [r[1] for r in stored] == list(seen)
    assert stored[0][0] == old_session and {r[0] for r in stored[1:]} == {new_session}
    assert {r[2] for r in stored[1:]} <= {old_session, new_session} and stored[1][2] == old_session
    for session_id, capture_id, _base_session in stored:
        assert np.array_equal(np.asarray(stored_screen(exam, session_id, capture_id)), seen[capture_id] * 17)
