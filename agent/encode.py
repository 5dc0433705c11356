"""Encode a captured screen for upload: a 4-bit grayscale PNG to keep, a small thumbnail for the dashboard.

Screens are flat UI and small text, not photos: JPEG spends its bytes on ringing around glyphs (a realistic
exam page is larger as JPEG q60 than as lossless PNG), while 16 gray levels keep text legible at about a third
of lossless size. The path below (luma, a lookup table to 16 levels, two pixels per byte, deflate) is several
times faster than Pillow's palette quantiser. ``bench/agent_encode.py`` prints the figures behind this choice.

A changed screen becomes gray levels once (:func:`levels_bgrx` of the grabbed BGRX pixels);
:func:`encode_levels` makes the PNG of them, whole or as a tile update, and :func:`encode_thumbnail` the live
view's picture. :func:`encode_screen` is the same PNG from RGB or luma, for tools and benchmarks. All are pure
functions of their arrays.
"""

from __future__ import annotations

import hashlib
import io
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from invigil import protocol

#: Weights of ITU-R BT.601 luma scaled to sum to 256, so luma is one integer multiply-add and a shift.
LUMA_WEIGHTS = (77, 150, 29)
GRAY_LEVELS = 16
#: How much of the S-curve to blend into the linear quantiser: mid-tones (the anti-aliased edges of glyphs)
#: are spread over more levels, near-white and near-black backgrounds merge, which also helps deflate.
DEFAULT_CONTRAST = 0.25
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Rows per strip when encoding a screen (a 1080p strip of levels is 120 kB).
_STRIP_ROWS = 64


@dataclass(frozen=True)
class EncodedImage:
    """Bytes ready to upload, with what the capture metadata needs to describe them."""

    data: bytes
    width: int
    height: int
    format: str
    sha256: str

    @property
    def media_type(self) -> str:
        return protocol.IMAGE_MEDIA_TYPES[self.format]


def _encoded(data: bytes, width: int, height: int, fmt: str) -> EncodedImage:
    return EncodedImage(data, width, height, fmt, hashlib.sha256(data).hexdigest())


def luma(rgb: np.ndarray) -> np.ndarray:
    """RGB (h, w, 3+) uint8 -> luma (h, w) uint8 with integer math only.

    Extra channels (alpha) are ignored.
    """
    if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (h, w, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    wr, wg, wb = LUMA_WEIGHTS
    acc = rgb[..., 0].astype(np.uint16)
    acc *= wr
    channel = rgb[..., 1].astype(np.uint16)
    channel *= wg
    acc += channel
    channel = rgb[..., 2].astype(np.uint16)
    channel *= wb
    acc += channel
    acc += 128  # round to nearest; the maximum 255 * 256 + 128 still fits in 16 bits
    acc >>= 8
    return acc.astype(np.uint8)


def luma_bgrx(bgrx: np.ndarray, strip_rows: int = 64) -> np.ndarray:
    """mss-style (h, w, 4) BGRX uint8 -> luma (h, w) uint8, with Pillow's C code, ``strip_rows`` at a time.

    Pillow's weights are BT.601 in 16-bit fixed point, so the result is within one gray level of :func:`luma`
    of the same pixels. Working in strips keeps Pillow's intermediate RGB image (4 bytes a pixel) at a few
    hundred kB instead of 8 MB for 1080p, which lowers the agent's peak RSS and stays in cache
    (``bench/agent.py``).
    """
    return _gray_bgrx(bgrx, strip_rows, None)


def levels_bgrx(bgrx: np.ndarray, lut: np.ndarray | None = None, strip_rows: int = 64) -> np.ndarray:
    """mss-style (h, w, 4) BGRX uint8 -> gray levels 0..15 (h, w), ``strip_rows`` at a time.

    :func:`quantise_gray4` of :func:`luma_bgrx`, without ever holding the full-resolution luma plane: the
    levels of a changed screen are kept until the next image is sent, and one plane fewer keeps the agent's
    peak RSS under target (``bench/agent.py``).
    """
    return _gray_bgrx(bgrx, strip_rows, (QUANTISE_LUT if lut is None else lut).tolist())


def _gray_bgrx(bgrx: np.ndarray, strip_rows: int, table: list[int] | None) -> np.ndarray:
    """Luma of BGRX pixels strip by strip, mapped through ``table`` when one is given."""
    if bgrx.ndim != 3 or bgrx.shape[2] != 4 or bgrx.dtype != np.uint8:
        raise ValueError(f"expected an (h, w, 4) uint8 array, got {bgrx.shape} {bgrx.dtype}")
    height, width = bgrx.shape[:2]
    source = np.ascontiguousarray(bgrx)
    out = np.empty((height, width), dtype=np.uint8)
    for top in range(0, height, strip_rows):
        rows = min(strip_rows, height - top)
        strip = Image.frombuffer("RGB", (width, rows), source[top : top + rows], "raw", "BGRX", 0, 1)
        gray = strip.convert("L")
        out[top : top + rows] = np.asarray(gray.point(table) if table is not None else gray)
    return out


def quantise_lut(levels: int = GRAY_LEVELS, contrast: float = DEFAULT_CONTRAST) -> np.ndarray:
    """Lookup table 0..255 -> 0..levels-1: a linear ramp blended with a smoothstep by ``contrast`` (0..1).

    Monotonic, maps 0 to 0 and 255 to ``levels - 1``; the default table is built once, at import.
    """
    if not 0.0 <= contrast <= 1.0:
        raise ValueError("contrast must be between 0 and 1")
    x = np.arange(256, dtype=np.float64) / 255.0
    curve = (1.0 - contrast) * x + contrast * (x * x * (3.0 - 2.0 * x))
    return np.rint(curve * (levels - 1)).astype(np.uint8)


QUANTISE_LUT = quantise_lut()


def quantise_gray4(image: np.ndarray, lut: np.ndarray = QUANTISE_LUT) -> np.ndarray:
    """RGB (h, w, 3) or luma (h, w) -> (h, w) uint8 of gray levels 0..15 (decoded gray is ``level * 17``).

    Pillow's ``point`` applies the table several times faster than ``np.take``.
    """
    gray = image if image.ndim == 2 else luma(image)
    if gray.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {gray.dtype}")
    return np.asarray(Image.fromarray(np.ascontiguousarray(gray), "L").point(lut.tolist()))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_gray4(levels: np.ndarray, zlib_level: int = 6) -> bytes:
    """Write (h, w) values 0..15 as a 4-bit grayscale PNG (IHDR bit depth 4, colour type 0).

    Two pixels per byte, high nibble first (Pillow's C "P;4" packer), an odd width padded with a zero
    nibble; every row uses filter 0 ("None"), which the PNG spec recommends for bit depths below 8. A
    hand-written writer because it is one zlib call and valid on every Pillow version. zlib level 6 with the
    default strategy: level 9 saves about 10 % of the bytes at five times the time, Z_RLE is faster
    but about 55 % larger on text (``bench/agent.py`` and the numbers in docs/agent.md).
    """
    if levels.ndim != 2 or levels.size == 0:
        raise ValueError("expected a non-empty (h, w) array")
    height, width = levels.shape
    source = np.ascontiguousarray(levels, dtype=np.uint8)
    packed = Image.frombuffer("P", (width, height), source, "raw", "P", 0, 1).tobytes("raw", "P;4")
    raw = np.zeros((height, 1 + (width + 1) // 2), dtype=np.uint8)  # column 0 is the filter byte
    raw[:, 1:] = np.frombuffer(packed, dtype=np.uint8).reshape(height, -1)
    return _png_gray4_file(width, height, zlib.compress(raw.data, zlib_level))


def _png_gray4_file(width: int, height: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 4, 0, 0, 0, 0)
    return b"".join(
        (PNG_SIGNATURE, _png_chunk(b"IHDR", ihdr), _png_chunk(b"IDAT", idat), _png_chunk(b"IEND", b""))
    )


def encode_levels(levels: np.ndarray) -> EncodedImage:
    """A plane of gray levels 0..15 (:func:`quantise_gray4`) as a 4-bit grayscale PNG.

    The PNG of every image the agent sends: a whole plane, or the changed tiles of a tile update packed into
    one (``agent.updates``). Same bytes as :func:`encode_screen` of the luma the levels came from.
    """
    height, width = levels.shape
    return _encoded(png_gray4(levels), width, height, "png")


def encode_screen(image: np.ndarray, zlib_level: int = 6, contrast: float = DEFAULT_CONTRAST) -> EncodedImage:
    """A full-resolution screen, RGB or luma, as a 4-bit grayscale PNG.

    ``image`` is RGB (h, w, 3) or, to share one luma pass with :func:`encode_thumbnail`, luma (h, w). The
    result is :func:`png_gray4` of :func:`quantise_gray4`, made in strips of rows (quantise, pack, deflate
    each in turn), so no full-size plane of levels or packed rows is ever held: that keeps the agent's peak
    RSS down (``bench/agent.py``).
    """
    lut = QUANTISE_LUT if contrast == DEFAULT_CONTRAST else quantise_lut(contrast=contrast)
    gray = np.ascontiguousarray(image if image.ndim == 2 else luma(image), dtype=np.uint8)
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError("expected a non-empty (h, w) or (h, w, 3) image")
    height, width = gray.shape
    table = lut.tolist()
    deflate = zlib.compressobj(zlib_level)
    parts = []
    rows_out = np.zeros((_STRIP_ROWS, 1 + (width + 1) // 2), dtype=np.uint8)  # column 0: filter "None"
    for top in range(0, height, _STRIP_ROWS):
        rows = min(_STRIP_ROWS, height - top)
        strip = Image.frombuffer("L", (width, rows), gray[top : top + rows], "raw", "L", 0, 1).point(table)
        levels = Image.frombuffer("P", (width, rows), strip.tobytes(), "raw", "P", 0, 1)
        rows_out[:rows, 1:] = np.frombuffer(levels.tobytes("raw", "P;4"), dtype=np.uint8).reshape(rows, -1)
        parts.append(deflate.compress(rows_out[:rows].data))
    parts.append(deflate.flush())
    return _encoded(_png_gray4_file(width, height, b"".join(parts)), width, height, "png")


def encode_thumbnail(
    image: np.ndarray, width: int = 320, fmt: str = "jpeg", quality: int = 75
) -> EncodedImage:
    """A small 8-bit grayscale image (``width`` px wide) for the invigilator's live view.

    ``image`` is RGB (h, w, 3) or luma (h, w). Downscaled text is smooth, so here JPEG beats PNG; ``fmt``
    may be "jpeg" or "png".
    """
    if fmt not in ("jpeg", "png"):
        raise ValueError("thumbnail format must be 'jpeg' or 'png'")
    gray = Image.fromarray(np.ascontiguousarray(image if image.ndim == 2 else luma(image)), "L")
    src_w, src_h = gray.size
    width = min(width, src_w)
    height = max(1, round(src_h * width / src_w))
    if width == src_w:
        small = gray
    elif src_w % width == 0 and src_h == height * (src_w // width):
        small = gray.reduce(src_w // width)  # the same box mean as resize, in half the time
    else:
        small = gray.resize((width, height), Image.Resampling.BOX)
    out = io.BytesIO()
    if fmt == "jpeg":
        small.save(out, "JPEG", quality=quality)
    else:
        small.save(out, "PNG", compress_level=6)
    return _encoded(out.getvalue(), width, height, fmt)


def time_encode(
    encode: Callable[[np.ndarray], EncodedImage], rgb: np.ndarray, repeat: int = 5
) -> tuple[EncodedImage, float]:
    """Run ``encode`` ``repeat`` times; return its result and the best wall time in milliseconds.

    For benchmarks: tests never assert on the time.
    """
    best = float("inf")
    result: EncodedImage | None = None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = encode(rgb)
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return result, best * 1000.0
