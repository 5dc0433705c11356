"""Checking an uploaded image without decoding its pixels: type from magic bytes, size from the header.

Called by ``hall_server.ingest`` before anything is stored. Pillow reads only the header here, so a
decompression bomb is refused by its declared size before a single pixel is inflated.
"""

from __future__ import annotations

import io
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


def header_dimensions(body: bytes, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the image header; ``ValueError`` naming the problem otherwise."""
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
