"""Encoders: the 4-bit PNG is a valid PNG that decodes to the quantised screen, small, and keeps text dark."""

from __future__ import annotations

import hashlib
import io
import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from agent.encode import (
    QUANTISE_LUT,
    encode_levels,
    encode_screen,
    encode_thumbnail,
    levels_bgrx,
    luma,
    luma_bgrx,
    png_gray4,
    quantise_gray4,
    quantise_lut,
    time_encode,
)

from agent_screens import render_page


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_luma_of_known_colours():
    rgb = np.array(
        [[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]]], dtype=np.uint8
    )
    assert luma(rgb).tolist() == [[0, 255, 77, 149, 29, 128]]


def test_quantiser_is_monotonic_and_uses_all_sixteen_levels():
    lut = quantise_lut()
    assert lut[0] == 0 and lut[255] == 15
    assert np.all(np.diff(lut.astype(int)) >= 0)
    assert set(lut.tolist()) == set(range(16))
    # The curve is "light": no input is more than a level and a half away from the linear quantiser.
    linear = np.rint(np.arange(256) * 15 / 255)
    assert np.abs(lut - linear).max() <= 1.5


def test_png_header_says_4_bit_grayscale():
    data = png_gray4(np.zeros((3, 5), dtype=np.uint8))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (width, height, depth, colour) == (5, 3, 4, 0)


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 41)), elements=st.integers(0, 15)))
def test_png_gray4_decodes_to_the_same_levels(levels):
    image = decode(png_gray4(levels))
    assert image.mode == "L" and image.size == (levels.shape[1], levels.shape[0])
    assert np.array_equal(np.asarray(image), levels * 17)


def test_encoded_exam_page_keeps_text_dark_and_background_light():
    rgb = render_page()
    encoded = encode_screen(rgb)
    assert (encoded.format, encoded.width, encoded.height) == ("png", 1280, 800)
    assert encoded.media_type == "image/png"
    assert encoded.sha256 == hashlib.sha256(encoded.data).hexdigest()
    decoded = np.asarray(decode(encoded.data)).astype(int)
    assert np.array_equal(decoded, quantise_gray4(rgb, QUANTISE_LUT).astype(int) * 17)
    gray = luma(rgb).astype(int)
    error = np.abs(decoded - gray)
    assert error.mean() < 8 and error.max() <= 26  # 16 levels: a step is 17 gray values
    assert decoded[5, 5] < decoded[400, 5]  # the light-grey panel stays distinct from the paper
    ink = gray < 60
    assert ink.sum() > 1000  # the page really has text
    assert decoded[ink].max() <= 68  # glyph cores stay dark
    assert np.all(decoded[gray > 240] >= 238)  # paper stays white


def test_four_bit_png_is_much_smaller_than_lossless():
    rgb = render_page()
    ours = encode_screen(rgb).data
    lossless = io.BytesIO()
    Image.fromarray(rgb).save(lossless, "PNG")
    assert len(ours) * 2 < len(lossless.getvalue())


def test_odd_sizes_encode():
    rgb = np.random.default_rng(7).integers(0, 256, (7, 13, 3), dtype=np.uint8)
    encoded = encode_screen(rgb)
    assert decode(encoded.data).size == (13, 7)


def test_thumbnail_is_320_wide_gray_and_keeps_the_aspect():
    rgb = render_page()
    for fmt in ("jpeg", "png"):
        thumb = encode_thumbnail(rgb, fmt=fmt)
        image = decode(thumb.data)
        assert image.mode == "L" and image.size == (320, 200) == (thumb.width, thumb.height)
        assert image.format == fmt.upper()
        assert thumb.sha256 == hashlib.sha256(thumb.data).hexdigest()
        # The text block is darker than the empty bottom of the page.
        pixels = np.asarray(image).astype(int)
        assert pixels[30:50, 20:300].mean() < pixels[150:190, 20:300].mean() - 10
    small = encode_thumbnail(rgb[:100, :200])
    assert (small.width, small.height) == (200, 100)  # never upscaled


def test_time_encode_returns_the_result_and_a_duration():
    rgb = render_page()
    result, ms = time_encode(encode_screen, rgb, repeat=2)
    assert result.data[:4] == b"\x89PNG" and ms > 0


def test_luma_of_grabbed_bgrx_is_within_one_gray_level_across_strips():
    rgb = render_page(size=(331, 150))  # odd width, and strips of 64 rows leave a short last strip
    bgrx = np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 255, dtype=np.uint8)])
    for strip_rows in (1, 64, 1000):
        gray = luma_bgrx(bgrx, strip_rows)
        assert gray.shape == (150, 331) and gray.dtype == np.uint8
        assert np.abs(gray.astype(int) - luma(rgb)).max() <= 1
    known = np.array(
        [[[0, 0, 255, 0], [255, 255, 255, 0], [0, 0, 0, 0]]], dtype=np.uint8
    )  # red, white, black
    assert np.abs(luma_bgrx(known).astype(int) - [[77, 255, 0]]).max() <= 1


def test_one_luma_plane_gives_the_same_png_and_thumbnail_as_rgb():
    rgb = render_page()
    gray = luma(rgb)
    assert encode_screen(gray).data == encode_screen(rgb).data
    assert encode_thumbnail(gray).data == encode_thumbnail(rgb).data
    assert np.array_equal(quantise_gray4(gray), np.take(QUANTISE_LUT, gray))


def test_levels_straight_from_bgrx_match_the_luma_path():
    rgb = render_page(size=(1283, 721))  # odd sizes and a short last strip
    bgrx = np.dstack([rgb[..., ::-1], np.zeros(rgb.shape[:2], dtype=np.uint8)])
    assert np.array_equal(levels_bgrx(bgrx), quantise_gray4(luma_bgrx(bgrx)))
    assert encode_levels(levels_bgrx(bgrx)).data == encode_screen(luma_bgrx(bgrx)).data
