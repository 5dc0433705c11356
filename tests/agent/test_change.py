"""Change detection: what a person calls "the screen changed" must count; a blinking cursor or clock not."""

from __future__ import annotations

import numpy as np
import pytest

from agent.change import (
    ChangeParams,
    changed_bands,
    compare,
    thumbnail,
    thumbnail_bgrx,
    update_thumbnail_bgrx,
)

from agent_screens import PARAGRAPHS, render_page


def changed(before: np.ndarray, after: np.ndarray, params: ChangeParams | None = None):
    params = params or ChangeParams()
    return compare(thumbnail(before, params.scale), thumbnail(after, params.scale), params)


def with_cursor(page: np.ndarray, x: int, y: int) -> np.ndarray:
    out = page.copy()
    out[y : y + 18, x : x + 2] = 0
    return out


def test_thumbnail_is_block_mean_of_luma():
    gray = np.zeros((16, 24), dtype=np.uint8)
    gray[:8, :8] = 255  # one white block
    gray[8:, 8:16:2] = 200  # half the columns of another block
    thumb = thumbnail(gray, 8)
    assert thumb.shape == (2, 3)
    assert thumb.tolist() == [[255, 0, 0], [0, 100, 0]]
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red has luma 77 of 255
    assert thumbnail(rgb, 8).tolist() == [[77]]


def test_identical_screens_are_unchanged():
    page = render_page()
    result = changed(page, page.copy())
    assert not result.changed
    assert result.changed_pixels == 0 and result.changed_tiles == ()


def test_first_grab_and_new_resolution_count_as_changed():
    thumb = thumbnail(render_page())
    first = compare(None, thumb)
    assert first.changed and first.reason == "first grab"
    assert len(first.changed_tiles) == 20 * 13  # 160x100 thumbnail in 8x8 tiles, rounded up
    other = thumbnail(render_page(size=(1024, 768)))
    resized = compare(other, thumb)
    assert resized.changed and resized.reason == "screen size changed"


@pytest.mark.parametrize(
    "x, y",
    [
        (300, 130),  # inside text
        (127, 56),  # straddles a block column, a tile column and a tile row
        (1270, 780),  # bottom-right corner
    ],
)
def test_blinking_cursor_is_not_a_change(x, y):
    page = render_page()
    on = with_cursor(page, x, y)
    assert not changed(page, on).changed
    assert not changed(on, page).changed


@pytest.mark.parametrize(
    "before, after, at",
    [
        ("10:41:07", "10:41:08", None),
        ("09:59:59", "10:00:00", None),  # every digit changes
        ("09:59:59", "10:00:00", (1180, 56)),  # straddles tile rows and columns, on the page itself
    ],
)
def test_ticking_clock_is_not_a_change(before, after, at):
    result = changed(render_page(clock=before, clock_at=at), render_page(clock=after, clock_at=at))
    assert not result.changed
    assert result.changed_pixels < ChangeParams().min_changed_pixels
    assert len(result.changed_tiles) <= 4


def test_changed_paragraph_is_a_change_and_its_tiles_are_where_the_text_is():
    LOREM, OTHER = PARAGRAPHS
    before = render_page((LOREM, OTHER))
    after = render_page((LOREM, OTHER.replace("Dijkstra's", "Prim's").replace("negative", "heavy")))
    result = changed(before, after)
    assert result.changed
    differs = np.any(before != after, axis=2)
    rows, cols = np.nonzero(differs)
    for left, top, width, height in result.tile_boxes(1280, 800):
        # Every reported tile overlaps the region whose pixels really changed.
        assert left <= cols.max() and left + width > cols.min()
        assert top <= rows.max() and top + height > rows.min()
    # And every tile with a substantial real change is reported.
    reported = set(result.changed_tiles)
    tile = result.tile_px
    for row in range(0, 800, tile):
        for col in range(0, 1280, tile):
            if differs[row : row + tile, col : col + tile].sum() > 400:
                assert (row // tile, col // tile) in reported


def test_one_changed_line_is_a_change():
    LOREM = PARAGRAPHS[0]
    before = render_page((LOREM,))
    after = render_page((LOREM.replace("Explain why", "Prove that"),))
    assert changed(before, after).changed


def test_moved_window_is_a_change():
    page = render_page(PARAGRAPHS)

    def with_window(x: int, y: int) -> np.ndarray:
        out = page.copy()
        out[y : y + 200, x : x + 320] = (230, 230, 240)
        out[y : y + 30, x : x + 320] = (60, 90, 160)
        return out

    assert changed(with_window(400, 300), with_window(550, 380)).changed


def test_scrolled_text_is_a_change():
    page = render_page((*PARAGRAPHS, PARAGRAPHS[0]))
    scrolled = np.full_like(page, 250)
    scrolled[:-24] = page[24:]  # scrolled by one line of text
    assert changed(page, scrolled).changed


def test_scattered_small_edits_count_by_tiles():
    page = np.full((800, 1280, 3), 250, dtype=np.uint8)
    edited = page.copy()
    for i in range(7):  # seven single-word edits far apart: few pixels, many tiles
        x, y = 40 + i * 170, 60 + i * 100
        edited[y : y + 12, x : x + 24] = 30
    result = changed(page, edited)
    assert result.changed_pixels < ChangeParams().min_changed_pixels
    assert result.changed and "tiles" in result.reason
    stricter = ChangeParams(min_changed_tiles=len(result.changed_tiles) + 1)
    assert not changed(page, edited, stricter).changed


def test_thresholds_are_parameters():
    page = render_page()
    on = with_cursor(page, 300, 130)
    assert changed(page, on, ChangeParams(min_changed_pixels=1)).changed


def as_bgrx(rgb: np.ndarray, pad: int = 0) -> np.ndarray:
    """What mss returns: B, G, R and a pad byte per pixel."""
    return np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], pad, dtype=np.uint8)])


@pytest.mark.parametrize("size", [(1280, 800), (1283, 805), (13, 9)])
def test_thumbnail_from_grabbed_bgrx_equals_the_rgb_thumbnail(size):
    if size[0] > 100:
        rgb = render_page(PARAGRAPHS, size=size, clock="10:41:07")
    else:
        rgb = np.random.default_rng(3).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    expected = thumbnail(rgb).astype(int)
    for pad in (0, 255):  # the pad byte is 0 or 255 depending on the X server; it must not matter
        got = thumbnail_bgrx(as_bgrx(rgb, pad))
        assert got.shape == expected.shape
        assert np.abs(got.astype(int) - expected).max() <= 1


def test_cursor_and_clock_are_still_not_a_change_on_grabbed_bgrx():
    page = render_page()
    cursor = with_cursor(page, 127, 56)
    clock_before, clock_after = render_page(clock="09:59:59"), render_page(clock="10:00:00")
    for before, after in ((page, cursor), (cursor, page), (clock_before, clock_after)):
        assert not compare(thumbnail_bgrx(as_bgrx(before)), thumbnail_bgrx(as_bgrx(after))).changed
    after = render_page((PARAGRAPHS[0].replace("Explain why", "Prove that"),))
    assert compare(thumbnail_bgrx(as_bgrx(page)), thumbnail_bgrx(as_bgrx(after))).changed


def test_updating_the_last_thumbnail_gives_exactly_the_full_thumbnail():
    before = as_bgrx(render_page(PARAGRAPHS, clock="10:41:07"))
    thumb = thumbnail_bgrx(before)
    edits = [
        before.copy(),  # nothing changed
        as_bgrx(render_page(PARAGRAPHS, clock="10:41:08")),  # a clock
        as_bgrx(render_page(PARAGRAPHS[:1], clock="10:41:08")),  # a paragraph gone
    ]
    one_pixel = before.copy()
    one_pixel[799, 1279, 1] ^= 0xFF  # the last pixel of the last row
    one_pixel[8, 0, 2] ^= 0x80  # the first pixel of the second strip
    edits.append(one_pixel)
    for after in edits:
        assert np.array_equal(update_thumbnail_bgrx(before, thumb, after), thumbnail_bgrx(after))
    assert changed_bands(before, one_pixel, 8).tolist() == [1, 99]
    assert changed_bands(before, edits[0], 8).tolist() == []
    other = as_bgrx(render_page(size=(1024, 768)))
    assert np.array_equal(update_thumbnail_bgrx(before, thumb, other), thumbnail_bgrx(other))


def test_thumbnail_bgrx_refuses_other_shapes():
    with pytest.raises(ValueError, match="expected an"):
        thumbnail_bgrx(np.zeros((16, 16, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="smaller than one"):
        thumbnail_bgrx(np.zeros((4, 16, 4), dtype=np.uint8))


def test_changed_bands_with_rows_that_are_not_whole_words():
    before = np.zeros((10, 5, 4), dtype=np.uint8)  # band 3 x 20 bytes = 60 bytes: not 8-byte words
    after = before.copy()
    after[4, 2, 3] = 1  # band 1
    after[9, 0, 0] = 1  # row 9 is in no whole band
    assert changed_bands(before, after, 3).tolist() == [1]
    assert changed_bands(before, after, 20).tolist() == []
