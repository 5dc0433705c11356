"""Socket.IO for the live view: authentication at the handshake, one room per watched exam.

The browser connects with ``auth={"exam": <id>}`` and the same session cookie as its pages. ``connect``
refuses (``ConnectionRefusedError``) anyone not logged in or not assigned to that exam; identity is never
taken from a later event. After that the socket only receives: ``seats``, ``observations``, ``hall`` and
``exam`` events, emitted by ``hall_server.live.bus``.

An open socket is checked again every ``socket_recheck_s``: when its login ended (logout, the account
disabled or removed, its password changed) or its user may no longer watch the exam (the assignment removed
or past its time), the server closes the connection, so nothing more reaches it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Flask, current_app, request, session
from flask_socketio import ConnectionRefusedError, SocketIO, join_room

from hall_server import staff
from hall_server.live import bus
from hall_server.store import db
from hall_server.web import get_db

from .auth import access_windows, current_user

log = logging.getLogger("invigil.dashboard")


def register(socketio: SocketIO) -> None:
    # Socket.IO sid -> (exam id, user id, login id): for disconnect and the recheck
    watching: dict[str, tuple[int, int, str]] = {}
    lock = threading.Lock()
    rechecking: list[bool] = []

    def recheck(app: Flask) -> None:
        """Close every open socket whose login ended or whose user may no longer watch its exam."""
        hall = app.extensions["invigil"]
        interval = float(hall.settings["socket_recheck_s"])
        windows = app.extensions["invigil_dashboard"]["windows"]
        store = db.connect(hall.data_dir)
        try:
            while True:
                socketio.sleep(interval)
                with lock:
                    open_sockets = list(watching.items())
                for sid, (exam_id, user_id, login_id) in open_sockets:
                    try:
                        allowed = staff.load_login(store, user_id, login_id) is not None and staff.may_watch(
                            store, user_id, exam_id, windows
                        )
                        if not allowed:
                            socketio.server.disconnect(sid, namespace="/")
                    except Exception:  # the loop must outlive any one socket: keep checking the others
                        log.exception("could not recheck a live-view connection")
        finally:
            store.close()

    def connect(auth: Any = None) -> None:
        user = current_user()
        if user is None:
            raise ConnectionRefusedError("log in first")
        exam_id = auth.get("exam") if isinstance(auth, dict) else None
        if not isinstance(exam_id, int) or not staff.may_watch(get_db(), user.id, exam_id, access_windows()):
            raise ConnectionRefusedError("not assigned to this exam")
        join_room(bus.room(exam_id))
        sid = request.sid  # type: ignore[attr-defined]
        with lock:
            watching[sid] = (exam_id, user.id, str(session.get("login")))
            start = not rechecking
            if start:
                rechecking.append(True)
        if start:
            socketio.start_background_task(recheck, current_app._get_current_object())  # type: ignore[attr-defined]
        current_app.extensions["invigil_live"].watch(exam_id, +1)

    def disconnect(*_reason: Any) -> None:
        sid = request.sid  # type: ignore[attr-defined]
        with lock:
            entry = watching.pop(sid, None)
        if entry is not None:
            current_app.extensions["invigil_live"].watch(entry[0], -1)

    socketio.on_event("connect", connect)
    socketio.on_event("disconnect", disconnect)
