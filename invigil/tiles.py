"""Tile updates: which tiles of a screen an image carries, and where each sits in that image (pure, stdlib).

A screen of ``width`` x ``height`` pixels is cut into square tiles of ``tile`` pixels, row-major; the last row
and column may be cut short by the screen's edge. A *tile update* is a capture that carries only the tiles
that changed since the capture it updates (its *base*). The agent sends the tile numbers as a **tile map**:
one bit per tile in row-major order, most significant bit first, as unpadded URL-safe base64. The body is a
4-bit grayscale PNG of the changed tiles packed row-major into a grid as wide as the screen's grid (so a
whole changed row of tiles sits exactly as it does on screen), each tile at full size, zero-padded where the
screen's edge cut it.

Both sides import this module: the agent to pack and describe an update, the hall server to check the
metadata (``invigil.payloads``) and to put screens back together (``hall_server.store.frames``).
"""

from __future__ import annotations

import base64
import binascii
import math

from invigil.protocol import ProtocolError

#: Tile sides an agent may use.
TILE_SIDES = (16, 32, 64, 128, 256)
#: At most this many updates in a row build on one whole screen; the server refuses a longer chain.
MAX_CHAIN = 120


def grid(width: int, height: int, tile: int) -> tuple[int, int]:
    """(rows, columns) of tiles covering a ``width`` x ``height`` screen."""
    return math.ceil(height / tile), math.ceil(width / tile)


def encode_map(indices: list[int], rows: int, cols: int) -> str:
    """The tile map of the row-major tile numbers ``indices`` on a ``rows`` x ``cols`` grid."""
    bits = bytearray(math.ceil(rows * cols / 8))
    for index in indices:
        if not 0 <= index < rows * cols:
            raise ValueError(f"tile {index} is outside a {rows}x{cols} grid")
        bits[index >> 3] |= 0x80 >> (index & 7)
    return base64.urlsafe_b64encode(bytes(bits)).rstrip(b"=").decode("ascii")


def decode_map(text: str, rows: int, cols: int) -> list[int]:
    """Row-major tile numbers of a tile map; :class:`ProtocolError` when it does not fit the grid."""
    count = rows * cols
    try:
        bits = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("bad_tiles", "field 'tiles' is not URL-safe base64") from None
    if len(bits) != math.ceil(count / 8):
        raise ProtocolError(
            "bad_tiles", f"field 'tiles' has {len(bits) * 8} bits; a {rows}x{cols} tile grid needs {count}"
        )
    indices = [i for i in range(count) if bits[i >> 3] & (0x80 >> (i & 7))]
    spare = len(bits) * 8 - count
    if spare and bits[-1] & ((1 << spare) - 1):
        raise ProtocolError("bad_tiles", "field 'tiles' marks tiles beyond the screen's edge")
    if not indices:
        raise ProtocolError("bad_tiles", "field 'tiles' marks no tile: send an unchanged record instead")
    return indices


def packed_size(count: int, cols: int, tile: int) -> tuple[int, int]:
    """(width, height) in pixels of the image that carries ``count`` tiles of a grid ``cols`` tiles wide."""
    per_row = min(count, cols)
    return per_row * tile, math.ceil(count / per_row) * tile


def packed_position(slot: int, count: int, cols: int, tile: int) -> tuple[int, int]:
    """(left, top) in the packed image of the ``slot``-th tile it carries (slots follow the tile map)."""
    per_row = min(count, cols)
    return (slot % per_row) * tile, (slot // per_row) * tile


def screen_box(index: int, cols: int, tile: int, width: int, height: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) on screen of tile ``index``, cut at the screen's edge."""
    left, top = (index % cols) * tile, (index // cols) * tile
    return left, top, min(left + tile, width), min(top + tile, height)
