"""Change detection: what a person calls "the screen changed" must count; a blinking cursor or clock not."""

from __future__ import annotations

import numpy as np
import pytest

from agent.change import ChangeParams, compare, thumbnail

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
