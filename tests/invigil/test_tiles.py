"""The tile-update wire format: tile maps, packed layout, and the metadata of an update."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from invigil import payloads, tiles
from invigil.protocol import ProtocolError
from invigil.timeutil import utc_now

SHA = "a" * 64


@given(
    width=st.integers(1, 4000),
    height=st.integers(1, 2500),
    tile=st.sampled_from(tiles.TILE_SIDES),
    data=st.data(),
)
def test_a_tile_map_round_trips_for_any_screen(width, height, tile, data):
    rows, cols = tiles.grid(width, height, tile)
    chosen = sorted(data.draw(st.sets(st.integers(0, rows * cols - 1), min_size=1, max_size=50)))
    text = tiles.encode_map(chosen, rows, cols)
    assert text.isascii() and "=" not in text
    assert tiles.decode_map(text, rows, cols) == chosen


@given(count=st.integers(1, 600), cols=st.integers(1, 60), tile=st.sampled_from(tiles.TILE_SIDES))
def test_packed_tiles_never_overlap_and_fit_the_image(count, cols, tile):
    width, height = tiles.packed_size(count, cols, tile)
    assert width <= cols * tile and height == math.ceil(count / min(count, cols)) * tile
    places = {tiles.packed_position(slot, count, cols, tile) for slot in range(count)}
    assert len(places) == count
    assert all(x + tile <= width and y + tile <= height for x, y in places)


def test_a_screen_box_is_cut_at_the_edge():
    rows, cols = tiles.grid(1920, 1080, 64)
    assert (rows, cols) == (17, 30)
    assert tiles.screen_box(rows * cols - 1, cols, 64, 1920, 1080) == (1856, 1024, 1920, 1080)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("!!", "not URL-safe base64"),
        ("AAAA", "bits"),  # 3 bytes for a grid of 510 tiles
        ("A" * 86, "marks no tile"),
    ],
)
def test_a_bad_tile_map_is_refused_by_name(text, problem):
    with pytest.raises(ProtocolError, match=problem) as caught:
        tiles.decode_map(text, 17, 30)
    assert caught.value.code == "bad_tiles"


def test_bits_beyond_the_grid_are_refused():
    text = tiles.encode_map([0], 1, 3)  # one byte: bits 3..7 must stay clear
    forged = tiles.encode_map([0], 1, 8)[:-1] + "_"  # all of the last bits set
    assert tiles.decode_map(text, 1, 3) == [0]
    with pytest.raises(ProtocolError, match="beyond"):
        tiles.decode_map(forged, 1, 3)


def update_header(**changes) -> str:
    fields = {
        "monitor": 0,
        "agent_time": "2026-11-27T10:00:00.000Z",
        "sha256": SHA,
        "width": 1920,
        "height": 1080,
        "base": "base-capture-1",
        "tile": 64,
        "tiles": tiles.encode_map([0, 31], 17, 30),
    }
    fields.update(changes)
    return json.dumps({k: v for k, v in fields.items() if v is not ...})


def test_an_update_header_round_trips():
    meta = payloads.parse_capture_meta(update_header())
    assert meta.is_update and meta.tile_indices() == [0, 31]
    assert payloads.parse_capture_meta(meta.as_header()) == meta


def test_a_whole_screen_header_carries_no_update_fields():
    meta = payloads.CaptureMeta(0, utc_now(), SHA, 1920, 1080)
    assert "base" not in json.loads(meta.as_header()) and not meta.is_update


@pytest.mark.parametrize(
    "changes, code",
    [
        ({"base": ...}, "missing_field"),
        ({"tiles": ...}, "missing_field"),
        ({"tile": 48}, "bad_value"),
        ({"tile": 1024}, "out_of_range"),
        ({"base": "../../etc"}, "bad_id"),
        ({"tiles": tiles.encode_map([0], 17, 31)}, "bad_tiles"),  # a map for another grid
        ({"tiles": 5}, "bad_type"),
    ],
)
def test_a_bad_update_header_is_refused_by_name(changes, code):
    with pytest.raises(ProtocolError) as caught:
        payloads.parse_capture_meta(update_header(**changes))
    assert caught.value.code == code


@given(
    text=st.text(max_size=200),
    tile=st.integers(-5, 600),
    width=st.integers(-5, 20_000),
    height=st.integers(-5, 20_000),
)
def test_any_update_header_is_parsed_or_refused_by_name(text, tile, width, height):
    header = update_header(tiles=text, tile=tile, width=width, height=height)
    try:
        meta = payloads.parse_capture_meta(header)
    except ProtocolError as exc:
        assert exc.code in {"bad_tiles", "bad_value", "out_of_range", "too_long", "bad_type"}
    else:
        assert meta.tile in tiles.TILE_SIDES and meta.tile_indices()
