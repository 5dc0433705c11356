"""Putting a screen back together: a whole screen is its stored image; a tile update is the screen it builds
on with its changed tiles pasted in (the wire format is in ``invigil.tiles``).

The agent sends a whole screen (a *key image*) every few minutes and in between only the tiles that changed,
so a stored update is a small strip of tiles, not a picture of the screen. Whoever shows a capture to a
person reads it through ``hall_server.store.screens``, which asks here. The server bounds a chain to
``invigil.tiles.MAX_CHAIN`` updates, so a screen is one key image and at most that many small strips
(``bench/frames.py`` times it).

Memory is bounded too: the screen is put together on an 8-bit gray canvas of its own size, and each piece
is checked from its header before a pixel is inflated: a gray (or palette) PNG of at most 8 bits a pixel,
exactly as big as the chain says (the ingest admits nothing else into a chain). A view of an update costs
about two bytes a screen pixel: the canvas, and one strip or the 4-bit copy it is sent as.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import sqlite_utils
from PIL import Image

from invigil import tiles

#: Decrypts one blob of the exam by its sha256 (``BlobStore.get`` with the exam's key bound).
ReadBlob = Callable[[str], bytes]
#: Waits for this process's turn to put a screen together (``ExamScreens``: a semaphore), or raises.
Turn = Callable[[], AbstractContextManager[object]]
GRAY16_PALETTE = [level * 17 for level in range(16) for _ in range(3)]
#: Pillow modes of the PNGs a chain may hold: one byte a pixel or less once inflated.
_GRAY_MODES = ("1", "L", "P")
#: What Pillow raises for a body it cannot read (a bomb's warning is turned into an error).
_UNREADABLE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning)
#: A screen-sized image in one allocation rather than Pillow's 16 MB blocks: glibc serves one over 32 MB
#: from mmap and gives it back to the system when freed, where blocks would stay behind in the allocation
#: arena of whichever server thread freed them (measured: a worker's peak fell from ~280 to ~230 MB in
#: tests/hall_server/store/test_full_view_memory.py).
_IMAGE_BLOCK_BYTES = 64 * 1024 * 1024
Image.core.set_block_size(max(Image.core.get_block_size(), _IMAGE_BLOCK_BYTES))


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


def _open_gray(body: bytes, size: tuple[int, int], capture_id: str) -> Image.Image:
    """One piece of a chain as an 8-bit gray image, once its header says it is a gray (or palette) PNG of
    at most 8 bits and exactly ``size``: anything else is refused before a pixel is inflated."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(body), formats=["PNG"])
            if image.mode not in _GRAY_MODES:
                raise ScreenUnavailable(
                    f"image {capture_id} is {image.mode}, not a gray PNG of at most 8 bits: "
                    "a screen is put together only from those"
                )
            if image.size != size:
                raise ScreenUnavailable(
                    f"image {capture_id} is {image.size[0]}x{image.size[1]}, not the {size[0]}x{size[1]} "
                    "its place in the chain needs"
                )
            image.load()
        except ScreenUnavailable:
            raise
        except _UNREADABLE:
            raise ScreenUnavailable(f"image {capture_id} cannot be read as a PNG") from None
    return image if image.mode == "L" else image.convert("L")


def compose(pieces: list[Piece], read: ReadBlob, canvas: Image.Image | None = None) -> Image.Image:
    """The screen the last piece shows, as an 8-bit gray image (its values are the 16 levels times 17).

    Without ``canvas`` the first piece is the key image; with it, ``canvas`` is the screen just before
    the first piece (which must then be an update). One strip is held at a time beside the canvas."""
    if canvas is None:
        key, pieces = pieces[0], pieces[1:]
        canvas = _open_gray(read(key.sha256), (key.width, key.height), key.capture_id)
    for piece in pieces:
        assert piece.tile is not None and piece.tile_map is not None
        rows, cols = tiles.grid(piece.width, piece.height, piece.tile)
        indices = tiles.decode_map(piece.tile_map, rows, cols)
        size = tiles.packed_size(len(indices), cols, piece.tile)
        packed = _open_gray(read(piece.sha256), size, piece.capture_id)
        for slot, index in enumerate(indices):
            left, top, right, bottom = tiles.screen_box(index, cols, piece.tile, piece.width, piece.height)
            x, y = tiles.packed_position(slot, len(indices), cols, piece.tile)
            canvas.paste(packed.crop((x, y, x + right - left, y + bottom - top)), (left, top))
        del packed  # before the next strip is inflated
    return canvas


def png_gray16(image: Image.Image) -> bytes:
    """An 8-bit gray image of 16 levels (multiples of 17) as a 4-bit PNG, as small as the agent's own."""
    levels = image.point([value // 17 for value in range(256)])
    levels.putpalette(GRAY16_PALETTE)  # L becomes P in place: no second copy of the screen
    out = io.BytesIO()
    levels.save(out, "PNG", bits=4, compress_level=6)
    return out.getvalue()


def screen_png(
    db: sqlite_utils.Database,
    session_id: int,
    capture_id: str,
    read: ReadBlob,
    composer: Composer | None = None,
    turn: Turn = contextlib.nullcontext,
) -> bytes:
    """What the screen showed at capture ``capture_id``, as a PNG.

    A key image comes back byte for byte as stored; an update is put together from its chain (``composer``
    remembers the last screen it made, so walking a session in order costs one small strip per update),
    within ``turn``. Raises :class:`ScreenUnavailable` when a piece is missing or is no gray PNG of its
    size; ``read`` raises what the blob store raises, ``turn`` what it raises when no turn comes.
    """
    pieces = chain_of(db, session_id, capture_id)
    if len(pieces) == 1:
        return read(pieces[0].sha256)
    with turn():
        image = (composer or Composer()).compose(pieces, read)
        return png_gray16(image)


class Composer:
    """Puts screens together, starting from the last one it made when that lies on the new one's chain.

    It carries on painting that last screen in place (no copy of it is made), so a screen it returned is
    good until its next call."""

    def __init__(self) -> None:
        self._last: tuple[int, str, Image.Image] | None = None

    def compose(self, pieces: list[Piece], read: ReadBlob) -> Image.Image:
        start = 0
        canvas: Image.Image | None = None
        last, self._last = self._last, None  # a compose that fails half way leaves nothing to build on
        if last is not None:
            ids = [(piece.session_id, piece.capture_id) for piece in pieces]
            if last[:2] in ids:
                start = ids.index(last[:2]) + 1
                canvas = last[2]
        del last
        image = compose(pieces[start:], read, canvas)
        self._last = (pieces[-1].session_id, pieces[-1].capture_id, image)
        return image
