"""Live capture gaps: a seat that is enrolled and has not left but sends no capture record.

A sweep every ``capture_gap_sweep_s`` reads the sessions that may still be running (one indexed query) and
raises a ``capture_gap`` observation, detail ``{"since": ...}``, for each seat whose last capture record (or
enrolment) is older than ``capture_gap_s``; heartbeats do not count. The capture record that ends the gap
closes it inside the transaction that stores the record (:func:`close_on_data`): its detail gets
``until`` and ``seconds``. A gap still open when the session leaves or its exam ends is closed by the
sweep at that end, ``resumed`` false.

The sweep runs in each process that serves the dashboard (``process_role`` all or live), never in ingest
workers. Once per gap whatever runs it: the decision is checked again inside the write transaction that
raises the gap, and a unique index allows one open gap per session (migration m012_capture_gaps), so several
``--role all`` workers sweeping at once raise each gap once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlite_utils
from flask import Flask

from hall_server.ingest import rules
from hall_server.ingest.sessions import add_observation
from hall_server.live import bus
from hall_server.store import observations
from hall_server.store.db import connect, write_transaction
from invigil.timeutil import from_wire, to_wire, utc_now

log = logging.getLogger("invigil.gaps")

#: Sessions not left and not expired (the partial index ``agent_session_running``), and any session with
#: an open gap (the unique index ``observation_open_gap``); each with its latest capture record by receive
#: time (``capture_received``) and when the student's next session began (an agent that joined again).
_SWEEP_QUERY = """
    SELECT s.id, s.exam_id, s.enrolled_at, s.ended_at IS NOT NULL OR s.state = 'left',
           e.capture_interval_s, e.ends_at, e.ended_at, r.extra_time_min,
           (SELECT MAX(c.received_at) FROM capture c WHERE c.session_id = s.id),
           (SELECT o.id FROM observation o
             WHERE o.session_id = s.id AND o.kind = 'capture_gap' AND o.closed_at IS NULL),
           (SELECT MIN(n.enrolled_at) FROM agent_session n
             WHERE n.roster_id = s.roster_id AND (n.enrolled_at, n.id) > (s.enrolled_at, s.id))
    FROM agent_session s JOIN exam e ON e.id = s.exam_id JOIN roster r ON r.id = s.roster_id
    WHERE s.id IN (
        SELECT id FROM agent_session WHERE ended_at IS NULL AND expires_at > ?
        UNION SELECT session_id FROM observation WHERE kind = 'capture_gap' AND closed_at IS NULL)
"""


@dataclass(frozen=True)
class Watched:
    """A session the sweep looks at."""

    session_id: int
    exam_id: int
    enrolled_at: datetime
    #: The student left, or joined again in a newer session (which the sweep watches instead).
    left: bool
    capture_interval_s: int
    #: The end of the exam for this session: exam end plus extra time, or when the invigilator ended it, or
    #: when the student's next session began.
    ends_at: datetime
    #: Server receive time (wire text) of the latest capture record, or None.
    last_record: str | None
    open_gap: int | None

    @property
    def since(self) -> datetime:
        return from_wire(self.last_record) if self.last_record else self.enrolled_at


def watched_sessions(db: sqlite_utils.Database, now: datetime) -> list[Watched]:
    found = []
    for row in db.execute(_SWEEP_QUERY, [to_wire(now)]).fetchall():
        ends = [from_wire(row[5]) + timedelta(minutes=row[7])]
        ends += [from_wire(row[index]) for index in (6, 10) if row[index]]
        left = bool(row[3]) or row[10] is not None
        found.append(Watched(row[0], row[1], from_wire(row[2]), left, row[4], min(ends), row[8], row[9]))
    return found


def sweep(db: sqlite_utils.Database, now: datetime, capture_gap_s: float) -> list[tuple[int, int, int]]:
    """Raise the gaps that began and close those whose session left or whose exam ended; returns
    (exam, session, observation) of each to tell the live view."""
    changed = []
    for seat in watched_sessions(db, now):
        if seat.open_gap is not None:
            if seat.left or now >= seat.ends_at:
                closed = _close_at_end(db, seat, now)
                if closed is not None:
                    changed.append((seat.exam_id, seat.session_id, closed))
            continue
        gap_s = rules.capture_gap_s(capture_gap_s, seat.capture_interval_s)
        found = rules.capture_gap(
            since=seat.since, now=now, gap_s=gap_s, left=seat.left, ends_at=seat.ends_at
        )
        if found is not None:
            raised = _raise(db, seat, found)
            if raised is not None:
                changed.append((seat.exam_id, seat.session_id, raised))
    return changed


def _raise(db: sqlite_utils.Database, seat: Watched, found: rules.Observation) -> int | None:
    with write_transaction(db):
        # What the sweep read may be out of date by now: a record, a leave or another process's gap may
        # have committed since. Under the write lock the answer holds until the insert commits.
        still_silent = db.execute(
            "SELECT 1 FROM agent_session s WHERE s.id = ? AND s.ended_at IS NULL AND s.state != 'left' "
            "AND NOT EXISTS (SELECT 1 FROM capture c WHERE c.session_id = s.id AND c.received_at > ?) "
            "AND NOT EXISTS (SELECT 1 FROM observation o WHERE o.session_id = s.id "
            "AND o.kind = 'capture_gap' AND o.closed_at IS NULL) "
            "AND NOT EXISTS (SELECT 1 FROM agent_session n WHERE n.roster_id = s.roster_id "
            "AND (n.enrolled_at, n.id) > (s.enrolled_at, s.id))",
            [seat.session_id, seat.last_record or ""],
        ).fetchone()
        if still_silent is None:
            return None
        return add_observation(db, seat.exam_id, seat.session_id, found[0], seat.since, found[1])


def _close_at_end(db: sqlite_utils.Database, seat: Watched, now: datetime) -> int | None:
    with write_transaction(db):
        gap = observations.open_capture_gap(db, seat.session_id)
        if gap is None:
            return None
        left_at = db.execute("SELECT ended_at FROM agent_session WHERE id = ?", [seat.session_id]).fetchone()
        end = min(now, seat.ends_at)
        if left_at and left_at[0]:
            end = min(end, from_wire(left_at[0]))
        since = _since(gap.detail, end)
        detail = rules.closed_gap(gap.detail, since, max(end, since), resumed=False)
        return gap.id if observations.close(db, gap.id, gap.exam_id, max(end, since), detail) else None


def close_on_data(db: sqlite_utils.Database, session_id: int, now: datetime) -> tuple[int, int] | None:
    """A capture record arrived at ``now``: close the session's open gap, if any; returns (exam,
    observation) to pass to ``bus.observation`` once committed. Call inside the record's write
    transaction."""
    gap = observations.open_capture_gap(db, session_id)
    if gap is None:
        return None
    since = _since(gap.detail, now)
    observations.close(db, gap.id, gap.exam_id, now, rules.closed_gap(gap.detail, since, now, resumed=True))
    return gap.exam_id, gap.id


def _since(detail: dict[str, Any], default: datetime) -> datetime:
    try:
        return from_wire(str(detail["since"]))
    except (KeyError, ValueError):  # a detail retention emptied, or none at all
        return default


class GapSweeper:
    """The sweep as a background task of the process's live bus (threads or gevent, as the bus)."""

    def __init__(self, app: Flask, interval_s: float, capture_gap_s: float) -> None:
        self.app = app
        self.interval_s = interval_s
        self.capture_gap_s = capture_gap_s
        self.sweeps = 0
        self._stopped = False

    def start(self) -> GapSweeper:
        self.app.extensions["invigil_live"].emitter.start_background_task(self._run)
        return self

    def stop(self) -> None:
        self._stopped = True

    def _run(self) -> None:
        hall = self.app.extensions["invigil"]
        live = self.app.extensions["invigil_live"]
        db = connect(hall.data_dir, hall.settings["sqlite_synchronous"])
        try:
            while not self._stopped:
                try:
                    self.sweep_once(db)
                except Exception:  # one failed sweep must not end the watch for gaps
                    log.exception("capture gap sweep failed")
                live.emitter.sleep(self.interval_s)
        finally:
            db.close()

    def sweep_once(self, db: sqlite_utils.Database) -> None:
        changed = sweep(db, utc_now(), self.capture_gap_s)
        self.sweeps += 1
        with self.app.app_context():
            for exam_id, session_id, observation_id in changed:
                bus.observation(exam_id, session_id, observation_id)


def start_for_app(app: Flask) -> GapSweeper | None:
    """Start the sweep in a served app that serves the dashboard (called in each gunicorn worker by
    ``hall_server.serve``); an ingest process never sweeps."""
    settings = app.extensions["invigil"].settings
    if settings["process_role"] == "ingest":
        return None
    return GapSweeper(app, float(settings["capture_gap_sweep_s"]), float(settings["capture_gap_s"])).start()
