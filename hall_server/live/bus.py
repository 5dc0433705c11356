"""The live bus: small, coalesced Socket.IO events from the store to invigilators' browsers.

Ingest and dashboard code call :func:`seat_changed`, :func:`new_thumbnail`, :func:`observation` and
:func:`exam_changed`; these only note ids in a per-process buffer. A background task of the process
flushes the buffer every ``live_emit_interval_s`` per exam room (``exam-<id>``): one ``seats`` event with
the touched seats' records, one ``observations`` event, read back from the store so a browser always gets
committed state. Images never travel over the socket: a seat record names its thumbnail's capture id and
the browser fetches it over HTTP (cached).

In processes that serve browsers (``process_role`` all or live) the same task sweeps every watched exam:
seat states that change with time alone (stale, offline) or through mDNS are emitted when they change.

Layouts (docs/dashboard.md): embedded (``message_queue`` empty, one process does everything), or ingest
processes that emit through Redis (``SocketIO(message_queue=...)`` write-only) and one live process that
holds the browsers' connections. Code stays async-mode agnostic (``start_background_task``/``sleep``) so
the gevent worker works as well as gthread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlite_utils
from flask import Flask, current_app, has_app_context
from flask_socketio import SocketIO

from hall_server.live import hallview, seatstate
from hall_server.store.db import connect
from hall_server.store.exams import exam_facts
from invigil.timeutil import utc_now

log = logging.getLogger("invigil.live")

#: How often the process serving browsers recomputes watched halls for time-driven state changes.
SWEEP_INTERVAL_S = 1.0
#: A flusher with nothing to do and nobody watching stops after this long; the next event restarts it.
IDLE_STOP_S = 30.0


def room(exam_id: int) -> str:
    return f"exam-{int(exam_id)}"


def async_mode() -> str:
    """gevent when gunicorn's gevent worker patched the process, else threads (simple-websocket)."""
    try:
        from gevent import monkey

        if monkey.is_module_patched("socket"):
            return "gevent"
    except ImportError:  # pragma: no cover - gevent comes with gunicorn[gevent]
        pass
    return "threading"


class LiveBus:
    """Per-process buffer of what changed, and the task that turns it into room events."""

    def __init__(
        self,
        *,
        data_dir: Path,
        settings: dict[str, Any],
        emitter: SocketIO,
        serves_browsers: bool,
        discovered: Callable[[], dict[str, bool]] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.settings = settings
        self.emitter = emitter
        self.serves_browsers = serves_browsers
        self.discovered = discovered or dict
        self.discovery_health: Callable[[], dict[str, Any] | None] = lambda: None
        self.thresholds = seatstate.Thresholds.from_settings(settings)
        self.interval_s = float(settings["live_emit_interval_s"])
        self.tick_hooks: list[Callable[[sqlite_utils.Database], Any]] = []
        self.watchers: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._sessions: dict[int, set[int]] = {}  # exam -> session ids whose seat changed
        self._rosters: dict[int, set[int]] = {}  # exam -> roster ids (attendance, no session needed)
        self._observations: dict[int, set[int]] = {}
        self._exams: set[int] = set()
        self._swept: dict[int, dict[Any, str]] = {}  # exam -> seat key -> state last sent by the sweep
        self._summaries: dict[int, dict[str, Any]] = {}
        self._running = False
        self._swept_at = 0.0
        self.ticks = 0

    # ---- hooks: called from request threads; they only record and make sure the task runs
    def seat_changed(self, exam_id: int, session_id: int) -> None:
        with self._lock:
            self._sessions.setdefault(exam_id, set()).add(session_id)
        self.ensure_running()

    def roster_changed(self, exam_id: int, roster_id: int) -> None:
        with self._lock:
            self._rosters.setdefault(exam_id, set()).add(roster_id)
        self.ensure_running()

    def observation(self, exam_id: int, session_id: int | None, observation_id: int) -> None:
        with self._lock:
            self._observations.setdefault(exam_id, set()).add(observation_id)
            if session_id is not None:
                self._sessions.setdefault(exam_id, set()).add(session_id)
        self.ensure_running()

    def exam_changed(self, exam_id: int) -> None:
        with self._lock:
            self._exams.add(exam_id)
        self.ensure_running()

    def watch(self, exam_id: int, delta: int) -> None:
        """A browser started (+1) or stopped (-1) watching the exam."""
        with self._lock:
            self.watchers[exam_id] += delta
            if self.watchers[exam_id] <= 0:
                del self.watchers[exam_id]
                self._swept.pop(exam_id, None)
                self._summaries.pop(exam_id, None)
        if delta > 0:
            self.ensure_running()

    def ensure_running(self) -> None:
        with self._lock:
            if self._running:
                return
            self._running = True
        self.emitter.start_background_task(self._run)

    # ---- the background task
    def _run(self) -> None:
        db = connect(self.data_dir, self.settings["sqlite_synchronous"])
        idle_since = time.monotonic()
        try:
            while True:
                self.emitter.sleep(self.interval_s)
                started = time.monotonic()
                try:
                    busy = self.tick(db)
                except Exception:  # one bad tick must not stop the hall's live view
                    log.exception("live bus tick failed")
                    busy = True
                took = time.monotonic() - started
                if took > self.interval_s:
                    log.warning("live bus tick took %.2f s (interval %.2f s)", took, self.interval_s)
                if busy:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > IDLE_STOP_S:
                    with self._lock:
                        if not self._has_work():
                            self._running = False
                            return
        finally:
            db.close()

    def _has_work(self) -> bool:
        return bool(self._sessions or self._rosters or self._observations or self._exams or self.watchers)

    def tick(self, db: sqlite_utils.Database) -> bool:
        """Flush what was recorded, sweep watched exams, run tick hooks; True if anything was pending."""
        self.ticks += 1
        with self._lock:
            sessions, self._sessions = self._sessions, {}
            rosters, self._rosters = self._rosters, {}
            observations, self._observations = self._observations, {}
            exams, self._exams = self._exams, set()
            watched = list(self.watchers) if self.serves_browsers else []
        now = utc_now()
        touched: dict[int, set[int]] = {exam: set(ids) for exam, ids in rosters.items()}
        by_exam = hallview.roster_ids_for_sessions(db, {sid for ids in sessions.values() for sid in ids})
        for exam_id, roster_ids in by_exam.items():
            touched.setdefault(exam_id, set()).update(roster_ids)
        discovered = self.discovered()
        for exam_id in sorted(set(touched) | set(observations) | exams):
            exam = exam_facts(db, exam_id)
            if exam is None:
                continue
            if exam_id in exams:
                self._emit("exam", {"exam": exam_id, **exam.to_json(now)}, exam_id)
            if touched.get(exam_id):
                records = hallview.seats(
                    db, exam, now, self.thresholds, discovered, roster_ids=sorted(touched[exam_id])
                )
                self._emit("seats", {"exam": exam_id, "seats": records}, exam_id)
            if observations.get(exam_id):
                items = hallview.observations(db, exam_id, ids=sorted(observations[exam_id]))
                self._emit("observations", {"exam": exam_id, "items": items}, exam_id)
        # Time-driven states (stale after seconds of silence) need no faster sweep than about a second.
        if watched and time.monotonic() - self._swept_at >= SWEEP_INTERVAL_S:
            self._swept_at = time.monotonic()
            for exam_id in watched:
                self._sweep(db, exam_id, now, discovered)
        for hook in self.tick_hooks:
            hook(db)
        return bool(touched or observations or exams or watched)

    def _sweep(self, db: sqlite_utils.Database, exam_id: int, now: Any, discovered: dict[str, bool]) -> None:
        exam = exam_facts(db, exam_id)
        if exam is None:
            return
        records = hallview.seats(db, exam, now, self.thresholds, discovered)
        states = {(seat["r"], seat.get("agent")): seat["state"] for seat in records}
        previous = self._swept.get(exam_id)
        self._swept[exam_id] = states
        summary = hall_summary(records, self.discovery_health())
        if summary != self._summaries.get(exam_id):
            self._summaries[exam_id] = summary
            self._emit("hall", {"exam": exam_id, **summary}, exam_id)
        # The first sweep after the first watcher arrived sends every seat: a state that changed between
        # the browser's load and this baseline would otherwise never reach it.
        changed = [
            seat
            for seat in records
            if previous is None or previous.get((seat["r"], seat.get("agent"))) != seat["state"]
        ]
        previous = previous or {}
        gone = [
            {"r": None, "agent": key[1], "state": "gone"}
            for key in previous
            if key[0] is None and key not in states
        ]
        if changed or gone:
            self._emit("seats", {"exam": exam_id, "seats": changed + gone}, exam_id)

    def _emit(self, event: str, data: dict[str, Any], exam_id: int) -> None:
        self.emitter.emit(event, data, to=room(exam_id))


def hall_summary(records: list[dict[str, Any]], discovery: dict[str, Any] | None) -> dict[str, Any]:
    """Counts per seat state and what discovery sees (pure); the dashboard header shows it."""
    counts = Counter(seat["state"] for seat in records)
    enrolled = sum(1 for seat in records if seat.get("sid"))
    note = None
    if discovery is None:
        note = "discovery off: seats come from enrolment"
    elif enrolled and not discovery.get("agents_seen"):
        note = "discovery sees nothing (mDNS filtered on this network?): seats come from enrolment"
    return {
        "counts": dict(sorted(counts.items())),
        "enrolled": enrolled,
        "discovery": discovery,
        "note": note,
    }


def init_app(app: Flask, data_dir: Path, settings: dict[str, Any]) -> LiveBus:
    """Bind Socket.IO (or, for ``process_role`` ingest, a write-only emitter) and the bus to ``app``.

    Returns the bus; ``app.extensions["socketio"]`` is the
    server the dashboard registers its handlers on (absent in an ingest process).
    """
    role = settings["process_role"]
    url = settings["message_queue"] or None
    mode = async_mode()
    if role == "ingest":
        if not url:
            raise ValueError("process_role ingest needs message_queue (e.g. redis://127.0.0.1:6379/0)")
        emitter = SocketIO(message_queue=url, async_mode=mode)
    else:
        # cors_allowed_origins defaults to the serving origin: another site cannot open a socket with
        # an invigilator's cookie.
        emitter = SocketIO(app, message_queue=url, async_mode=mode, manage_session=True)
    bus = LiveBus(data_dir=data_dir, settings=settings, emitter=emitter, serves_browsers=role != "ingest")
    app.extensions["invigil_live"] = bus
    return bus


def bus() -> LiveBus | None:
    return current_app.extensions.get("invigil_live") if has_app_context() else None


def seat_changed(exam_id: int, session_id: int) -> None:
    """A seat's record changed (attendance, instruction, end of session)."""
    live = bus()
    if live is not None:
        live.seat_changed(exam_id, session_id)


def new_thumbnail(exam_id: int, session_id: int, capture_id: str) -> None:
    """A seat has a new thumbnail (committed)."""
    seat_changed(exam_id, session_id)


def observation(exam_id: int, session_id: int | None, observation_id: int) -> None:
    """An observation was raised (committed)."""
    live = bus()
    if live is not None:
        live.observation(exam_id, session_id, observation_id)


def roster_changed(exam_id: int, roster_id: int) -> None:
    live = bus()
    if live is not None:
        live.roster_changed(exam_id, roster_id)


def exam_changed(exam_id: int) -> None:
    """The exam clock changed (started, ended)."""
    live = bus()
    if live is not None:
        live.exam_changed(exam_id)
