"""Benchmark the agent's screen encoders on a realistic 1920x1080 exam page; prints bytes and ms.

Run: .venv/bin/python bench/agent_encode.py [--repeat 5] [--save DIR]

Compares our numpy 4-bit grayscale PNG with lossless RGB PNG, Pillow quantize(16) + PNG (the SEB Screen
Proctoring method), JPEG q60, and Pillow's own 4-bit grayscale writer; then the thumbnail candidates.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.encode import (  # noqa: E402
    EncodedImage,
    _encoded,
    encode_screen,
    encode_thumbnail,
    quantise_gray4,
    time_encode,
)

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
QUESTION = (
    "Question 7 (12 points). A hash table with open addressing stores n keys in m slots. Explain why the "
    "expected number of probes for an unsuccessful search under uniform hashing is at most 1/(1 - a), where "
    "a = n/m is the load factor. Then describe what happens to the running time of insert and delete as a "
    "approaches 1, and propose a resizing policy that keeps the amortised cost of every operation constant. "
    "State clearly which assumptions your argument needs and where each one is used."
)
ANSWER = (
    "Under uniform hashing every probe sequence is equally likely, so the first probe hits an occupied slot "
    "with probability n/m = a, the second with probability (n-1)/(m-1) < a, and so on. The probability that "
    "at least i probes are needed is therefore at most a^(i-1), and summing the geometric series gives "
    "E[probes] <= 1 + a + a^2 + ... = 1/(1 - a). As a approaches 1 the bound grows without limit: inserts "
    "and unsuccessful searches become linear in m. Doubling the table when a exceeds 1/2 and rebuilding "
    "keeps a <= 1/2, so each search costs at most 2 expected probes, and the rebuild cost is paid by the "
    "m/4 inserts since the last resize, which gives constant amortised time."
)


def _font(name: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = FONT_DIR / name
    return ImageFont.truetype(str(path), size) if path.exists() else ImageFont.load_default(size)


def _wrap(
    draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int
) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) > width and line:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line]


def render_exam_page(width: int = 1920, height: int = 1080) -> np.ndarray:
    """A browser showing an online exam: tabs, address bar, navigation panel, question, typed answer."""
    page = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(page)
    ui, ui_bold = _font("DejaVuSans.ttf", 14), _font("DejaVuSans-Bold.ttf", 15)
    body, title = _font("DejaVuSans.ttf", 16), _font("DejaVuSans-Bold.ttf", 24)
    mono = _font("DejaVuSansMono.ttf", 15)
    # Browser chrome.
    draw.rectangle((0, 0, width, 40), fill=(222, 225, 230))
    for i, tab in enumerate(["Exam: Algorithms and Data Structures", "Course page", "Formula sheet (PDF)"]):
        x = 10 + i * 260
        draw.rounded_rectangle((x, 6, x + 250, 40), 8, fill=(255, 255, 255) if i == 0 else (235, 237, 240))
        draw.text((x + 14, 15), tab, font=ui, fill=(40, 40, 40))
    draw.rectangle((0, 40, width, 84), fill=(255, 255, 255))
    draw.rounded_rectangle((120, 48, width - 200, 78), 15, fill=(241, 243, 244))
    draw.text(
        (145, 55),
        "https://exam.hall.example.edu/mod/quiz/attempt.php?attempt=48213&page=6",
        font=ui,
        fill=(60, 64, 67),
    )
    draw.line((0, 84, width, 84), fill=(200, 200, 200))
    # Exam header with timer.
    draw.rectangle((0, 85, width, 150), fill=(0, 61, 122))
    draw.text(
        (40, 102), "INF-2310 Algorithms and Data Structures - Final exam", font=title, fill=(255, 255, 255)
    )
    draw.text((width - 300, 108), "Time left 1:42:17", font=ui_bold, fill=(255, 255, 255))
    # Navigation panel with numbered question buttons.
    draw.rectangle((0, 151, 300, height), fill=(246, 247, 249))
    draw.text((24, 170), "Quiz navigation", font=ui_bold, fill=(30, 30, 30))
    for q in range(30):
        x, y = 24 + (q % 6) * 44, 205 + (q // 6) * 52
        answered = q < 6
        draw.rectangle(
            (x, y, x + 36, y + 42),
            outline=(150, 150, 150),
            fill=(207, 226, 243) if answered else (255, 255, 255),
        )
        draw.text((x + 9, y + 4), str(q + 1), font=ui, fill=(20, 20, 20))
        if q == 6:
            draw.rectangle((x, y + 36, x + 36, y + 42), fill=(0, 61, 122))
    draw.text((24, 480), "Finish attempt ...", font=ui, fill=(0, 90, 180))
    # Question text and answer box.
    left, text_w, y = 360, 1180, 180
    draw.rectangle((left - 20, 170, left + text_w + 20, 420), fill=(231, 243, 245))
    for line in _wrap(draw, QUESTION, body, text_w):
        draw.text((left, y), line, font=body, fill=(33, 37, 41))
        y += 26
    draw.text((left, y + 14), "T(n) = 1 + a + a^2 + ... + a^(k-1)", font=mono, fill=(120, 20, 20))
    draw.rectangle((left - 20, 440, left + text_w + 20, 900), outline=(160, 160, 160), fill=(255, 255, 255))
    draw.rectangle((left - 19, 441, left + text_w + 19, 475), fill=(248, 249, 250))
    for i, tool in enumerate(["B", "I", "U", "x2", "Link", "Table", "Formula"]):
        draw.text((left + i * 60, 449), tool, font=ui_bold, fill=(70, 70, 70))
    y = 492
    for line in _wrap(draw, ANSWER, body, text_w - 20):
        draw.text((left, y), line, font=body, fill=(20, 20, 20))
        y += 26
    draw.rectangle((left, y + 4, left + 1, y + 22), fill=(0, 0, 0))  # the text cursor
    for i, label in enumerate(["Previous page", "Save", "Next page"]):
        x = left + i * 190
        draw.rounded_rectangle((x, 930, x + 170, 972), 6, fill=(0, 102, 204) if i == 2 else (230, 230, 230))
        draw.text((x + 30, 942), label, font=ui_bold, fill=(255, 255, 255) if i == 2 else (30, 30, 30))
    # Side panel: a formula sheet snippet in a second colour scheme.
    draw.rectangle((1580, 151, width, height), fill=(252, 250, 240))
    draw.text((1600, 170), "Formula sheet", font=ui_bold, fill=(90, 60, 0))
    for i, formula in enumerate(
        [
            "sum a^i = 1/(1-a)",
            "H(n) ~ ln n + 0.577",
            "log2(n!) ~ n log2 n",
            "T(n) = 2T(n/2) + n",
            "=> Theta(n log n)",
            "C(n,k) = n!/(k!(n-k)!)",
        ]
    ):
        draw.text((1600, 210 + i * 30), formula, font=mono, fill=(50, 50, 50))
    return np.asarray(page, dtype=np.uint8).copy()


def rgb_png(rgb: np.ndarray) -> EncodedImage:
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, "PNG", compress_level=6)
    return _encoded(out.getvalue(), rgb.shape[1], rgb.shape[0], "png")


def pillow_quantize16_png(rgb: np.ndarray) -> EncodedImage:
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").quantize(16).save(out, "PNG", bits=4, compress_level=6)
    return _encoded(out.getvalue(), rgb.shape[1], rgb.shape[0], "png")


def jpeg_q60(rgb: np.ndarray) -> EncodedImage:
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, "JPEG", quality=60)
    return _encoded(out.getvalue(), rgb.shape[1], rgb.shape[0], "jpeg")


def pillow_gray4_png(rgb: np.ndarray) -> EncodedImage:
    """The same 16 levels, written by Pillow's own 4-bit grayscale packer (it keeps the low nibble)."""
    out = io.BytesIO()
    Image.fromarray(quantise_gray4(rgb), "L").save(out, "PNG", bits=4, compress_level=6)
    return _encoded(out.getvalue(), rgb.shape[1], rgb.shape[0], "png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--save", type=Path, help="write each encoded image into this directory")
    args = parser.parse_args()
    rgb = render_exam_page()
    print(f"exam page {rgb.shape[1]}x{rgb.shape[0]}, best of {args.repeat} runs")
    candidates = [
        ("ours: numpy 4-bit gray PNG", encode_screen),
        ("lossless 8-bit RGB PNG", rgb_png),
        ("Pillow quantize(16) + PNG (SEB)", pillow_quantize16_png),
        ("JPEG q60", jpeg_q60),
        ("Pillow 4-bit gray writer", pillow_gray4_png),
    ]
    ours_bytes = ours_ms = 0.0
    print(f"{'encoder':34} {'KiB':>8} {'ms':>8} {'size/ours':>10} {'time/ours':>10}")
    for name, encode in candidates:
        result, ms = time_encode(encode, rgb, args.repeat)
        if not ours_bytes:
            ours_bytes, ours_ms = len(result.data), ms
        print(
            f"{name:34} {len(result.data) / 1024:8.1f} {ms:8.1f} "
            f"{len(result.data) / ours_bytes:10.2f} {ms / ours_ms:10.2f}"
        )
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            slug = name.split(":")[0].replace(" ", "_").replace("(", "").replace(")", "")
            (args.save / f"{slug}.{result.format}").write_bytes(result.data)
    print("thumbnails (320 px wide, 8-bit gray)")
    for fmt in ("jpeg", "png"):
        result, ms = time_encode(lambda a, f=fmt: encode_thumbnail(a, fmt=f), rgb, args.repeat)
        print(f"{'thumbnail ' + fmt:34} {len(result.data) / 1024:8.1f} {ms:8.1f}")


if __name__ == "__main__":
    main()
