"""Publishing the running exam's network policy where the proxy reads it.

The proxy (mitmdump + netpolicy addon, its own process and virtualenv) watches one policy file and reloads it
without a restart (docs/proxy.md). The hall server owns the exams, so it writes that file: every
``policy_publish_interval_s`` it works out which exams of the hall are running and, when the text changes,
replaces ``<data_dir>/proxy/exam.policy`` atomically. With no exam running the file allows nothing.

Run by a background thread in each server process, so an exam's start, end or policy change reaches the
proxy within one interval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlite_utils
from flask import Flask

from hall_server.store import private_files
from hall_server.store.db import connect
from invigil.timeutil import from_wire, to_wire, utc_now

log = logging.getLogger("invigil.policy")

POLICY_FILE = Path("proxy") / "exam.policy"


@dataclass(frozen=True)
class ExamPolicy:
    exam_id: int
    title: str
    starts_at: datetime
    ends_at: datetime
    started: bool
    ended: bool
    text: str


def running(exams: list[ExamPolicy], now: datetime, early: timedelta, late: timedelta) -> list[ExamPolicy]:
    """Exams whose policy applies now: started and not ended by the invigilator, or inside their window
    (from ``early`` before the start, so students can enrol, to ``late`` after the end, for extra time)."""
    return [
        exam
        for exam in exams
        if not exam.ended and (exam.started or exam.starts_at - early <= now <= exam.ends_at + late)
    ]


def comment_text(text: str) -> str:
    """``text`` fit for the rest of a ``#`` comment line: every character that is not printable (line
    breaks of any kind, other control and format characters, lone surrogates) becomes a space, so nothing
    an organiser typed can end the comment and start a rule."""
    return "".join(char if char.isprintable() else " " for char in text)


def policy_text(exams: list[ExamPolicy], now: datetime) -> str:
    """The file the proxy reads. Several exams in one hall at once get the union of their rules (a laptop
    of one exam may reach the other exam's sites: docs/proxy.md says so)."""
    header = [f"# Written by the Invigil hall server at {to_wire(now)}; edit exams, not this file."]
    if not exams:
        return "\n".join([*header, "# No exam is running: every site is blocked.", ""])
    parts = header
    for exam in exams:
        title = comment_text(exam.title)
        parts += ["", f"# exam {exam.exam_id}: {title}", exam.text.strip() or "# (no sites allowed)"]
    return "\n".join(parts) + "\n"


def load_exams(db: sqlite_utils.Database) -> list[ExamPolicy]:
    rows = db.execute(
        "SELECT id, title, starts_at, ends_at, started_at, ended_at, policy_text FROM exam ORDER BY starts_at"
    ).fetchall()
    return [
        ExamPolicy(
            row[0],
            row[1],
            from_wire(row[2]),
            from_wire(row[3]),
            row[4] is not None,
            row[5] is not None,
            row[6],
        )
        for row in rows
    ]


def max_extra_time(db: sqlite_utils.Database) -> timedelta:
    row = db.execute("SELECT MAX(extra_time_min) FROM roster").fetchone()
    return timedelta(minutes=row[0] or 0)


def publish(
    db: sqlite_utils.Database, data_dir: Path, enrol_early_s: int, now: datetime | None = None
) -> bool:
    """Write the policy file if its rules changed; returns True when it wrote. Atomic (a 0600 temporary
    file, fsync, rename) in a 0700 folder."""
    now = now or utc_now()
    active = running(load_exams(db), now, timedelta(seconds=enrol_early_s), max_extra_time(db))
    text = policy_text(active, now)
    path = data_dir / POLICY_FILE
    try:
        old = path.read_text()
    except FileNotFoundError:
        old = None
    if old is not None and _rules(old) == _rules(text):
        return False
    # Only the service user reads it: the proxy runs as that user too (systemd/invigil-proxy.service).
    private_files.make_dirs(path.parent)
    private_files.write_file(path, text.encode())
    log.info("published the network policy of %d running exam(s) to %s", len(active), path)
    return True


def _rules(text: str) -> list[str]:
    # The time stamp in the header changes every time; only a change of rules is worth a reload.
    return [line for line in text.splitlines() if not line.startswith("# Written by")]


class PolicyPublisher:
    """Background thread of one server process; several workers writing the same text is harmless."""

    def __init__(
        self,
        connect: Callable[[], sqlite_utils.Database],
        data_dir: Path,
        enrol_early_s: int,
        interval_s: float,
    ) -> None:
        self._connect = connect
        self._data_dir = data_dir
        self._enrol_early_s = enrol_early_s
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="invigil-policy", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        db = self._connect()
        try:
            while not self._stop.is_set():
                try:
                    publish(db, self._data_dir, self._enrol_early_s)
                except Exception:  # keep publishing; the proxy keeps its last good policy meanwhile
                    log.exception("could not publish the network policy")
                self._stop.wait(self._interval_s)
        finally:
            db.close()


def start_for_app(app: Flask) -> PolicyPublisher | None:
    """Start publishing for a served app (called in each gunicorn worker by ``hall_server.serve``)."""
    hall = app.extensions["invigil"]
    interval = hall.settings["policy_publish_interval_s"]
    if interval <= 0:
        return None
    publisher = PolicyPublisher(
        lambda: connect(hall.data_dir), hall.data_dir, hall.settings["enrol_early_s"], interval
    )
    publisher.start()
    return publisher
