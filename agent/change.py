"""Decide whether a screen changed enough to send a new image, on a small grayscale thumbnail (pure).

Each new grab is compared (:func:`compare`) with the thumbnail of the last image *sent* for that monitor, not
with the previous grab. That matters: slow typing accumulates until it crosses the threshold, while a blinking
cursor or a ticking clock stays confined to its few tiles however long it runs, so it never does.

A thumbnail is the block mean of luma over ``scale`` x ``scale`` screen pixels. A thumbnail pixel "differs"
when its gray value moved by more than ``pixel_threshold``; a tile (``tile`` x ``tile`` thumbnail pixels)
changed when at least ``tile_min_pixels`` of its pixels differ. The screen changed when enough thumbnail
pixels differ in total, or when changes are scattered over enough tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from agent.encode import luma


@dataclass(frozen=True)
class ChangeParams:
    """Thresholds of the change test; the defaults are for 1/8 thumbnails of 1080p-class screens."""

    #: Thumbnail pixel = mean of scale x scale screen pixels.
    scale: int = 8
    #: A thumbnail pixel differs when its gray value moved by more than this (0..255).
    pixel_threshold: int = 10
    #: Tile side in thumbnail pixels (8 at scale 8 is 64 x 64 screen pixels).
    tile: int = 8
    #: A tile changed when at least this many of its thumbnail pixels differ.
    tile_min_pixels: int = 2
    #: The screen changed when at least this many thumbnail pixels differ (64 is about 4096 screen
    #: pixels of changed area: one changed line of text; a cursor touches <= 8, a clock about 30) ...
    min_changed_pixels: int = 64
    #: ... or when at least this many tiles changed (a few words edited across a page).
    min_changed_tiles: int = 6


DEFAULT_PARAMS = ChangeParams()


@dataclass(frozen=True)
class ChangeResult:
    """The verdict of :func:`compare`, with the changed tiles for sending only those later."""

    changed: bool
    changed_pixels: int
    #: (row, column) of each changed tile, row-major.
    changed_tiles: tuple[tuple[int, int], ...]
    #: Tile side in screen pixels.
    tile_px: int
    reason: str = ""

    def tile_boxes(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """Screen rectangles (left, top, width, height) of the changed tiles, clipped to the screen."""
        boxes = []
        for row, col in self.changed_tiles:
            left, top = col * self.tile_px, row * self.tile_px
            if left < width and top < height:
                boxes.append((left, top, min(self.tile_px, width - left), min(self.tile_px, height - top)))
        return boxes


def thumbnail(image: np.ndarray, scale: int = DEFAULT_PARAMS.scale) -> np.ndarray:
    """RGB (h, w, 3) or gray (h, w) uint8 -> (h // scale, w // scale) uint8 block-mean luma.

    Made once per grab. The last ``h % scale`` rows and ``w % scale`` columns are left out (at most
    ``scale - 1`` pixels at the right and bottom edge).
    """
    if scale < 1:
        raise ValueError("scale must be at least 1")
    if image.ndim == 3 and scale > 1 and image.shape[0] >= scale and image.shape[1] >= scale:
        return _thumbnail_rgb(image, scale)
    gray = image if image.ndim == 2 else luma(image)
    rows, cols = gray.shape[0] // scale, gray.shape[1] // scale
    if rows == 0 or cols == 0:
        raise ValueError(f"a {gray.shape[1]}x{gray.shape[0]} image is smaller than one {scale}px block")
    blocks = gray[: rows * scale, : cols * scale].reshape(rows, scale, cols, scale)
    # uint32 sums: exact for any scale a screen can have; then round to nearest.
    sums = blocks.sum(axis=(1, 3), dtype=np.uint32)
    area = scale * scale
    return ((sums + area // 2) // area).astype(np.uint8)


def _thumbnail_rgb(rgb: np.ndarray, scale: int) -> np.ndarray:
    """Block-mean each colour with Pillow's C ``reduce``, then luma on the small image.

    Luma is linear, so the mean of luma equals the luma of the means (up to one gray level of rounding);
    this is about three times faster than luma over every screen pixel, which matters for the many
    unchanged frames (``bench/agent.py``).
    """
    rows, cols = rgb.shape[0] // scale, rgb.shape[1] // scale
    block = np.ascontiguousarray(rgb[: rows * scale, : cols * scale, :3])
    small = np.asarray(Image.fromarray(block, "RGB").reduce(scale))
    return luma(small)


def thumbnail_bgrx(bgrx: np.ndarray, scale: int = DEFAULT_PARAMS.scale) -> np.ndarray:
    """mss-style (h, w, 4) BGRX uint8 -> the same thumbnail :func:`thumbnail` makes of the RGB pixels.

    The path of every grab, changed or not, so it must be cheap: Pillow views the grabbed bytes as an
    "RGBX" image without copying them and block-means the four channels in one C pass; luma is then taken
    on the small image with the channels put back in R, G, B order. No full-resolution RGB or luma is made,
    so an unchanged frame costs little more than the grab (``bench/agent.py``).
    """
    if bgrx.ndim != 3 or bgrx.shape[2] != 4 or bgrx.dtype != np.uint8:
        raise ValueError(f"expected an (h, w, 4) uint8 array, got {bgrx.shape} {bgrx.dtype}")
    if scale < 1:
        raise ValueError("scale must be at least 1")
    height, width = bgrx.shape[:2]
    rows, cols = height // scale, width // scale
    if rows == 0 or cols == 0:
        raise ValueError(f"a {width}x{height} image is smaller than one {scale}px block")
    view = Image.frombuffer("RGBX", (width, height), np.ascontiguousarray(bgrx), "raw", "RGBX", 0, 1)
    small = np.asarray(view.reduce(scale, box=(0, 0, cols * scale, rows * scale)))
    return luma(small[..., 2::-1])  # stored B, G, R, X


def changed_bands(previous: np.ndarray, current: np.ndarray, band: int) -> np.ndarray:
    """Indices of the ``band``-row strips whose bytes differ between two grabs of the same shape (pure).

    One comparison of 8-byte words over the whole grab: cheaper than block-averaging it again.
    """
    rows = current.shape[0] // band
    if rows == 0:
        return np.zeros(0, dtype=np.intp)
    word = np.uint64 if (band * current[0].nbytes) % 8 == 0 else np.uint8
    cur = np.ascontiguousarray(current[: rows * band]).reshape(-1).view(word).reshape(rows, -1)
    old = np.ascontiguousarray(previous[: rows * band]).reshape(-1).view(word).reshape(rows, -1)
    return np.flatnonzero((cur != old).any(axis=1))


def update_thumbnail_bgrx(
    previous: np.ndarray, previous_thumb: np.ndarray, bgrx: np.ndarray, scale: int = DEFAULT_PARAMS.scale
) -> np.ndarray:
    """:func:`thumbnail_bgrx` of ``bgrx``, given the previous grab and its thumbnail (same shape).

    Only the ``scale``-row strips whose bytes changed are block-averaged again; the rest is copied from
    ``previous_thumb``, so the result is exactly :func:`thumbnail_bgrx` of ``bgrx``. On an exam screen
    where only a clock ticks this is a fraction of the full cost (``bench/agent.py``).
    """
    thumb_shape = (bgrx.shape[0] // scale, bgrx.shape[1] // scale)
    if previous.shape != bgrx.shape or previous_thumb.shape != thumb_shape:
        return thumbnail_bgrx(bgrx, scale)
    bands = changed_bands(previous, bgrx, scale)
    thumb = previous_thumb.copy()
    if bands.size == 0:
        return thumb
    height, width = bgrx.shape[:2]
    cols = width // scale
    view = Image.frombuffer("RGBX", (width, height), np.ascontiguousarray(bgrx), "raw", "RGBX", 0, 1)
    # Runs of consecutive changed strips, each block-averaged in one call.
    breaks = np.flatnonzero(np.diff(bands) > 1)
    firsts = np.concatenate(([bands[0]], bands[breaks + 1]))
    lasts = np.concatenate((bands[breaks], [bands[-1]]))
    for first, last in zip(firsts, lasts, strict=True):
        box = (0, int(first) * scale, cols * scale, (int(last) + 1) * scale)
        small = np.asarray(view.reduce(scale, box=box))
        thumb[first : last + 1] = luma(small[..., 2::-1])
    return thumb


def _tile_counts(mask: np.ndarray, tile: int) -> np.ndarray:
    rows, cols = -(-mask.shape[0] // tile), -(-mask.shape[1] // tile)
    padded = np.zeros((rows * tile, cols * tile), dtype=np.uint16)
    padded[: mask.shape[0], : mask.shape[1]] = mask
    return padded.reshape(rows, tile, cols, tile).sum(axis=(1, 3))


def compare(
    reference: np.ndarray | None, current: np.ndarray, params: ChangeParams = DEFAULT_PARAMS
) -> ChangeResult:
    """Compare two thumbnails made by :func:`thumbnail` with the same ``scale``.

    No reference (first grab) or a different size (resolution changed) counts as changed, all tiles.
    """
    tile_px = params.tile * params.scale
    if reference is None or reference.shape != current.shape:
        counts = _tile_counts(np.ones(current.shape, dtype=bool), params.tile)
        every = tuple((int(r), int(c)) for r, c in zip(*np.nonzero(counts), strict=True))
        reason = "first grab" if reference is None else "screen size changed"
        return ChangeResult(True, int(current.size), every, tile_px, reason)
    diff = np.abs(reference.astype(np.int16) - current.astype(np.int16))
    mask = diff > params.pixel_threshold
    changed_pixels = int(np.count_nonzero(mask))
    if changed_pixels == 0:
        return ChangeResult(False, 0, (), tile_px)
    counts = _tile_counts(mask, params.tile)
    tiles = tuple(
        (int(r), int(c)) for r, c in zip(*np.nonzero(counts >= params.tile_min_pixels), strict=True)
    )
    if changed_pixels >= params.min_changed_pixels:
        return ChangeResult(True, changed_pixels, tiles, tile_px, f"{changed_pixels} thumbnail pixels differ")
    if len(tiles) >= params.min_changed_tiles:
        return ChangeResult(True, changed_pixels, tiles, tile_px, f"{len(tiles)} tiles changed")
    return ChangeResult(False, changed_pixels, tiles, tile_px)
