"""Tile updates: which tiles of the 4-bit screen changed since the image last sent, packed for upload (pure).

Per monitor, the gray levels (0..15) of what the hall server now holds for that screen are kept; each changed
screen is compared with them (:func:`changed_tiles`) and, when few enough tiles changed, its changed tiles are
packed (:func:`pack_tiles`). The comparison is on the quantised levels at full resolution, not on the change
test's thumbnail: so the screen the server puts back together (``hall_server.store.frames``) is exactly the
one a whole-screen image would have carried, pixel for pixel. The wire format is in ``invigil.tiles``.
"""

from __future__ import annotations

import numpy as np

from invigil import tiles as t


def changed_tiles(previous: np.ndarray, current: np.ndarray, tile: int) -> list[int]:
    """Row-major numbers of the ``tile``-pixel tiles where two level planes of one shape differ.

    One row of tiles at a time, so no full-screen mask is made (it would add 2 MB to the agent's peak RSS
    at 1080p).
    """
    if previous.shape != current.shape:
        raise ValueError(f"planes of different shapes: {previous.shape} and {current.shape}")
    height, width = current.shape
    starts = np.arange(0, width, tile)
    found: list[int] = []
    for row, top in enumerate(range(0, height, tile)):
        columns = (previous[top : top + tile] != current[top : top + tile]).any(axis=0)
        if columns.any():
            cols = np.logical_or.reduceat(columns, starts)
            found.extend(int(row * len(starts) + c) for c in np.flatnonzero(cols))
    return found


def pack_tiles(levels: np.ndarray, indices: list[int], tile: int) -> np.ndarray:
    """The tiles ``indices`` of ``levels`` packed as ``invigil.tiles`` lays them out (zero-padded)."""
    if not indices:
        raise ValueError("no tile to pack")
    height, width = levels.shape
    _rows, cols = t.grid(width, height, tile)
    packed_w, packed_h = t.packed_size(len(indices), cols, tile)
    packed = np.zeros((packed_h, packed_w), dtype=np.uint8)
    for slot, index in enumerate(indices):
        left, top, right, bottom = t.screen_box(index, cols, tile, width, height)
        x, y = t.packed_position(slot, len(indices), cols, tile)
        packed[y : y + bottom - top, x : x + right - left] = levels[top:bottom, left:right]
    return packed


def apply_tiles(levels: np.ndarray, packed: np.ndarray, indices: list[int], tile: int) -> np.ndarray:
    """``levels`` with the packed tiles put back in place (a new array): the inverse of :func:`pack_tiles`.

    What the hall server does with an update, here for the agent's tests and the benchmark's check.
    """
    height, width = levels.shape
    _rows, cols = t.grid(width, height, tile)
    out = levels.copy()
    for slot, index in enumerate(indices):
        left, top, right, bottom = t.screen_box(index, cols, tile, width, height)
        x, y = t.packed_position(slot, len(indices), cols, tile)
        out[top:bottom, left:right] = packed[y : y + bottom - top, x : x + right - left]
    return out
