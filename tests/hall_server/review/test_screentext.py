"""Screen text over an exam seeded through the real agent API, read by the real tesseract
(``invigil-server screen-text``): the selection, the text stored sealed, search, and a watch word raising a
``screen_text`` moment in the review queue."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from datetime import timedelta

from hall_server.review import screentext
from hall_server.review.queue_cli import SCREEN_TEXT_LOCK
from hall_server.store import db, private_files
from invigil.payloads import CaptureMeta, Enrolment, Unchanged
from invigil.timeutil import utc_now

from reviewseed import FlaskHall, text_screen
from support import BIN, sha256


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True)


def test_screen_text_read_sealed_searched_and_watched(exam, client):
    data = str(exam.data_dir)
    done = _cli(
        "invigil-provision",
        "--data-dir",
        data,
        "exam",
        "update",
        str(exam.exam_id),
        "--platform-app",
        "firefox",
        "--allow-app",
        "libreoffice*",
        "--screen-text",
        "--watch-word",
        "chatgpt",
    )
    assert done.returncode == 0, done.stderr
    assert "screen text  read; watch words: chatgpt" in done.stdout

    hall = FlaskHall(client, "10.0.0.11")
    start = utc_now()
    hall.enrol(Enrolment("s0001", exam.join_code, "agent-s0001", start, "0.1", "Linux"))
    pages = [
        ("firefox", "Exam", ["Question 1: compute the kernel", "of the matrix A below."]),
        ("libreoffice-calc", "notes.ods", ["Answer copied from ChatGPT:", "the kernel is spanned by v1"]),
        ("firefox", "Exam", ["Question 2: eigenvalues", "of the matrix B."]),
    ]
    for n, (app, title, lines) in enumerate(pages):
        body = text_screen(lines)
        meta = CaptureMeta(0, start + timedelta(seconds=60 * n), sha256(body), 800, 500, "focus", app, title)
        hall.put_capture(f"cap-s0001-{n}", meta, body, "image/png")
        for later in range(5, 60, 5):  # a record every capture interval: no gap
            moment = start + timedelta(seconds=60 * n + later)
            hall.put_unchanged(f"unc-s0001-{n}-{later:02d}", Unchanged(0, moment, f"cap-s0001-{n}"))

    store = db.connect(exam.data_dir)
    assert [w.capture_id for w in screentext.selection(store, exam.exam_id)] == [
        f"cap-s0001-{n}" for n in range(3)
    ]
    store.close()

    # While a pass runs (the timer's, say) a second one does nothing rather than read the same screens twice.
    lock = private_files.open_lock_file(exam.data_dir / SCREEN_TEXT_LOCK)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        doubled = _cli("invigil-server", "screen-text", "--data-dir", data)
    finally:
        os.close(lock)
    assert doubled.returncode == 0 and "another screen-text pass is running" in doubled.stdout
    store = db.connect(exam.data_dir)
    assert store.execute("SELECT COUNT(*) FROM screen_text").fetchone()[0] == 0
    store.close()

    read = _cli("invigil-server", "screen-text", "--data-dir", data)
    assert read.returncode == 0, read.stderr
    assert f"exam {exam.exam_id}: read 3 of 3 selected screens" in read.stdout
    again = _cli("invigil-server", "screen-text", "--data-dir", data)
    assert "read 0 of 0 selected screens" in again.stdout  # each pass reads only what is new

    store = db.connect(exam.data_dir)
    raw = store.execute("SELECT text FROM screen_text WHERE capture_id = 'cap-s0001-1'").fetchone()[0]
    assert isinstance(raw, bytes) and b"ChatGPT" not in raw  # sealed under the exam's key
    hits = screentext.search(store, exam.exam_id, "chatgpt")
    assert [(h.student_number, h.capture_id) for h in hits] == [("s0001", "cap-s0001-1")]
    assert "ChatGPT" in hits[0].snippet
    assert [h.capture_id for h in screentext.search(store, exam.exam_id, "eigenvalues")] == ["cap-s0001-2"]
    store.close()

    listed = _cli("invigil-server", "review-queue", str(exam.exam_id), "--data-dir", data, "--json")
    moments = json.loads(listed.stdout)["moments"]
    assert [(m["kinds"], m["detail"].get("words")) for m in moments] == [(["screen_text"], ["chatgpt"])]

    refused = _cli("invigil-server", "screen-text", "--data-dir", data, "--exam", "99")
    assert refused.returncode == 1 and "no exam 99" in refused.stderr
