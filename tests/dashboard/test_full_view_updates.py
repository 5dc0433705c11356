"""The full-size view of a tile update shows the whole screen it leaves, put back together by the server;
and it stays behind the same access check and audit as any capture."""

from __future__ import annotations

import io
import sqlite3

import numpy as np
from PIL import Image
from simagents import SimAgent
from staffclient import staff_session

from agent.encode import encode_levels
from agent.updates import changed_tiles, pack_tiles
from invigil import tiles
from invigil.payloads import CaptureMeta
from invigil.timeutil import utc_now


def screen(seed: int) -> np.ndarray:
    """A 640x400 plane of gray levels: stripes, and a block that moves with ``seed``."""
    levels = np.tile(np.arange(16, dtype=np.uint8).repeat(40), (400, 1))
    levels[100:140, 60 * seed : 60 * seed + 90] = 0
    return levels


def test_a_tile_update_is_shown_whole_to_the_invigilator_and_hidden_from_others(server, halls):
    hall_a, _hall_b = halls
    agent = SimAgent(server.url, hall_a.students[0], hall_a.join_code).enrol()
    ids = ["key-0000000001", "upd-0000000001", "upd-0000000002"]
    key = encode_levels(screen(0))
    agent.client.put_capture(ids[0], CaptureMeta(0, utc_now(), key.sha256, 640, 400), key.data, "image/png")
    for n in (1, 2):
        indices = changed_tiles(screen(n - 1), screen(n), 64)
        body = encode_levels(pack_tiles(screen(n), indices, 64))
        meta = CaptureMeta(
            0,
            utc_now(),
            body.sha256,
            640,
            400,
            base=ids[n - 1],
            tile=64,
            tiles=tiles.encode_map(indices, 7, 10),
        )
        assert agent.client.put_capture(ids[n], meta, body.data, "image/png")
    anna, ben = staff_session(server.url, "anna"), staff_session(server.url, "ben")
    url = f"{server.url}/dashboard/captures/{agent.session_id}/{ids[2]}/full"
    answer = anna.get(url)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png"
    shown = np.asarray(Image.open(io.BytesIO(answer.content)).convert("L"))
    assert np.array_equal(shown, screen(2) * 17)
    assert ben.get(url).status_code == 404  # not his hall: the same answer as for no such capture
    with sqlite3.connect(hall_a.data_dir / "invigil.db") as db:
        audited = db.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'view_capture' AND detail LIKE ?", [f"%{ids[2]}%"]
        ).fetchone()
    assert audited == (1,)
