"""Putting a screen back together: a whole screen is its stored image; a tile update is the screen it builds
on with its changed tiles pasted in (the wire format is in ``invigil.tiles``).

The agent sends a whole screen (a *key image*) every few minutes and in between only the tiles that changed,
so a stored update is a small strip of tiles, not a picture of the screen. Whoever shows a capture to a
person reads it through ``hall_server.store.screens``, which asks here. The server bounds a chain to
``invigil.tiles.MAX_CHAIN`` updates, so a screen is one key image and at most that many small strips
(``bench/frames.py`` times it).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils
from PIL import Image

from invigil import tiles

#: Decrypts one blob of the exam by its sha256 (``BlobStore.get`` with the exam's key bound).
ReadBlob = Callable[[str], bytes]
GRAY16_PALETTE = [level * 17 for level in range(16) for _ in range(3)]


class ScreenUnavailable(LookupError):
    """A capture, or an image it builds on, is not stored (deleted by retention, or never sent)."""


@dataclass(frozen=True)
class Piece:
    """One stored image of a chain: the key image (``base`` None) or a tile update of it."""

    session_id: int
    capture_id: str
    sha256: str
    base: str | None
    tile: int | None
    tile_map: str | None
    width: int
    height: int


#: A capture and, link by link, the images it builds on (each in its base's session), newest first.
_CHAIN_QUERY = """
WITH RECURSIVE link(session_id, capture_id, sha256, base, base_session, tile, tile_map, width, height, n) AS (
    SELECT session_id, capture_id, sha256, base_capture_id, base_session_id, tile, tile_map, width, height, 0
    FROM capture WHERE session_id = ? AND capture_id = ? AND changed = 1
    UNION ALL
    SELECT c.session_id, c.capture_id, c.sha256, c.base_capture_id, c.base_session_id, c.tile, c.tile_map,
           c.width, c.height, link.n + 1
    FROM capture c JOIN link ON c.session_id = link.base_session AND c.capture_id = link.base
    WHERE c.changed = 1 AND link.n <= ?
)
SELECT session_id, capture_id, sha256, base, tile, tile_map, width, height FROM link ORDER BY n DESC
"""


def chain_of(db: sqlite_utils.Database, session_id: int, capture_id: str) -> list[Piece]:
    """The key image and the updates up to ``capture_id``, oldest first (a base may lie in an earlier
    session of the same student: ``base_session_id``)."""
    rows = db.execute(_CHAIN_QUERY, [session_id, capture_id, tiles.MAX_CHAIN]).fetchall()
    if not rows:
        raise ScreenUnavailable(f"capture {capture_id} is not stored")
    pieces = [Piece(*row) for row in rows]
    if pieces[0].base is not None:
        raise ScreenUnavailable(f"capture {capture_id} builds on {pieces[0].base}, which is not stored")
    return pieces


def _open_gray(body: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(body))
    image.load()
    return image if image.mode == "L" else image.convert("L")


def compose(pieces: list[Piece], read: ReadBlob, canvas: Image.Image | None = None) -> Image.Image:
    """The screen the last piece shows, as an 8-bit gray image (its values are the 16 levels times 17).

    Without ``canvas`` the first piece is the key image; with it, ``canvas`` is the screen just before
    the first piece (which must then be an update)."""
    if canvas is None:
        canvas, pieces = _open_gray(read(pieces[0].sha256)), pieces[1:]
    for piece in pieces:
        assert piece.tile is not None and piece.tile_map is not None
        rows, cols = tiles.grid(piece.width, piece.height, piece.tile)
        indices = tiles.decode_map(piece.tile_map, rows, cols)
        packed = _open_gray(read(piece.sha256))
        for slot, index in enumerate(indices):
            left, top, right, bottom = tiles.screen_box(index, cols, piece.tile, piece.width, piece.height)
            x, y = tiles.packed_position(slot, len(indices), cols, piece.tile)
            canvas.paste(packed.crop((x, y, x + right - left, y + bottom - top)), (left, top))
    return canvas


def png_gray16(image: Image.Image) -> bytes:
    """An 8-bit gray image of 16 levels (multiples of 17) as a 4-bit PNG, as small as the agent's own."""
    levels = image.point([value // 17 for value in range(256)])
    indexed = Image.frombytes("P", levels.size, levels.tobytes())
    indexed.putpalette(GRAY16_PALETTE)
    out = io.BytesIO()
    indexed.save(out, "PNG", bits=4, compress_level=6)
    return out.getvalue()


def screen_png(
    db: sqlite_utils.Database,
    session_id: int,
    capture_id: str,
    read: ReadBlob,
    composer: Composer | None = None,
) -> bytes:
    """What the screen showed at capture ``capture_id``, as a PNG.

    A key image comes back byte for byte as stored; an update is put together from its chain (``composer``
    remembers the last screen it made, so walking a session in order costs one small strip per update).
    Raises :class:`ScreenUnavailable` when a piece is missing; ``read`` raises what the blob store raises.
    """
    pieces = chain_of(db, session_id, capture_id)
    if len(pieces) == 1:
        return read(pieces[0].sha256)
    image = (composer or Composer()).compose(pieces, read)
    return png_gray16(image)


class Composer:
    """Puts screens together, starting from the last one it made when that lies on the new one's chain."""

    def __init__(self) -> None:
        self._last: tuple[int, str, Image.Image] | None = None

    def compose(self, pieces: list[Piece], read: ReadBlob) -> Image.Image:
        start = 0
        canvas: Image.Image | None = None
        if self._last is not None:
            ids = [(piece.session_id, piece.capture_id) for piece in pieces]
            if self._last[:2] in ids:
                start = ids.index(self._last[:2]) + 1
                canvas = self._last[2].copy()
        image = compose(pieces[start:], read, canvas)
        self._last = (pieces[-1].session_id, pieces[-1].capture_id, image)
        return image
