"""Checking an uploaded image without decoding its pixels: type from magic bytes, size from the header.

Run on every upload before anything is stored. Pillow reads only the header here, so a decompression bomb
is refused by its declared size before a single pixel is inflated.
"""

from __future__ import annotations

import io
import struct
import warnings

from PIL import Image

MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
)


def sniff_format(body: bytes) -> str | None:
    for magic, name in MAGIC:
        if body.startswith(magic):
            return name
    if len(body) >= 12 and body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "webp"
    return None


def _png_dimensions(body: bytes) -> tuple[int, int]:
    # Signature, then the IHDR chunk: length 13, type, width, height (big-endian). The agent's own format,
    # read without Pillow: bench/ingest.py showed Image.open at ~5 % of a capture's CPU.
    if len(body) < 33 or body[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise ValueError("the image header cannot be read (truncated or not an image)")
    width, height = struct.unpack(">II", body[16:24])
    if width == 0 or height == 0:
        raise ValueError("the image header declares no pixels")
    return width, height


#: PNG colour types and bit depths of one byte a pixel or less: gray (0) and palette (3), up to 8 bits.
_SMALL_GRAY_PNG = {(0, 1), (0, 2), (0, 4), (0, 8), (3, 1), (3, 2), (3, 4), (3, 8)}


def is_small_gray_png(body: bytes) -> bool:
    """A PNG of gray levels or palette indices of at most 8 bits, by its header alone: what the agent
    sends (4-bit gray), and what inflates to one byte a pixel, so a screen built of such pieces is put
    together in bounded memory."""
    if not body.startswith(MAGIC[0][0]) or len(body) < 33 or body[8:16] != b"\x00\x00\x00\x0dIHDR":
        return False
    bit_depth, colour_type = body[24], body[25]
    return (colour_type, bit_depth) in _SMALL_GRAY_PNG


def header_dimensions(body: bytes, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the image header; ``ValueError`` naming the problem otherwise."""
    if body.startswith(MAGIC[0][0]):
        width, height = _png_dimensions(body)
        if width * height > max_pixels:
            raise ValueError(f"the image is {width}x{height}, more than the {max_pixels} pixels allowed")
        return width, height
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(body)) as image:
                width, height = image.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ValueError("the image declares more pixels than any screen has") from None
        except Exception:
            raise ValueError("the image header cannot be read (truncated or not an image)") from None
    if width * height > max_pixels:
        raise ValueError(f"the image is {width}x{height}, more than the {max_pixels} pixels allowed")
    return width, height
