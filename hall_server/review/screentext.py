"""Screen text: the text on the screens that matter, read with tesseract (Debian's ``tesseract-ocr`` with
its Dutch and English models) in a background pass that never runs inside ingest, stored sealed under the
exam's key (``screen_text.text``) and deleted by retention with the screens. Reviewers search it across the
exam, and the exam's watch words raise ``screen_text`` signals in the review queue.

Only exams whose expected state says ``read_screen_text`` are read, and of those only the screens that
matter (:func:`selection`): key images (a whole new screen: a page or window change), tile updates that
change a large part of the screen, and every changed screen inside an off-exam span. bench/review_queue.py
measures how many screens that is and how fast one core reads them.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import sqlite_utils

from hall_server.review import expected, queue, signals
from hall_server.review.reports import nearsame
from hall_server.store import sealed
from hall_server.store.db import write_transaction
from hall_server.store.screens import ExamScreens
from invigil.timeutil import to_wire, utc_now

#: Tile updates that change at least this share of the screen are read.
LARGE_CHANGE = 0.3
LANGUAGES = "nld+eng"
TESSERACT_TIMEOUT_S = 60
#: At most this many characters of one screen's text are kept (a screen full of text is ~4,000).
MAX_CHARS = 20_000
#: Screens read and committed together.
BATCH = 20


class ScreenTextUnavailable(RuntimeError):
    """tesseract is missing or failed; the message says what to install or check."""


def read_text(png: bytes, tesseract: str = "tesseract", languages: str = LANGUAGES) -> str:
    """The text tesseract reads on one screen (a PNG). One thread per call (``OMP_THREAD_LIMIT=1``), so
    ``jobs`` calls use ``jobs`` cores."""
    try:
        done = subprocess.run(
            [tesseract, "stdin", "stdout", "-l", languages, "--psm", "3"],
            input=png,
            capture_output=True,
            timeout=TESSERACT_TIMEOUT_S,
            env={**os.environ, "OMP_THREAD_LIMIT": "1"},
            check=False,
        )
    except FileNotFoundError:
        raise ScreenTextUnavailable(
            f"{tesseract!r} is not installed: "
            "apt-get install tesseract-ocr tesseract-ocr-nld tesseract-ocr-eng"
        ) from None
    except subprocess.TimeoutExpired:
        return ""
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise ScreenTextUnavailable(f"tesseract failed: {message[0]} (are the nld and eng models installed?)")
    return " ".join(done.stdout.decode(errors="replace").split())[:MAX_CHARS]


@dataclass(frozen=True)
class Wanted:
    session_id: int
    capture_id: str
    agent_time: str


def selection(db: sqlite_utils.Database, exam_id: int, sessions: set[int] | None = None) -> list[Wanted]:
    """The screens of the exam (or of these ``sessions``) worth reading that are not read yet: key images,
    large tile updates, and every changed screen inside an off-exam span."""
    done = {
        (sid, cid)
        for sid, cid in db.execute(
            "SELECT session_id, capture_id FROM screen_text WHERE exam_id = ?", [exam_id]
        )
    }
    chosen: dict[tuple[int, str], str] = {}
    for sid, cid, at, tile, tile_map, width, height in db.execute(
        "SELECT session_id, capture_id, agent_time, tile, tile_map, width, height FROM capture "
        "WHERE exam_id = ? AND changed = 1 ORDER BY session_id, agent_time",
        [exam_id],
    ):
        if tile is None or nearsame.changed_share(tile, tile_map, width, height) >= LARGE_CHANGE:
            chosen[(sid, cid)] = at
    state = expected.load(db, exam_id)
    if state.declared:
        loaded, _ = queue.load(db, exam_id)
        for sid, data in loaded.items():
            frames = [e for e in data.entries if e.kind == "frame"]
            for moment in signals.focus_moments(data, state):
                if "off_exam_focus" not in moment.kinds:
                    continue
                for frame in frames:
                    if moment.start <= frame.at <= moment.end:  # type: ignore[union-attr]
                        chosen[(sid, frame.capture_id)] = to_wire(frame.at)  # type: ignore[union-attr]
    return [
        Wanted(sid, cid, at)
        for (sid, cid), at in sorted(chosen.items())
        if (sid, cid) not in done and (sessions is None or sid in sessions)
    ]


@dataclass
class Pass:
    exam_id: int
    selected: int = 0
    read: int = 0
    unavailable: int = 0
    seconds: float = 0.0
    jobs: int = 1

    @property
    def per_core_per_s(self) -> float:
        return self.read / self.seconds / self.jobs if self.seconds else 0.0


def run(
    db: sqlite_utils.Database,
    screens: ExamScreens,
    exam_id: int,
    *,
    jobs: int = 1,
    limit: int | None = None,
    sessions: set[int] | None = None,
    reader: Callable[[bytes], str] = read_text,
) -> Pass:
    """Read the exam's selection (at most ``limit`` screens) with ``jobs`` tesseract processes; store each
    text sealed as it is read (so an interrupted pass loses nothing), committed in small batches."""
    wanted = selection(db, exam_id, sessions)[:limit]
    result = Pass(exam_id, selected=len(wanted), jobs=jobs)
    started = time.perf_counter()

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for first in range(0, len(wanted), BATCH):
            # Screens are put together here, on this thread's connection; only tesseract runs in the pool.
            chunk = [
                (item, screens.find_screen(item.session_id, item.capture_id))
                for item in wanted[first : first + BATCH]
            ]
            readable = [png for _, png in chunk if png is not None]
            texts = iter(list(pool.map(reader, readable)))
            _store(
                db, exam_id, [(item, next(texts) if png is not None else None) for item, png in chunk], result
            )
    result.seconds = time.perf_counter() - started
    return result


def _store(
    db: sqlite_utils.Database, exam_id: int, batch: list[tuple[Wanted, str | None]], result: Pass
) -> None:
    if not batch:
        return
    now = to_wire(utc_now())
    with write_transaction(db):
        for item, text in batch:
            if text is None:
                result.unavailable += 1
                continue
            db.execute(
                "INSERT OR REPLACE INTO screen_text "
                "(session_id, capture_id, exam_id, agent_time, text, read_at) VALUES (?,?,?,?,?,?)",
                [
                    item.session_id,
                    item.capture_id,
                    exam_id,
                    item.agent_time,
                    sealed.seal(db, exam_id, text),
                    now,
                ],
            )
            result.read += 1


def exams_to_read(db: sqlite_utils.Database) -> list[int]:
    """Exams whose screens are read and whose key still exists (retention has not run)."""
    return [
        exam_id
        for exam_id, state in db.execute(
            "SELECT id, expected_state FROM exam WHERE retention_done_at IS NULL ORDER BY id"
        )
        if expected.parse(state).read_screen_text
    ]


@dataclass(frozen=True)
class Hit:
    student_number: str
    session_id: int
    capture_id: str
    at: str
    snippet: str


def _snippet(text: str, query: str, width: int = 60) -> str:
    at = text.casefold().find(query.casefold())
    start = max(0, at - width)
    return (
        ("…" if start else "")
        + text[start : at + len(query) + width]
        + ("…" if at + len(query) + width < len(text) else "")
    )


def search(db: sqlite_utils.Database, exam_id: int, query: str, limit: int = 200) -> list[Hit]:
    """Screens of the exam whose text holds ``query`` (case-insensitive), in time order."""
    if not query.strip():
        return []
    rows = db.execute(
        "SELECT r.student_number, t.session_id, t.capture_id, t.agent_time, unseal(t.exam_id, t.text) "
        "FROM screen_text t JOIN agent_session s ON s.id = t.session_id JOIN roster r ON r.id = s.roster_id "
        "WHERE t.exam_id = ? AND instr(lower(unseal(t.exam_id, t.text)), lower(?)) > 0 "
        "ORDER BY t.agent_time LIMIT ?",
        [exam_id, query.strip(), limit],
    ).fetchall()
    return [
        Hit(number, sid, cid, at, _snippet(text or "", query.strip())) for number, sid, cid, at, text in rows
    ]
