"""Near-identical screens: changed captures that show what the one before them (on the same monitor) showed,
so the filmstrip and the queue draw a run of them as one item with its length, and a reviewer never steps
through 36 copies of the same question page.

A capture *repeats* the previous frame of its monitor when it has the same application and window title and
either the same image (its bytes or its thumbnail are identical) or it is a tile update whose changed tiles
cover less than :data:`SMALL_CHANGE` of the screen (a blinking cursor, a clock, a progress bar). Pure; the
tile shares come from :func:`tile_shares`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlite_utils

from hall_server.review.reports.timeline import Frame
from invigil import tiles
from invigil.protocol import ProtocolError

#: A tile update that changes less than this share of the screen is "the same screen".
SMALL_CHANGE = 0.05


def changed_share(tile: int, tile_map: str, width: int, height: int) -> float:
    """The share of the screen a tile update changed (1.0 when its map cannot be read: never guess small)."""
    rows, cols = tiles.grid(width, height, tile)
    try:
        return len(tiles.decode_map(tile_map, rows, cols)) / (rows * cols)
    except ProtocolError:  # stored only after the same check at ingest
        return 1.0


def tile_shares(db: sqlite_utils.Database, session_id: int) -> dict[str, float]:
    """capture id -> share of the screen its tile update changed, for the session's tile updates."""
    return {
        capture_id: changed_share(tile, tile_map, width, height)
        for capture_id, tile, tile_map, width, height in db.execute(
            "SELECT capture_id, tile, tile_map, width, height FROM capture WHERE session_id = ? "
            "AND base_capture_id IS NOT NULL AND tile IS NOT NULL",
            [session_id],
        )
    }


def repeats(frames: Sequence[Frame], shares: dict[str, float]) -> set[str]:
    """Capture ids of the frames that repeat the frame before them on their monitor."""
    previous: dict[int, Frame] = {}
    found: set[str] = set()
    for frame in sorted(frames, key=lambda f: (f.at, f.capture_id)):
        before = previous.get(frame.monitor)
        previous[frame.monitor] = frame
        if before is None or (frame.focused_app, frame.window_title) != (
            before.focused_app,
            before.window_title,
        ):
            continue
        same_image = frame.sha256 == before.sha256 or (
            frame.thumb_sha256 is not None and frame.thumb_sha256 == before.thumb_sha256
        )
        if same_image or shares.get(frame.capture_id, 1.0) < SMALL_CHANGE:
            found.add(frame.capture_id)
    return found
