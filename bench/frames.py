"""Benchmark putting screens back together from tile updates (``hall_server.store.frames``) on a real exam.

A 1920x1080 exam page on which a student types a line at a time: the real agent capture loop makes one whole
screen and then tile updates (up to the server's limit of 120 in a row), which go through the real hall
server app (Flask test client: enrolment, the capture PUT with its checks, the encrypted blob store). Then it
times what a reviewer waits for: the full-size view of a capture at chain depth 0 (a whole screen: decrypt
only; the baseline), 1, 30, 60 and 120, each from scratch, and walking a session in order (one screen after
the other, as the export and the timeline's viewer do), per screen.

Run: .venv/bin/python bench/frames.py [--repeat 5]     (about a minute)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _exam import JOIN_CODE, provision_exam  # noqa: E402
from agent_encode import ANSWER, _font, _wrap, render_exam_page  # noqa: E402

from agent.capture import CaptureLoop, CaptureSettings  # noqa: E402
from agent.grab import MonitorFrame  # noqa: E402
from agent.spool import Spool  # noqa: E402
from hall_server.app import create_app  # noqa: E402
from hall_server.store import crypto, db, exams, frames  # noqa: E402
from hall_server.store.blobs import BlobStore  # noqa: E402
from invigil import protocol as p  # noqa: E402
from invigil import tiles  # noqa: E402
from invigil.payloads import Enrolment  # noqa: E402
from invigil.timeutil import utc_now  # noqa: E402

WIDTH, HEIGHT = 1920, 1080
DEPTHS = (0, 1, 30, 60, 120)


class TypingPage:
    """The exam page with one more answer line typed at each ``step()`` (wrapping back to the top)."""

    def __init__(self) -> None:
        self.base = Image.fromarray(render_exam_page(WIDTH, HEIGHT))
        draw = ImageDraw.Draw(self.base)
        self.lines = _wrap(draw, ANSWER, _font("DejaVuSans.ttf", 16), 1160)
        self.typed = 0

    def step(self) -> None:
        self.typed += 1

    def __call__(self) -> list[MonitorFrame]:
        image = self.base.copy()
        draw = ImageDraw.Draw(image)
        draw.rectangle((341, 480, 1559, 899), fill="white")
        body = _font("DejaVuSans.ttf", 16)
        shown = self.typed % (len(self.lines) * 3)
        for row in range(shown):
            line = self.lines[row % len(self.lines)]
            draw.text(
                (360, 492 + 26 * (row % 15)), f"{row // len(self.lines)} {line}", font=body, fill=(20, 20, 20)
            )
        return [MonitorFrame(0, 0, 0, WIDTH, HEIGHT, np.asarray(image, dtype=np.uint8).copy())]


def seed(data_dir: Path) -> tuple[int, int, list[str]]:
    """One exam and session; a whole screen and 120 tile updates through the real app. (exam, session, ids)"""
    exam, students = provision_exam(data_dir)
    client = create_app({"data_dir": str(data_dir)}).test_client()
    protocol = {p.PROTOCOL_HEADER: str(p.PROTOCOL_VERSION)}
    answer = client.post(
        f"{p.API_PREFIX}/enrol",
        json=Enrolment(students[0], JOIN_CODE, "bench-agent-1", utc_now()).as_wire(),
        headers=protocol,
    ).get_json()
    headers = {**protocol, "Authorization": f"Bearer {answer['session_token']}"}
    with tempfile.TemporaryDirectory() as spool_dir:
        spool = Spool(spool_dir)
        page = TypingPage()
        loop = CaptureLoop(
            page, spool, CaptureSettings(send_thumbnails=False, key_every_s=1e9, max_chain=tiles.MAX_CHAIN)
        )
        ids = []
        while len(ids) <= tiles.MAX_CHAIN:
            outcome = loop.tick()[0]
            page.step()
            record = spool.peek()
            if record is None:
                continue
            spool.ack(record.seq)
            if record.kind != "image":
                continue
            response = client.put(
                f"{p.API_PREFIX}/captures/{record.meta['capture_id']}",
                data=record.body,
                headers={**headers, p.META_HEADER: record.meta["capture_meta"], "Content-Type": "image/png"},
            )
            assert response.status_code == 201, response.get_json()
            assert (outcome.tiles == 0) == (not ids), "only the first image should be whole"
            ids.append(record.meta["capture_id"])
    return exam, answer["session_id"], ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timings per depth (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="invigil-bench-frames-") as tmp:
        data_dir = Path(tmp)
        started = time.monotonic()
        exam, session, ids = seed(data_dir)
        print(f"seeded a whole screen and {len(ids) - 1} tile updates in {time.monotonic() - started:.1f} s")
        store = db.connect(data_dir)
        key = exams.exam_key(store, crypto.load_or_create_master_key(data_dir), exam)
        blobs = BlobStore(data_dir)
        sizes = [row[0] for row in store.execute("SELECT size FROM capture ORDER BY chain_depth")]
        print(f"stored bytes: whole screen {sizes[0]}, updates median {statistics.median(sizes[1:]):.0f}")

        def read(sha: str) -> bytes:
            return blobs.get(exam, key, sha)

        timings = {}
        for depth in DEPTHS:
            runs = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                body = frames.screen_png(store, session, ids[depth], read)
                runs.append((time.perf_counter() - start) * 1000)
            timings[depth] = statistics.median(runs)
            assert body.startswith(b"\x89PNG")
        composer = frames.Composer()
        start = time.perf_counter()
        for capture_id in ids:
            frames.screen_png(store, session, capture_id, read, composer)
        walk_ms = (time.perf_counter() - start) * 1000 / len(ids)
        store.close()
    base = timings[0]
    print(
        "full-size view of one capture, from scratch (depth 0 = a whole screen: decrypt only, the baseline)"
    )
    print(f"{'chain depth':>12} {'ms':>8} {'x whole':>8}")
    for depth, ms in timings.items():
        print(f"{depth:>12} {ms:8.1f} {ms / base:8.1f}")
    print(
        f"walking all {len(ids)} screens in order: {walk_ms:.1f} ms per screen ({walk_ms / base:.1f} x whole)"
    )


if __name__ == "__main__":
    main()
