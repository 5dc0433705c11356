"""Tile updates on the agent: the changed tiles of the 4-bit screen, packed and put back exactly."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from agent.updates import apply_tiles, changed_tiles, pack_tiles
from invigil import tiles


@given(
    before=arrays(np.uint8, st.tuples(st.integers(1, 150), st.integers(1, 150)), elements=st.integers(0, 15)),
    tile=st.sampled_from((16, 32, 64)),
    data=st.data(),
)
def test_the_changed_tiles_put_back_give_the_new_screen_exactly(before, tile, data):
    after = before.copy()
    height, width = before.shape
    for _ in range(data.draw(st.integers(0, 6))):
        y, x = data.draw(st.integers(0, height - 1)), data.draw(st.integers(0, width - 1))
        after[y, x] = data.draw(st.integers(0, 15))
    indices = changed_tiles(before, after, tile)
    rows, cols = tiles.grid(width, height, tile)
    differ = {(y // tile) * cols + x // tile for y, x in zip(*np.nonzero(before != after), strict=True)}
    assert indices == sorted(differ)
    if indices:
        packed = pack_tiles(after, indices, tile)
        assert packed.shape[::-1] == tiles.packed_size(len(indices), cols, tile)
        assert np.array_equal(apply_tiles(before, packed, indices, tile), after)
    else:
        assert np.array_equal(before, after)


def test_one_typed_word_is_one_or_two_tiles_of_a_full_hd_screen():
    before = np.full((1080, 1920), 15, dtype=np.uint8)
    after = before.copy()
    after[460:476, 630:700] = 0  # a word of 16 px text
    indices = changed_tiles(before, after, 64)
    assert indices == [7 * 30 + 9, 7 * 30 + 10]
    assert pack_tiles(after, indices, 64).shape == (64, 128)
