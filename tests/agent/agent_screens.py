"""Synthetic screens for the agent's capture tests: text pages rendered with Pillow, like an exam page.

A plain module, not conftest.py: another directory's tests import their conftest by that name, and a
second ``conftest`` module would shadow it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_PATHS = [
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),
    Path("/usr/share/fonts/TTF/DejaVuSans.ttf"),
]

LOREM = (
    "Explain why the expected number of probes for an unsuccessful search under uniform hashing is at most "
    "one over one minus the load factor, and describe what happens to insert and delete as the table fills. "
    "Propose a resizing policy that keeps the amortised cost of every operation constant and state which "
    "assumptions your argument needs."
)
OTHER = (
    "Dijkstra's algorithm fails with negative edge weights because a vertex, once removed from the queue, "
    "is never revisited; a later negative edge could still shorten its distance. Bellman-Ford relaxes every "
    "edge n-1 times instead and detects a negative cycle with one more pass over all the edges of the graph."
)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in FONT_PATHS:
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


def render_text_page(
    paragraphs: Sequence[str] = (LOREM,),
    size: tuple[int, int] = (1280, 800),
    origin: tuple[int, int] = (80, 120),
    clock: str | None = None,
    clock_at: tuple[int, int] | None = None,
) -> np.ndarray:
    """An RGB page: a light top panel, paragraphs of 16 px text wrapped at 90 characters (24 px line
    pitch), and optionally a small dark ``clock`` in the top-right corner like a desktop panel clock."""
    font, small = _font(16), _font(13)
    page = Image.new("RGB", size, (250, 250, 250))
    draw = ImageDraw.Draw(page)
    draw.rectangle((0, 0, size[0], 28), fill=(225, 228, 232))
    x, y = origin
    for paragraph in paragraphs:
        line = ""
        for word in paragraph.split():
            if len(line) + len(word) > 90:
                draw.text((x, y), line, font=font, fill=(20, 20, 20))
                y, line = y + 24, word
            else:
                line = f"{line} {word}".strip()
        draw.text((x, y), line, font=font, fill=(20, 20, 20))
        y += 40
    if clock is not None:
        draw.text(clock_at or (size[0] - 90, 7), clock, font=small, fill=(20, 20, 20))
    return np.asarray(page, dtype=np.uint8).copy()


#: The page renderer under its short name, and two different paragraphs of exam-like text.
render_page = render_text_page
PARAGRAPHS = (LOREM, OTHER)
