"""Encode a captured screen for upload: a 4-bit grayscale PNG to keep, a small thumbnail for the dashboard.

Screens are flat UI and small text, not photos: JPEG spends its bytes on ringing around glyphs (a realistic
exam page is larger as JPEG q60 than as lossless PNG), while 16 gray levels keep text legible at about a third
of lossless size. The numpy path below (luma, quantise, pack two pixels per byte, one zlib call) is several
times faster than Pillow's palette quantiser. ``bench/agent_encode.py`` prints the figures behind this choice.

The capture loop (``agent.capture``) calls :func:`encode_screen` for a changed screen and
:func:`encode_thumbnail` for the live view; both are pure functions of an RGB array.
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

    Called by the encoders here and by ``agent.change.thumbnail``; extra channels (alpha) are ignored.
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


def quantise_lut(levels: int = GRAY_LEVELS, contrast: float = DEFAULT_CONTRAST) -> np.ndarray:
    """Lookup table 0..255 -> 0..levels-1: a linear ramp blended with a smoothstep by ``contrast`` (0..1).

    Monotonic, maps 0 to 0 and 255 to ``levels - 1``; called once at import and by tests.
    """
    if not 0.0 <= contrast <= 1.0:
        raise ValueError("contrast must be between 0 and 1")
    x = np.arange(256, dtype=np.float64) / 255.0
    curve = (1.0 - contrast) * x + contrast * (x * x * (3.0 - 2.0 * x))
    return np.rint(curve * (levels - 1)).astype(np.uint8)


QUANTISE_LUT = quantise_lut()


def quantise_gray4(rgb: np.ndarray, lut: np.ndarray = QUANTISE_LUT) -> np.ndarray:
    """RGB -> (h, w) uint8 of gray levels 0..15 (decoded gray is ``level * 17``)."""
    return np.take(lut, luma(rgb))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_gray4(levels: np.ndarray, zlib_level: int = 6) -> bytes:
    """Write (h, w) values 0..15 as a 4-bit grayscale PNG (IHDR bit depth 4, colour type 0).

    Two pixels per byte, high nibble first; every row uses filter 0 ("None"), which the PNG spec
    recommends for bit depths below 8. A hand-written writer because it is one zlib call and valid
    on every Pillow version.
    """
    if levels.ndim != 2 or levels.size == 0:
        raise ValueError("expected a non-empty (h, w) array")
    height, width = levels.shape
    if width % 2:
        levels = np.pad(levels, ((0, 0), (0, 1)))
    packed_width = levels.shape[1] // 2
    raw = np.zeros((height, 1 + packed_width), dtype=np.uint8)  # column 0 is the filter byte
    np.left_shift(levels[:, 0::2], 4, out=raw[:, 1:])
    raw[:, 1:] |= levels[:, 1::2] & 0x0F
    ihdr = struct.pack(">IIBBBBB", width, height, 4, 0, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(raw.tobytes(), zlib_level))
        + _png_chunk(b"IEND", b"")
    )


def encode_screen(rgb: np.ndarray, zlib_level: int = 6, contrast: float = DEFAULT_CONTRAST) -> EncodedImage:
    """A full-resolution screen as a 4-bit grayscale PNG; called by the capture loop for a changed screen."""
    lut = QUANTISE_LUT if contrast == DEFAULT_CONTRAST else quantise_lut(contrast=contrast)
    levels = quantise_gray4(rgb, lut)
    height, width = levels.shape
    return _encoded(png_gray4(levels, zlib_level), width, height, "png")


def encode_thumbnail(rgb: np.ndarray, width: int = 320, fmt: str = "jpeg", quality: int = 75) -> EncodedImage:
    """A small 8-bit grayscale image (``width`` px wide) for the invigilator's live view.

    Downscaled text is smooth, so here JPEG beats PNG; ``fmt`` may be "jpeg" or "png".
    Called by the capture loop next to :func:`encode_screen`.
    """
    if fmt not in ("jpeg", "png"):
        raise ValueError("thumbnail format must be 'jpeg' or 'png'")
    gray = Image.fromarray(luma(rgb), "L")
    src_w, src_h = gray.size
    width = min(width, src_w)
    height = max(1, round(src_h * width / src_w))
    small = gray.resize((width, height), Image.Resampling.BOX) if width != src_w else gray
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

    Called by ``bench/agent_encode.py`` and by the agent's self-check; tests never assert on the time.
    """
    best = float("inf")
    result: EncodedImage | None = None
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        result = encode(rgb)
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return result, best * 1000.0
