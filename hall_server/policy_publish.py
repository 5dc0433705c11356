"""Publishing the running exams' network policies, seat by seat, where the proxy reads them.

The proxy (mitmdump + netpolicy addon, its own process and virtualenv) watches one file and reloads it
without a restart (docs/proxy.md). The hall server owns the exams and the sessions, so it writes that file:
every ``policy_publish_interval_s`` it works out which exams of the hall are running, which laptop address
belongs to which of them (the live agent sessions: enrolment and heartbeats record the address), and, when
any of that changed, replaces ``<data_dir>/proxy/hall-policy.json`` atomically (format:
``invigil.seatpolicy``). An address in no running session gets the proxy's "not enrolled" policy.

Every exam's policy is checked with the proxy's own grammar (``invigil.policy``) before anything is written:
a policy with errors is refused, the old file stays, and the reason is logged, so a bad publication never
leaves the proxy without a valid policy.

Only the exams of the appliance's hall are published: the hall named by the ``hall_name`` setting
(``INVIGIL_HALL_NAME``, which the Debian package's /etc/invigil/invigil.conf sets), or every hall of the
database when it is empty (a development or single-hall database).

Run by a background thread in each server process, so an exam's start, end or policy change, and a laptop
joining or moving, reach the proxy within one interval.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import sqlite_utils
from flask import Flask

from hall_server.store import private_files
from hall_server.store.db import connect
from invigil.policy import PolicyError, parse_policy
from invigil.seatpolicy import FILE_NAME, canonical_address, seat_policy_text
from invigil.timeutil import from_wire, to_wire, utc_now

log = logging.getLogger("invigil.policy")

POLICY_FILE = Path("proxy") / FILE_NAME


class PublicationRefused(ValueError):
    """An exam's policy has errors: nothing was written (the proxy keeps the file it has)."""


@dataclass(frozen=True)
class ExamPolicy:
    exam_id: int
    title: str
    starts_at: datetime
    ends_at: datetime
    started: bool
    ended: bool
    text: str
    intercept: bool = False


@dataclass(frozen=True)
class SessionSeat:
    """Where one live agent session was last seen from."""

    session_id: int
    exam_id: int
    address: str
    last_seen_at: datetime


def running(exams: list[ExamPolicy], now: datetime, early: timedelta, late: timedelta) -> list[ExamPolicy]:
    """Exams whose policy applies now: started and not ended by the invigilator, or inside their window
    (from ``early`` before the start, so students can enrol, to ``late`` after the end, for extra time)."""
    return [
        exam
        for exam in exams
        if not exam.ended and (exam.started or exam.starts_at - early <= now <= exam.ends_at + late)
    ]


def seat_map(sessions: Iterable[SessionSeat], exam_ids: set[int]) -> dict[str, int]:
    """Client address -> exam for the sessions of running exams. One address, one exam: the session seen
    last wins (a laptop that left one exam and joined the next, or an address a laptop moved to that
    another session still names), the newer session on a tie. Addresses are compared in canonical form;
    one that is no IP address is no seat."""
    newest: dict[str, SessionSeat] = {}
    for session in sessions:
        if session.exam_id not in exam_ids:
            continue
        try:
            address = canonical_address(session.address)
        except ValueError:
            continue
        held = newest.get(address)
        if held is None or (session.last_seen_at, session.session_id) > (held.last_seen_at, held.session_id):
            newest[address] = session
    return {address: session.exam_id for address, session in newest.items()}


def check_policies(exams: list[ExamPolicy]) -> None:
    """Raise ``PublicationRefused`` naming every running exam whose policy the proxy would refuse."""
    problems = []
    for exam in exams:
        try:
            parse_policy(exam.text)
        except PolicyError as exc:
            lines = "; ".join(f"line {line}: {message}" for line, message in exc.errors)
            problems.append(f"exam {exam.exam_id} ({exam.title!r}): {lines}")
    if problems:
        raise PublicationRefused(
            "network policy not published, the proxy keeps its previous one: " + " | ".join(problems)
        )


def document_text(exams: list[ExamPolicy], seats: dict[str, int], now: datetime) -> str:
    """The file the proxy reads (``invigil.seatpolicy``). Raises ``PublicationRefused`` for a bad policy."""
    check_policies(exams)
    return seat_policy_text(
        {exam.exam_id: (exam.title, exam.intercept, exam.text) for exam in exams}, seats, to_wire(now)
    )


def hall_ids(db: sqlite_utils.Database, hall_name: str) -> list[int] | None:
    """The halls whose exams are published: the one named ``hall_name`` ([] when there is none), or None
    for every hall when no name is set."""
    if not hall_name:
        return None
    row = db.execute("SELECT id FROM hall WHERE name = ?", [hall_name]).fetchone()
    return [row[0]] if row else []


def load_exams(db: sqlite_utils.Database, halls: list[int] | None = None) -> list[ExamPolicy]:
    rows = db.execute(
        "SELECT id, title, starts_at, ends_at, started_at, ended_at, policy_text, interception, hall_id "
        "FROM exam ORDER BY starts_at, id"
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
            bool(row[7]),
        )
        for row in rows
        if halls is None or row[8] in halls
    ]


def load_sessions(db: sqlite_utils.Database, exam_ids: set[int], now: datetime) -> list[SessionSeat]:
    """The live sessions (not left, not expired) of ``exam_ids``, with their last address opened."""
    if not exam_ids:
        return []
    marks = ",".join("?" * len(exam_ids))
    rows = db.execute(
        "SELECT id, exam_id, unseal(exam_id, client_ip), last_seen_at FROM agent_session "  # noqa: S608
        f"WHERE exam_id IN ({marks}) AND ended_at IS NULL AND expires_at >= ?",
        [*sorted(exam_ids), to_wire(now)],
    ).fetchall()
    # An address whose exam key was destroyed cannot be opened (None): it is no seat any more.
    return [SessionSeat(row[0], row[1], row[2], from_wire(row[3])) for row in rows if isinstance(row[2], str)]


def max_extra_time(db: sqlite_utils.Database) -> timedelta:
    row = db.execute("SELECT MAX(extra_time_min) FROM roster").fetchone()
    return timedelta(minutes=row[0] or 0)


def publish(
    db: sqlite_utils.Database,
    data_dir: Path,
    enrol_early_s: int,
    now: datetime | None = None,
    hall_name: str = "",
) -> bool:
    """Write the policy file if an exam, a policy or a seat changed; returns True when it wrote. Atomic (a
    0600 temporary file, fsync, rename) in a 0700 folder. Raises ``PublicationRefused`` (and writes nothing)
    when a running exam's policy has errors."""
    now = now or utc_now()
    halls = hall_ids(db, hall_name)
    active = running(load_exams(db, halls), now, timedelta(seconds=enrol_early_s), max_extra_time(db))
    ids = {exam.exam_id for exam in active}
    seats = seat_map(load_sessions(db, ids, now), ids)
    text = document_text(active, seats, now)
    path = data_dir / POLICY_FILE
    try:
        old = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        old = None
    if old is not None and _content(old) == _content(text):
        return False
    # Only the service user reads it: the proxy runs as that user too (systemd/invigil-proxy.service).
    private_files.make_dirs(path.parent)
    private_files.write_file(path, text.encode())
    log.info(
        "published the network policy of %d running exam(s) and %d seat(s) to %s",
        len(active),
        len(seats),
        path,
    )
    if halls == []:
        log.error("no hall is named %r (INVIGIL_HALL_NAME): no exam is published", hall_name)
    return True


def _content(text: str) -> object:
    # The time stamp changes every time; only a change of exams, policies or seats is worth a reload.
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if isinstance(document, dict):
        document.pop("written_at", None)
    return document


class PolicyPublisher:
    """Background thread of one server process; several workers writing the same text is harmless."""

    def __init__(
        self,
        connect: Callable[[], sqlite_utils.Database],
        data_dir: Path,
        enrol_early_s: int,
        interval_s: float,
        hall_name: str = "",
    ) -> None:
        self._connect = connect
        self._data_dir = data_dir
        self._enrol_early_s = enrol_early_s
        self._interval_s = interval_s
        self._hall_name = hall_name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="invigil-policy", daemon=True)
        self.refusal: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def publish_once(self) -> bool:
        """One round; a refusal is logged when it first appears (not every interval) and when it clears."""
        db = self._connect()
        try:
            wrote = publish(db, self._data_dir, self._enrol_early_s, hall_name=self._hall_name)
        except PublicationRefused as exc:
            if str(exc) != self.refusal:
                log.error("%s", exc)
            self.refusal = str(exc)
            return False
        finally:
            db.close()
        if self.refusal is not None:
            log.info("the network policies are valid again and published")
            self.refusal = None
        return wrote

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.publish_once()
            except Exception:  # keep publishing; the proxy keeps its last good policy meanwhile
                log.exception("could not publish the network policy")
            self._stop.wait(self._interval_s)


def start_for_app(app: Flask) -> PolicyPublisher | None:
    """Start publishing for a served app (called in each gunicorn worker by ``hall_server.serve``)."""
    hall = app.extensions["invigil"]
    interval = hall.settings["policy_publish_interval_s"]
    if interval <= 0:
        return None
    publisher = PolicyPublisher(
        lambda: connect(hall.data_dir),
        hall.data_dir,
        hall.settings["enrol_early_s"],
        interval,
        hall.settings["hall_name"],
    )
    publisher.start()
    return publisher
